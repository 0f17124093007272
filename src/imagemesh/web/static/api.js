// api.js -- the client of the explorer's JSON API (same origin, documented at
// /api/openapi.json): GET and POST helpers that turn every failure into an ApiError with the
// server's message, and a cache of full image metadata (/api/images/{id}).

export class ApiError extends Error {
  constructor(message, body = null) {
    super(message);
    this.body = body; // the JSON error body, e.g. {"error", "upload": {field, index, filename}}
  }
}

async function parseResponse(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const msg = body && typeof body.error === "string" ? body.error : resp.statusText || "request failed";
    throw new ApiError(`${msg} (HTTP ${resp.status})`, body);
  }
  if (body === null || typeof body !== "object") throw new ApiError("the server sent an invalid response");
  return body;
}

async function send(url, init) {
  let resp;
  try {
    resp = await fetch(url, { ...init, headers: { Accept: "application/json" } });
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError("network error: the server could not be reached");
  }
  return parseResponse(resp);
}

/** GET `path` with the non-empty `params` as its query string. */
export async function api(path, params = {}, signal = undefined) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) for (const x of v) qs.append(k, String(x));
    else if (v !== null && v !== undefined && v !== "" && v !== false) qs.set(k, String(v));
  }
  return send(qs.toString() ? `${path}?${qs}` : path, { signal });
}

/** POST a FormData (multipart: fields and files). */
export async function apiPost(path, form, signal) {
  return send(path, { method: "POST", body: form, signal });
}

/** id -> promise of the image's full metadata; failed look-ups are forgotten. */
export const metaCache = new Map();

export async function getMeta(id) {
  if (!metaCache.has(id)) {
    const p = api(`/api/images/${encodeURIComponent(id)}`);
    metaCache.set(id, p);
    p.catch(() => metaCache.delete(id));
  }
  return metaCache.get(id);
}
