"""kNN queries over a collection: hits, vector search, neighbours of an image, warm-up.

Functions over any object with the :class:`Searchable` shape (a
:class:`~imagemesh.query.collection.Collection`); each takes an already evaluated
:class:`~imagemesh.query.filtering.Selection`, so a request's filter is compiled and its
mask computed once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from imagemesh.query.filtering import Selection, Where
from imagemesh.query.planner import QueryPlanner, SearchPlan
from imagemesh.store.reader import CollectionReader

__all__ = ["Hit", "Searchable", "hits", "search_vectors", "neighbors", "warm"]

#: System columns returned with every hit (besides the schema's ``hit_fields``).
_HIT_SYSTEM = ("row_id", "image_key", "width", "height", "predictions")


class Searchable(Protocol):
    """What the search functions need of a collection."""

    manifest: Any
    schema: Any

    def __len__(self) -> int: ...
    def state(self, embedding: str | None) -> Any: ...
    def take(self, rows: Sequence[int], columns: Sequence[str]) -> list[dict[str, Any]]: ...
    def resolve(self, image: int | str) -> int: ...
    def planner(self, embedding: str | None = None) -> QueryPlanner: ...
    def has_planner(self, embedding: str) -> bool: ...
    def select(self, where: Where) -> Selection: ...
    def facets(self, where: Where = None, top: int = 200) -> Any: ...

    @property
    def embeddings(self) -> list[str]: ...


@dataclass(frozen=True)
class Hit:
    """One result: row ``id``, ``distance`` under the embedding (``None`` for random
    samples), and the image's display metadata (the schema's ``hit_fields``)."""

    id: int
    distance: float | None
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "distance": self.distance}
        d.update({k: v for k, v in self.metadata.items() if k != "row_id"})
        return d


def _distance(d2: np.ndarray, metric: str) -> np.ndarray:
    """Squared L2 from an index -> the metric's distance (L2, or cosine distance on unit vectors)."""
    d2 = np.maximum(d2, 0.0)
    if metric == "cosine":
        return d2 / 2.0
    return np.sqrt(d2)


def hits(c: CollectionReader, ids: Sequence[int] | np.ndarray, dists: Sequence[float] | np.ndarray | None = None) -> list[Hit]:
    """:class:`Hit` records (row id, distance, display metadata) for row ids, in order.

    Negative ids (the ``-1`` padding of :func:`search_vectors`) are skipped, together with
    their distances. ``dists`` is in the embedding metric's units, or ``None``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if dists is not None:
        dists = np.asarray(dists)[ids >= 0]
    rows = [int(i) for i in ids if i >= 0]
    recs = c.take(rows, [*_HIT_SYSTEM, *c.schema.hit_fields])
    return [Hit(i, None if dists is None else float(dists[n]), rec) for n, (i, rec) in enumerate(zip(rows, recs))]


def search_vectors(c: Searchable, queries: np.ndarray, embedding: str | None, k: int, selection: Selection, **params: Any) -> tuple[np.ndarray, np.ndarray, SearchPlan]:
    """kNN of reduced query vectors ``float32[n, d]`` under ``embedding``.

    The embedding's :class:`~imagemesh.query.planner.QueryPlanner` chooses how (no filter
    -> the index; a small subset -> an exact scan of it; a middle-sized one -> an IVF over
    the allowed rows; a filter keeping most rows -> the index's own filtered search).
    Every query gets ``min(k, matches)`` hits.

    Returns:
        ``(distances float32[n, k] in the metric's units, row_ids int64[n, k], plan)``,
        ascending, padded with ``(inf, -1)``.

    Raises:
        KeyError (unknown embedding), ValueError (bad k or shape).
    """
    st = c.state(embedding)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not np.isfinite(np.asarray(queries, dtype=np.float32)).all():
        raise ValueError("query vectors must be finite (no NaN or infinity)")
    d2, ids, plan = c.planner(st.name).search(queries, int(k), selection.mask, key=selection.key, **params)
    return _distance(d2, st.config.metric).astype(np.float32), ids, plan


def neighbors(c: Searchable, image: int | str, embedding: str | None, k: int, selection: Selection, **params: Any) -> tuple[list[Hit], SearchPlan]:
    """Nearest neighbours of a collection image and the plan that found them.

    The query image itself comes first when it passes the filter (under ``exact`` it has
    distance 0; ties and ANN misses are resolved in its favour).

    Raises:
        ImageNotFound, KeyError (unknown embedding), ValueError (bad k).
    """
    row = c.resolve(image)
    st = c.state(embedding)
    q = np.asarray(st.vectors[row : row + 1])
    dist, ids, plan = search_vectors(c, q, st.name, k, selection, **params)
    d, i = dist[0], ids[0]
    if selection.allows(row):
        keep = i != row
        i = np.concatenate([[row], i[keep]])[: len(i)]
        d = np.concatenate([[0.0], d[keep]])[: len(d)].astype(np.float32)
    return hits(c, i, d), plan  # type: ignore[arg-type]


def warm(c: Searchable, filters: Sequence[Where] = (), embeddings: Sequence[str] | None = None, previous: Searchable | None = None) -> dict[str, float]:
    """Do the one-time work of queries ahead of them, so the first users do not wait.

    Reads the facet columns; then per embedding runs one unfiltered query (loads the index
    pages) and, per filter, one filtered query, which evaluates the filter's mask and builds
    the planner's cached structure for it. A server calls this on a new version with the old
    version's recent filters before switching to it.

    ``previous``: the version this one replaces; where an embedding's vectors are unchanged
    (same sha256 in both manifests) its planner's k-means cells are reused instead of
    recomputed (seconds at 1M vectors).

    Returns:
        Seconds spent per step (``"facets"``, ``"<embedding>"``, ``"<embedding> <filter json>"``).

    Raises:
        FilterError, KeyError: as :func:`search_vectors`.
    """
    out: dict[str, float] = {}
    t = time.perf_counter()
    c.facets()
    out["facets"] = time.perf_counter() - t
    for name in embeddings or c.embeddings:
        st = c.state(name)
        if previous is not None and name in previous.manifest.embeddings and previous.has_planner(name):
            old_sha = previous.manifest.embeddings[name]["vectors"].get("sha256")
            if old_sha and old_sha == c.manifest.embeddings[name]["vectors"].get("sha256"):
                c.planner(name).share_cells(previous.planner(name))
        q = np.asarray(st.vectors[:1], dtype=np.float32)
        t = time.perf_counter()
        search_vectors(c, q, name, 1, c.select(None))
        out[name] = time.perf_counter() - t
        for f in filters:
            sel = c.select(f)
            t = time.perf_counter()
            search_vectors(c, q, name, 1, sel)
            out[f"{name} {sel.filter.to_json() if sel.filter is not None else 'null'}"] = time.perf_counter() - t
    return out
