// app.js -- the explorer's entry module: loads /api/info, sets up the schema-driven filter
// controls, wires every control, pointer and keyboard event to the other modules, and runs
// the first search. Vanilla ES modules, no build step; talks only to the JSON API of its
// origin (documented at /api/openapi.json).
//
// Security notes: the page runs under a strict CSP (no inline script or style), so all
// behaviour lives in these modules and every piece of metadata is rendered with textContent --
// captions and titles contain LaTeX, "<", "&" and quotes. Nothing here uses innerHTML.
// Uploaded images stay in this page (object URLs) and are sent only with a query.
//
// Modules: util (helpers), dom (elements, status), schema (field roles, filter model),
// state (URL state), api (fetch client), hits (metadata as text), tooltip, detail (panels),
// grid, map, filters (filter controls, facets, suggestions), query (tray, uploads),
// controls (form <-> state), search (running queries), export.

import { api } from "./api.js";
import { fillEmbeddings, readControls, setView, syncControls } from "./controls.js";
import { closeDetail, openDetail, showSelected } from "./detail.js";
import { el, setStatus } from "./dom.js";
import { exportCsv, exportJson } from "./export.js";
import { bindSuggestions, facetSelects, firstExtraControl, setExtraFilters, setupFilterControls } from "./filters.js";
import { markSelectedTile, moveFocus, tileOf } from "./grid.js";
import { bindMap } from "./map.js";
import { addToQuery, addUploads, clearTray, onTrayChange, renderTray } from "./query.js";
import { onChooseCluster } from "./clusters.js";
import { configureSchema } from "./schema.js";
import { loadMore, run, selectTarget } from "./search.js";
import { app, effectiveMode, readURL, resetFilters, state, writeURL } from "./state.js";
import { hideTooltip, showTooltipFor, tooltip } from "./tooltip.js";
import { PAGE } from "./util.js";

/** Read the controls and search again from the first page. */
function searchAgain(opts) {
  readControls();
  state.count = PAGE;
  run({ push: true, ...opts });
}

/** After the tray changed: rerun a query (or fall back to random), else just record it. */
function afterTrayChange() {
  renderTray();
  if (state.mode === "query") {
    if (effectiveMode() === "query") run({ push: true });
    else {
      state.mode = "random";
      syncControls();
      run({ push: true, newSeed: true });
    }
  } else writeURL(false);
}

async function takeUploads(files) {
  if (!(await addUploads(files))) return;
  state.mode = "query";
  state.id = null;
  showSelected(null);
  state.count = PAGE;
  syncControls();
  run({ push: true });
}

function bindForm() {
  el.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    searchAgain({ newSeed: true });
  });
  // in Random mode the keyword box ranks figures by text: results follow the typing
  let typing = null;
  el.keyword.addEventListener("input", () => {
    clearTimeout(typing);
    if (!el.modes.random.checked) return;
    const seq = app.runSeq;
    // skipped when another search started meanwhile (a double-click, a mode change)
    typing = setTimeout(() => {
      if (seq === app.runSeq && el.modes.random.checked) searchAgain({ newSeed: false, push: false });
    }, 300);
  });
  for (const radio of Object.values(el.modes)) {
    radio.addEventListener("change", () => {
      readControls();
      searchAgain({ newSeed: state.mode === "random" });
    });
  }
  for (const select of [el.embedding, ...facetSelects()]) select.addEventListener("change", () => searchAgain());
  el.collapse.addEventListener("change", () => searchAgain());
  el.moreFilters.addEventListener("click", () => {
    const open = el.extraFilters.hidden;
    setExtraFilters(open);
    const first = firstExtraControl();
    if (open && first) first.focus();
  });
  el.clearFilters.addEventListener("click", () => {
    resetFilters();
    syncControls();
    searchAgain();
  });
  bindSuggestions();
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
    if (app.selectedHit) openDetail(app.selectedHit.id);
  });
}

function bindToolbar() {
  el.viewGrid.addEventListener("click", () => setView("grid"));
  el.viewMap.addEventListener("click", () => setView("map"));
  el.viewClusters.addEventListener("click", () => setView("clusters"));
  onChooseCluster((cl) => {
    state.filters.__cluster = cl;
    setView("grid");
    searchAgain({ newSeed: true });
  });
  el.clusterChip.addEventListener("click", () => {
    delete state.filters.__cluster;
    syncControls();
    searchAgain({ newSeed: true });
  });
  el.upload.addEventListener("change", () => {
    takeUploads([...el.upload.files]);
    el.upload.value = "";
  });
  el.exportCsv.addEventListener("click", exportCsv);
  el.exportJson.addEventListener("click", exportJson);
  onTrayChange(afterTrayChange);
  el.traySearch.addEventListener("click", () => {
    state.mode = "query";
    state.paper = null;
    state.concept = false;
    state.count = PAGE;
    syncControls();
    run({ push: true });
  });
  el.trayConcept.addEventListener("click", () => {
    if (!state.pos.length || !state.neg.length) {
      setStatus("A concept needs at least one “more like” and one “less like” figure from the collection (uploads cannot be used).", "error");
      return;
    }
    state.mode = "query";
    state.paper = null;
    state.concept = true;
    state.count = PAGE;
    syncControls();
    run({ push: true });
  });
  el.trayClear.addEventListener("click", () => {
    clearTray();
    afterTrayChange();
  });
  // drag and drop of image files anywhere on the page
  let dragDepth = 0;
  const hasFiles = (ev) => ev.dataTransfer && [...ev.dataTransfer.types].includes("Files");
  document.addEventListener("dragenter", (ev) => {
    if (!hasFiles(ev)) return;
    dragDepth += 1;
    el.drop.hidden = false;
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) el.drop.hidden = true;
  });
  document.addEventListener("dragover", (ev) => {
    if (hasFiles(ev)) ev.preventDefault();
  });
  document.addEventListener("drop", (ev) => {
    dragDepth = 0;
    el.drop.hidden = true;
    if (!ev.dataTransfer || !ev.dataTransfer.files.length) return;
    ev.preventDefault();
    takeUploads([...ev.dataTransfer.files]);
  });
}

function bindDetail() {
  el.detailClose.addEventListener("click", closeDetail);
  el.detailSimilar.addEventListener("click", () => {
    if (!app.detailHit) return;
    const id = app.detailHit.id;
    if (state.view === "map") setView("grid");
    closeDetail();
    selectTarget(id);
  });
  const showPaper = (view) => {
    const h = app.detailHit;
    if (!h || !h.arxiv_id) return;
    if (state.view === "map") setView("grid");
    closeDetail();
    state.paper = String(h.arxiv_id);
    state.paperView = view;
    state.count = PAGE;
    run({ push: true });
  };
  el.detailPaper.addEventListener("click", () => showPaper("figures"));
  el.detailPapers.addEventListener("click", () => showPaper("similar"));
  el.detailPos.addEventListener("click", () => app.detailHit && addToQuery(app.detailHit.id, "pos"));
  el.detailNeg.addEventListener("click", () => app.detailHit && addToQuery(app.detailHit.id, "neg"));
}

/** Grid: click = details (unless it was a double-click), double-click / Enter = target, keys. */
function bindGrid() {
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
      if (moveFocus(tile, ev.key)) loadMore();
      if (!el.detail.hidden) openDetail(Number(document.activeElement.dataset.id));
    }
  });
  el.grid.addEventListener("mousemove", (ev) => {
    const tile = tileOf(ev.target);
    if (!tile) return hideTooltip();
    if (tooltip.suppressed && tooltip.suppressed !== tile.dataset.id) tooltip.suppressed = null;
    showTooltipFor(tile.dataset.id, app.hitsById.get(Number(tile.dataset.id)), ev.clientX, ev.clientY, tile);
  });
  el.grid.addEventListener("mouseleave", () => {
    tooltip.suppressed = null;
    hideTooltip();
  });
  el.grid.addEventListener("focusin", (ev) => {
    const tile = tileOf(ev.target);
    if (tile && ev.target === tile && tile.matches(":focus-visible")) showTooltipFor(tile.dataset.id, app.hitsById.get(Number(tile.dataset.id)), undefined, undefined, tile);
  });
  el.grid.addEventListener("focusout", () => hideTooltip());
}

function bindPage() {
  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape") return;
    if (!el.tooltip.hidden) tooltip.suppressed = tooltip.key;
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
    app.selectedHit = null;
    syncControls();
    run({ push: false });
  });
  bindMap((id) => {
    setView("grid");
    selectTarget(id);
  });
}

// ------------------------------------------------------------------ start

async function loadInfo() {
  try {
    const info = await api("/api/info");
    app.info = info;
    if (info.limits) app.limits = { ...app.limits, ...info.limits };
    if (info.title) {
      el.title.textContent = info.title;
      document.title = info.title;
    }
    const n = Number(info.n_images);
    el.size.textContent = Number.isFinite(n) ? `${n.toLocaleString("en")} figures` : "";
    if (!Array.isArray(info.embeddings)) info.embeddings = [];
    configureSchema(info);
  } catch (e) {
    setStatus(`Error: could not load collection info: ${e.message}`, "error");
  }
}

async function start() {
  await loadInfo();
  setupFilterControls();
  bindForm();
  bindToolbar();
  bindDetail();
  bindGrid();
  bindPage();
  readURL();
  if (app.info) fillEmbeddings();
  syncControls();
  await run({ push: false });
  document.body.dataset.ready = "1";
}

start();
