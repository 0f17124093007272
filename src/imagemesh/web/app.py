"""The JSON API and the bundled explorer, as a Starlette app.

A frontend is ``create_app(collection, settings) -> ASGI app``. The JSON API is the
contract any frontend may use (documented at ``/api/openapi.json``):

* ``GET /api/info`` -- size, embeddings, filterable fields
* ``GET /api/random?n=&seed=&filter=`` -- a random sample
* ``GET /api/neighbors?id=&embedding=&k=&filter=`` -- kNN of an image (with the plan used)
* ``GET /api/facets?filter=`` -- archive / category / year counts with official names
* ``GET /api/images/{id}`` -- all metadata of one image, with its thumbnail URL
* ``GET /api/images/{id}/thumbnail`` -- JPEG, ``ETag`` + long-lived caching

``filter`` is the JSON form of a :class:`~imagemesh.filters.MetadataFilter` (the same as
the CLI's ``--where``). Bad parameters get a 4xx JSON error ``{"error": ...}``, never a
500. The app is read-only, keeps no request log, and sends a Content-Security-Policy that
allows no inline script.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..collection import Collection, ImageNotFound
from ..filters import FilterError, parse_filter
from .openapi import openapi_schema
from .settings import WebSettings

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


def _int_param(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw[:40]!r}") from None
    if not lo <= v <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}")
    return v


def create_app(collection: Collection, settings: WebSettings | None = None) -> Starlette:
    """Build the ASGI app serving ``collection``.

    Args:
        collection: an open :class:`~imagemesh.collection.Collection`.
        settings: :class:`WebSettings` (limits and defaults).
    """
    settings = settings or WebSettings()
    static_dir = Path(str(resources.files("imagemesh.web") / "static"))
    version = collection.manifest.build_id

    def _filter(request: Request) -> Any:
        raw = request.query_params.get("filter")
        if raw is None:
            return None
        if len(raw) > settings.max_filter_chars:
            raise ApiError(413, f"filter longer than {settings.max_filter_chars} characters")
        try:
            f = parse_filter(raw)
            collection.allowed(f)  # compile + evaluate now, so errors are 400s
        except FilterError as e:
            raise ApiError(400, f"invalid filter: {e}") from None
        return f

    def _embedding(request: Request) -> str:
        name = request.query_params.get("embedding") or collection.embeddings[0]
        if name not in collection.embeddings:
            raise ApiError(400, f"unknown embedding {name[:60]!r}; available: {', '.join(collection.embeddings)}")
        return name

    def _hit_json(h: Any) -> dict[str, Any]:
        d = h.to_dict()
        d["thumbnail_url"] = f"/api/images/{h.id}/thumbnail?v={version}"
        return d

    def info(request: Request) -> JSONResponse:
        d = collection.info()
        d["title"] = settings.title
        d["limits"] = {"max_k": settings.max_k, "max_n": settings.max_n}
        return JSONResponse(d)

    def random_(request: Request) -> JSONResponse:
        n = _int_param(request, "n", settings.default_n, 0, settings.max_n)
        seed = _int_param(request, "seed", None, 0, 2**63 - 1)
        f = _filter(request)
        hits = collection.random(int(n or 0), where=f, seed=seed)
        return JSONResponse({"results": [_hit_json(h) for h in hits], "total": collection.count(f)})

    def neighbors(request: Request) -> JSONResponse:
        raw_id = request.query_params.get("id")
        if not raw_id:
            raise ApiError(400, "id is required")
        if len(raw_id) > 200:
            raise ApiError(400, "id too long")
        try:
            row = collection.resolve(raw_id)
        except ImageNotFound as e:
            raise ApiError(404, str(e)) from None
        k = _int_param(request, "k", settings.default_k, 1, settings.max_k)
        emb = _embedding(request)
        f = _filter(request)
        hits, plan = collection.neighbors_with_plan(row, embedding=emb, k=int(k or 1), where=f)
        return JSONResponse({
            "query": row,
            "embedding": emb,
            "metric": next(e["metric"] for e in collection.embedding_info() if e["name"] == emb),
            "plan": plan.to_dict(),
            "results": [_hit_json(h) for h in hits],
        })

    def facets(request: Request) -> JSONResponse:
        f = _filter(request)
        return JSONResponse(collection.facets(f))

    def image(request: Request) -> JSONResponse:
        try:
            row = collection.resolve(request.path_params["id"])
        except ImageNotFound as e:
            raise ApiError(404, str(e)) from None
        d = collection.get(row)
        d["id"] = d.pop("row_id")
        d["thumbnail_url"] = f"/api/images/{row}/thumbnail?v={version}"
        if d.get("arxiv_id"):
            d["arxiv_url"] = f"https://arxiv.org/abs/{d['arxiv_id']}" + (f"v{d['version']}" if d.get("version") else "")
        return JSONResponse(d)

    def thumbnail(request: Request) -> Response:
        try:
            row = collection.resolve(int(request.path_params["id"]))
        except (ImageNotFound, ValueError) as e:
            raise ApiError(404, str(e)) from None
        etag = f'"{version}-{row}"'
        headers = {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(collection.thumbnail(row), media_type="image/jpeg", headers=headers)

    def openapi(request: Request) -> JSONResponse:
        return JSONResponse(openapi_schema(collection, settings))

    def index_page(request: Request) -> FileResponse:
        return FileResponse(static_dir / "index.html", headers={"Cache-Control": "no-cache"})

    def about_page(request: Request) -> FileResponse:
        return FileResponse(static_dir / "about.html", headers={"Cache-Control": "no-cache"})

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
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
        Route("/api/facets", facets),
        Route("/api/images/{id:int}", image),
        Route("/api/images/{id:int}/thumbnail", thumbnail),
        Route("/api/openapi.json", openapi),
        Mount("/static", app=StaticFiles(directory=static_dir), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: server_error},
    )
    app.state.collection = collection
    app.state.settings = settings
    return app

