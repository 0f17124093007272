// query.js -- the query tray: figures marked "more like" / "less like" (row ids, in the URL)
// and uploaded images (object URLs, in this page only), and the multipart form of a
// /api/query request made from them.

import { el, setStatus } from "./dom.js";
import { buildFilter, filterParam } from "./schema.js";
import { app, state, uploads, writeURL } from "./state.js";
import { MAX_IDS, make } from "./util.js";

let changed = () => {};

/** `fn()` runs after an item is removed from the tray. */
export function onTrayChange(fn) {
  changed = fn;
}

function trayItem(kind, label, src, onRemove) {
  const item = make("span", `tray-item ${kind}`);
  const img = document.createElement("img");
  img.src = src;
  img.alt = label;
  img.title = label;
  const x = make("button", "tray-remove", "×");
  x.type = "button";
  x.setAttribute("aria-label", `remove ${label}`);
  x.addEventListener("click", onRemove);
  item.append(img, x);
  return item;
}

export function renderTray() {
  const pos = [];
  const neg = [];
  for (const [list, out, kind] of [
    [state.pos, pos, "pos"],
    [state.neg, neg, "neg"],
  ]) {
    for (const id of list) {
      out.push(
        trayItem(kind, `figure #${id}`, `/api/images/${id}/thumbnail`, () => {
          state[kind] = state[kind].filter((x) => x !== id);
          changed();
        }),
      );
    }
  }
  for (const u of uploads) {
    (u.polarity === "neg" ? neg : pos).push(
      trayItem(`${u.polarity} upload`, `upload: ${u.file.name}`, u.url, () => {
        URL.revokeObjectURL(u.url);
        uploads.splice(uploads.indexOf(u), 1);
        changed();
      }),
    );
  }
  if (!neg.length) neg.push(make("span", "muted small", "none (optional)"));
  el.trayPos.replaceChildren(...pos);
  el.trayNeg.replaceChildren(...neg);
  el.tray.hidden = !(state.pos.length || state.neg.length || uploads.length);
}

export function addToQuery(id, polarity) {
  if (typeof id !== "number") return;
  const other = polarity === "pos" ? "neg" : "pos";
  state[other] = state[other].filter((x) => x !== id);
  if (!state[polarity].includes(id) && state[polarity].length < MAX_IDS) state[polarity].push(id);
  renderTray();
  writeURL(false);
  setStatus(`Added #${id} to “${polarity === "pos" ? "more like" : "less like"}”. Press “Search with these” to run the query.`);
}

const ACCEPTED = "PNG, JPEG, GIF, WebP, BMP or TIFF";

/** The image format of a file from its first bytes (the server accepts the same ones), or "". */
async function sniffImage(file) {
  const b = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  const starts = (...xs) => xs.every((x, i) => b[i] === x);
  const ascii = (s, at = 0) => [...s].every((c, i) => b[at + i] === c.charCodeAt(0));
  if (starts(0x89, 0x50, 0x4e, 0x47)) return "PNG";
  if (starts(0xff, 0xd8, 0xff)) return "JPEG";
  if (ascii("GIF8")) return "GIF";
  if (ascii("RIFF") && ascii("WEBP", 8)) return "WebP";
  if (ascii("BM")) return "BMP";
  if (starts(0x49, 0x49, 0x2a, 0x00) || starts(0x4d, 0x4d, 0x00, 0x2a)) return "TIFF";
  return "";
}

/** Keep the image files among `files` (within the server's limits); the number added. Files
 * that are not images (by their first bytes, not their name) are refused with a message
 * naming them, so one bad file cannot break the queries after it. */
export async function addUploads(files) {
  const limits = (app.info && app.info.limits) || {};
  const max = limits.max_upload_images || 8;
  const maxBytes = limits.max_upload_bytes || 16 * 1024 * 1024;
  const refused = [];
  let added = 0;
  for (const file of files) {
    if (file.size > maxBytes) {
      refused.push(`${file.name} is larger than ${(maxBytes / 1048576).toFixed(0)} MiB`);
      continue;
    }
    if (!(await sniffImage(file))) {
      refused.push(`${file.name} is not an image (${ACCEPTED})`);
      continue;
    }
    if (uploads.length >= max) {
      refused.push(`${file.name}: at most ${max} images per query`);
      continue;
    }
    uploads.push({ file, url: URL.createObjectURL(file), polarity: "pos" });
    added += 1;
  }
  if (refused.length) setStatus(`Not added: ${refused.join("; ")}`, "error");
  return added;
}

/** Drop the upload the server refused (`{field, index}` of its error), so that the next
 * query works; its file name for the message. */
export function dropRefusedUpload(upload) {
  if (!upload || typeof upload.index !== "number") return "";
  const polarity = upload.field === "negative_image" ? "neg" : "pos";
  const same = uploads.filter((u) => u.polarity === polarity);
  const u = same[upload.index];
  if (!u) return "";
  URL.revokeObjectURL(u.url);
  uploads.splice(uploads.indexOf(u), 1);
  renderTray();
  return u.file.name;
}

export function clearTray() {
  for (const u of uploads) URL.revokeObjectURL(u.url);
  uploads.length = 0;
  state.pos = [];
  state.neg = [];
}

/** The POST /api/query form for the current state, asking for `k` results. */
export function queryForm(k) {
  const form = new FormData();
  form.set("embedding", state.embedding);
  form.set("k", String(k));
  const f = filterParam(buildFilter(state.filters));
  if (f) form.set("filter", f);
  if (state.collapse) form.set("collapse", "true");
  for (const id of state.pos) form.append("positive", String(id));
  for (const id of state.neg) form.append("negative", String(id));
  for (const u of uploads) form.append(u.polarity === "neg" ? "negative_image" : "positive_image", u.file, u.file.name);
  return form;
}
