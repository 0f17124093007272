"""What the API handlers share for one served collection version: :class:`ServingState`.

``create_app`` makes one and puts it on ``app.state.imagemesh``; handlers read it from
``request.app.state``. It holds the collection and settings, the parameter parsers (every
bad parameter is an :class:`~imagemesh.web.errors.ApiError`, never a 500) and the result
shaping shared by the search routes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from imagemesh.core.errors import FilterError
from imagemesh.core.filters import parse_filter
from imagemesh.media.images import ImageLimits
from imagemesh.media.isolate import IsolatedDecoder, IsolationLimits
from imagemesh.query.collapse import collapse_duplicates, duplicate_threshold
from imagemesh.query.collection import Collection
from imagemesh.query.filtering import Selection
from imagemesh.query.suggest import Suggestions
from imagemesh.store.reader import ImageNotFound
from imagemesh.web.errors import ApiError
from imagemesh.web.settings import WebSettings

__all__ = ["ServingState", "parse_int", "parse_bool"]


def parse_int(name: str, raw: str | None, default: int | None, lo: int, hi: int) -> int | None:
    """An integer parameter in ``[lo, hi]`` (``default`` when absent).

    Raises:
        ApiError: 400, not an integer or out of range.
    """
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw[:40]!r}") from None
    if not lo <= v <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}")
    return v


def parse_bool(name: str, raw: str | None) -> bool:
    """A boolean parameter (``1/true/yes/on``, ``0/false/no/off``; absent = false).

    Raises:
        ApiError: 400, anything else.
    """
    if raw is None or raw == "":
        return False
    v = raw.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ApiError(400, f"{name} must be true or false, got {raw[:40]!r}")


@dataclass
class ServingState:
    """One served collection version and its per-app caches.

    Attributes:
        collection: the open collection (read-only).
        settings: limits and defaults.
        suggestions: value counts for ``/api/suggest``.
        decoders: the upload decoder worker (at most one, started by the first upload).
    """

    collection: Collection
    settings: WebSettings
    suggestions: Suggestions = field(init=False)
    metrics: dict[str, str] = field(init=False)
    upload_limits: ImageLimits = field(init=False)
    decoders: list[IsolatedDecoder] = field(default_factory=list)
    dup_thresholds: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        c, s = self.collection, self.settings
        self.suggestions = Suggestions(c.table, c.schema)
        self.metrics = {e["name"]: e["metric"] for e in c.embedding_info()}
        self.upload_limits = ImageLimits(max_file_bytes=s.max_upload_bytes, max_pixels=s.max_upload_pixels)

    @property
    def version(self) -> str:
        return self.collection.manifest.build_id

    @staticmethod
    def of(request: Request) -> "ServingState":
        return request.app.state.imagemesh  # type: ignore[no-any-return]

    def upload_decoder(self) -> IsolatedDecoder | None:
        """The isolated upload decoder (``None`` when uploads decode in process)."""
        if not self.settings.isolate_uploads:
            return None
        with self._lock:
            if not self.decoders:
                s = self.settings
                self.decoders.append(IsolatedDecoder(self.upload_limits, IsolationLimits(timeout_s=s.upload_decode_timeout_s, memory_bytes=s.upload_decode_memory_bytes)))
            return self.decoders[0]

    def close(self) -> None:
        for d in self.decoders:
            d.close()

    # ------------------------------------------------------------------ parameters

    def int_param(self, request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
        return parse_int(name, request.query_params.get(name), default, lo, hi)

    def selection(self, raw: str | None) -> Selection | None:
        """The ``filter`` parameter parsed, compiled and evaluated once (``None``: no filter).

        Raises:
            ApiError: 413 over ``max_filter_chars``; 400 invalid.
        """
        if raw is None or raw == "":
            return None
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
            self.dup_thresholds[emb] = duplicate_threshold(vecs, self.metrics[emb])
        kept, dups = collapse_duplicates(ids, vecs, self.metrics[emb], self.dup_thresholds[emb], [sha.get(i) for i in ids])
        by_id = {h.id: h for h in hits}
        out = []
        for i in kept[:k]:
            d = self.hit_json(by_id[i])
            d["duplicates"] = dups.get(i, [])
            out.append(d)
        return {"results": out, "collapsed": len(ids) - len(kept), "duplicate_threshold": self.dup_thresholds.get(emb)}
