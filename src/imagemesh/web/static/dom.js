// dom.js -- references to the page's fixed elements (index.html) and the status line.
// Filter controls that depend on the collection's schema are not here: filters.js owns them.

export const $ = (id) => document.getElementById(id);

export const el = {
  title: $("app-title"),
  size: $("collection-size"),
  form: $("controls"),
  modes: { random: $("mode-random"), neighbors: $("mode-neighbors"), query: $("mode-query") },
  embedding: $("embedding"),
  keyword: $("keyword"),
  mainFilters: $("keyword").closest(".controls-row"),
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
  detailFields: $("detail-fields"),
  detailCaptionHead: $("detail-caption-h"),
  detailCaption: $("detail-caption"),
  detailAbstractHead: $("detail-abstract-h"),
  detailAbstract: $("detail-abstract"),
  detailPreds: $("detail-preds"),
  detailSimilar: $("detail-similar"),
  detailPos: $("detail-pos"),
  detailNeg: $("detail-neg"),
  detailArxiv: $("detail-arxiv"),
  tooltip: $("tooltip"),
  drop: $("drop"),
};

export function setStatus(text, kind = "", detail = "") {
  el.status.textContent = text;
  el.status.title = detail;
  el.status.classList.toggle("error", kind === "error");
  el.status.classList.toggle("loading", kind === "loading");
}
