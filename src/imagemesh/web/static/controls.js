// controls.js -- the search form and toolbar <-> state: mode, embedding, filters (through
// filters.js), collapse, view (grid / map), and the embedding list from /api/info.

import { el } from "./dom.js";
import { readFilterControls, syncFilterControls, ensureOption } from "./filters.js";
import { loadClusters } from "./clusters.js";
import { loadMap } from "./map.js";
import { renderTray } from "./query.js";
import { app, state, writeURL } from "./state.js";
import { truncate } from "./util.js";

/** Show `state` in the controls. */
export function syncControls() {
  for (const [m, radio] of Object.entries(el.modes)) radio.checked = state.mode === m;
  ensureOption(el.embedding, state.embedding);
  el.embedding.value = state.embedding;
  syncFilterControls();
  el.collapse.checked = state.collapse;
  el.viewGrid.setAttribute("aria-pressed", String(state.view === "grid"));
  el.viewMap.setAttribute("aria-pressed", String(state.view === "map"));
  el.viewClusters.setAttribute("aria-pressed", String(state.view === "clusters"));
  el.mapview.hidden = state.view !== "map";
  el.clustersview.hidden = state.view !== "clusters";
  document.body.dataset.view = state.view; // the map view hides the "selected" bar: a click must not move the canvas
  el.grid.hidden = state.view !== "grid";
  el.more.hidden = state.view !== "grid";
  const cl = state.filters.__cluster;
  el.clusterChip.hidden = !cl;
  if (cl) el.clusterChip.textContent = `Cluster: ${cl.label || `#${cl.id}`} ×`;
  renderTray();
}

/** Take mode, embedding, filters and collapse from the controls into `state`. */
export function readControls() {
  state.paper = null; // the form's searches leave the paper view
  state.concept = false; // and the concept ranking
  for (const [m, radio] of Object.entries(el.modes)) if (radio.checked) state.mode = m;
  state.embedding = el.embedding.value;
  readFilterControls();
  state.collapse = el.collapse.checked;
}

export function fillEmbeddings() {
  el.embedding.replaceChildren();
  for (const e of app.info.embeddings) {
    const o = new Option(e.description ? `${e.name} — ${truncate(e.description, 60)}` : e.name, e.name);
    const tech = `${e.metric} distance, ${e.input_dim}-d reduced by PCA to ${e.dim}-d` + (e.explained_variance !== null && e.explained_variance !== undefined ? ` (${(e.explained_variance * 100).toFixed(0)}% of variance kept)` : "") + `; index: ${e.backend}`;
    o.title = e.description ? `${e.description}. ${tech}` : tech;
    el.embedding.append(o);
  }
  if (!state.embedding && app.info.embeddings.length) state.embedding = app.info.embeddings[0].name;
}

export function setView(view) {
  if (state.view === view) return;
  state.view = view;
  syncControls();
  writeURL(true);
  if (view === "map") loadMap(app.runSeq);
  if (view === "clusters") loadClusters(app.runSeq);
}
