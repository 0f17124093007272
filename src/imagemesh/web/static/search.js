// search.js -- running the current state: random sample, nearest neighbours or a query;
// stale responses dropped, the status line, more results on scroll, and making an image
// the target of a neighbours search.

import { api, apiPost, ApiError } from "./api.js";
import { readControls } from "./controls.js";
import { ensureSelectedPanel, showSelected } from "./detail.js";
import { el, setStatus } from "./dom.js";
import { refreshFacets } from "./filters.js";
import { markSelectedTile, renderGrid } from "./grid.js";
import { hitLabel } from "./hits.js";
import { loadClusters } from "./clusters.js";
import { drawMap, loadMap } from "./map.js";
import { dropRefusedUpload, queryForm, renderTray } from "./query.js";
import { buildFilter, describeFilters, filterParam } from "./schema.js";
import { app, effectiveMode, state, uploads, writeURL } from "./state.js";
import { hideTooltip } from "./tooltip.js";
import { PAGE, randomSeed } from "./util.js";

let controller = null; // AbortController of the search in flight
let exhausted = false; // no more results to load
let loadingMore = false;
let randomNext = 0; // offset of the next random page

/** Fetch `count` results of the current state (offset: random pages). */
async function fetchResults(count, offset, signal) {
  const filter = buildFilter(state.filters);
  const common = { embedding: state.embedding, filter: filterParam(filter), collapse: state.collapse ? "true" : null };
  const mode = effectiveMode();
  if (mode === "paper") return api(`/api/papers/${encodeURIComponent(state.paper)}`, {}, signal);
  if (mode === "concept") {
    const c = await api("/api/concepts", { positive: state.pos, negative: state.neg, embedding: state.embedding, k: Math.min(count, app.limits.max_k), filter: filterParam(filter) }, signal);
    return { ...c, results: c.results.map((h) => ({ ...h, concept_score: h.score, score: undefined })) };
  }
  if (mode === "text") {
    const rest = filterParam(buildFilter(state.filters, ["keyword"]));
    return api("/api/search", { q: state.filters.keyword, k: Math.min(count, app.limits.max_k), filter: rest }, signal);
  }
  if (mode === "papers") {
    const p = await api(`/api/papers/${encodeURIComponent(state.paper)}/similar`, { embedding: state.embedding, k: Math.min(count, app.limits.max_k), filter: filterParam(filter) }, signal);
    // one tile per paper: its figure closest to this paper's, its score as the distance
    return { ...p, results: p.papers.map((x) => ({ ...x.best, distance: x.score })) };
  }
  if (mode === "neighbors") return api("/api/neighbors", { id: state.id, k: Math.min(count, app.limits.max_k), ...common }, signal);
  if (mode === "query") return apiPost("/api/query", queryForm(Math.min(count, app.limits.max_k)), signal);
  return api("/api/random", { n: Math.min(count, app.limits.max_n), seed: state.seed, offset, ...common }, signal);
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** `text`, followed once by a pending notice (e.g. a link's unknown embedding). */
function withNotice(text) {
  const n = app.notice;
  app.notice = "";
  return n ? `${text} · note: ${n}` : text;
}

/** Search with the current state and show the results and facet counts; `push`: a new history entry. */
export async function run({ push = false, newSeed = false, focusTarget = false } = {}) {
  hideTooltip();
  const seq = ++app.runSeq;
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
    if (seq !== app.runSeq) return;
    const hits = Array.isArray(data.results) ? data.results : Array.isArray(data.figures) ? data.figures : [];
    app.lastQuery = { mode, state: JSON.parse(JSON.stringify(state)), uploads: uploads.map((u) => ({ name: u.file.name, polarity: u.polarity })), response: { ...data, results: undefined } };
    const collapsedNote = data.collapsed ? ` · ${plural(data.collapsed, "near-duplicate")} collapsed` : "";
    if (mode === "concept") {
      renderGrid(hits, false, "No figures match these filters.");
      exhausted = hits.length < state.count || hits.length >= (data.total ?? 0);
      const cv = data.concept.cv_score;
      const acc = cv === null || cv === undefined ? "too few labels to cross-validate" : `cross-validated balanced accuracy ${cv.toFixed(2)} over ${data.concept.cv_folds} folds`;
      let text = `${hits.length} of ${data.total} figures ranked by a concept learned from ${plural(data.concept.n_pos, "example")} and ${plural(data.concept.n_neg, "counter-example")} under ${data.concept.embedding} (${acc}); ${data.n_yes} score ≥ 0.5`;
      if (filter) text += ` · ${described}`;
      setStatus(withNotice(text), "", "class-balanced logistic regression on the embedding's stored vectors, trained for this request and not kept");
    } else if (mode === "text") {
      renderGrid(hits, false, "No figure's text matches these words.");
      exhausted = hits.length < state.count || hits.length >= (data.total ?? 0);
      const others = (data.expansions || []).filter((w) => w !== data.prefix).slice(0, 4);
      let text = `${hits.length} of ${data.total} figures whose text matches “${state.filters.keyword.trim()}”, most relevant first`;
      if (data.prefix && others.length) text += ` (“${data.prefix}…”: ${others.join(", ")}${data.expansions.length > others.length + 1 ? ", …" : ""})`;
      const rest = describeFilters(Object.fromEntries(Object.entries(state.filters).filter(([k]) => k !== "keyword")));
      if (buildFilter(state.filters, ["keyword"])) text += ` · ${rest}`;
      setStatus(withNotice(text), "", "ranked by BM25 over the keyword fields; the last word also matches as a prefix");
    } else if (mode === "paper") {
      renderGrid(hits, false, "No figures of this paper.");
      exhausted = true;
      setStatus(withNotice(`All ${plural(hits.length, "figure")} of ${state.paper}${data.title ? ` · ${data.title}` : ""}`));
    } else if (mode === "papers") {
      renderGrid(hits, true, "No other papers match these filters.");
      exhausted = hits.length < state.count;
      let text = `${plural(hits.length, "paper")} whose figures look like ${state.paper}'s under ${data.embedding} (each shown by its closest figure; distance = mean over ${state.paper}'s figures of the distance to that paper's nearest figure)`;
      if (filter) text += ` · ${described}`;
      setStatus(withNotice(text));
    } else if (mode === "neighbors") {
      if (typeof data.query === "number" && data.query !== state.id) {
        state.id = data.query; // an image key from the URL, now resolved to its row id
        writeURL(false);
      }
      renderGrid(hits, true, "No neighbours match these filters.");
      exhausted = hits.length < state.count;
      const target = app.hitsById.get(state.id);
      if (target && (!app.selectedHit || app.selectedHit.id !== state.id)) showSelected(target);
      else await Promise.all([selectedReady, ensureSelectedPanel()]);
      if (seq !== app.runSeq) return;
      const label = hitLabel(app.selectedHit && app.selectedHit.id === state.id ? app.selectedHit : target) || `image ${state.id}`;
      const plan = data.plan || {};
      const among = filter && Number.isFinite(plan.n_allowed) ? ` among ${plan.n_allowed.toLocaleString("en")} matching figures` : "";
      let text = `${hits.length} nearest neighbours of ${label}${among} under ${data.embedding || state.embedding}`;
      if (data.metric) text += ` (${data.metric} distance)`;
      if (filter) text += ` · ${described}`;
      if (hits.length && !target) text += " · the target itself is excluded by the filters";
      const how = plan.strategy ? `search plan: ${plan.strategy}${Number.isFinite(plan.n_allowed) ? `, ${plan.n_allowed} of ${plan.n_total} rows allowed` : ""}` : "";
      setStatus(withNotice(text + collapsedNote), "", how);
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
      let text = `${hits.length} images closest to ${plural(nPos, "image")}`;
      if (nNeg) text += ` and away from ${nNeg}`;
      text += ` under ${data.embedding} (${data.combination})`;
      if (filter) text += ` · ${described}`;
      setStatus(withNotice(text + collapsedNote));
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
      setStatus(withNotice(text + collapsedNote));
    }
    el.loadMore.hidden = exhausted || !app.results.length;
  } catch (e) {
    if ((e && e.name === "AbortError") || seq !== app.runSeq) return;
    renderGrid([], false, "No results: see the message above.");
    el.loadMore.hidden = true;
    const dropped = e instanceof ApiError && e.body ? dropRefusedUpload(e.body.upload) : "";
    const note = dropped ? ` · ${dropped} was removed from the query; search again without it` : "";
    setStatus(e instanceof ApiError ? `Error: ${e.message}${note}` : `Error: ${e && e.message ? e.message : e}`, "error");
  } finally {
    if (seq === app.runSeq) el.grid.removeAttribute("aria-busy");
  }
  if (seq !== app.runSeq) return;
  const facets = refreshFacets(seq);
  if (state.view === "map") loadMap(seq);
  if (state.view === "clusters") loadClusters(seq);
  await facets; // resolve once the dropdowns show counts too (the page is "ready")
}

/** Append the next page (more results on scroll). */
export async function loadMore() {
  if (loadingMore || exhausted || !app.results.length || state.view !== "grid") return;
  const mode = effectiveMode();
  const cap = mode === "random" ? 100000 : app.limits.max_k;
  if (state.count >= cap) {
    exhausted = true;
    el.loadMore.hidden = true;
    return;
  }
  loadingMore = true;
  const seq = app.runSeq;
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
    if (seq !== app.runSeq) return;
    const hits = Array.isArray(data.results) ? data.results : [];
    const before = app.results.length;
    if (mode === "random") randomNext = data.next_offset;
    renderGrid(hits, mode !== "random", "", true);
    state.count = want;
    writeURL(false);
    exhausted = mode === "random" ? data.next_offset >= data.total : hits.length < want || app.results.length === before;
    el.loadMore.hidden = exhausted;
    el.status.textContent = el.status.textContent.replace(/^\d+/, String(app.results.length));
    if (state.view === "map") drawMap();
  } catch (e) {
    if (seq === app.runSeq) setStatus(`Error loading more: ${e.message}`, "error");
  } finally {
    loadingMore = false;
  }
}

/** Make `id` the target: switch to nearest neighbours and search at once. */
export function selectTarget(id, viaKeyboard = false) {
  if (typeof id !== "number" || !Number.isFinite(id)) return;
  const d = app.detailHit;
  const h = app.hitsById.get(id) || (d && d.id === id ? d : null);
  state.id = id;
  if (h) showSelected(h);
  markSelectedTile();
  readControls();
  state.mode = "neighbors";
  state.count = PAGE;
  el.modes.neighbors.checked = true;
  run({ push: true, focusTarget: viaKeyboard });
}
