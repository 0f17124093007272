// tooltip.js -- the hover card of a tile or map point: title, meta line, authors, summary text
// and the classifier's top-5, kept inside the viewport. Esc suppresses it until the pointer
// moves to another tile.

import { el } from "./dom.js";
import { schema } from "./schema.js";
import { hitSummary, hitTitle, metaParts, predictionBlocks } from "./hits.js";
import { formatDistance, make, truncate } from "./util.js";

export const tooltip = {
  key: null, // what the card shows (tile id or "map-<id>")
  suppressed: null, // key on which Esc hid the card
};

function fillTooltip(h) {
  const parts = [make("p", "tt-title", hitTitle(h))];
  const meta = metaParts(h);
  if (h.distance !== null && h.distance !== undefined) meta.push(formatDistance(h.distance));
  parts.push(make("p", "tt-meta", meta.join(" · ")));
  if (schema.arxiv && h.authors) parts.push(make("p", "tt-authors", truncate(h.authors, 120)));
  const summary = hitSummary(h);
  if (summary) parts.push(make("p", "tt-caption", truncate(summary, 300)));
  parts.push(...predictionBlocks(h));
  el.tooltip.replaceChildren(...parts);
}

export function showTooltipFor(key, h, x, y, anchor) {
  if (!h || tooltip.suppressed === key) return;
  if (tooltip.key !== key) {
    fillTooltip(h);
    tooltip.key = key;
  }
  el.tooltip.hidden = false;
  positionTooltip(x, y, anchor);
}

function positionTooltip(x, y, anchor) {
  const tt = el.tooltip;
  const pad = 12;
  const vw = document.documentElement.clientWidth;
  const vh = document.documentElement.clientHeight;
  const r = tt.getBoundingClientRect();
  if (x === undefined && anchor) {
    const t = anchor.getBoundingClientRect();
    x = t.right;
    y = t.top;
  }
  let left = x + pad;
  let top = y + pad;
  if (left + r.width > vw - 4) left = Math.max(4, x - pad - r.width);
  if (top + r.height > vh - 4) top = Math.max(4, vh - 4 - r.height);
  tt.style.left = `${Math.round(left)}px`;
  tt.style.top = `${Math.round(top)}px`;
}

export function hideTooltip() {
  el.tooltip.hidden = true;
  tooltip.key = null;
}
