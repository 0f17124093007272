// state.js -- what the page shows: `state` (everything that lives in the URL, for sharing and
// back/forward), the uploads (this page only), the shared runtime values in `app`, and the
// URL <-> state conversion.

import { schema } from "./schema.js";
import { PAGE, parseIds } from "./util.js";

export const state = {
  mode: "random", // "random" | "neighbors" | "query"
  embedding: "",
  id: null, // selected target (row id, or an image key from a shared URL until resolved)
  seed: null, // seed of the random sample shown
  filters: {}, // filter control key -> text (keys: schema.filterKeys)
  view: "grid", // "grid" | "map"
  collapse: false,
  count: PAGE, // results wanted (grows by a page on scroll)
  pos: [], // row ids: "more like"
  neg: [], // row ids: "less like"
  paper: null, // arXiv id: show that paper's figures, or the papers like it (paperView)
  paperView: "figures", // "figures" | "similar"
  concept: false, // query mode: rank by a classifier trained on pos (examples) and neg (counter-examples)
};

/** {file, url, polarity: "pos"|"neg"} -- in this page only, never in the URL */
export const uploads = [];

/** Values shared between modules that are not URL state. */
export const app = {
  info: null, // /api/info
  limits: { max_k: 500, max_n: 500 },
  results: [], // hits currently shown, in rank order
  hitsById: new Map(),
  selectedHit: null, // metadata shown in the "selected" panel
  detailHit: null, // hit shown in the detail panel
  runSeq: 0, // increments per search; stale responses are dropped
  lastQuery: null, // description of the query behind `results` (for export)
  notice: "", // said once with the next status line (e.g. a link's unknown embedding)
};

/** Empty filters for the schema's controls. */
export function resetFilters() {
  state.filters = Object.fromEntries(schema.filterKeys.map((k) => [k, ""]));
}
resetFilters();

export function readURL() {
  const p = new URLSearchParams(location.search);
  const mode = p.get("mode");
  state.mode = mode === "neighbors" || mode === "query" ? mode : "random";
  const info = app.info;
  const names = info ? info.embeddings.map((e) => e.name) : [];
  const asked = p.get("embedding") || "";
  const known = !info || names.includes(asked);
  state.embedding = asked && known ? asked : names[0] || "";
  app.notice = asked && !known ? `this link's embedding “${asked.slice(0, 40)}” is not in this collection; showing ${state.embedding}` : "";
  const paper = (p.get("paper") || "").trim();
  state.paper = paper ? paper.slice(0, 80) : null;
  state.paperView = p.get("papers") === "similar" ? "similar" : "figures";
  const id = (p.get("id") || "").trim();
  state.id = id ? (/^\d+$/.test(id) ? Number(id) : id.slice(0, 200)) : null;
  const seed = p.get("seed") || "";
  state.seed = /^\d{1,15}$/.test(seed) ? Number(seed) : null;
  resetFilters();
  for (const c of schema.controls) state.filters[c.key] = (p.get(c.url) || "").slice(0, 200);
  const cl = /^(.{1,60}):(\d{1,4})$/.exec(p.get("cluster") || "");
  if (cl && names.includes(cl[1])) state.filters.__cluster = { embedding: cl[1], id: Number(cl[2]), label: "" };
  state.view = ["map", "clusters"].includes(p.get("view")) ? p.get("view") : "grid";
  state.collapse = p.get("collapse") === "1";
  const n = Number.parseInt(p.get("n") || "", 10);
  state.count = Number.isFinite(n) && n > 0 ? Math.min(n, 500) : PAGE;
  state.concept = p.get("concept") === "1";
  state.pos = parseIds(p.get("pos"));
  state.neg = parseIds(p.get("neg"));
}

function stateQuery() {
  const p = new URLSearchParams();
  p.set("mode", state.mode);
  if (state.embedding) p.set("embedding", state.embedding);
  if (state.id !== null) p.set("id", String(state.id));
  if (state.paper) {
    p.set("paper", state.paper);
    if (state.paperView === "similar") p.set("papers", "similar");
  }
  if (state.mode === "random" && state.seed !== null) p.set("seed", String(state.seed));
  for (const c of schema.controls) if (state.filters[c.key]) p.set(c.url, state.filters[c.key]);
  const cl = state.filters.__cluster;
  if (cl) p.set("cluster", `${cl.embedding}:${cl.id}`);
  if (state.view !== "grid") p.set("view", state.view);
  if (state.collapse) p.set("collapse", "1");
  if (state.count !== PAGE) p.set("n", String(state.count));
  if (state.concept && state.mode === "query") p.set("concept", "1");
  if (state.pos.length) p.set("pos", state.pos.join(","));
  if (state.neg.length) p.set("neg", state.neg.join(","));
  return `?${p}`;
}

export function writeURL(push) {
  const q = stateQuery();
  if (q === location.search) return;
  if (push) history.pushState(null, "", q);
  else history.replaceState(null, "", q);
}

/** The search the current state runs: a target or positive images are needed, else random. */
export function effectiveMode() {
  if (state.paper) return state.paperView === "similar" ? "papers" : "paper";
  // Random with words in the keyword box: the figures ranked by text relevance instead
  if (state.mode === "random" && (state.filters.keyword || "").trim()) return "text";
  if (state.mode === "query" && state.concept && state.pos.length && state.neg.length) return "concept";
  if (state.mode === "neighbors" && state.id !== null) return "neighbors";
  if (state.mode === "query" && (state.pos.length || uploads.some((u) => u.polarity === "pos"))) return "query";
  return "random";
}
