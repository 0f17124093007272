// map.js -- the 2-D map view: a canvas of every figure at its build-time 2-D position under
// the current embedding, current results highlighted, thumbnails when zoomed in; pan, zoom
// (wheel, pinch, keys, buttons), hover card, click to select, double-click for neighbours.

import { api, getMeta, metaCache } from "./api.js";
import { showSelected, openDetail } from "./detail.js";
import { el, setStatus } from "./dom.js";
import { hitLabel } from "./hits.js";
import { buildFilter, filterParam } from "./schema.js";
import { app, state, writeURL } from "./state.js";
import { hideTooltip, showTooltipFor } from "./tooltip.js";
import { PAGE } from "./util.js";

const map = {
  data: null, // {ids, x, y, method}
  key: "", // embedding + filter of `data`
  scale: 1,
  tx: 0,
  ty: 0,
  thumbs: new Map(), // id -> HTMLImageElement
  hover: null,
  pending: false,
};

export async function loadMap(seq) {
  const f = filterParam(buildFilter(state.filters));
  const key = `${state.embedding}|${f || ""}`;
  if (map.key !== key) {
    el.mapLegend.textContent = "Loading map…";
    try {
      const data = await api("/api/map", { embedding: state.embedding, filter: f });
      if (seq !== app.runSeq) return;
      map.data = data;
      map.key = key;
    } catch (e) {
      if (seq !== app.runSeq) return;
      map.data = null;
      map.key = "";
      el.mapLegend.textContent = `No map: ${e.message}`;
      drawMap();
      return;
    }
  }
  const method = map.data.method === "tsne" ? "t-SNE" : map.data.method.toUpperCase();
  el.mapLegend.textContent = `${map.data.ids.length} figures · ${method} map of the ${state.embedding} embedding, computed at build time · highlighted: current results · click a figure to select it, scroll or pinch to zoom (thumbnails appear), drag to pan`;
  drawMap();
}

function mapSize() {
  const rect = el.canvas.getBoundingClientRect();
  return { w: Math.max(1, rect.width), h: Math.max(1, rect.height) };
}

/** Map coordinates in [0,1] -> CSS pixels in the canvas. */
function mapToScreen(x, y) {
  const { w, h } = mapSize();
  const side = Math.min(w, h) - 40;
  const ox = (w - side) / 2;
  const oy = (h - side) / 2;
  return [(ox + x * side) * map.scale + map.tx, (oy + (1 - y) * side) * map.scale + map.ty];
}

export function drawMap() {
  if (state.view !== "map" || map.pending) return;
  map.pending = true;
  requestAnimationFrame(() => {
    map.pending = false;
    paintMap();
  });
}

function paintMap() {
  const canvas = el.canvas;
  const { w, h } = mapSize();
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, w, h);
  const d = map.data;
  if (!d) return;
  const highlight = new Set(app.results.map((r) => r.id));
  const visible = [];
  for (let i = 0; i < d.ids.length; i++) {
    const [sx, sy] = mapToScreen(d.x[i], d.y[i]);
    if (sx < -50 || sy < -50 || sx > w + 50 || sy > h + 50) continue;
    visible.push([d.ids[i], sx, sy]);
  }
  map.visibleCount = visible.length;
  const thumbSize = thumbSizeNow();
  // dots
  for (const [id, sx, sy] of visible) {
    ctx.fillStyle = highlight.has(id) ? "#e8590c" : "rgba(36, 88, 214, 0.55)";
    const r = highlight.has(id) ? 4 : 3;
    ctx.beginPath();
    ctx.arc(sx, sy, r, 0, Math.PI * 2);
    ctx.fill();
  }
  // thumbnails when zoomed in (at most 400 at a time)
  if (thumbSize && visible.length <= 400) {
    for (const [id, sx, sy] of visible) {
      let img = map.thumbs.get(id);
      if (!img) {
        img = new Image();
        img.decoding = "async";
        img.src = `/api/images/${id}/thumbnail`;
        img.addEventListener("load", drawMap, { once: true });
        map.thumbs.set(id, img);
      }
      if (!img.complete || !img.naturalWidth) continue;
      const s = thumbSize / Math.max(img.naturalWidth, img.naturalHeight);
      const iw = img.naturalWidth * s;
      const ih = img.naturalHeight * s;
      ctx.fillStyle = "#fff";
      ctx.fillRect(sx - iw / 2 - 1, sy - ih / 2 - 1, iw + 2, ih + 2);
      ctx.drawImage(img, sx - iw / 2, sy - ih / 2, iw, ih);
      ctx.strokeStyle = highlight.has(id) ? "#e8590c" : "#c5cbd6";
      ctx.lineWidth = highlight.has(id) ? 2 : 1;
      ctx.strokeRect(sx - iw / 2 - 1, sy - ih / 2 - 1, iw + 2, ih + 2);
    }
  }
  // cluster labels while zoomed out (the words most particular to each cluster)
  if (map.scale < 4 && Array.isArray(d.clusters)) {
    ctx.font = "600 12px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.lineJoin = "round";
    for (const c of d.clusters) {
      const [sx, sy] = mapToScreen(c.x, c.y);
      if (sx < 0 || sy < 0 || sx > w || sy > h) continue;
      ctx.lineWidth = 4;
      ctx.strokeStyle = "rgba(255, 255, 255, 0.92)";
      ctx.strokeText(c.label, sx, sy);
      ctx.fillStyle = "#1d2330";
      ctx.fillText(c.label, sx, sy);
    }
  }
  // selected and hovered
  for (const [id, color, r] of [
    [state.id, "#d6336c", 9],
    [map.hover, "#1d2330", 7],
  ]) {
    if (id === null || id === undefined) continue;
    const i = d.ids.indexOf(id);
    if (i < 0) continue;
    const [sx, sy] = mapToScreen(d.x[i], d.y[i]);
    ctx.strokeStyle = color;
    ctx.lineWidth = 3;
    ctx.beginPath();
    ctx.arc(sx, sy, thumbSize ? thumbSize / 2 + 4 : r, 0, Math.PI * 2);
    ctx.stroke();
  }
}

/** The map point under (x, y) CSS pixels of the canvas, or null. */
/** Thumbnail size on the map: every figure is a thumbnail when at most 400 are in view
 * (small collections from the first paint, large ones once zoomed in), else dots. */
function thumbSizeNow() {
  if ((map.visibleCount ?? Infinity) > 400) return 0;
  return Math.min(96, Math.max(26, 14 * map.scale));
}

function pointAt(x, y) {
  const d = map.data;
  if (!d) return null;
  const thumbSize = thumbSizeNow();
  const reach = Math.max(10, thumbSize / 2);
  let best = null;
  let bestD = reach * reach;
  for (let i = 0; i < d.ids.length; i++) {
    const [sx, sy] = mapToScreen(d.x[i], d.y[i]);
    const dd = (sx - x) ** 2 + (sy - y) ** 2;
    if (dd <= bestD) {
      bestD = dd;
      best = d.ids[i];
    }
  }
  return best;
}

function zoomMap(factor, cx, cy) {
  const { w, h } = mapSize();
  if (cx === undefined) {
    cx = w / 2;
    cy = h / 2;
  }
  const s = Math.min(40, Math.max(1, map.scale * factor));
  const f = s / map.scale;
  map.tx = cx - (cx - map.tx) * f;
  map.ty = cy - (cy - map.ty) * f;
  map.scale = s;
  if (s === 1) {
    map.tx = 0;
    map.ty = 0;
  }
  drawMap();
}

/** Select a figure on the map: it becomes the target (URL), with details alongside. */
async function selectOnMap(id) {
  state.id = id;
  if (state.mode === "neighbors") state.count = PAGE;
  writeURL(true);
  drawMap();
  const h = app.hitsById.get(id) || (await getMeta(id).catch(() => null));
  if (h && state.id === id) showSelected(h);
  openDetail(id);
  setStatus(`Selected ${hitLabel(h) || `#${id}`} on the map. “Find similar” shows its nearest neighbours.`);
}

/** Wire the canvas; `onTarget(id)`: a double-clicked figure, to show its neighbours. */
export function bindMap(onTarget) {
  const pointers = new Map();
  let drag = null;
  let pinch = null;
  const local = (ev) => {
    const r = el.canvas.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  };
  el.canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const [x, y] = local(ev);
    zoomMap(Math.exp(-ev.deltaY * 0.0015), x, y);
  }, { passive: false });
  el.canvas.addEventListener("pointerdown", (ev) => {
    el.canvas.setPointerCapture(ev.pointerId);
    pointers.set(ev.pointerId, local(ev));
    if (pointers.size === 1) drag = { start: local(ev), tx: map.tx, ty: map.ty, moved: false };
    if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      pinch = { dist: Math.hypot(a[0] - b[0], a[1] - b[1]), scale: map.scale };
      drag = null;
    }
  });
  el.canvas.addEventListener("pointermove", (ev) => {
    const p = local(ev);
    if (pointers.has(ev.pointerId)) pointers.set(ev.pointerId, p);
    if (pinch && pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      const dist = Math.hypot(a[0] - b[0], a[1] - b[1]);
      zoomMap((pinch.scale * dist) / pinch.dist / map.scale, (a[0] + b[0]) / 2, (a[1] + b[1]) / 2);
      return;
    }
    if (drag) {
      const dx = p[0] - drag.start[0];
      const dy = p[1] - drag.start[1];
      if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
      if (drag.moved && map.scale > 1) {
        map.tx = drag.tx + dx;
        map.ty = drag.ty + dy;
        drawMap();
      }
      return;
    }
    const id = pointAt(p[0], p[1]);
    if (id !== map.hover) {
      map.hover = id;
      drawMap();
    }
    if (id === null) hideTooltip();
    else {
      const h = app.hitsById.get(id) || metaCache.get(id);
      if (h && !(h instanceof Promise)) showTooltipFor(`map-${id}`, h, ev.clientX, ev.clientY);
      else {
        getMeta(id).then((m) => {
          if (map.hover === id) showTooltipFor(`map-${id}`, m, ev.clientX, ev.clientY);
        }).catch(() => {});
      }
    }
  });
  const up = (ev) => {
    const wasDrag = drag && drag.moved;
    const p = local(ev);
    pointers.delete(ev.pointerId);
    if (pointers.size < 2) pinch = null;
    if (drag && !wasDrag && ev.type === "pointerup") {
      const id = pointAt(p[0], p[1]);
      if (id !== null) selectOnMap(id);
    }
    drag = null;
  };
  el.canvas.addEventListener("pointerup", up);
  el.canvas.addEventListener("pointercancel", up);
  el.canvas.addEventListener("pointerleave", () => {
    map.hover = null;
    hideTooltip();
    drawMap();
  });
  el.canvas.addEventListener("dblclick", (ev) => {
    const [x, y] = local(ev);
    const id = pointAt(x, y);
    if (id !== null) {
      onTarget(id);
    }
  });
  el.canvas.addEventListener("keydown", (ev) => {
    if (ev.key === "+" || ev.key === "=") zoomMap(1.5);
    else if (ev.key === "-") zoomMap(1 / 1.5);
    else if (ev.key.startsWith("Arrow")) {
      const step = 40;
      if (ev.key === "ArrowLeft") map.tx += step;
      if (ev.key === "ArrowRight") map.tx -= step;
      if (ev.key === "ArrowUp") map.ty += step;
      if (ev.key === "ArrowDown") map.ty -= step;
      drawMap();
    } else return;
    ev.preventDefault();
  });
  el.mapZoomIn.addEventListener("click", () => zoomMap(1.6));
  el.mapZoomOut.addEventListener("click", () => zoomMap(1 / 1.6));
  el.mapReset.addEventListener("click", () => {
    map.scale = 1;
    map.tx = 0;
    map.ty = 0;
    drawMap();
  });
  window.addEventListener("resize", drawMap);
}
