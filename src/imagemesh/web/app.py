"""The JSON API and the bundled explorer, as a Starlette app.

A frontend is ``create_app(collection, settings) -> ASGI app``. The JSON API is the
contract any frontend may use (documented at ``/api/openapi.json``):

* ``GET /api/info`` -- size, embeddings, filterable fields, limits
* ``GET /api/random?n=&seed=&offset=&filter=&collapse=&embedding=`` -- a random sample,
  pageable (a seed fixes one permutation of the matching images; ``offset`` walks it)
* ``GET /api/neighbors?id=&embedding=&k=&filter=&collapse=`` -- kNN of an image (with the plan used)
* ``POST /api/query`` -- kNN of uploaded images and/or collection images, positives and
  negatives (multipart form; see :func:`create_app`'s ``query`` handler)
* ``GET /api/facets?filter=`` -- archive / category / year counts with official names
* ``GET /api/suggest?field=&prefix=&limit=`` -- top values of a field, for autocompletion
* ``GET /api/map?embedding=&filter=`` -- the build-time 2-D map of an embedding
* ``GET /api/images/{id}`` -- all metadata of one image, with its thumbnail and image URLs
* ``GET /api/images/{id}/thumbnail`` and ``/image`` -- JPEGs, ``ETag`` + immutable caching

``filter`` is the JSON form of a :class:`~imagemesh.core.filters.MetadataFilter` (the same as
the CLI's ``--where``). Bad parameters get a 4xx JSON error ``{"error": ...}``, never a
500. The app is read-only, keeps no request log, never writes an upload anywhere (see
:mod:`imagemesh.web.upload`), and sends a Content-Security-Policy that allows no inline
script.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagemesh.query.collection import Collection
from imagemesh.store.reader import CollectionError, ImageNotFound
from imagemesh.core.errors import FilterError
from imagemesh.core.filters import parse_filter
from imagemesh.media.images import ImageLimits
from imagemesh.media.isolate import IsolatedDecoder, IsolationLimits
from imagemesh.web.openapi import openapi_schema
from imagemesh.query.sampling import sample_rows
from imagemesh.query.suggest import Suggestions
from imagemesh.query.collapse import collapse_duplicates, duplicate_threshold
from imagemesh.web.settings import WebSettings
from imagemesh.web.upload import UploadError, canonical_upload, read_form

__all__ = ["create_app"]

log = logging.getLogger("imagemesh.web")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


class SecurityHeaders:
    """Adds CSP and related headers to every response (pure ASGI middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _parse_int(name: str, raw: str | None, default: int | None, lo: int, hi: int) -> int | None:
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw[:40]!r}") from None
    if not lo <= v <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}")
    return v


def _int_param(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    return _parse_int(name, request.query_params.get(name), default, lo, hi)


def _parse_bool(name: str, raw: str | None) -> bool:
    if raw is None or raw == "":
        return False
    v = raw.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ApiError(400, f"{name} must be true or false, got {raw[:40]!r}")


def create_app(collection: Collection, settings: WebSettings | None = None) -> Starlette:
    """Build the ASGI app serving ``collection``.

    Args:
        collection: an open :class:`~imagemesh.query.collection.Collection`.
        settings: :class:`WebSettings` (limits and defaults).
    """
    settings = settings or WebSettings()
    static_dir = Path(str(resources.files("imagemesh.web") / "static"))
    version = collection.manifest.build_id
    suggestions = Suggestions(collection.table, collection.schema)
    dup_thresholds: dict[str, float] = {}
    metrics = {e["name"]: e["metric"] for e in collection.embedding_info()}
    upload_limits = ImageLimits(max_file_bytes=settings.max_upload_bytes, max_pixels=settings.max_upload_pixels)
    decoders: list[IsolatedDecoder] = []  # at most one, started by the first upload
    decoder_lock = threading.Lock()

    def _upload_decoder() -> IsolatedDecoder | None:
        if not settings.isolate_uploads:
            return None
        with decoder_lock:
            if not decoders:
                decoders.append(IsolatedDecoder(upload_limits, IsolationLimits(timeout_s=settings.upload_decode_timeout_s, memory_bytes=settings.upload_decode_memory_bytes)))
            return decoders[0]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = max(1, int(settings.worker_threads))
        yield
        for d in decoders:
            d.close()

    # ------------------------------------------------------------------ parameters

    def _filter_from(raw: str | None) -> Any:
        if raw is None or raw == "":
            return None
        if len(raw) > settings.max_filter_chars:
            raise ApiError(413, f"filter longer than {settings.max_filter_chars} characters")
        try:
            # parsed, compiled and evaluated once, here, so errors are 400s
            return collection.select(parse_filter(raw))
        except FilterError as e:
            raise ApiError(400, f"invalid filter: {e}") from None

    def _filter(request: Request) -> Any:
        return _filter_from(request.query_params.get("filter"))

    def _embedding_from(raw: str | None) -> str:
        name = raw or collection.embeddings[0]
        if name not in collection.embeddings:
            raise ApiError(400, f"unknown embedding {name[:60]!r}; available: {', '.join(collection.embeddings)}")
        return name

    def _embedding(request: Request) -> str:
        return _embedding_from(request.query_params.get("embedding"))

    def _resolve(raw: str) -> int:
        if len(raw) > 200:
            raise ApiError(400, "id too long")
        try:
            return collection.resolve(raw)
        except ImageNotFound as e:
            raise ApiError(404, str(e)) from None

    # ------------------------------------------------------------------ results

    def _hit_json(h: Any) -> dict[str, Any]:
        d = h.to_dict()
        d["thumbnail_url"] = f"/api/images/{h.id}/thumbnail?v={version}"
        return d

    def _collapse(hits: list[Any], emb: str, k: int) -> tuple[list[dict[str, Any]], int]:
        """Collapse near-duplicates of ranked ``hits`` (see :func:`collapse_duplicates`),
        keep ``k``; each kept hit lists the ids folded into it as ``duplicates``."""
        ids = [h.id for h in hits]
        if not ids:
            return [], 0
        sha = {r["row_id"]: r["content_sha256"] for r in collection.take(ids, ["content_sha256"])}
        vecs = collection.vectors(emb)
        if emb not in dup_thresholds:
            dup_thresholds[emb] = duplicate_threshold(vecs, metrics[emb])
        kept, dups = collapse_duplicates(ids, vecs, metrics[emb], dup_thresholds[emb], [sha.get(i) for i in ids])
        by_id = {h.id: h for h in hits}
        out = []
        for i in kept[:k]:
            d = _hit_json(by_id[i])
            d["duplicates"] = dups.get(i, [])
            out.append(d)
        return out, len(ids) - len(kept)

    def _search_results(hits: list[Any], emb: str, k: int, collapse: bool) -> dict[str, Any]:
        if collapse:
            results, n_collapsed = _collapse(hits, emb, k)
            return {"results": results, "collapsed": n_collapsed, "duplicate_threshold": dup_thresholds.get(emb)}
        return {"results": [_hit_json(h) for h in hits[:k]], "collapsed": 0}

    def _fetch_k(k: int, collapse: bool) -> int:
        # with collapse on, look further down the list so that k distinct hits remain
        return min(len(collection), k * 3 + 20) if collapse else k

    # ------------------------------------------------------------------ routes

    def info(request: Request) -> JSONResponse:
        d = collection.info()
        d["title"] = settings.title
        d["limits"] = {
            "max_k": settings.max_k,
            "max_n": settings.max_n,
            "max_upload_bytes": settings.max_upload_bytes,
            "max_upload_images": settings.max_upload_images,
            "max_query_items": settings.max_query_items,
        }
        d["maps"] = {name: bool(collection.manifest.embeddings[name].get("map")) for name in collection.embeddings}
        return JSONResponse(d)

    def random_(request: Request) -> JSONResponse:
        n = int(_int_param(request, "n", settings.default_n, 0, settings.max_n) or 0)
        seed = _int_param(request, "seed", None, 0, 2**63 - 1)
        offset = int(_int_param(request, "offset", 0, 0, 10**9) or 0)
        collapse = _parse_bool("collapse", request.query_params.get("collapse"))
        emb = _embedding(request)
        f = _filter(request)
        # the sampler of the CLI and Python: one permutation per seed, pages (offset) never repeat
        page, total = sample_rows(collection.select(f), len(collection), _fetch_k(n, collapse), seed, offset)
        hits = collection.hits(page)
        body = _search_results(hits, emb, n, collapse)
        body.update(total=total, offset=offset, seed=seed, next_offset=offset + len(page))
        return JSONResponse(body)

    def neighbors(request: Request) -> JSONResponse:
        raw_id = request.query_params.get("id")
        if not raw_id:
            raise ApiError(400, "id is required")
        row = _resolve(raw_id)
        k = int(_int_param(request, "k", settings.default_k, 1, settings.max_k) or 1)
        collapse = _parse_bool("collapse", request.query_params.get("collapse"))
        emb = _embedding(request)
        f = _filter(request)
        hits, plan = collection.neighbors_with_plan(row, embedding=emb, k=_fetch_k(k, collapse), where=f)
        body = {"query": row, "embedding": emb, "metric": metrics[emb], "plan": plan.to_dict()}
        body.update(_search_results(hits, emb, k, collapse))
        return JSONResponse(body)

    async def query(request: Request) -> JSONResponse:
        """kNN of a combined query vector (multipart form).

        Fields: ``positive`` / ``negative`` (repeatable; row id, image key or arXiv id),
        files ``positive_image`` / ``negative_image`` (repeatable; PNG, JPEG, GIF, WebP,
        BMP, TIFF), ``embedding``, ``k``, ``filter``, ``collapse``. The query vector is
        ``mean(positives) - mean(negatives)`` in the embedding's reduced space (Rocchio
        without weights), re-normalised for cosine embeddings; with no negatives it is
        the mean of the positives. Negative collection images never appear in results.
        """
        form = await read_form(request, settings.max_upload_bytes, settings.max_query_items + 16)
        for name in form.fields:
            if name not in ("positive", "negative", "embedding", "k", "filter", "collapse"):
                raise ApiError(400, f"unknown form field {name[:40]!r}")
        for name in form.files:
            if name not in ("positive_image", "negative_image"):
                raise ApiError(400, f"unknown file field {name[:40]!r}; use positive_image or negative_image")
        emb = _embedding_from(form.first("embedding"))
        k = int(_parse_int("k", form.first("k"), settings.default_k, 1, settings.max_k) or 1)
        collapse = _parse_bool("collapse", form.first("collapse"))
        f = _filter_from(form.first("filter"))
        pos_ids = [_resolve(v) for v in form.values("positive") if v.strip()]
        neg_ids = [_resolve(v) for v in form.values("negative") if v.strip()]
        pos_files = form.files.get("positive_image", [])
        neg_files = form.files.get("negative_image", [])
        if len(pos_files) + len(neg_files) > settings.max_upload_images:
            raise ApiError(400, f"at most {settings.max_upload_images} images per query")
        if len(pos_ids) + len(neg_ids) + len(pos_files) + len(neg_files) > settings.max_query_items:
            raise ApiError(400, f"at most {settings.max_query_items} query items")
        if not pos_ids and not pos_files:
            raise ApiError(400, "give at least one positive: an uploaded image (positive_image) or a collection image (positive)")

        def embed() -> tuple[np.ndarray, np.ndarray | None]:
            vecs = collection.vectors(emb)
            parts_p = [np.asarray(vecs[pos_ids], np.float32)] if pos_ids else []
            parts_n = [np.asarray(vecs[neg_ids], np.float32)] if neg_ids else []
            if pos_files or neg_files:
                dec = _upload_decoder()
                images = [canonical_upload(b, upload_limits, dec) for b in [*pos_files, *neg_files]]
                try:
                    embedder = collection.query_embedder(emb)
                except CollectionError as e:
                    raise ApiError(409, f"cannot embed uploads: {e}") from None
                up = embedder(images, canonical=True)
                if pos_files:
                    parts_p.append(up[: len(pos_files)])
                if neg_files:
                    parts_n.append(up[len(pos_files) :])
            p = np.concatenate(parts_p).mean(0)
            n = np.concatenate(parts_n).mean(0) if parts_n else None
            return p, n

        p, n = await run_in_threadpool(embed)
        q = p if n is None else p - n
        if metrics[emb] == "cosine":
            norm = float(np.linalg.norm(q))
            if norm < 1e-6:
                raise ApiError(400, "positives and negatives cancel out; the query vector is zero")
            q = q / norm
        fetch = min(len(collection), _fetch_k(k, collapse) + len(set(neg_ids)))
        dist, ids, plan = await run_in_threadpool(collection.search_vectors, q[None, :].astype(np.float32), emb, fetch, f)
        negs = set(neg_ids)
        keep = [(int(i), float(d)) for i, d in zip(ids[0], dist[0]) if i >= 0 and int(i) not in negs]
        hits = collection.hits([i for i, _ in keep], [d for _, d in keep])
        body = {
            "query": {"positive": pos_ids, "negative": neg_ids, "positive_uploads": len(pos_files), "negative_uploads": len(neg_files)},
            "embedding": emb,
            "metric": metrics[emb],
            "combination": "mean(positives) - mean(negatives)" if n is not None else "mean(positives)",
            "plan": plan.to_dict(),
        }
        body.update(_search_results(hits, emb, k, collapse))
        return JSONResponse(body)

    def facets(request: Request) -> JSONResponse:
        f = _filter(request)
        return JSONResponse(collection.facets(f))

    def suggest(request: Request) -> JSONResponse:
        field = request.query_params.get("field") or ""
        if field not in suggestions.fields:
            raise ApiError(400, f"field must be one of {', '.join(suggestions.fields)}")
        prefix = request.query_params.get("prefix") or ""
        if len(prefix) > 200:
            raise ApiError(400, "prefix longer than 200 characters")
        limit = int(_int_param(request, "limit", 10, 1, 100) or 10)
        return JSONResponse({"field": field, "prefix": prefix, "values": suggestions.top(field, prefix, limit)})

    def map_(request: Request) -> JSONResponse:
        emb = _embedding(request)
        f = _filter(request)
        m = collection.map_2d(emb)
        if m is None:
            raise ApiError(404, f"this collection has no 2-D map of {emb!r} (built with map_2d off)")
        xy, method = m
        ids = collection.select(f).rows(len(collection))
        return JSONResponse({
            "embedding": emb,
            "method": method,
            "n_total": len(collection),
            "ids": ids.tolist(),
            "x": np.round(xy[ids, 0].astype(np.float64), 5).tolist(),
            "y": np.round(xy[ids, 1].astype(np.float64), 5).tolist(),
        })

    def image(request: Request) -> JSONResponse:
        row = _resolve(str(request.path_params["id"]))
        d = collection.get(row)
        d["id"] = d.pop("row_id")
        d["thumbnail_url"] = f"/api/images/{row}/thumbnail?v={version}"
        d["image_url"] = f"/api/images/{row}/image?v={version}"
        if d.get("arxiv_id"):
            d["arxiv_url"] = f"https://arxiv.org/abs/{d['arxiv_id']}" + (f"v{d['version']}" if d.get("version") else "")
        return JSONResponse(d)

    def _jpeg(request: Request, kind: str) -> Response:
        try:
            row = collection.resolve(int(request.path_params["id"]))
        except (ImageNotFound, ValueError) as e:
            raise ApiError(404, str(e)) from None
        etag = f'"{version}-{kind}-{row}"'
        headers = {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        try:
            data = collection.thumbnail(row) if kind == "thumb" else collection.image(row)
        except ImageNotFound as e:
            raise ApiError(404, str(e)) from None
        return Response(data, media_type="image/jpeg", headers=headers)

    def thumbnail(request: Request) -> Response:
        return _jpeg(request, "thumb")

    def full_image(request: Request) -> Response:
        return _jpeg(request, "image")

    def openapi(request: Request) -> JSONResponse:
        return JSONResponse(openapi_schema(collection, settings))

    def index_page(request: Request) -> FileResponse:
        return FileResponse(static_dir / "index.html", headers={"Cache-Control": "no-cache"})

    def about_page(request: Request) -> FileResponse:
        return FileResponse(static_dir / "about.html", headers={"Cache-Control": "no-cache"})

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, (ApiError, UploadError))
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 304:
            return Response(status_code=304)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s", type(exc).__name__)  # no query content in logs
        return JSONResponse({"error": "internal error"}, status_code=500)

    routes = [
        Route("/", index_page),
        Route("/about", about_page),
        Route("/api/info", info),
        Route("/api/random", random_),
        Route("/api/neighbors", neighbors),
        Route("/api/query", query, methods=["POST"]),
        Route("/api/facets", facets),
        Route("/api/suggest", suggest),
        Route("/api/map", map_),
        Route("/api/images/{id:int}", image),
        Route("/api/images/{id:int}/thumbnail", thumbnail),
        Route("/api/images/{id:int}/image", full_image),
        Route("/api/openapi.json", openapi),
        Mount("/static", app=StaticFiles(directory=static_dir), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={ApiError: api_error, UploadError: api_error, HTTPException: http_error, Exception: server_error},
    )
    app.state.collection = collection
    app.state.settings = settings
    app.state.upload_decoders = decoders  # for tests and shutdown
    return app
