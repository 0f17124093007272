// imagemesh explorer: vanilla JS, no build step, talks only to the JSON API of its origin
// (documented at /api/openapi.json).
//
// Security notes: the page runs under a strict CSP (no inline script or style), so all
// behaviour lives here and every piece of metadata is rendered with textContent --
// captions and titles contain LaTeX, "<", "&" and quotes. Nothing here uses innerHTML.
// Uploaded images stay in this page (object URLs) and are sent only with a query.

const PAGE = 40; // results per page ("more results on scroll" adds a page)
const TEXT_FIELDS = ["title", "caption", "authors", "abstract"]; // "contains" filters
const FILTER_KEYS = ["archive", "category", "year", "keyword", ...TEXT_FIELDS];
const FACETS = ["archive", "category", "year"];
const SUGGEST = { title: "suggest-title", authors: "suggest-authors" }; // autocomplete fields
const UNKNOWN_OPTION = "\u0000unknown"; // value of the disabled "(unknown)" options
const MAX_IDS = 32;

// ------------------------------------------------------------------ elements

const $ = (id) => document.getElementById(id);
const el = {
  title: $("app-title"),
  size: $("collection-size"),
  form: $("controls"),
  modes: { random: $("mode-random"), neighbors: $("mode-neighbors"), query: $("mode-query") },
  embedding: $("embedding"),
  archive: $("archive"),
  category: $("category"),
  year: $("year"),
  keyword: $("keyword"),
  text: Object.fromEntries(TEXT_FIELDS.map((f) => [f, $(`f-${f}`)])),
  moreFilters: $("more-filters"),
  extraFilters: $("extra-filters"),
  clearFilters: $("clear-filters"),
  viewGrid: $("view-grid"),
  viewMap: $("view-map"),
  upload: $("upload"),
  collapse: $("collapse"),
  exportCsv: $("export-csv"),
  exportJson: $("export-json"),
  tray: $("tray"),
  trayPos: $("tray-pos"),
  trayNeg: $("tray-neg"),
  traySearch: $("tray-search"),
  trayClear: $("tray-clear"),
  selected: $("selected"),
  selectedImg: $("selected-img"),
  selectedTitle: $("selected-title"),
  selectedMeta: $("selected-meta"),
  selectedCaption: $("selected-caption"),
  selectedLink: $("selected-link"),
  selectedDetails: $("selected-details"),
  clearSelected: $("clear-selected"),
  status: $("status"),
  hint: $("hint"),
  grid: $("grid"),
  more: $("more"),
  loadMore: $("load-more"),
  mapview: $("mapview"),
  canvas: $("map-canvas"),
  mapLegend: $("map-legend"),
  mapZoomIn: $("map-zoom-in"),
  mapZoomOut: $("map-zoom-out"),
  mapReset: $("map-reset"),
  detail: $("detail"),
  detailKicker: $("detail-kicker"),
  detailClose: $("detail-close"),
  detailImg: $("detail-img"),
  detailImageLink: $("detail-image-link"),
  detailTitle: $("detail-title"),
  detailAuthors: $("detail-authors"),
  detailMeta: $("detail-meta"),
  detailCaption: $("detail-caption"),
  detailAbstract: $("detail-abstract"),
  detailPreds: $("detail-preds"),
  detailSimilar: $("detail-similar"),
  detailPos: $("detail-pos"),
  detailNeg: $("detail-neg"),
  detailArxiv: $("detail-arxiv"),
  tooltip: $("tooltip"),
  drop: $("drop"),
};

// ------------------------------------------------------------------ state

// Everything here but `uploads` lives in the URL (shareable, back/forward).
const state = {
  mode: "random", // "random" | "neighbors" | "query"
  embedding: "",
  id: null, // selected target (row id, or an image key from a shared URL until resolved)
  seed: null, // seed of the random sample shown
  filters: Object.fromEntries(FILTER_KEYS.map((k) => [k, ""])),
  view: "grid", // "grid" | "map"
  collapse: false,
  count: PAGE, // results wanted (grows by a page on scroll)
  pos: [], // row ids: "more like"
  neg: [], // row ids: "less like"
};
const uploads = []; // {file, url, polarity: "pos"|"neg"} -- in this page only, never in the URL

let info = null; // /api/info
let limits = { max_k: 500, max_n: 500 };
let results = []; // hits currently shown, in rank order
let hitsById = new Map();
let selectedHit = null; // metadata shown in the "selected" panel
let detailHit = null; // hit shown in the detail panel
let runSeq = 0; // increments per search; stale responses are dropped
let controller = null; // AbortController of the search in flight
let lastQuery = null; // description of the query behind `results` (for export)
let exhausted = false; // no more results to load
let loadingMore = false;
let randomNext = 0; // offset of the next random page
const metaCache = new Map(); // id -> full metadata (/api/images/{id})

// ------------------------------------------------------------------ API

class ApiError extends Error {}

async function parseResponse(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const msg = body && typeof body.error === "string" ? body.error : resp.statusText || "request failed";
    throw new ApiError(`${msg} (HTTP ${resp.status})`);
  }
  if (body === null || typeof body !== "object") throw new ApiError("the server sent an invalid response");
  return body;
}

async function api(path, params = {}, signal = undefined) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "" && v !== false) qs.set(k, String(v));
  }
  const url = qs.toString() ? `${path}?${qs}` : path;
  let resp;
  try {
    resp = await fetch(url, { signal, headers: { Accept: "application/json" } });
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError("network error: the server could not be reached");
  }
  return parseResponse(resp);
}

async function apiPost(path, form, signal) {
  let resp;
  try {
    resp = await fetch(path, { method: "POST", body: form, signal, headers: { Accept: "application/json" } });
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError("network error: the server could not be reached");
  }
  return parseResponse(resp);
}

/** The filter object for the current filters, without the keys in `omit` (null if empty). */
function buildFilter(filters, omit = []) {
  const f = {};
  for (const key of ["archive", "category", "keyword"]) {
    if (filters[key] && !omit.includes(key)) f[key] = filters[key];
  }
  if (filters.year && !omit.includes("year")) {
    const y = Number.parseInt(filters.year, 10);
    if (Number.isFinite(y)) f.year = y;
  }
  for (const key of TEXT_FIELDS) {
    if (filters[key] && !omit.includes(key)) f[key] = { contains: filters[key] };
  }
  return Object.keys(f).length ? f : null;
}

const filterParam = (f) => (f ? JSON.stringify(f) : null);

// ------------------------------------------------------------------ helpers

function truncate(text, max) {
  if (!text) return "";
  const s = String(text).replace(/\s+/g, " ").trim();
  if (s.length <= max) return s;
  const cut = s.slice(0, max);
  const space = cut.lastIndexOf(" ");
  return `${space > max * 0.6 ? cut.slice(0, space) : cut}…`;
}

/** "2306.01841v1", or the image key / row id when there is no arXiv id. */
function hitLabel(h) {
  if (!h) return "";
  if (h.arxiv_id) return h.version !== null && h.version !== undefined && h.version !== "" ? `${h.arxiv_id}v${h.version}` : String(h.arxiv_id);
  if (h.image_key) return String(h.image_key);
  return `#${h.id}`;
}

function arxivUrl(h) {
  if (h.arxiv_url) return h.arxiv_url;
  if (h.arxiv_id) return `https://arxiv.org/abs/${encodeURIComponent(hitLabel(h))}`;
  return null;
}

function formatDistance(d) {
  if (d === null || d === undefined || !Number.isFinite(d)) return "";
  if (d !== 0 && Math.abs(d) < 0.001) return `d=${d.toExponential(1)}`;
  return `d=${d.toFixed(3)}`;
}

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function randomSeed() {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  return a[0] & 0x7fffffff;
}

function setStatus(text, kind = "") {
  el.status.textContent = text;
  el.status.classList.toggle("error", kind === "error");
  el.status.classList.toggle("loading", kind === "loading");
}

function describeFilters(filters) {
  const parts = [];
  if (filters.archive) parts.push(`archive ${filters.archive}`);
  if (filters.category) parts.push(`category ${filters.category}`);
  if (filters.year) parts.push(`year ${filters.year}`);
  if (filters.keyword) parts.push(`keyword “${truncate(filters.keyword, 40)}”`);
  for (const k of TEXT_FIELDS) if (filters[k]) parts.push(`${k} contains “${truncate(filters[k], 40)}”`);
  return parts.join(", ");
}

function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

const parseIds = (s) =>
  (s || "")
    .split(",")
    .map((x) => x.trim())
    .filter((x) => /^\d{1,12}$/.test(x))
    .map(Number)
    .slice(0, MAX_IDS);

// ------------------------------------------------------------------ URL state

function readURL() {
  const p = new URLSearchParams(location.search);
  const mode = p.get("mode");
  state.mode = mode === "neighbors" || mode === "query" ? mode : "random";
  state.embedding = p.get("embedding") || (info && info.embeddings.length ? info.embeddings[0].name : "");
  const id = (p.get("id") || "").trim();
  state.id = id ? (/^\d+$/.test(id) ? Number(id) : id.slice(0, 200)) : null;
  const seed = p.get("seed") || "";
  state.seed = /^\d{1,15}$/.test(seed) ? Number(seed) : null;
  for (const k of FILTER_KEYS) state.filters[k] = (p.get(k) || "").slice(0, 200);
  state.view = p.get("view") === "map" ? "map" : "grid";
  state.collapse = p.get("collapse") === "1";
  const n = Number.parseInt(p.get("n") || "", 10);
  state.count = Number.isFinite(n) && n > 0 ? Math.min(n, 500) : PAGE;
  state.pos = parseIds(p.get("pos"));
  state.neg = parseIds(p.get("neg"));
}

function stateQuery() {
  const p = new URLSearchParams();
  p.set("mode", state.mode);
  if (state.embedding) p.set("embedding", state.embedding);
  if (state.id !== null) p.set("id", String(state.id));
  if (state.mode === "random" && state.seed !== null) p.set("seed", String(state.seed));
  for (const k of FILTER_KEYS) if (state.filters[k]) p.set(k, state.filters[k]);
  if (state.view === "map") p.set("view", "map");
  if (state.collapse) p.set("collapse", "1");
  if (state.count !== PAGE) p.set("n", String(state.count));
  if (state.pos.length) p.set("pos", state.pos.join(","));
  if (state.neg.length) p.set("neg", state.neg.join(","));
  return `?${p}`;
}

function writeURL(push) {
  const q = stateQuery();
  if (q === location.search) return;
  if (push) history.pushState(null, "", q);
  else history.replaceState(null, "", q);
}

// ------------------------------------------------------------------ controls <-> state

/** Make sure `select` has an option with `value` (e.g. from a URL, before facets load). */
function ensureOption(select, value, text) {
  if (!value) return;
  for (const o of select.options) if (o.value === value) return;
  select.append(new Option(text || value, value));
}

function syncControls() {
  for (const [m, radio] of Object.entries(el.modes)) radio.checked = state.mode === m;
  ensureOption(el.embedding, state.embedding);
  el.embedding.value = state.embedding;
  for (const k of FACETS) {
    ensureOption(el[k], state.filters[k]);
    el[k].value = state.filters[k];
  }
  el.keyword.value = state.filters.keyword;
  for (const k of TEXT_FIELDS) el.text[k].value = state.filters[k];
  if (TEXT_FIELDS.some((k) => state.filters[k]) || state.filters.year) setExtraFilters(true);
  el.collapse.checked = state.collapse;
  el.viewGrid.setAttribute("aria-pressed", String(state.view === "grid"));
  el.viewMap.setAttribute("aria-pressed", String(state.view === "map"));
  el.mapview.hidden = state.view !== "map";
  el.grid.hidden = state.view === "map";
  el.more.hidden = state.view === "map";
  renderTray();
}

function readControls() {
  for (const [m, radio] of Object.entries(el.modes)) if (radio.checked) state.mode = m;
  state.embedding = el.embedding.value;
  for (const k of FACETS) state.filters[k] = el[k].value === UNKNOWN_OPTION ? "" : el[k].value;
  state.filters.keyword = el.keyword.value.trim();
  for (const k of TEXT_FIELDS) state.filters[k] = el.text[k].value.trim();
  state.collapse = el.collapse.checked;
}

function setExtraFilters(open) {
  el.extraFilters.hidden = !open;
  el.moreFilters.setAttribute("aria-expanded", String(open));
  el.moreFilters.textContent = open ? "Fewer filters" : "More filters";
}

function fillEmbeddings() {
  el.embedding.replaceChildren();
  for (const e of info.embeddings) {
    const o = new Option(`${e.name} (${e.metric}, ${e.dim}-d)`, e.name);
    if (e.explained_variance !== null && e.explained_variance !== undefined) {
      o.title = `${e.input_dim}-d reduced by PCA to ${e.dim}-d, ${(e.explained_variance * 100).toFixed(0)}% of variance kept; index: ${e.backend}`;
    }
    el.embedding.append(o);
  }
  if (!state.embedding && info.embeddings.length) state.embedding = info.embeddings[0].name;
}

/** Refill a facet select with "label (count)" options; "(unknown)" is shown disabled. */
function fillFacet(select, items, current) {
  if (select.id === "year") {
    items = [...items].sort((a, b) => (b.value ?? -Infinity) - (a.value ?? -Infinity));
  }
  const options = [new Option("All", "")];
  let seen = false;
  for (const it of items) {
    const known = it.value !== null && it.value !== undefined;
    const value = known ? String(it.value) : UNKNOWN_OPTION;
    const label = it.label || (known ? String(it.value) : "(unknown)");
    const text = known && label !== value && select.id === "category" ? `${value} — ${label}` : label;
    const o = new Option(`${text} (${it.count})`, value);
    if (known && label !== value) o.title = `${value}: ${label}`;
    if (!known) {
      o.disabled = true;
      o.title = "images without a value cannot be filtered on";
    }
    if (value === current) seen = true;
    options.push(o);
  }
  if (current && !seen) options.push(new Option(`${current} (0)`, current));
  select.replaceChildren(...options);
  select.value = current;
}

async function refreshFacets(seq) {
  const cache = new Map();
  try {
    await Promise.all(
      FACETS.map(async (name) => {
        const f = filterParam(buildFilter(state.filters, [name]));
        const key = f || "";
        if (!cache.has(key)) cache.set(key, api("/api/facets", { filter: f }));
        const data = await cache.get(key);
        if (seq !== runSeq) return;
        if (Array.isArray(data[name])) fillFacet(el[name], data[name], state.filters[name]);
      }),
    );
  } catch (e) {
    if (seq !== runSeq || el.status.classList.contains("error")) return;
    el.status.append(make("span", "status-note", ` · filter counts unavailable: ${e.message}`));
  }
}

// ------------------------------------------------------------------ autocomplete

const suggestSeq = {};
async function suggest(field, input) {
  const seq = (suggestSeq[field] = (suggestSeq[field] || 0) + 1);
  try {
    const data = await api("/api/suggest", { field, prefix: input.value.trim(), limit: 12 });
    if (seq !== suggestSeq[field]) return;
    const list = $(SUGGEST[field]);
    const opts = (data.values || []).map((v) => {
      const o = document.createElement("option");
      o.value = String(v.value);
      o.label = `${v.count} image${v.count === 1 ? "" : "s"}`;
      return o;
    });
    list.replaceChildren(...opts);
  } catch {
    /* suggestions are optional */
  }
}

// ------------------------------------------------------------------ selected panel

function showSelected(h) {
  selectedHit = h;
  if (!h) {
    el.selected.hidden = true;
    return;
  }
  el.selectedImg.src = h.thumbnail_url || `/api/images/${h.id}/thumbnail`;
  el.selectedImg.alt = truncate(h.caption || h.title || "selected figure", 120);
  el.selectedTitle.textContent = h.title || "(untitled)";
  const meta = [hitLabel(h)];
  if (h.figure) meta.push(`figure ${h.figure}`);
  if (h.year) meta.push(String(h.year));
  if (h.category) meta.push(String(h.category));
  el.selectedMeta.textContent = meta.join(" · ");
  el.selectedCaption.textContent = truncate(h.caption, 260);
  const url = arxivUrl(h);
  el.selectedLink.hidden = !url;
  if (url) el.selectedLink.href = url;
  el.selected.hidden = false;
}

/** Bring the "selected" panel in line with state.id (fetching metadata if needed). */
async function ensureSelectedPanel() {
  if (state.id === null) return showSelected(null);
  if (selectedHit && selectedHit.id === state.id) return;
  if (hitsById.has(state.id)) return showSelected(hitsById.get(state.id));
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

async function getMeta(id) {
  if (!metaCache.has(id)) {
    const p = api(`/api/images/${encodeURIComponent(id)}`);
    metaCache.set(id, p);
    p.catch(() => metaCache.delete(id));
  }
  return metaCache.get(id);
}

function markSelectedTile() {
  for (const t of el.grid.querySelectorAll(".tile.is-selected")) t.classList.remove("is-selected");
  if (state.id === null) return;
  const t = el.grid.querySelector(`.tile[data-id="${CSS.escape(String(state.id))}"]`);
  if (t) t.classList.add("is-selected");
  drawMap();
}

// ------------------------------------------------------------------ query tray (positives / negatives / uploads)

function trayItem(kind, label, src, onRemove) {
  const item = make("span", `tray-item ${kind}`);
  const img = document.createElement("img");
  img.src = src;
  img.alt = label;
  img.title = label;
  const x = make("button", "tray-remove", "×");
  x.type = "button";
  x.setAttribute("aria-label", `remove ${label}`);
  x.addEventListener("click", onRemove);
  item.append(img, x);
  return item;
}

function renderTray() {
  const pos = [];
  const neg = [];
  for (const [list, out, kind] of [
    [state.pos, pos, "pos"],
    [state.neg, neg, "neg"],
  ]) {
    for (const id of list) {
      out.push(
        trayItem(kind, `figure #${id}`, `/api/images/${id}/thumbnail`, () => {
          state[kind] = state[kind].filter((x) => x !== id);
          afterTrayChange();
        }),
      );
    }
  }
  for (const u of uploads) {
    (u.polarity === "neg" ? neg : pos).push(
      trayItem(`${u.polarity} upload`, `upload: ${u.file.name}`, u.url, () => {
        URL.revokeObjectURL(u.url);
        uploads.splice(uploads.indexOf(u), 1);
        afterTrayChange();
      }),
    );
  }
  if (!neg.length) neg.push(make("span", "muted small", "none (optional)"));
  el.trayPos.replaceChildren(...pos);
  el.trayNeg.replaceChildren(...neg);
  el.tray.hidden = !(state.pos.length || state.neg.length || uploads.length);
}

function afterTrayChange() {
  renderTray();
  if (state.mode === "query") {
    if (state.pos.length || uploads.some((u) => u.polarity === "pos")) run({ push: true });
    else {
      state.mode = "random";
      syncControls();
      run({ push: true, newSeed: true });
    }
  } else writeURL(false);
}

function addToQuery(id, polarity) {
  if (typeof id !== "number") return;
  const other = polarity === "pos" ? "neg" : "pos";
  state[other] = state[other].filter((x) => x !== id);
  if (!state[polarity].includes(id) && state[polarity].length < MAX_IDS) state[polarity].push(id);
  renderTray();
  writeURL(false);
  setStatus(`Added #${id} to “${polarity === "pos" ? "more like" : "less like"}”. Press “Search with these” to run the query.`);
}

function addUploads(files) {
  const max = (info && info.limits && info.limits.max_upload_images) || 8;
  const maxBytes = (info && info.limits && info.limits.max_upload_bytes) || 16 * 1024 * 1024;
  let added = 0;
  for (const file of files) {
    if (!file.type.startsWith("image/")) continue;
    if (file.size > maxBytes) {
      setStatus(`Error: ${file.name} is larger than ${(maxBytes / 1048576).toFixed(0)} MiB`, "error");
      continue;
    }
    if (uploads.length >= max) break;
    uploads.push({ file, url: URL.createObjectURL(file), polarity: "pos" });
    added += 1;
  }
  if (!added) return;
  state.mode = "query";
  state.id = null;
  showSelected(null);
  state.count = PAGE;
  syncControls();
  run({ push: true });
}

// ------------------------------------------------------------------ grid

function makeTile(h, withDistance) {
  const tile = make("div", "tile");
  tile.dataset.id = String(h.id);
  tile.tabIndex = 0;
  tile.setAttribute("role", "listitem");

  const thumb = make("div", "thumb");
  const img = document.createElement("img");
  img.loading = "lazy";
  img.decoding = "async";
  img.alt = truncate(h.caption || h.title || `figure ${h.id}`, 100);
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
  if (h.year) meta.append(make("span", "year", h.year));
  meta.append(make("span", "aid", hitLabel(h)));
  tile.append(thumb, meta);
  return tile;
}

function renderGrid(hits, withDistance, emptyMessage, append = false) {
  hideTooltip();
  if (!append) {
    hitsById = new Map();
    results = [];
  }
  const frag = document.createDocumentFragment();
  for (const h of hits) {
    if (hitsById.has(h.id)) continue;
    hitsById.set(h.id, h);
    results.push(h);
    frag.append(makeTile(h, withDistance));
  }
  if (append) el.grid.append(frag);
  else el.grid.replaceChildren(frag);
  if (!results.length) el.grid.append(make("p", "empty", emptyMessage || "No images match these filters."));
  markSelectedTile();
}

// ------------------------------------------------------------------ search

function queryForm(k) {
  const form = new FormData();
  form.set("embedding", state.embedding);
  form.set("k", String(k));
  const f = filterParam(buildFilter(state.filters));
  if (f) form.set("filter", f);
  if (state.collapse) form.set("collapse", "true");
  for (const id of state.pos) form.append("positive", String(id));
  for (const id of state.neg) form.append("negative", String(id));
  for (const u of uploads) form.append(u.polarity === "neg" ? "negative_image" : "positive_image", u.file, u.file.name);
  return form;
}

/** Fetch `count` results of the current state (offset: random pages). */
async function fetchResults(count, offset, signal) {
  const filter = buildFilter(state.filters);
  const common = { embedding: state.embedding, filter: filterParam(filter), collapse: state.collapse ? "true" : null };
  if (state.mode === "neighbors" && state.id !== null) {
    return api("/api/neighbors", { id: state.id, k: Math.min(count, limits.max_k), ...common }, signal);
  }
  if (state.mode === "query" && (state.pos.length || uploads.some((u) => u.polarity === "pos"))) {
    return apiPost("/api/query", queryForm(Math.min(count, limits.max_k)), signal);
  }
  return api("/api/random", { n: Math.min(count, limits.max_n), seed: state.seed, offset, ...common }, signal);
}

function effectiveMode() {
  if (state.mode === "neighbors" && state.id !== null) return "neighbors";
  if (state.mode === "query" && (state.pos.length || uploads.some((u) => u.polarity === "pos"))) return "query";
  return "random";
}

async function run({ push = false, newSeed = false, focusTarget = false } = {}) {
  hideTooltip();
  const seq = ++runSeq;
  if (controller) controller.abort();
  controller = new AbortController();
  const { signal } = controller;

  const mode = effectiveMode();
  if (mode === "random" && (newSeed || state.seed === null)) state.seed = randomSeed();
  writeURL(push);
  const selectedReady = ensureSelectedPanel();
  renderTray();

  const filter = buildFilter(state.filters);
  const described = describeFilters(state.filters);
  setStatus("Loading…", "loading");
  el.grid.setAttribute("aria-busy", "true");
  exhausted = false;
  try {
    const data = await fetchResults(state.count, 0, signal);
    if (seq !== runSeq) return;
    const hits = Array.isArray(data.results) ? data.results : [];
    lastQuery = { mode, state: JSON.parse(JSON.stringify(state)), uploads: uploads.map((u) => ({ name: u.file.name, polarity: u.polarity })), response: { ...data, results: undefined } };
    const collapsedNote = data.collapsed ? ` · ${data.collapsed} near-duplicate${data.collapsed === 1 ? "" : "s"} collapsed` : "";
    if (mode === "neighbors") {
      if (typeof data.query === "number" && data.query !== state.id) {
        state.id = data.query; // an image key from the URL, now resolved to its row id
        writeURL(false);
      }
      renderGrid(hits, true, "No neighbours match these filters.");
      exhausted = hits.length < state.count;
      const target = hitsById.get(state.id);
      if (target && (!selectedHit || selectedHit.id !== state.id)) showSelected(target);
      else await Promise.all([selectedReady, ensureSelectedPanel()]);
      if (seq !== runSeq) return;
      const label = hitLabel(selectedHit && selectedHit.id === state.id ? selectedHit : target) || `image ${state.id}`;
      const plan = data.plan || {};
      let text = `${hits.length} nearest neighbours of ${label} under ${data.embedding || state.embedding}`;
      if (data.metric) text += ` (${data.metric} distance)`;
      if (plan.strategy) text += ` · ${plan.strategy} plan`;
      if (filter && Number.isFinite(plan.n_allowed)) text += ` · ${plan.n_allowed} of ${plan.n_total} images match ${described}`;
      if (hits.length && !target) text += " · the target itself is excluded by the filters";
      setStatus(text + collapsedNote);
      if (focusTarget) {
        const t = el.grid.querySelector(".tile.is-selected") || el.grid.querySelector(".tile");
        if (t) t.focus({ preventScroll: false });
      }
    } else if (mode === "query") {
      renderGrid(hits, true, "No images match these filters.");
      exhausted = hits.length < state.count;
      const q = data.query || {};
      const nPos = (q.positive || []).length + (q.positive_uploads || 0);
      const nNeg = (q.negative || []).length + (q.negative_uploads || 0);
      let text = `${hits.length} images closest to ${nPos} image${nPos === 1 ? "" : "s"}`;
      if (nNeg) text += ` and away from ${nNeg}`;
      text += ` under ${data.embedding} (${data.combination})`;
      if (filter) text += ` · ${described}`;
      setStatus(text + collapsedNote);
    } else {
      renderGrid(hits, false);
      randomNext = data.next_offset;
      exhausted = !Number.isFinite(data.next_offset) || data.next_offset >= data.total;
      let text;
      if (filter && data.total === 0) text = `No images match ${described}`;
      else {
        text = `${hits.length} of ${data.total ?? "?"} ${filter ? "matching " : ""}images · random sample`;
        if (filter) text += ` · ${described}`;
      }
      if (state.mode === "neighbors") text = `No target yet: double-click an image to find its nearest neighbours. Showing ${text}`;
      if (state.mode === "query") text = `No query images yet: upload one, or add figures with “+ More like”. Showing ${text}`;
      setStatus(text + collapsedNote);
    }
    el.loadMore.hidden = exhausted || !results.length;
  } catch (e) {
    if ((e && e.name === "AbortError") || seq !== runSeq) return;
    renderGrid([], false, "No results: see the message above.");
    el.loadMore.hidden = true;
    setStatus(e instanceof ApiError ? `Error: ${e.message}` : `Error: ${e && e.message ? e.message : e}`, "error");
  } finally {
    if (seq === runSeq) el.grid.removeAttribute("aria-busy");
  }
  if (seq !== runSeq) return;
  refreshFacets(seq);
  if (state.view === "map") loadMap(seq);
}

/** Append the next page (more results on scroll). */
async function loadMore() {
  if (loadingMore || exhausted || !results.length || state.view !== "grid") return;
  const mode = effectiveMode();
  const cap = mode === "random" ? 100000 : limits.max_k;
  if (state.count >= cap) {
    exhausted = true;
    el.loadMore.hidden = true;
    return;
  }
  loadingMore = true;
  const seq = runSeq;
  const want = state.count + PAGE;
  try {
    let data;
    if (mode === "random") {
      data = await api("/api/random", {
        n: PAGE,
        seed: state.seed,
        offset: randomNext,
        embedding: state.embedding,
        filter: filterParam(buildFilter(state.filters)),
        collapse: state.collapse ? "true" : null,
      });
    } else {
      data = await fetchResults(want, 0);
    }
    if (seq !== runSeq) return;
    const hits = Array.isArray(data.results) ? data.results : [];
    const before = results.length;
    if (mode === "random") randomNext = data.next_offset;
    renderGrid(hits, mode !== "random", "", true);
    state.count = want;
    writeURL(false);
    exhausted = mode === "random" ? data.next_offset >= data.total : hits.length < want || results.length === before;
    el.loadMore.hidden = exhausted;
    el.status.textContent = el.status.textContent.replace(/^\d+/, String(results.length));
    if (state.view === "map") drawMap();
  } catch (e) {
    if (seq === runSeq) setStatus(`Error loading more: ${e.message}`, "error");
  } finally {
    loadingMore = false;
  }
}

/** Make `id` the target: switch to nearest neighbours and search at once. */
function selectTarget(id, viaKeyboard = false) {
  if (typeof id !== "number" || !Number.isFinite(id)) return;
  const h = hitsById.get(id) || (detailHit && detailHit.id === id ? detailHit : null);
  state.id = id;
  if (h) showSelected(h);
  markSelectedTile();
  readControls();
  state.mode = "neighbors";
  state.count = PAGE;
  el.modes.neighbors.checked = true;
  run({ push: true, focusTarget: viaKeyboard });
}

// ------------------------------------------------------------------ predictions (hover, details)

function predictionBlocks(h) {
  const out = [];
  const preds = h.predictions && typeof h.predictions === "object" ? h.predictions : {};
  for (const [name, list] of Object.entries(preds)) {
    if (!Array.isArray(list) || !list.length) continue;
    const heading = name === "imagenet" ? "ImageNet top-5" : `${name} prediction${list.length > 1 ? "s" : ""}`;
    out.push(make("p", "tt-heading", heading));
    const ol = make("ol", "tt-preds");
    ol.dataset.classifier = name;
    for (const p of list.slice(0, 5)) {
      const pct = Number.isFinite(p.p) ? Math.max(0, Math.min(100, p.p * 100)) : 0;
      const li = make("li");
      const nameText = String(p.label ?? "?").split(",")[0].trim();
      const label = make("span", "pred-label", nameText);
      label.title = String(p.label ?? "");
      const value = make("span", "pred-pct", `${pct.toFixed(pct < 10 ? 1 : 0)}%`);
      const bar = make("span", "pred-bar");
      const fill = make("span", "pred-fill");
      fill.style.width = `${pct}%`; // CSSOM write: allowed under style-src 'self'
      bar.append(fill);
      li.append(label, value, bar);
      ol.append(li);
    }
    out.push(ol);
  }
  return out;
}

// ------------------------------------------------------------------ tooltip

let tooltipKey = null;
let tooltipSuppressed = null; // tile on which Esc hid the tooltip

function fillTooltip(h) {
  const parts = [make("p", "tt-title", h.title || "(untitled)")];
  const meta = [hitLabel(h)];
  if (h.figure) meta.push(`figure ${h.figure}`);
  if (h.year) meta.push(String(h.year));
  if (h.category) meta.push(String(h.category));
  if (h.distance !== null && h.distance !== undefined) meta.push(formatDistance(h.distance));
  parts.push(make("p", "tt-meta", meta.join(" · ")));
  if (h.authors) parts.push(make("p", "tt-authors", truncate(h.authors, 120)));
  if (h.caption) parts.push(make("p", "tt-caption", truncate(h.caption, 300)));
  parts.push(...predictionBlocks(h));
  el.tooltip.replaceChildren(...parts);
}

function showTooltipFor(key, h, x, y, anchor) {
  if (!h || tooltipSuppressed === key) return;
  if (tooltipKey !== key) {
    fillTooltip(h);
    tooltipKey = key;
  }
  el.tooltip.hidden = false;
  positionTooltip(x, y, anchor);
}

function positionTooltip(x, y, anchor) {
  const tt = el.tooltip;
  const pad = 12;
  const vw = document.documentElement.clientWidth;
  const vh = document.documentElement.clientHeight;
  const r = tt.getBoundingClientRect();
  if (x === undefined && anchor) {
    const t = anchor.getBoundingClientRect();
    x = t.right;
    y = t.top;
  }
  let left = x + pad;
  let top = y + pad;
  if (left + r.width > vw - 4) left = Math.max(4, x - pad - r.width);
  if (top + r.height > vh - 4) top = Math.max(4, vh - 4 - r.height);
  tt.style.left = `${Math.round(left)}px`;
  tt.style.top = `${Math.round(top)}px`;
}

function hideTooltip() {
  el.tooltip.hidden = true;
  tooltipKey = null;
}

// ------------------------------------------------------------------ detail panel

async function openDetail(id) {
  const h = hitsById.get(id) || { id };
  hideTooltip(); // the hover card would cover the grid next to the panel
  detailHit = h;
  fillDetail(h);
  el.detail.hidden = false;
  el.detail.setAttribute("aria-hidden", "false");
  document.body.classList.add("detail-open");
  try {
    const full = await getMeta(id);
    if (detailHit && detailHit.id === id) {
      detailHit = { ...h, ...full, id };
      fillDetail(detailHit);
    }
  } catch (e) {
    if (detailHit && detailHit.id === id) el.detailAbstract.textContent = `(could not load details: ${e.message})`;
  }
}

function fillDetail(h) {
  el.detailKicker.textContent = h.distance !== null && h.distance !== undefined ? `Figure #${h.id} · ${formatDistance(h.distance)}` : `Figure #${h.id}`;
  const img = h.image_url || `/api/images/${h.id}/image`;
  if (el.detailImg.getAttribute("src") !== img) el.detailImg.src = img;
  el.detailImageLink.href = img;
  el.detailImg.alt = truncate(h.caption || h.title || `figure ${h.id}`, 140);
  el.detailTitle.textContent = h.title || "(untitled)";
  el.detailAuthors.textContent = h.authors || "";
  const meta = [hitLabel(h)];
  if (h.figure) meta.push(`figure ${h.figure}`);
  if (h.year) meta.push(String(h.year));
  if (Array.isArray(h.categories) && h.categories.length) meta.push(h.categories.join(", "));
  else if (h.category) meta.push(String(h.category));
  if (h.width && h.height) meta.push(`${h.width}×${h.height} px`);
  el.detailMeta.textContent = meta.join(" · ");
  el.detailCaption.textContent = h.caption || "(no caption)";
  el.detailAbstract.textContent = h.abstract || (h.abstract === undefined ? "Loading…" : "(no abstract)");
  el.detailPreds.replaceChildren(...predictionBlocks(h));
  const url = arxivUrl(h);
  el.detailArxiv.hidden = !url;
  if (url) el.detailArxiv.href = url;
}

function closeDetail() {
  if (el.detail.hidden) return false;
  el.detail.hidden = true;
  el.detail.setAttribute("aria-hidden", "true");
  document.body.classList.remove("detail-open");
  const id = detailHit && detailHit.id;
  detailHit = null;
  const tile = id !== null && id !== undefined ? el.grid.querySelector(`.tile[data-id="${CSS.escape(String(id))}"]`) : null;
  if (tile && state.view === "grid") tile.focus({ preventScroll: true });
  return true;
}

// ------------------------------------------------------------------ export

function download(name, type, text) {
  const blob = new Blob([text], { type });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

const EXPORT_COLUMNS = ["rank", "id", "distance", "arxiv_id", "version", "figure", "title", "authors", "year", "archive", "category", "caption", "image_key", "arxiv_url", "duplicates"];

function csvCell(v) {
  if (v === null || v === undefined) return "";
  let s = Array.isArray(v) ? v.join(" ") : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`; // no formula injection in spreadsheets
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function exportRows() {
  return results.map((h, i) => ({
    rank: i + 1,
    ...Object.fromEntries(EXPORT_COLUMNS.slice(1).map((c) => [c, h[c] ?? null])),
    arxiv_url: arxivUrl(h),
  }));
}

function exportName(ext) {
  const mode = effectiveMode();
  const what = mode === "neighbors" ? `neighbors-${state.id}` : mode;
  return `imagemesh-${what}-${state.embedding || "results"}.${ext}`;
}

function exportCsv() {
  const lines = [EXPORT_COLUMNS.join(",")];
  for (const r of exportRows()) lines.push(EXPORT_COLUMNS.map((c) => csvCell(r[c])).join(","));
  download(exportName("csv"), "text/csv;charset=utf-8", `${lines.join("\r\n")}\r\n`);
}

function exportJson() {
  const q = lastQuery || {};
  const body = {
    exported: new Date().toISOString(),
    url: location.href,
    mode: effectiveMode(),
    embedding: state.embedding,
    filter: buildFilter(state.filters),
    collapse: state.collapse,
    target: effectiveMode() === "neighbors" ? state.id : null,
    positive: state.pos,
    negative: state.neg,
    uploads: q.uploads || [],
    plan: q.response ? q.response.plan || null : null,
    results: exportRows().map((r, i) => ({ ...r, predictions: results[i].predictions || {} })),
  };
  download(exportName("json"), "application/json", `${JSON.stringify(body, null, 2)}\n`);
}

// ------------------------------------------------------------------ map view

const map = {
  data: null, // {ids, x, y, method}
  key: "", // embedding + filter of `data`
  scale: 1,
  tx: 0,
  ty: 0,
  thumbs: new Map(), // id -> HTMLImageElement
  hover: null,
  pending: false,
};

async function loadMap(seq) {
  const f = filterParam(buildFilter(state.filters));
  const key = `${state.embedding}|${f || ""}`;
  if (map.key !== key) {
    el.mapLegend.textContent = "Loading map…";
    try {
      const data = await api("/api/map", { embedding: state.embedding, filter: f });
      if (seq !== runSeq) return;
      map.data = data;
      map.key = key;
    } catch (e) {
      if (seq !== runSeq) return;
      map.data = null;
      map.key = "";
      el.mapLegend.textContent = `No map: ${e.message}`;
      drawMap();
      return;
    }
  }
  const method = map.data.method === "tsne" ? "t-SNE" : map.data.method.toUpperCase();
  el.mapLegend.textContent = `${map.data.ids.length} figures · ${method} map of the ${state.embedding} embedding, computed at build time · highlighted: current results · click a figure to select it, scroll or pinch to zoom (thumbnails appear), drag to pan`;
  drawMap();
}

function mapSize() {
  const rect = el.canvas.getBoundingClientRect();
  return { w: Math.max(1, rect.width), h: Math.max(1, rect.height) };
}

/** Map coordinates in [0,1] -> CSS pixels in the canvas. */
function mapToScreen(x, y) {
  const { w, h } = mapSize();
  const side = Math.min(w, h) - 40;
  const ox = (w - side) / 2;
  const oy = (h - side) / 2;
  return [(ox + x * side) * map.scale + map.tx, (oy + (1 - y) * side) * map.scale + map.ty];
}

function drawMap() {
  if (state.view !== "map" || map.pending) return;
  map.pending = true;
  requestAnimationFrame(() => {
    map.pending = false;
    paintMap();
  });
}

function paintMap() {
  const canvas = el.canvas;
  const { w, h } = mapSize();
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, w, h);
  const d = map.data;
  if (!d) return;
  const highlight = new Set(results.map((r) => r.id));
  const thumbSize = map.scale >= 2.5 ? Math.min(96, 14 * map.scale) : 0;
  const visible = [];
  for (let i = 0; i < d.ids.length; i++) {
    const [sx, sy] = mapToScreen(d.x[i], d.y[i]);
    if (sx < -50 || sy < -50 || sx > w + 50 || sy > h + 50) continue;
    visible.push([d.ids[i], sx, sy]);
  }
  // dots
  for (const [id, sx, sy] of visible) {
    ctx.fillStyle = highlight.has(id) ? "#e8590c" : "rgba(36, 88, 214, 0.55)";
    const r = highlight.has(id) ? 4 : 3;
    ctx.beginPath();
    ctx.arc(sx, sy, r, 0, Math.PI * 2);
    ctx.fill();
  }
  // thumbnails when zoomed in (at most 400 at a time)
  if (thumbSize && visible.length <= 400) {
    for (const [id, sx, sy] of visible) {
      let img = map.thumbs.get(id);
      if (!img) {
        img = new Image();
        img.decoding = "async";
        img.src = `/api/images/${id}/thumbnail`;
        img.addEventListener("load", drawMap, { once: true });
        map.thumbs.set(id, img);
      }
      if (!img.complete || !img.naturalWidth) continue;
      const s = thumbSize / Math.max(img.naturalWidth, img.naturalHeight);
      const iw = img.naturalWidth * s;
      const ih = img.naturalHeight * s;
      ctx.fillStyle = "#fff";
      ctx.fillRect(sx - iw / 2 - 1, sy - ih / 2 - 1, iw + 2, ih + 2);
      ctx.drawImage(img, sx - iw / 2, sy - ih / 2, iw, ih);
      ctx.strokeStyle = highlight.has(id) ? "#e8590c" : "#c5cbd6";
      ctx.lineWidth = highlight.has(id) ? 2 : 1;
      ctx.strokeRect(sx - iw / 2 - 1, sy - ih / 2 - 1, iw + 2, ih + 2);
    }
  }
  // selected and hovered
  for (const [id, color, r] of [
    [state.id, "#d6336c", 9],
    [map.hover, "#1d2330", 7],
  ]) {
    if (id === null || id === undefined) continue;
    const i = d.ids.indexOf(id);
    if (i < 0) continue;
    const [sx, sy] = mapToScreen(d.x[i], d.y[i]);
    ctx.strokeStyle = color;
    ctx.lineWidth = 3;
    ctx.beginPath();
    ctx.arc(sx, sy, thumbSize ? thumbSize / 2 + 4 : r, 0, Math.PI * 2);
    ctx.stroke();
  }
}

/** The map point under (x, y) CSS pixels of the canvas, or null. */
function pointAt(x, y) {
  const d = map.data;
  if (!d) return null;
  const thumbSize = map.scale >= 2.5 ? Math.min(96, 14 * map.scale) : 0;
  const reach = Math.max(10, thumbSize / 2);
  let best = null;
  let bestD = reach * reach;
  for (let i = 0; i < d.ids.length; i++) {
    const [sx, sy] = mapToScreen(d.x[i], d.y[i]);
    const dd = (sx - x) ** 2 + (sy - y) ** 2;
    if (dd <= bestD) {
      bestD = dd;
      best = d.ids[i];
    }
  }
  return best;
}

function zoomMap(factor, cx, cy) {
  const { w, h } = mapSize();
  if (cx === undefined) {
    cx = w / 2;
    cy = h / 2;
  }
  const s = Math.min(40, Math.max(1, map.scale * factor));
  const f = s / map.scale;
  map.tx = cx - (cx - map.tx) * f;
  map.ty = cy - (cy - map.ty) * f;
  map.scale = s;
  if (s === 1) {
    map.tx = 0;
    map.ty = 0;
  }
  drawMap();
}

/** Select a figure on the map: it becomes the target (URL), with details alongside. */
async function selectOnMap(id) {
  state.id = id;
  if (state.mode === "neighbors") state.count = PAGE;
  writeURL(true);
  drawMap();
  const h = hitsById.get(id) || (await getMeta(id).catch(() => null));
  if (h && state.id === id) showSelected(h);
  openDetail(id);
  setStatus(`Selected ${hitLabel(h) || `#${id}`} on the map. “Find similar” shows its nearest neighbours.`);
}

function bindMap() {
  const pointers = new Map();
  let drag = null;
  let pinch = null;
  const local = (ev) => {
    const r = el.canvas.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  };
  el.canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const [x, y] = local(ev);
    zoomMap(Math.exp(-ev.deltaY * 0.0015), x, y);
  }, { passive: false });
  el.canvas.addEventListener("pointerdown", (ev) => {
    el.canvas.setPointerCapture(ev.pointerId);
    pointers.set(ev.pointerId, local(ev));
    if (pointers.size === 1) drag = { start: local(ev), tx: map.tx, ty: map.ty, moved: false };
    if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      pinch = { dist: Math.hypot(a[0] - b[0], a[1] - b[1]), scale: map.scale };
      drag = null;
    }
  });
  el.canvas.addEventListener("pointermove", (ev) => {
    const p = local(ev);
    if (pointers.has(ev.pointerId)) pointers.set(ev.pointerId, p);
    if (pinch && pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      const dist = Math.hypot(a[0] - b[0], a[1] - b[1]);
      zoomMap((pinch.scale * dist) / pinch.dist / map.scale, (a[0] + b[0]) / 2, (a[1] + b[1]) / 2);
      return;
    }
    if (drag) {
      const dx = p[0] - drag.start[0];
      const dy = p[1] - drag.start[1];
      if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
      if (drag.moved && map.scale > 1) {
        map.tx = drag.tx + dx;
        map.ty = drag.ty + dy;
        drawMap();
      }
      return;
    }
    const id = pointAt(p[0], p[1]);
    if (id !== map.hover) {
      map.hover = id;
      drawMap();
    }
    if (id === null) hideTooltip();
    else {
      const h = hitsById.get(id) || metaCache.get(id);
      if (h && !(h instanceof Promise)) showTooltipFor(`map-${id}`, h, ev.clientX, ev.clientY);
      else {
        getMeta(id).then((m) => {
          if (map.hover === id) showTooltipFor(`map-${id}`, m, ev.clientX, ev.clientY);
        }).catch(() => {});
      }
    }
  });
  const up = (ev) => {
    const wasDrag = drag && drag.moved;
    const p = local(ev);
    pointers.delete(ev.pointerId);
    if (pointers.size < 2) pinch = null;
    if (drag && !wasDrag && ev.type === "pointerup") {
      const id = pointAt(p[0], p[1]);
      if (id !== null) selectOnMap(id);
    }
    drag = null;
  };
  el.canvas.addEventListener("pointerup", up);
  el.canvas.addEventListener("pointercancel", up);
  el.canvas.addEventListener("pointerleave", () => {
    map.hover = null;
    hideTooltip();
    drawMap();
  });
  el.canvas.addEventListener("dblclick", (ev) => {
    const [x, y] = local(ev);
    const id = pointAt(x, y);
    if (id !== null) {
      setView("grid");
      selectTarget(id);
    }
  });
  el.canvas.addEventListener("keydown", (ev) => {
    if (ev.key === "+" || ev.key === "=") zoomMap(1.5);
    else if (ev.key === "-") zoomMap(1 / 1.5);
    else if (ev.key.startsWith("Arrow")) {
      const step = 40;
      if (ev.key === "ArrowLeft") map.tx += step;
      if (ev.key === "ArrowRight") map.tx -= step;
      if (ev.key === "ArrowUp") map.ty += step;
      if (ev.key === "ArrowDown") map.ty -= step;
      drawMap();
    } else return;
    ev.preventDefault();
  });
  el.mapZoomIn.addEventListener("click", () => zoomMap(1.6));
  el.mapZoomOut.addEventListener("click", () => zoomMap(1 / 1.6));
  el.mapReset.addEventListener("click", () => {
    map.scale = 1;
    map.tx = 0;
    map.ty = 0;
    drawMap();
  });
  window.addEventListener("resize", drawMap);
}

function setView(view) {
  if (state.view === view) return;
  state.view = view;
  syncControls();
  writeURL(true);
  if (view === "map") loadMap(runSeq);
}

// ------------------------------------------------------------------ keyboard navigation in the grid

function tiles() {
  return [...el.grid.querySelectorAll(".tile")];
}

function moveFocus(tile, key) {
  const all = tiles();
  const i = all.indexOf(tile);
  if (i < 0) return;
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
  if (j >= 0 && j < all.length && j !== i) {
    all[j].focus();
    all[j].scrollIntoView({ block: "nearest" });
    if (j >= all.length - 4) loadMore();
  }
}

// ------------------------------------------------------------------ events

function tileOf(target) {
  return target instanceof Element ? target.closest(".tile") : null;
}

function bindEvents() {
  el.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    readControls();
    state.count = PAGE;
    run({ push: true, newSeed: true });
  });
  for (const radio of Object.values(el.modes)) {
    radio.addEventListener("change", () => {
      readControls();
      state.count = PAGE;
      run({ push: true, newSeed: state.mode === "random" });
    });
  }
  for (const select of [el.embedding, el.archive, el.category, el.year]) {
    select.addEventListener("change", () => {
      readControls();
      state.count = PAGE;
      run({ push: true });
    });
  }
  el.collapse.addEventListener("change", () => {
    readControls();
    state.count = PAGE;
    run({ push: true });
  });
  el.moreFilters.addEventListener("click", () => {
    const open = el.extraFilters.hidden;
    setExtraFilters(open);
    if (open) el.text.title.focus();
  });
  el.clearFilters.addEventListener("click", () => {
    for (const k of FILTER_KEYS) state.filters[k] = "";
    syncControls();
    readControls();
    state.count = PAGE;
    run({ push: true });
  });
  for (const [field] of Object.entries(SUGGEST)) {
    const input = el.text[field];
    const go = debounce(() => suggest(field, input), 150);
    input.addEventListener("input", go);
    input.addEventListener("focus", go);
  }
  el.clearSelected.addEventListener("click", () => {
    state.id = null;
    showSelected(null);
    markSelectedTile();
    if (state.mode === "neighbors") {
      state.mode = "random";
      syncControls();
      run({ push: true, newSeed: true });
    } else {
      writeURL(true);
    }
  });
  el.selectedDetails.addEventListener("click", () => {
    if (selectedHit) openDetail(selectedHit.id);
  });

  // views, uploads, export
  el.viewGrid.addEventListener("click", () => setView("grid"));
  el.viewMap.addEventListener("click", () => setView("map"));
  el.upload.addEventListener("change", () => {
    addUploads([...el.upload.files]);
    el.upload.value = "";
  });
  el.exportCsv.addEventListener("click", exportCsv);
  el.exportJson.addEventListener("click", exportJson);
  el.traySearch.addEventListener("click", () => {
    state.mode = "query";
    state.count = PAGE;
    syncControls();
    run({ push: true });
  });
  el.trayClear.addEventListener("click", () => {
    for (const u of uploads) URL.revokeObjectURL(u.url);
    uploads.length = 0;
    state.pos = [];
    state.neg = [];
    afterTrayChange();
  });
  let dragDepth = 0;
  document.addEventListener("dragenter", (ev) => {
    if (!ev.dataTransfer || ![...ev.dataTransfer.types].includes("Files")) return;
    dragDepth += 1;
    el.drop.hidden = false;
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) el.drop.hidden = true;
  });
  document.addEventListener("dragover", (ev) => {
    if (ev.dataTransfer && [...ev.dataTransfer.types].includes("Files")) ev.preventDefault();
  });
  document.addEventListener("drop", (ev) => {
    dragDepth = 0;
    el.drop.hidden = true;
    if (!ev.dataTransfer || !ev.dataTransfer.files.length) return;
    ev.preventDefault();
    addUploads([...ev.dataTransfer.files]);
  });

  // detail panel
  el.detailClose.addEventListener("click", closeDetail);
  el.detailSimilar.addEventListener("click", () => {
    if (!detailHit) return;
    const id = detailHit.id;
    if (state.view === "map") setView("grid");
    closeDetail();
    selectTarget(id);
  });
  el.detailPos.addEventListener("click", () => detailHit && addToQuery(detailHit.id, "pos"));
  el.detailNeg.addEventListener("click", () => detailHit && addToQuery(detailHit.id, "neg"));

  // grid: click = details (unless it was a double-click), double-click / Enter = target
  let clickTimer = null;
  el.grid.addEventListener("click", (ev) => {
    const tile = tileOf(ev.target);
    if (!tile) return;
    tile.focus({ preventScroll: true });
    clearTimeout(clickTimer);
    if (ev.detail > 1) return;
    clickTimer = setTimeout(() => openDetail(Number(tile.dataset.id)), 250);
  });
  el.grid.addEventListener("dblclick", (ev) => {
    const tile = tileOf(ev.target);
    if (!tile) return;
    clearTimeout(clickTimer);
    ev.preventDefault();
    selectTarget(Number(tile.dataset.id));
  });
  el.grid.addEventListener("keydown", (ev) => {
    const tile = tileOf(ev.target);
    if (!tile || ev.target !== tile) return;
    const id = Number(tile.dataset.id);
    if (ev.key === "Enter") {
      ev.preventDefault();
      selectTarget(id, true);
    } else if (ev.key === "i" || ev.key === " ") {
      ev.preventDefault();
      openDetail(id);
    } else if (ev.key === "+" || ev.key === "=") {
      addToQuery(id, "pos");
    } else if (ev.key === "-") {
      addToQuery(id, "neg");
    } else if (ev.key.startsWith("Arrow")) {
      ev.preventDefault();
      moveFocus(tile, ev.key);
      if (!el.detail.hidden) openDetail(Number(document.activeElement.dataset.id));
    }
  });
  el.grid.addEventListener("mousemove", (ev) => {
    const tile = tileOf(ev.target);
    if (!tile) return hideTooltip();
    if (tooltipSuppressed && tooltipSuppressed !== tile.dataset.id) tooltipSuppressed = null;
    showTooltipFor(tile.dataset.id, hitsById.get(Number(tile.dataset.id)), ev.clientX, ev.clientY, tile);
  });
  el.grid.addEventListener("mouseleave", () => {
    tooltipSuppressed = null;
    hideTooltip();
  });
  el.grid.addEventListener("focusin", (ev) => {
    const tile = tileOf(ev.target);
    if (tile && ev.target === tile && tile.matches(":focus-visible")) showTooltipFor(tile.dataset.id, hitsById.get(Number(tile.dataset.id)), undefined, undefined, tile);
  });
  el.grid.addEventListener("focusout", () => hideTooltip());

  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape") return;
    if (!el.tooltip.hidden) tooltipSuppressed = tooltipKey;
    hideTooltip();
    closeDetail();
  });
  window.addEventListener("scroll", hideTooltip, { passive: true });
  window.addEventListener("resize", hideTooltip);

  // more results on scroll
  el.loadMore.addEventListener("click", loadMore);
  if ("IntersectionObserver" in window) {
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) loadMore();
    }, { rootMargin: "400px" }).observe(el.more);
  }

  window.addEventListener("popstate", () => {
    readURL();
    selectedHit = null;
    syncControls();
    run({ push: false });
  });
  bindMap();
}

// ------------------------------------------------------------------ start

async function start() {
  bindEvents();
  readURL();
  try {
    info = await api("/api/info");
    if (info.limits) limits = { ...limits, ...info.limits };
    if (info.title) {
      el.title.textContent = info.title;
      document.title = info.title;
    }
    const n = Number(info.n_images);
    el.size.textContent = Number.isFinite(n) ? `${n.toLocaleString("en")} figures` : "";
    if (Array.isArray(info.embeddings)) fillEmbeddings();
    else info.embeddings = [];
  } catch (e) {
    setStatus(`Error: could not load collection info: ${e.message}`, "error");
  }
  if (!state.embedding && info && info.embeddings.length) state.embedding = info.embeddings[0].name;
  syncControls();
  await run({ push: false });
  document.body.dataset.ready = "1";
}

start();
