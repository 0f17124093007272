// filters.js -- the filter controls: one per schema control (facet dropdowns with counts,
// the keyword box, "contains" inputs with autocomplete, from/to inputs of range fields).
// arXiv controls already in index.html are reused; other fields get controls made here.
// Also: controls <-> state.filters, facet counts (/api/facets), suggestions (/api/suggest).

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { buildFilter, controlLabel, filterParam, isNumeric, schema } from "./schema.js";
import { app, state } from "./state.js";
import { debounce, make } from "./util.js";

const UNKNOWN_OPTION = "\u0000unknown"; // value of the disabled "(unknown)" options
// controls that index.html has, by role and field
const STATIC = { facet: { archive: "archive", category: "category", year: "year" }, text: { title: "f-title", caption: "f-caption", authors: "f-authors", abstract: "f-abstract" } };

const controls = new Map(); // control key -> <select> | <input>

/** Make the page's filter controls match schema.controls (once, after /api/info). */
export function setupFilterControls() {
  controls.clear();
  const wanted = new Set(schema.controls.filter((c) => c.role === "facet" || c.role === "text").map((c) => `${c.role}:${c.field}`));
  for (const [role, ids] of Object.entries(STATIC)) {
    for (const [field, id] of Object.entries(ids)) if (!wanted.has(`${role}:${field}`) && $(id)) $(id).closest("label").remove();
  }
  const buttons = el.extraFilters.querySelector(".buttons");
  let lastText = [...el.extraFilters.querySelectorAll("input[type=search]")].map((i) => i.closest("label")).pop() || null;
  for (const c of schema.controls) {
    if (c.role === "keyword") {
      controls.set(c.key, el.keyword);
      continue;
    }
    const existing = STATIC[c.role] && STATIC[c.role][c.field] && $(STATIC[c.role][c.field]);
    const input = existing || makeControl(c);
    controls.set(c.key, input);
    if (existing) continue;
    const label = input.closest("label");
    if (!c.extra) el.mainFilters.insertBefore(label, el.keyword.closest("label"));
    else if (c.role === "text") {
      if (lastText) lastText.after(label);
      else el.extraFilters.prepend(label);
      lastText = label;
    } else el.extraFilters.insertBefore(label, buttons);
  }
  if (!schema.keyword) el.keyword.closest("label").hidden = true;
  if (!schema.arxiv && schema.keywordFields) el.keyword.title = `Every word must occur (whole words, any case) in ${schema.keywordFields.join(", ")}`;
  // autocomplete on the "contains" inputs of suggestable fields
  for (const c of schema.controls) {
    if (c.role !== "text") continue;
    const input = controls.get(c.key);
    if (!schema.suggest.includes(c.field)) {
      input.removeAttribute("list");
      continue;
    }
    const id = `suggest-${c.field}`;
    if (!$(id)) {
      const list = document.createElement("datalist");
      list.id = id;
      el.extraFilters.append(list);
    }
    input.setAttribute("list", id);
  }
}

function makeControl(c) {
  const label = make("label", c.role === "text" ? "field field-grow" : "field");
  label.append(make("span", "field-label", controlLabel(c)));
  let input;
  if (c.role === "facet") {
    input = document.createElement("select");
    input.id = `facet-${c.field}`;
    input.append(new Option("All", ""));
  } else {
    input = document.createElement("input");
    input.type = c.role === "text" ? "search" : "number";
    input.id = c.role === "text" ? `f-${c.field}` : `range-${c.field}-${c.role}`;
    input.autocomplete = "off";
    if (c.role === "text") input.maxLength = 200;
    else input.step = schema.kinds[c.field] === "int" ? "1" : "any";
  }
  input.name = c.url;
  input.dataset.filter = c.key;
  label.append(input);
  return input;
}

/** Make sure `select` has an option with `value` (e.g. from a URL, before facets load). */
export function ensureOption(select, value, text) {
  if (!value) return;
  for (const o of select.options) if (o.value === value) return;
  select.append(new Option(text || value, value));
}

export function setExtraFilters(open) {
  el.extraFilters.hidden = !open;
  el.moreFilters.setAttribute("aria-expanded", String(open));
  el.moreFilters.textContent = open ? "Fewer filters" : "More filters";
}

/** The first filter control of the optional row (focused when it opens). */
export const firstExtraControl = () => el.extraFilters.querySelector("input, select");

/** Every dropdown that filters (they search on change). */
export const facetSelects = () => schema.controls.filter((c) => c.role === "facet").map((c) => controls.get(c.key));

export function syncFilterControls() {
  let extra = false;
  for (const c of schema.controls) {
    const input = controls.get(c.key);
    const v = state.filters[c.key] || "";
    if (c.role === "facet") ensureOption(input, v);
    input.value = v;
    if (c.extra && v) extra = true;
  }
  if (extra) setExtraFilters(true);
}

export function readFilterControls() {
  for (const c of schema.controls) {
    const input = controls.get(c.key);
    if (c.role === "facet") state.filters[c.key] = input.value === UNKNOWN_OPTION ? "" : input.value;
    else state.filters[c.key] = input.value.trim();
  }
}

/** Refill a facet select with "label (count)" options; "(unknown)" is shown disabled. */
function fillFacet(c, select, items, current) {
  if (isNumeric(c.field)) items = [...items].sort((a, b) => (b.value ?? -Infinity) - (a.value ?? -Infinity));
  const labelOnly = schema.arxiv && c.field === "archive"; // "Computer Science", not "cs — Computer Science"
  const options = [new Option("All", "")];
  let seen = false;
  for (const it of items) {
    const known = it.value !== null && it.value !== undefined;
    const value = known ? String(it.value) : UNKNOWN_OPTION;
    const label = it.label || (known ? String(it.value) : "(unknown)");
    const text = known && label !== value && !labelOnly ? `${value} — ${label}` : label;
    const o = new Option(`${text} (${it.count})`, value);
    if (known && label !== value) o.title = `${value}: ${label}`;
    if (!known) {
      o.disabled = true;
      o.title = "images without a value cannot be filtered on";
    }
    if (value === current) seen = true;
    options.push(o);
  }
  if (current && !seen) options.push(new Option(`${current} (0)`, current));
  // a field no image has a value of: say so instead of a lone "(unknown)" to choose from
  const empty = !current && !items.some((it) => it.value !== null && it.value !== undefined);
  if (empty) options.splice(0, options.length, new Option(`no ${c.field} data in this collection`, ""));
  select.disabled = empty;
  select.replaceChildren(...options);
  select.value = current;
}

/** Counts of every facet under the other filters (each facet ignores its own). */
export async function refreshFacets(seq) {
  const cache = new Map();
  try {
    await Promise.all(
      schema.controls
        .filter((c) => c.role === "facet")
        .map(async (c) => {
          const f = filterParam(buildFilter(state.filters, [c.key]));
          const key = f || "";
          if (!cache.has(key)) cache.set(key, api("/api/facets", { filter: f }));
          const data = await cache.get(key);
          if (seq !== app.runSeq) return;
          if (Array.isArray(data[c.field])) fillFacet(c, controls.get(c.key), data[c.field], state.filters[c.key]);
        }),
    );
  } catch (e) {
    if (seq !== app.runSeq || el.status.classList.contains("error")) return;
    el.status.append(make("span", "status-note", ` · filter counts unavailable: ${e.message}`));
  }
}

// ------------------------------------------------------------------ autocomplete

const suggestSeq = {};

async function suggest(field, input) {
  const seq = (suggestSeq[field] = (suggestSeq[field] || 0) + 1);
  try {
    const data = await api("/api/suggest", { field, prefix: input.value.trim(), limit: 12 });
    if (seq !== suggestSeq[field]) return;
    const opts = (data.values || []).map((v) => {
      const o = document.createElement("option");
      o.value = String(v.value);
      o.label = `${v.count} image${v.count === 1 ? "" : "s"}`;
      return o;
    });
    $(`suggest-${field}`).replaceChildren(...opts);
  } catch {
    /* suggestions are optional */
  }
}

/** Suggestions while typing in the "contains" inputs of suggestable fields. */
export function bindSuggestions() {
  for (const c of schema.controls) {
    if (c.role !== "text" || !schema.suggest.includes(c.field)) continue;
    const input = controls.get(c.key);
    const go = debounce(() => suggest(c.field, input), 150);
    input.addEventListener("input", go);
    input.addEventListener("focus", go);
  }
}
