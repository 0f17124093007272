"""What the API handlers share for one served collection version: :class:`ServingState`.

``create_app`` makes one and puts it on ``app.state.imagemesh``; handlers read it from
``request.app.state``. It holds the collection and settings, the parameter parsers (every
bad parameter is an :class:`~imagemesh.web.errors.ApiError`, never a 500) and the result
shaping shared by the search routes.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import numpy as np
from pydantic import BaseModel
from starlette.requests import Request

from imagemesh.core.errors import FilterError
from imagemesh.core.filters import parse_filter
from imagemesh.media.images import ImageLimits
from imagemesh.media.isolate import IsolatedDecoder, IsolationLimits
from imagemesh.query.collapse import calibrated_threshold, collapse_duplicates, distance_to_nearest_other
from imagemesh.query.collection import Collection
from imagemesh.query.filtering import Selection
from imagemesh.query.suggest import Suggestions
from imagemesh.query.reuse import ReuseCache
from imagemesh.query.text_rank import TextRanker
from imagemesh.store.reader import CollectionError, ImageNotFound
from imagemesh.web.errors import ApiError
from imagemesh.web.params import RequestModels, request_models, validate_params
from imagemesh.web.settings import WebSettings

__all__ = ["ServingState"]

log = logging.getLogger("imagemesh.web")
T = TypeVar("T")


@dataclass
class ServingState:
    """One served collection version and its per-app caches.

    Attributes:
        collection: the open collection (read-only).
        settings: limits and defaults.
        suggestions: value counts for ``/api/suggest``.
        decoders: the upload decoder workers (at most ``settings.upload_workers``, started
            on first need or by :meth:`warm_uploads`).

    Uploads run on their own thread pool (``settings.upload_workers`` threads) behind an
    admission gate of ``upload_workers + upload_queue`` slots: one more upload is a 503
    with ``Retry-After`` at once, and query requests never wait behind uploads.
    """

    collection: Collection
    settings: WebSettings
    suggestions: Suggestions = field(init=False)
    metrics: dict[str, str] = field(init=False)
    upload_limits: ImageLimits = field(init=False)
    models: RequestModels = field(init=False)
    text: TextRanker = field(init=False)
    reuse: ReuseCache = field(default_factory=ReuseCache)
    decoders: list[IsolatedDecoder] = field(default_factory=list)
    dup_thresholds: dict[str, float] = field(default_factory=dict)
    uploads_ready: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _free_decoders: "queue.Queue[IsolatedDecoder]" = field(default_factory=queue.Queue)
    _upload_pool: ThreadPoolExecutor | None = None
    _upload_slots: threading.BoundedSemaphore = field(init=False)
    #: set once the media table's files have been hashed (see :meth:`check_media`)
    media_checked: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        c, s = self.collection, self.settings
        self.suggestions = Suggestions(c.table, c.schema)
        self.metrics = {e["name"]: e["metric"] for e in c.embedding_info()}
        self.models = request_models(s, c.embeddings, self.suggestions.fields)
        self.text = TextRanker(c)
        self.upload_limits = ImageLimits(max_file_bytes=s.max_upload_bytes, max_pixels=s.max_upload_pixels)
        self._upload_slots = threading.BoundedSemaphore(max(1, s.upload_workers) + max(0, s.upload_queue))
        threading.Thread(target=self.check_media, daemon=True, name="imagemesh-check-media").start()

    def check_media(self) -> None:
        """Hash the media table's files (thumbnails and images, the bulk of a collection)
        while queries are served; a damaged file makes the image routes answer 503 naming
        it (the metadata table was checked when the collection was opened)."""
        try:
            if self.collection.verify_checksums:
                self.collection.check_table_files(("media",))
        except CollectionError as e:
            log.error("%s", e)
        finally:
            self.media_checked.set()

    @property
    def version(self) -> str:
        return self.collection.manifest.build_id

    @staticmethod
    def of(request: Request) -> "ServingState":
        state: ServingState = request.app.state.imagemesh
        return state

    def _new_decoder(self) -> IsolatedDecoder:
        s = self.settings
        d = IsolatedDecoder(self.upload_limits, IsolationLimits(timeout_s=s.upload_decode_timeout_s, memory_bytes=s.upload_decode_memory_bytes))
        with self._lock:
            self.decoders.append(d)
        return d

    def _take_decoder(self) -> IsolatedDecoder:
        try:
            return self._free_decoders.get_nowait()
        except queue.Empty:
            return self._new_decoder()

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._upload_pool is None:
                self._upload_pool = ThreadPoolExecutor(max_workers=max(1, self.settings.upload_workers), thread_name_prefix="imagemesh-upload")
            return self._upload_pool

    async def run_upload(self, work: Callable[[IsolatedDecoder | None], T]) -> T:
        """Run ``work(decoder)`` (decode + embed uploads) on the upload pool, with a decoder
        worker of its own (``None`` when uploads decode in process).

        Raises:
            ApiError: 503 with ``Retry-After`` when every upload slot is taken.
        """
        if not self._upload_slots.acquire(blocking=False):
            raise ApiError(503, "too many uploads in progress; retry in a moment", {"Retry-After": "2"})

        def job() -> T:
            dec = self._take_decoder() if self.settings.isolate_uploads else None
            try:
                return work(dec)
            finally:
                if dec is not None:
                    self._free_decoders.put(dec)

        try:
            return await asyncio.wrap_future(self._pool().submit(job))
        finally:
            self._upload_slots.release()

    def warm_uploads(self) -> None:
        """Start the decoder workers (one decode of a tiny image each) and load the query
        embedders of every embedding; sets :attr:`uploads_ready`. Errors are logged, never raised."""
        import io

        from PIL import Image

        try:
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (255, 255, 255)).save(buf, "PNG")
            if self.settings.isolate_uploads:
                for _ in range(max(1, self.settings.upload_workers) - self._free_decoders.qsize()):
                    d = self._new_decoder()
                    d.canonical_bytes(buf.getvalue())
                    self._free_decoders.put(d)
            for name in self.collection.embeddings:
                try:
                    self.collection.query_embedder(name)
                except Exception as e:  # a network missing here: uploads to it get a 409 later
                    log.warning("upload embedder %s not loaded: %s", name, type(e).__name__)
            self.uploads_ready = True
        except Exception as e:
            log.warning("warming the upload path failed: %s", type(e).__name__)

    def close(self) -> None:
        if self._upload_pool is not None:
            self._upload_pool.shutdown(wait=False, cancel_futures=True)
        for d in self.decoders:
            d.close()

    # ------------------------------------------------------------------ parameters

    def params(self, request: Request, model: type[BaseModel]) -> Any:
        """The query string validated by ``model`` (one of :attr:`models`).

        Raises:
            ApiError: 400 naming the bad parameter.
        """
        return validate_params(model, request.query_params.multi_items())

    def selection(self, raw: str | None) -> Selection | None:
        """The ``filter`` parameter parsed, compiled and evaluated once (``None``: no filter).

        Raises:
            ApiError: 413 over ``max_filter_chars``; 400 invalid.
        """
        if raw is None:
            return None
        if not raw.strip():
            raise ApiError(400, "filter is empty; leave the parameter out for no filter")
        if len(raw) > self.settings.max_filter_chars:
            raise ApiError(413, f"filter longer than {self.settings.max_filter_chars} characters")
        try:
            return self.collection.select(parse_filter(raw))
        except FilterError as e:
            raise ApiError(400, f"invalid filter: {e}") from None

    def embedding(self, raw: str | None) -> str:
        """The ``embedding`` parameter (default: the collection's first).

        Raises:
            ApiError: 400, unknown embedding.
        """
        c = self.collection
        name = raw or c.embeddings[0]
        if name not in c.embeddings:
            raise ApiError(400, f"unknown embedding {name[:60]!r}; available: {', '.join(c.embeddings)}")
        return name

    def resolve(self, raw: str) -> int:
        """Row id of an image parameter (row id, image key or paper id).

        Raises:
            ApiError: 400 too long; 404 no such image.
        """
        if len(raw) > 200:
            raise ApiError(400, "id too long")
        try:
            return self.collection.resolve(raw)
        except ImageNotFound as e:
            raise ApiError(404, str(e)) from None

    # ------------------------------------------------------------------ results

    def hit_json(self, h: Any) -> dict[str, Any]:
        d = h.to_dict()
        d["thumbnail_url"] = f"/api/images/{h.id}/thumbnail?v={self.version}"
        return d

    def calibrate_collapse(self, emb: str) -> float:
        """The near-duplicate threshold of ``emb``
        (:func:`~imagemesh.query.collapse.calibrated_threshold`): 1,000 fixed sample rows,
        their nearest figure of another paper (``arxiv_id``; without one, any other figure)
        found with the collection's own index. Computed once per embedding and version."""
        c = self.collection
        vecs = c.vectors(emb)
        groups = None
        if "arxiv_id" in c.table.schema.names:
            groups = c.columns(["arxiv_id"]).sort_by("row_id")["arxiv_id"].to_pylist()

        def knn(q: np.ndarray, k: int) -> np.ndarray:
            return c.search_vectors(q, emb, k)[1]

        return calibrated_threshold(vecs, self.metrics[emb], distance_to_nearest_other(vecs, self.metrics[emb], knn, groups))

    def fetch_k(self, k: int, collapse: bool) -> int:
        """Hits to fetch for ``k`` results: with collapse on, look further down the list so
        that ``k`` distinct hits remain."""
        return min(len(self.collection), k * 3 + 20) if collapse else k

    def results(self, hits: list[Any], emb: str, k: int, collapse: bool) -> dict[str, Any]:
        """``{"results", "collapsed"[, "duplicate_threshold"]}`` of ranked ``hits``; with
        ``collapse`` near-duplicates are folded (:func:`~imagemesh.query.collapse.collapse_duplicates`)
        and each kept hit lists them as ``duplicates``."""
        if not collapse:
            return {"results": [self.hit_json(h) for h in hits[:k]], "collapsed": 0}
        ids = [h.id for h in hits]
        if not ids:
            return {"results": [], "collapsed": 0, "duplicate_threshold": self.dup_thresholds.get(emb)}
        c = self.collection
        sha = {r["row_id"]: r["content_sha256"] for r in c.take(ids, ["content_sha256"])}
        vecs = c.vectors(emb)
        if emb not in self.dup_thresholds:
            self.dup_thresholds[emb] = self.calibrate_collapse(emb)
        kept, dups = collapse_duplicates(ids, vecs, self.metrics[emb], self.dup_thresholds[emb], [sha.get(i) for i in ids])
        by_id = {h.id: h for h in hits}
        out = []
        for i in kept[:k]:
            d = self.hit_json(by_id[i])
            d["duplicates"] = dups.get(i, [])
            out.append(d)
        return {"results": out, "collapsed": len(ids) - len(kept), "duplicate_threshold": self.dup_thresholds.get(emb)}
