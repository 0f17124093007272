// imagemesh explorer: vanilla JS, no build step, talks only to the JSON API of its origin.
//
// Security notes: the page runs under a strict CSP (no inline script or style), so all
// behaviour lives here and every piece of metadata is rendered with textContent --
// captions and titles contain LaTeX, "<", "&" and quotes. Nothing here uses innerHTML.

const DEFAULT_COUNT = 40;
const TEXT_FIELDS = ["title", "caption", "authors", "abstract"]; // "contains" filters
const FILTER_KEYS = ["archive", "category", "year", "keyword", ...TEXT_FIELDS];
const FACETS = ["archive", "category", "year"];
const UNKNOWN_OPTION = "\u0000unknown"; // value of the disabled "(unknown)" options

// ------------------------------------------------------------------ elements

const $ = (id) => document.getElementById(id);
const el = {
  title: $("app-title"),
  size: $("collection-size"),
  form: $("controls"),
  modeRandom: $("mode-random"),
  modeNeighbors: $("mode-neighbors"),
  embedding: $("embedding"),
  archive: $("archive"),
  category: $("category"),
  year: $("year"),
  keyword: $("keyword"),
  text: Object.fromEntries(TEXT_FIELDS.map((f) => [f, $(`f-${f}`)])),
  moreFilters: $("more-filters"),
  extraFilters: $("extra-filters"),
  clearFilters: $("clear-filters"),
  selected: $("selected"),
  selectedImg: $("selected-img"),
  selectedTitle: $("selected-title"),
  selectedMeta: $("selected-meta"),
  selectedCaption: $("selected-caption"),
  selectedLink: $("selected-link"),
  clearSelected: $("clear-selected"),
  status: $("status"),
  grid: $("grid"),
  tooltip: $("tooltip"),
};

// ------------------------------------------------------------------ state

const state = {
  mode: "random", // "random" | "neighbors"
  embedding: "",
  id: null, // selected target (row id, or an image key from a shared URL until resolved)
  seed: null, // seed of the random sample shown
  filters: Object.fromEntries(FILTER_KEYS.map((k) => [k, ""])),
};

let info = null; // /api/info
let limits = { max_k: DEFAULT_COUNT, max_n: DEFAULT_COUNT };
let hitsById = new Map(); // hits currently in the grid
let selectedHit = null; // metadata shown in the "selected" panel
let runSeq = 0; // increments per search; stale responses are dropped
let controller = null; // AbortController of the search in flight

// ------------------------------------------------------------------ API

class ApiError extends Error {}

async function api(path, params = {}, signal = undefined) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") qs.set(k, String(v));
  }
  const url = qs.toString() ? `${path}?${qs}` : path;
  let resp;
  try {
    resp = await fetch(url, { signal, headers: { Accept: "application/json" } });
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError("network error: the server could not be reached");
  }
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

// ------------------------------------------------------------------ URL state

function readURL() {
  const p = new URLSearchParams(location.search);
  state.mode = p.get("mode") === "neighbors" ? "neighbors" : "random";
  state.embedding = p.get("embedding") || (info && info.embeddings.length ? info.embeddings[0].name : "");
  const id = (p.get("id") || "").trim();
  state.id = id ? (/^\d+$/.test(id) ? Number(id) : id.slice(0, 200)) : null;
  const seed = p.get("seed") || "";
  state.seed = /^\d{1,15}$/.test(seed) ? Number(seed) : null;
  for (const k of FILTER_KEYS) state.filters[k] = (p.get(k) || "").slice(0, 200);
}

function stateQuery() {
  const p = new URLSearchParams();
  p.set("mode", state.mode);
  if (state.embedding) p.set("embedding", state.embedding);
  if (state.id !== null) p.set("id", String(state.id));
  if (state.mode === "random" && state.seed !== null) p.set("seed", String(state.seed));
  for (const k of FILTER_KEYS) if (state.filters[k]) p.set(k, state.filters[k]);
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
  el.modeRandom.checked = state.mode === "random";
  el.modeNeighbors.checked = state.mode === "neighbors";
  ensureOption(el.embedding, state.embedding);
  el.embedding.value = state.embedding;
  for (const k of FACETS) {
    ensureOption(el[k], state.filters[k]);
    el[k].value = state.filters[k];
  }
  el.keyword.value = state.filters.keyword;
  for (const k of TEXT_FIELDS) el.text[k].value = state.filters[k];
  if (TEXT_FIELDS.some((k) => state.filters[k]) || state.filters.year) setExtraFilters(true);
}

function readControls() {
  state.mode = el.modeNeighbors.checked ? "neighbors" : "random";
  state.embedding = el.embedding.value;
  for (const k of FACETS) state.filters[k] = el[k].value === UNKNOWN_OPTION ? "" : el[k].value;
  state.filters.keyword = el.keyword.value.trim();
  for (const k of TEXT_FIELDS) state.filters[k] = el.text[k].value.trim();
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
    const o = new Option(`${label} (${it.count})`, value);
    if (known && label !== value) o.title = value;
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
    const h = await api(`/api/images/${want}`);
    if (state.id === want) showSelected(h);
  } catch (e) {
    if (state.id === want) {
      showSelected(null);
      setStatus(`Selected image ${want}: ${e.message}`, "error");
    }
  }
}

function markSelectedTile() {
  for (const t of el.grid.querySelectorAll(".tile.is-selected")) t.classList.remove("is-selected");
  if (state.id === null) return;
  const t = el.grid.querySelector(`.tile[data-id="${CSS.escape(String(state.id))}"]`);
  if (t) t.classList.add("is-selected");
}

// ------------------------------------------------------------------ grid

function renderGrid(hits, mode, emptyMessage) {
  hideTooltip();
  hitsById = new Map();
  const frag = document.createDocumentFragment();
  for (const h of hits) {
    hitsById.set(h.id, h);
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

    const meta = make("div", "meta");
    if (mode === "neighbors") {
      const d = make("span", "dist", formatDistance(h.distance));
      if (h.distance === 0 && h.id === state.id) d.textContent = "target";
      meta.append(d);
    }
    if (h.year) meta.append(make("span", "year", h.year));
    meta.append(make("span", "aid", hitLabel(h)));

    tile.append(thumb, meta);
    frag.append(tile);
  }
  el.grid.replaceChildren(frag);
  if (!hits.length) el.grid.append(make("p", "empty", emptyMessage || "No images match these filters."));
  markSelectedTile();
}

// ------------------------------------------------------------------ search

async function run({ push = false, newSeed = false, focusTarget = false } = {}) {
  hideTooltip();
  const seq = ++runSeq;
  if (controller) controller.abort();
  controller = new AbortController();
  const { signal } = controller;

  const wantNeighbors = state.mode === "neighbors" && state.id !== null;
  if (!wantNeighbors && (newSeed || state.seed === null)) state.seed = randomSeed();
  writeURL(push);
  const selectedReady = ensureSelectedPanel();

  const filter = buildFilter(state.filters);
  const described = describeFilters(state.filters);
  setStatus("Loading…", "loading");
  el.grid.setAttribute("aria-busy", "true");
  try {
    if (wantNeighbors) {
      const k = Math.min(DEFAULT_COUNT, limits.max_k || DEFAULT_COUNT);
      const data = await api("/api/neighbors", { id: state.id, embedding: state.embedding, k, filter: filterParam(filter) }, signal);
      if (seq !== runSeq) return;
      if (typeof data.query === "number" && data.query !== state.id) {
        state.id = data.query; // an image key from the URL, now resolved to its row id
        writeURL(false);
      }
      const results = Array.isArray(data.results) ? data.results : [];
      renderGrid(results, "neighbors", "No neighbours match these filters.");
      const target = hitsById.get(state.id);
      if (target && (!selectedHit || selectedHit.id !== state.id)) showSelected(target);
      else await Promise.all([selectedReady, ensureSelectedPanel()]);
      if (seq !== runSeq) return;
      const label = hitLabel(selectedHit && selectedHit.id === state.id ? selectedHit : target) || `image ${state.id}`;
      const plan = data.plan || {};
      let text = `${results.length} nearest neighbours of ${label} under ${data.embedding || state.embedding}`;
      if (data.metric) text += ` (${data.metric})`;
      if (plan.strategy) text += ` · ${plan.strategy} plan`;
      if (filter && Number.isFinite(plan.n_allowed)) text += ` · ${plan.n_allowed} of ${plan.n_total} images match ${described}`;
      if (results.length && !target) text += " · the target itself is excluded by the filters";
      setStatus(text);
      if (focusTarget) {
        const t = el.grid.querySelector(".tile.is-selected") || el.grid.querySelector(".tile");
        if (t) t.focus({ preventScroll: false });
      }
    } else {
      const n = Math.min(DEFAULT_COUNT, limits.max_n || DEFAULT_COUNT);
      const data = await api("/api/random", { n, seed: state.seed, filter: filterParam(filter) }, signal);
      if (seq !== runSeq) return;
      const results = Array.isArray(data.results) ? data.results : [];
      renderGrid(results, "random");
      let text;
      if (filter && data.total === 0) text = `No images match ${described}`;
      else {
        text = `${results.length} of ${data.total ?? "?"} ${filter ? "matching " : ""}images · random sample`;
        if (filter) text += ` · ${described}`;
      }
      if (state.mode === "neighbors") text = `No target yet: double-click an image to find its nearest neighbours. Showing ${text}`;
      setStatus(text);
    }
  } catch (e) {
    if ((e && e.name === "AbortError") || seq !== runSeq) return;
    renderGrid([], state.mode, "No results: see the message above.");
    setStatus(e instanceof ApiError ? `Error: ${e.message}` : `Error: ${e && e.message ? e.message : e}`, "error");
  } finally {
    if (seq === runSeq) el.grid.removeAttribute("aria-busy");
  }
  if (seq === runSeq) refreshFacets(seq);
}

/** Make `id` the target: switch to nearest neighbours and search at once. */
function selectTarget(id, viaKeyboard = false) {
  const h = hitsById.get(id);
  if (!h) return;
  state.id = id;
  showSelected(h);
  markSelectedTile();
  readControls();
  state.mode = "neighbors";
  el.modeNeighbors.checked = true;
  run({ push: true, focusTarget: viaKeyboard });
}

// ------------------------------------------------------------------ tooltip

let tooltipTile = null;
let tooltipSuppressed = null; // tile on which Esc hid the tooltip

function fillTooltip(h) {
  const tt = el.tooltip;
  const parts = [make("p", "tt-title", h.title || "(untitled)")];
  const meta = [hitLabel(h)];
  if (h.figure) meta.push(`figure ${h.figure}`);
  if (h.year) meta.push(String(h.year));
  if (h.category) meta.push(String(h.category));
  if (state.mode === "neighbors" && h.distance !== null && h.distance !== undefined) meta.push(formatDistance(h.distance));
  parts.push(make("p", "tt-meta", meta.join(" · ")));
  if (h.authors) parts.push(make("p", "tt-authors", truncate(h.authors, 120)));
  if (h.caption) parts.push(make("p", "tt-caption", truncate(h.caption, 300)));

  const preds = h.predictions && Array.isArray(h.predictions.imagenet) ? h.predictions.imagenet.slice(0, 5) : [];
  if (preds.length) {
    parts.push(make("p", "tt-heading", "ImageNet top-5"));
    const list = make("ol", "tt-preds");
    for (const p of preds) {
      const pct = Number.isFinite(p.p) ? Math.max(0, Math.min(100, p.p * 100)) : 0;
      const li = make("li");
      const name = String(p.label || "?").split(",")[0].trim();
      const label = make("span", "pred-label", name);
      label.title = String(p.label || "");
      const value = make("span", "pred-pct", `${pct.toFixed(pct < 10 ? 1 : 0)}%`);
      const bar = make("span", "pred-bar");
      const fill = make("span", "pred-fill");
      fill.style.width = `${pct}%`; // CSSOM write: allowed under style-src 'self'
      bar.append(fill);
      li.append(label, value, bar);
      list.append(li);
    }
    parts.push(list);
  }
  tt.replaceChildren(...parts);
}

function showTooltip(tile, x, y) {
  const h = hitsById.get(Number(tile.dataset.id));
  if (!h || tooltipSuppressed === tile) return;
  if (tooltipTile !== tile) {
    fillTooltip(h);
    tooltipTile = tile;
  }
  el.tooltip.hidden = false;
  positionTooltip(x, y, tile);
}

function positionTooltip(x, y, tile) {
  const tt = el.tooltip;
  const pad = 12;
  const vw = document.documentElement.clientWidth;
  const vh = document.documentElement.clientHeight;
  const r = tt.getBoundingClientRect();
  if (x === undefined) {
    // keyboard focus: place beside the tile
    const t = tile.getBoundingClientRect();
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
  tooltipTile = null;
}

// ------------------------------------------------------------------ events

function tileOf(target) {
  return target instanceof Element ? target.closest(".tile") : null;
}

function bindEvents() {
  el.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    readControls();
    run({ push: true, newSeed: true });
  });
  for (const radio of [el.modeRandom, el.modeNeighbors]) {
    radio.addEventListener("change", () => {
      readControls();
      run({ push: true, newSeed: state.mode === "random" });
    });
  }
  for (const select of [el.embedding, el.archive, el.category, el.year]) {
    select.addEventListener("change", () => {
      readControls();
      run({ push: true });
    });
  }
  el.moreFilters.addEventListener("click", () => {
    const open = el.extraFilters.hidden;
    setExtraFilters(open);
    if (open) el.text.title.focus();
  });
  el.clearFilters.addEventListener("click", () => {
    for (const k of FILTER_KEYS) state.filters[k] = "";
    syncControls();
    readControls();
    run({ push: true });
  });
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

  el.grid.addEventListener("dblclick", (ev) => {
    const tile = tileOf(ev.target);
    if (!tile) return;
    ev.preventDefault();
    selectTarget(Number(tile.dataset.id));
  });
  el.grid.addEventListener("keydown", (ev) => {
    const tile = tileOf(ev.target);
    if (!tile || ev.target !== tile) return;
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      selectTarget(Number(tile.dataset.id), true);
    }
  });
  el.grid.addEventListener("click", (ev) => {
    const tile = tileOf(ev.target);
    if (tile) tile.focus({ preventScroll: true });
  });
  el.grid.addEventListener("mousemove", (ev) => {
    const tile = tileOf(ev.target);
    if (!tile) return hideTooltip();
    if (tooltipSuppressed && tooltipSuppressed !== tile) tooltipSuppressed = null;
    showTooltip(tile, ev.clientX, ev.clientY);
  });
  el.grid.addEventListener("mouseleave", () => {
    tooltipSuppressed = null;
    hideTooltip();
  });
  el.grid.addEventListener("focusin", (ev) => {
    const tile = tileOf(ev.target);
    if (tile && ev.target === tile && tile.matches(":focus-visible")) showTooltip(tile);
  });
  el.grid.addEventListener("focusout", () => hideTooltip());

  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !el.tooltip.hidden) {
      tooltipSuppressed = tooltipTile;
      hideTooltip();
    }
  });
  window.addEventListener("scroll", hideTooltip, { passive: true });
  window.addEventListener("resize", hideTooltip);

  window.addEventListener("popstate", () => {
    readURL();
    syncControls();
    run({ push: false });
  });
}

// ------------------------------------------------------------------ start

async function start() {
  bindEvents();
  readURL();
  try {
    info = await api("/api/info");
    if (info.limits) limits = info.limits;
    if (info.title) {
      el.title.textContent = info.title;
      document.title = info.title;
    }
    const n = Number(info.n_images);
    el.size.textContent = Number.isFinite(n) ? `${n.toLocaleString("en")} images` : "";
    if (Array.isArray(info.embeddings)) fillEmbeddings();
    else info.embeddings = [];
  } catch (e) {
    setStatus(`Error: could not load collection info: ${e.message}`, "error");
  }
  if (!state.embedding && info && info.embeddings.length) state.embedding = info.embeddings[0].name;
  syncControls();
  await run({ push: false });
}

start();
