// hits.js -- how one image's metadata reads on the page: its label, title, summary text, meta
// lines, generic "name: value" rows and classifier predictions. arXiv collections get arXiv
// ids, authors and links; others show their schema's title field and other fields. All of it
// is plain text (the callers set textContent); the prediction blocks are built with `make`.

import { schema, isNumeric } from "./schema.js";
import { make, truncate, valueText } from "./util.js";

// keys of an API hit / image record that are not metadata fields
const INTERNAL = new Set(["id", "distance", "thumbnail_url", "image_url", "arxiv_url", "predictions", "duplicates", "search_text", "content_sha256", "row_id", "image_key", "width", "height"]);

/** "2306.01841v1", or the image key / row id when there is no arXiv id. */
export function hitLabel(h) {
  if (!h) return "";
  if (h.arxiv_id) return h.version !== null && h.version !== undefined && h.version !== "" ? `${h.arxiv_id}v${h.version}` : String(h.arxiv_id);
  if (h.image_key) return String(h.image_key);
  return `#${h.id}`;
}

export function arxivUrl(h) {
  if (h.arxiv_url) return h.arxiv_url;
  if (h.arxiv_id) return `https://arxiv.org/abs/${encodeURIComponent(hitLabel(h))}`;
  return null;
}

const titleValue = (h) => (schema.titleField ? valueText(h[schema.titleField]) : "");

/** The heading of a hit: its title field, "(untitled)" when empty, its label without a title field. */
export function hitTitle(h) {
  return titleValue(h) || (schema.titleField ? "(untitled)" : hitLabel(h));
}

/** The descriptive text of a hit: the caption (arXiv) or the first other text field with a value. */
export function hitSummary(h) {
  if (schema.arxiv) return h.caption || "";
  const names = [...schema.text, ...schema.fieldNames.filter((f) => schema.kinds[f] === "text")];
  for (const f of names) if (f !== schema.titleField && h[f]) return valueText(h[f]);
  return "";
}

/** Alternative text of a hit's image. */
export const altText = (h, fallback, max) => truncate(hitSummary(h) || titleValue(h) || fallback, max);

/** Short facts for the selected panel and the hover card: label, figure, year, category. */
export function metaParts(h) {
  const meta = [hitLabel(h)];
  if (schema.arxiv) {
    if (h.figure) meta.push(`figure ${h.figure}`);
    if (h.year) meta.push(String(h.year));
    if (h.category) meta.push(String(h.category));
  } else {
    for (const f of schema.facets) if (f !== schema.titleField && valueText(h[f])) meta.push(`${f}: ${valueText(h[f])}`);
  }
  return meta;
}

/** The small number shown on a tile (the year of an arXiv figure). */
export function tileBadge(h) {
  if (schema.arxiv) return h.year || null;
  const f = [...schema.facets, ...schema.ranges].find((x) => isNumeric(x) && h[x] !== null && h[x] !== undefined);
  return f ? h[f] : null;
}

/** The meta line of the detail panel. */
export function detailMetaParts(h) {
  const meta = [hitLabel(h)];
  if (schema.arxiv) {
    if (h.figure) meta.push(`figure ${h.figure}`);
    if (h.year) meta.push(String(h.year));
    if (Array.isArray(h.categories) && h.categories.length) meta.push(h.categories.join(", "));
    else if (h.category) meta.push(String(h.category));
  }
  if (h.width && h.height) meta.push(`${h.width}×${h.height} px`);
  return meta;
}

/** [name, text] of every metadata field with a value but the title (generic detail panel). */
export function fieldRows(h) {
  const names = schema.fieldNames.length ? schema.fieldNames : Object.keys(h).filter((k) => !INTERNAL.has(k));
  const rows = [];
  for (const name of names) {
    if (name === schema.titleField || INTERNAL.has(name)) continue;
    const text = valueText(h[name]);
    if (text) rows.push([name, text]);
  }
  return rows;
}

/** Classifier predictions as headed lists with bars (hover card, detail panel). */
export function predictionBlocks(h) {
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
