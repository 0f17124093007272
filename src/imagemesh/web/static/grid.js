// grid.js -- the results grid: one tile per hit (thumbnail, near-duplicate badge, distance,
// badge number, label), the current target marked, and arrow-key moves between tiles.

import { el } from "./dom.js";
import { altText, hitLabel, hitTitle, tileBadge } from "./hits.js";
import { drawMap } from "./map.js";
import { app, state } from "./state.js";
import { hideTooltip } from "./tooltip.js";
import { formatDistance, make, truncate } from "./util.js";

function makeTile(h, withDistance) {
  const tile = make("div", "tile");
  tile.dataset.id = String(h.id);
  tile.tabIndex = 0;
  tile.setAttribute("role", "listitem");

  const thumb = make("div", "thumb");
  const img = document.createElement("img");
  img.loading = "lazy";
  img.decoding = "async";
  img.alt = altText(h, `figure ${h.id}`, 100);
  img.src = h.thumbnail_url || `/api/images/${h.id}/thumbnail`;
  img.addEventListener("error", () => tile.classList.add("broken"), { once: true });
  thumb.append(img);
  if (Array.isArray(h.duplicates) && h.duplicates.length) {
    const badge = make("span", "dup-badge", `+${h.duplicates.length}`);
    badge.title = `${h.duplicates.length} near-duplicate${h.duplicates.length === 1 ? "" : "s"} collapsed into this figure`;
    thumb.append(badge);
  }

  const meta = make("div", "meta");
  if (withDistance) {
    const d = make("span", "dist", formatDistance(h.distance));
    if (h.distance === 0 && h.id === state.id) d.textContent = "target";
    d.title = "distance to the query under the chosen embedding (smaller = more similar)";
    meta.append(d);
  }
  if (typeof h.concept_score === "number") {
    const s = make("span", "dist", `p=${h.concept_score.toFixed(2)}`);
    s.title = "the concept's probability for this figure";
    meta.append(s);
  }
  const badge = tileBadge(h);
  if (badge) meta.append(make("span", "year", badge));
  meta.append(make("span", "aid", hitLabel(h)));
  if (h.snippet && typeof h.snippet.text === "string") meta.append(snippetNode(h.snippet));
  const title = hitTitle(h);
  if (title && title !== hitLabel(h)) {
    const t = make("div", "tile-title", truncate(title, 90));
    t.title = title;
    meta.append(t);
  }
  tile.append(thumb, meta);
  return tile;
}

/** The matched passage of a ranked text hit, its matched words in <mark> (built as nodes, not HTML). */
function snippetNode(s) {
  const p = make("div", "snippet");
  for (const part of Array.isArray(s.parts) ? s.parts : [[s.text, false]]) {
    const [text, marked] = Array.isArray(part) ? part : ["", false];
    p.append(marked ? make("mark", "", String(text)) : document.createTextNode(String(text)));
  }
  p.title = `${s.field}: ${s.text}`;
  return p;
}

/** Show `hits` (or append them: more results on scroll); duplicates of shown ids are skipped. */
export function renderGrid(hits, withDistance, emptyMessage, append = false) {
  hideTooltip();
  if (!append) {
    app.hitsById = new Map();
    app.results = [];
  }
  const frag = document.createDocumentFragment();
  for (const h of hits) {
    if (app.hitsById.has(h.id)) continue;
    app.hitsById.set(h.id, h);
    app.results.push(h);
    frag.append(makeTile(h, withDistance));
  }
  if (append) el.grid.append(frag);
  else el.grid.replaceChildren(frag);
  if (!app.results.length) el.grid.append(make("p", "empty", emptyMessage || "No images match these filters."));
  markSelectedTile();
}

export function markSelectedTile() {
  for (const t of el.grid.querySelectorAll(".tile.is-selected")) t.classList.remove("is-selected");
  if (state.id !== null) {
    const t = el.grid.querySelector(`.tile[data-id="${CSS.escape(String(state.id))}"]`);
    if (t) t.classList.add("is-selected");
  }
  drawMap();
}

export function tileOf(target) {
  return target instanceof Element ? target.closest(".tile") : null;
}

/** Move the focus from `tile` by an arrow key; true when it lands near the end of the grid. */
export function moveFocus(tile, key) {
  const all = [...el.grid.querySelectorAll(".tile")];
  const i = all.indexOf(tile);
  if (i < 0) return false;
  let j = i;
  if (key === "ArrowRight") j = i + 1;
  else if (key === "ArrowLeft") j = i - 1;
  else {
    // same column in the next/previous row, from the layout
    const top = tile.offsetTop;
    const left = tile.offsetLeft;
    const dir = key === "ArrowDown" ? 1 : -1;
    let rowTop = null;
    for (let k = i + dir; k >= 0 && k < all.length; k += dir) {
      const t = all[k];
      if (t.offsetTop === top) continue;
      if (rowTop === null) rowTop = t.offsetTop;
      if (t.offsetTop !== rowTop) break;
      j = k;
      if ((dir > 0 && t.offsetLeft >= left) || (dir < 0 && t.offsetLeft <= left)) break;
    }
  }
  if (j < 0 || j >= all.length || j === i) return false;
  all[j].focus();
  all[j].scrollIntoView({ block: "nearest" });
  return j >= all.length - 4;
}
