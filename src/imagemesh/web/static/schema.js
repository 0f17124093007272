// schema.js -- the collection's field roles (from /api/info `fields`), with today's arXiv
// layout as the fallback when the server does not send them, and the filter model built on
// them: which filter controls exist, their URL keys, the API filter object and its summary.

import { fieldLabel, truncate } from "./util.js";

// arXiv defaults: what the explorer shows when /api/info names no roles
const ARXIV = {
  facets: ["archive", "category", "year"],
  text: ["title", "caption", "authors", "abstract"], // "contains" filters
  suggest: ["title", "authors"], // text filters with autocomplete
  ranges: ["year"],
  title: "title",
  kinds: { archive: "text", category: "text", year: "int", title: "text", caption: "text", authors: "text", abstract: "text" },
};
// URL parameters that are not filters: a field with one of these names gets an "f_" prefix
const RESERVED = new Set(["mode", "embedding", "id", "seed", "view", "collapse", "n", "pos", "neg"]);
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export const schema = {
  arxiv: true, // arXiv-style display (ids, authors, abstract, arXiv links)
  kinds: { ...ARXIV.kinds }, // field -> "text" | "text_list" | "int" | "float"
  fieldNames: [], // every metadata field, in schema order
  facets: [...ARXIV.facets],
  text: [...ARXIV.text],
  suggest: [...ARXIV.suggest],
  ranges: [], // range fields without a facet dropdown (those get from/to inputs)
  keyword: true, // offer the keyword box
  keywordFields: null,
  hitFields: [],
  titleField: ARXIV.title,
  controls: [], // filter controls: {key, url, field, role, extra}
  filterKeys: [],
};

const names = (v) => (Array.isArray(v) ? v.filter((x) => typeof x === "string" && NAME.test(x)) : null);

export const isNumeric = (field) => schema.kinds[field] === "int" || schema.kinds[field] === "float";

/** Adopt the roles in `info.fields` (each one absent -> the arXiv default). */
export function configureSchema(info) {
  const f = info && info.fields && typeof info.fields === "object" ? info.fields : {};
  const kinds = f.fields && typeof f.fields === "object" ? f.fields : null;
  if (kinds) {
    schema.fieldNames = Object.keys(kinds).filter((k) => NAME.test(k));
    schema.kinds = { ...ARXIV.kinds, ...kinds };
  }
  schema.arxiv = typeof f.profile === "string" && f.profile ? f.profile === "arxiv" : !kinds || "arxiv_id" in kinds;
  schema.facets = names(f.facet_fields) ?? [...ARXIV.facets];
  schema.text = names(f.text_fields) ?? [...ARXIV.text];
  const suggestable = names(f.suggest_fields);
  schema.suggest = suggestable ? schema.text.filter((x) => suggestable.includes(x)) : ARXIV.suggest.filter((x) => schema.text.includes(x));
  const ranges = names(f.range_fields) ?? [...ARXIV.ranges];
  schema.ranges = ranges.filter((x) => !schema.facets.includes(x)); // a faceted range field keeps its single-value dropdown
  schema.keywordFields = names(f.keyword_fields);
  schema.keyword = !schema.keywordFields || schema.keywordFields.length > 0;
  schema.hitFields = names(f.hit_fields) ?? [];
  if ("title_field" in f) schema.titleField = typeof f.title_field === "string" && NAME.test(f.title_field) ? f.title_field : null;
  buildControls();
}

function buildControls() {
  const out = [];
  const seen = new Set();
  const add = (key, field, role, extra) => {
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ key, url: RESERVED.has(key) ? `f_${key}` : key, field, role, extra });
  };
  for (const name of schema.facets) add(name, name, "facet", isNumeric(name));
  if (schema.keyword) add("keyword", "keyword", "keyword", false);
  for (const name of schema.text) add(schema.facets.includes(name) ? `${name}_contains` : name, name, "text", true);
  for (const name of schema.ranges) {
    add(`${name}_from`, name, "from", true);
    add(`${name}_to`, name, "to", true);
  }
  schema.controls = out;
  schema.filterKeys = out.map((c) => c.key);
}
buildControls();

function parseNumber(field, s) {
  const v = schema.kinds[field] === "int" ? Number.parseInt(s, 10) : Number.parseFloat(s);
  return Number.isFinite(v) ? v : null;
}

/** The API filter object for `filters` (control key -> text), without the keys in `omit` (null if empty). */
export function buildFilter(filters, omit = []) {
  const conds = new Map(); // field -> {eq, contains, gte, lte}; "keyword" -> its text
  const cond = (field) => conds.get(field) || conds.set(field, {}).get(field);
  // order of the keys as they always were: text facets, keyword, numeric facets, contains, ranges
  const order = (c) => ({ facet: isNumeric(c.field) ? 2 : 0, keyword: 1, text: 3, from: 4, to: 4 })[c.role];
  const controls = [...schema.controls].sort((a, b) => order(a) - order(b));
  for (const c of controls) {
    const v = (filters[c.key] || "").trim(); // a blank box is no filter, not "matches nothing"
    if (!v || omit.includes(c.key)) continue;
    if (c.role === "keyword") conds.set("keyword", v);
    else if (c.role === "text") cond(c.field).contains = v;
    else if (c.role === "facet") {
      const x = isNumeric(c.field) ? parseNumber(c.field, v) : v;
      if (x !== null) cond(c.field).eq = x;
    } else {
      const x = parseNumber(c.field, v);
      if (x !== null) cond(c.field)[c.role === "from" ? "gte" : "lte"] = x;
    }
  }
  const f = {};
  const cl = filters.__cluster; // {embedding, id, label}: a cluster chosen in the Clusters view
  if (cl && !omit.includes("__cluster")) f.cluster = { embedding: cl.embedding, id: cl.id };
  for (const [field, c] of conds) {
    if (typeof c === "string") f[field] = c;
    else if (Object.keys(c).length === 1 && "eq" in c) f[field] = c.eq;
    else if (Object.keys(c).length) f[field] = c;
  }
  return Object.keys(f).length ? f : null;
}

export const filterParam = (f) => (f ? JSON.stringify(f) : null);

/** "archive cs, year 2023, keyword “x”, title contains “y”" */
export function describeFilters(filters) {
  const parts = [];
  const cl = filters.__cluster;
  if (cl) parts.push(`cluster “${truncate(cl.label || `#${cl.id}`, 40)}” (${cl.embedding})`);
  for (const c of schema.controls) {
    const v = filters[c.key];
    if (!v) continue;
    if (c.role === "facet") parts.push(`${c.field} ${v}`);
    else if (c.role === "keyword") parts.push(`keyword “${truncate(v, 40)}”`);
    else if (c.role === "text") parts.push(`${c.field} contains “${truncate(v, 40)}”`);
    else parts.push(`${c.field} ${c.role === "from" ? "≥" : "≤"} ${v}`);
  }
  return parts.join(", ");
}

/** Label of a filter control: "Year", "Title contains", "Width from". */
export function controlLabel(c) {
  const name = fieldLabel(c.field);
  if (c.role === "text") return `${name} contains`;
  if (c.role === "from") return `${name} from`;
  if (c.role === "to") return `${name} to`;
  return name;
}
