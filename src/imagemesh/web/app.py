"""The JSON API and the bundled explorer, as a Starlette app.

A frontend is ``create_app(collection, settings) -> ASGI app``. The JSON API is the
contract any frontend may use (documented at ``/api/openapi.json``):

* ``GET /api/info`` -- size, embeddings, filterable fields, limits
* ``GET /api/random?n=&seed=&offset=&filter=&collapse=&embedding=`` -- a random sample,
  pageable (a seed fixes one permutation of the matching images; ``offset`` walks it)
* ``GET /api/neighbors?id=&embedding=&k=&filter=&collapse=`` -- kNN of an image (with the plan used)
* ``POST /api/query`` -- kNN of uploaded images and/or collection images, positives and
  negatives (multipart form; see :func:`create_app`'s ``query`` handler)
* ``GET /api/search?q=&k=&offset=&filter=`` -- figures ranked by BM25 text relevance, with snippets
* ``GET /api/concepts?positive=&negative=&embedding=&k=&filter=`` -- a classifier trained on the
  labelled figures, the collection ranked by it (stateless)
* ``GET /api/clusters?embedding=&filter=`` -- k-means clusters with label words and representatives
* ``GET /api/reused?embedding=&id=&limit=`` -- figures reused across papers, earliest paper first
* ``GET /api/papers/{arxiv_id}`` -- every figure of a paper; ``/similar?embedding=&k=&filter=``
  -- papers whose figures look like it (:mod:`imagemesh.query.papers`)
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
import threading
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from imagemesh.query.collection import Collection
from imagemesh.web import handlers as h
from imagemesh.store.reader import CollectionError
from imagemesh.web.errors import ApiError, SecurityHeaders, api_error, damaged_collection, http_error, server_error
from imagemesh.web.settings import WebSettings
from imagemesh.web.state import ServingState
from imagemesh.web.upload import UploadError

__all__ = ["create_app", "ROUTES"]

#: The route table: path, handler, methods (handlers: :mod:`imagemesh.web.handlers`).
ROUTES: list[tuple[str, object, list[str]]] = [
    ("/", h.index_page, ["GET"]),
    ("/about", h.about_page, ["GET"]),
    ("/api/info", h.info, ["GET"]),
    ("/api/random", h.random_, ["GET"]),
    ("/api/neighbors", h.neighbors, ["GET"]),
    ("/api/query", h.query, ["POST"]),
    ("/api/search", h.text_search, ["GET"]),
    ("/api/concepts", h.concept, ["GET"]),
    ("/api/clusters", h.clusters, ["GET"]),
    ("/api/reused", h.reused, ["GET"]),
    ("/api/papers/{arxiv_id:path}/similar", h.similar_papers_, ["GET"]),
    ("/api/papers/{arxiv_id:path}", h.paper, ["GET"]),
    ("/api/facets", h.facets, ["GET"]),
    ("/api/suggest", h.suggest, ["GET"]),
    ("/api/map", h.map_, ["GET"]),
    ("/api/images/{id:int}", h.image, ["GET"]),
    ("/api/images/{id:int}/thumbnail", h.thumbnail, ["GET"]),
    ("/api/images/{id:int}/image", h.full_image, ["GET"]),
    ("/api/openapi.json", h.openapi, ["GET"]),
]


def create_app(collection: Collection, settings: WebSettings | None = None) -> Starlette:
    """Build the ASGI app serving ``collection``.

    Args:
        collection: an open :class:`~imagemesh.query.collection.Collection`.
        settings: :class:`WebSettings` (limits and defaults).
    """
    state = ServingState(collection, settings or WebSettings())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = max(1, int(state.settings.worker_threads))
        if state.settings.warm_uploads:  # decoder workers and networks load while queries are served
            threading.Thread(target=state.warm_uploads, daemon=True, name="imagemesh-warm-uploads").start()
        yield
        state.close()

    routes: list[Route | Mount] = [Route(path, fn, methods=methods) for path, fn, methods in ROUTES]  # type: ignore[arg-type]
    routes.append(Mount("/static", app=StaticFiles(directory=h.STATIC), name="static"))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={ApiError: api_error, UploadError: api_error, HTTPException: http_error, CollectionError: damaged_collection, Exception: server_error},
    )
    app.state.imagemesh = state
    app.state.collection = collection
    app.state.settings = state.settings
    app.state.upload_decoders = state.decoders  # for tests and shutdown
    return app
