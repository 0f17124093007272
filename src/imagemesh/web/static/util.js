// util.js -- small pure helpers shared by the explorer's modules (text, numbers, DOM nodes).
// Nothing here touches the page's state; `make` is the one way modules build elements, and it
// sets text with textContent only (metadata contains "<", "&", quotes and LaTeX).

export const PAGE = 40; // results per page ("more results on scroll" adds a page)
export const MAX_IDS = 32; // positive / negative ids kept in the URL

export function truncate(text, max) {
  if (!text) return "";
  const s = String(text).replace(/\s+/g, " ").trim();
  if (s.length <= max) return s;
  const cut = s.slice(0, max);
  const space = cut.lastIndexOf(" ");
  return `${space > max * 0.6 ? cut.slice(0, space) : cut}…`;
}

export function formatDistance(d) {
  if (d === null || d === undefined || !Number.isFinite(d)) return "";
  if (d !== 0 && Math.abs(d) < 0.001) return `d=${d.toExponential(1)}`;
  return `d=${d.toFixed(3)}`;
}

/** A new element with a class and text content (never markup). */
export function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export function randomSeed() {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  return a[0] & 0x7fffffff;
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

/** "1,2,3" from a URL -> [1, 2, 3] (row ids only, at most MAX_IDS). */
export const parseIds = (s) =>
  (s || "")
    .split(",")
    .map((x) => x.trim())
    .filter((x) => /^\d{1,12}$/.test(x))
    .map(Number)
    .slice(0, MAX_IDS);

/** "authors_list" -> "Authors list" (a field name as a control label). */
export function fieldLabel(name) {
  const s = String(name).replace(/_/g, " ").trim();
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

/** A metadata value as one line of text (lists joined, objects as JSON). */
export function valueText(v) {
  if (v === null || v === undefined) return "";
  if (Array.isArray(v)) return v.map(valueText).filter(Boolean).join(", ");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
