// export.js -- download the results shown as CSV or JSON (the JSON adds the query: mode,
// embedding, filter, target, positive/negative ids, upload names, plan and predictions).
// arXiv collections keep their fixed columns; others export their schema's fields.

import { arxivUrl } from "./hits.js";
import { buildFilter, schema } from "./schema.js";
import { app, effectiveMode, state } from "./state.js";

const ARXIV_COLUMNS = ["rank", "id", "distance", "arxiv_id", "version", "figure", "title", "authors", "year", "archive", "category", "caption", "image_key", "arxiv_url", "duplicates"];

function columns() {
  if (schema.arxiv) return ARXIV_COLUMNS;
  const fields = schema.hitFields.length ? schema.hitFields : schema.fieldNames;
  const cols = ["rank", "id", "distance", "image_key", ...(schema.titleField ? [schema.titleField] : []), ...fields, "duplicates"];
  return [...new Set(cols)];
}

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

function csvCell(v) {
  if (v === null || v === undefined) return "";
  let s = Array.isArray(v) ? v.join(" ") : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`; // no formula injection in spreadsheets
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function exportRows(cols) {
  return app.results.map((h, i) => {
    const row = { rank: i + 1, ...Object.fromEntries(cols.slice(1).map((c) => [c, h[c] ?? null])) };
    if (schema.arxiv) row.arxiv_url = arxivUrl(h);
    return row;
  });
}

function exportName(ext) {
  const mode = effectiveMode();
  const what = mode === "neighbors" ? `neighbors-${state.id}` : mode;
  return `imagemesh-${what}-${state.embedding || "results"}.${ext}`;
}

export function exportCsv() {
  const cols = columns();
  const lines = [cols.join(",")];
  for (const r of exportRows(cols)) lines.push(cols.map((c) => csvCell(r[c])).join(","));
  download(exportName("csv"), "text/csv;charset=utf-8", `${lines.join("\r\n")}\r\n`);
}

export function exportJson() {
  const q = app.lastQuery || {};
  const mode = effectiveMode();
  const body = {
    exported: new Date().toISOString(),
    url: location.href,
    mode,
    embedding: state.embedding,
    filter: buildFilter(state.filters),
    collapse: state.collapse,
    target: mode === "neighbors" ? state.id : null,
    positive: state.pos,
    negative: state.neg,
    uploads: q.uploads || [],
    plan: q.response ? q.response.plan || null : null,
    results: exportRows(columns()).map((r, i) => ({ ...r, predictions: app.results[i].predictions || {} })),
  };
  download(exportName("json"), "application/json", `${JSON.stringify(body, null, 2)}\n`);
}
