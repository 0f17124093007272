// detail.js -- the two panels about one image: the "selected target" panel above the grid
// and the detail panel at the side (full image, title, meta line, caption and abstract for
// arXiv figures or "name: value" rows for other collections, predictions, actions).

import { api, getMeta } from "./api.js";
import { el, setStatus } from "./dom.js";
import { altText, arxivUrl, detailMetaParts, fieldRows, hitLabel, hitSummary, hitTitle, metaParts, predictionBlocks } from "./hits.js";
import { schema } from "./schema.js";
import { app, state } from "./state.js";
import { hideTooltip } from "./tooltip.js";
import { formatDistance, make, truncate } from "./util.js";

// ------------------------------------------------------------------ selected panel

export function showSelected(h) {
  app.selectedHit = h;
  if (!h) {
    el.selected.hidden = true;
    return;
  }
  el.selectedImg.src = h.thumbnail_url || `/api/images/${h.id}/thumbnail`;
  el.selectedImg.alt = altText(h, "selected figure", 120);
  el.selectedTitle.textContent = hitTitle(h);
  el.selectedMeta.textContent = metaParts(h).join(" · ");
  el.selectedCaption.textContent = truncate(hitSummary(h), 260);
  const url = arxivUrl(h);
  el.selectedLink.hidden = !url;
  if (url) el.selectedLink.href = url;
  el.selected.hidden = false;
}

/** Bring the "selected" panel in line with state.id (fetching metadata if needed). */
export async function ensureSelectedPanel() {
  if (state.id === null) return showSelected(null);
  if (app.selectedHit && app.selectedHit.id === state.id) return;
  if (app.hitsById.has(state.id)) return showSelected(app.hitsById.get(state.id));
  if (typeof state.id !== "number") return; // an image key: resolved by the neighbours query
  const want = state.id;
  try {
    const h = await getMeta(want);
    if (state.id === want) showSelected(h);
  } catch (e) {
    if (state.id === want) {
      showSelected(null);
      setStatus(`Selected image ${want}: ${e.message}`, "error");
    }
  }
}

// ------------------------------------------------------------------ detail panel

export async function openDetail(id) {
  const h = app.hitsById.get(id) || { id };
  hideTooltip(); // the hover card would cover the grid next to the panel
  app.detailHit = h;
  fillDetail(h);
  el.detail.hidden = false;
  el.detail.setAttribute("aria-hidden", "false");
  document.body.classList.add("detail-open");
  try {
    const full = await getMeta(id);
    if (app.detailHit && app.detailHit.id === id) {
      app.detailHit = { ...h, ...full, id };
      fillDetail(app.detailHit);
    }
    if (full.arxiv_id) showReuse(id, String(full.arxiv_id));
  } catch (e) {
    if (app.detailHit && app.detailHit.id === id) {
      const note = `(could not load details: ${e.message})`;
      if (schema.arxiv) el.detailAbstract.textContent = note;
      else el.detailFields.append(make("p", "muted", note));
    }
  }
}

/** "Reused: first in 2103.01234, also in 2 other papers" under the details, when the figure
 * appears in several papers (/api/reused). */
async function showReuse(id, aid) {
  el.detailReuse.hidden = true;
  let data;
  try {
    data = await api("/api/reused", { id, embedding: state.embedding });
  } catch {
    return; // an optional line: no message when it cannot be had
  }
  const g = data.group;
  if (!g || !app.detailHit || app.detailHit.id !== id) return;
  const others = g.papers.filter((p) => p !== aid);
  el.detailReuse.textContent = g.first === aid
    ? `First appeared here; reused in ${others.length} later paper${others.length === 1 ? "" : "s"}: ${others.slice(0, 5).join(", ")}${others.length > 5 ? ", …" : ""}`
    : `Reused figure: first appeared in ${g.first}; in ${g.papers.length} papers in all`;
  el.detailReuse.hidden = false;
}

function fillDetail(h) {
  const fig = h.figure !== null && h.figure !== undefined && h.figure !== "" ? ` · Figure ${h.figure}` : "";
  const where = `${hitLabel(h)}${fig}`;
  el.detailKicker.textContent = h.distance !== null && h.distance !== undefined ? `${where} · distance ${formatDistance(h.distance)}` : where;
  el.detailKicker.title = `row ${h.id}`;
  const img = h.image_url || `/api/images/${h.id}/image`;
  if (el.detailImg.getAttribute("src") !== img) el.detailImg.src = img;
  el.detailImageLink.href = img;
  el.detailImg.alt = altText(h, `figure ${h.id}`, 140);
  el.detailTitle.textContent = hitTitle(h);
  el.detailMeta.textContent = detailMetaParts(h).join(" · ");
  for (const node of [el.detailAuthors, el.detailCaptionHead, el.detailCaption, el.detailAbstractHead, el.detailAbstract]) node.hidden = !schema.arxiv;
  el.detailFields.hidden = schema.arxiv;
  if (schema.arxiv) {
    el.detailAuthors.textContent = h.authors || "";
    el.detailCaption.textContent = h.caption || "(no caption)";
    el.detailAbstract.textContent = h.abstract || (h.abstract === undefined ? "Loading…" : "(no abstract)");
  } else {
    const rows = [];
    for (const [name, text] of fieldRows(h)) rows.push(make("dt", "", name), make("dd", "", text));
    el.detailFields.replaceChildren(...rows);
  }
  el.detailPreds.replaceChildren(...predictionBlocks(h));
  const url = arxivUrl(h);
  el.detailArxiv.hidden = !url;
  if (url) el.detailArxiv.href = url;
  el.detailPaper.hidden = el.detailPapers.hidden = !h.arxiv_id;
}

/** Close the detail panel (false if it was closed), focusing the tile it showed. */
export function closeDetail() {
  if (el.detail.hidden) return false;
  el.detail.hidden = true;
  el.detail.setAttribute("aria-hidden", "true");
  document.body.classList.remove("detail-open");
  const id = app.detailHit && app.detailHit.id;
  app.detailHit = null;
  const tile = id !== null && id !== undefined ? el.grid.querySelector(`.tile[data-id="${CSS.escape(String(id))}"]`) : null;
  if (tile && state.view === "grid") tile.focus({ preventScroll: true });
  return true;
}
