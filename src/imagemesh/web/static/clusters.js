// clusters.js -- the Clusters view: the k-means clusters of the chosen embedding (/api/clusters),
// each with its label words, size (and how many match the filters) and representative figures;
// choosing one makes it a filter ({"cluster": {embedding, id}}) and shows its figures.

import { api } from "./api.js";
import { el, setStatus } from "./dom.js";
import { buildFilter, filterParam } from "./schema.js";
import { app, state } from "./state.js";
import { make } from "./util.js";

let chooseFn = () => {};

/** `fn(cluster)` runs when a cluster is chosen. */
export function onChooseCluster(fn) {
  chooseFn = fn;
}

/** Fetch and show the clusters (dropped if another search started meanwhile). */
export async function loadClusters(seq) {
  if (state.view !== "clusters") return;
  const filter = buildFilter(state.filters, ["__cluster"]);
  el.clustersLegend.textContent = "Loading clusters…";
  let data;
  try {
    data = await api("/api/clusters", { embedding: state.embedding, filter: filterParam(filter) });
  } catch (e) {
    if (seq === app.runSeq) setStatus(`Error: could not load clusters: ${e.message}`, "error");
    return;
  }
  if (seq !== app.runSeq || state.view !== "clusters") return;
  el.clustersLegend.textContent = `${data.k} clusters of the ${data.embedding} embedding (k-means; labels: the words most particular to each cluster's captions and titles)${filter ? " · counts: figures matching the filters" : ""} · choose one to see its figures`;
  el.clustersList.replaceChildren(...data.clusters.map((c) => card(c, data.embedding, Boolean(filter))));
}

function card(c, embedding, filtered) {
  const item = make("button", "cluster-card");
  item.type = "button";
  item.setAttribute("role", "listitem");
  item.dataset.id = String(c.id);
  const thumbs = make("span", "cluster-thumbs");
  for (const h of c.representatives.slice(0, 4)) {
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = "";
    img.src = h.thumbnail_url || `/api/images/${h.id}/thumbnail`;
    thumbs.append(img);
  }
  const count = filtered && Number.isFinite(c.matching) ? `${c.matching} of ${c.size} figures match` : `${c.size} figures`;
  item.append(thumbs, make("span", "cluster-label", c.label), make("span", "cluster-size muted small", count));
  item.addEventListener("click", () => chooseFn({ embedding, id: c.id, label: c.label }));
  return item;
}
