"""The ``Index`` interface: k-nearest-neighbour search over dense integer row ids.

One search contract for every backend (after FAISS)::

    distances, row_ids = index.search(queries, k, allowed=None)

``queries`` is ``float32[n, d]``; both outputs are ``[n, k]``; ``distances`` are
**squared Euclidean** (``float32``), ascending; missing results are padded with row id
``-1`` and distance ``+inf``. Cosine embeddings are L2-normalised before they reach an
index, so squared L2 ranks exactly as cosine distance (``d2 / 2 == 1 - cos``).

``allowed`` restricts results to a set of row ids: a boolean mask ``bool[N]`` or an
:class:`AllowedRows` (the mask, its count, and a memo where a backend keeps what it derives
from the mask, e.g. FAISS's bitmap, so a filter used again costs nothing). Backends that
can restrict natively (exact, FAISS ``IDSelectorBitmap``) do so; others inherit
:meth:`Index.search`'s over-fetch-and-retry. With ``fallback=True`` (the default) every
query gets ``min(k, allowed.sum())`` results: queries that come back short are answered by
an exact scan of the allowed rows. The query planner passes ``fallback=False`` and does
that itself, from its cached subsets.

A backend declares what it can do in :attr:`Index.capabilities` (:class:`IndexCapabilities`);
the planner reads only that, never the backend's name or private attributes.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from imagemesh.core.errors import ImagemeshError

__all__ = ["Index", "IndexCapabilities", "AllowedRows", "IndexError_", "exact_search", "pad_results"]

T = TypeVar("T")


@dataclass(frozen=True)
class IndexCapabilities:
    """What an :class:`Index` can do, for the query planner.

    Attributes:
        exact: ``search`` returns the exact ranking (so the planner never needs to build
            subsets of its own for this index).
        native_filter: ``search`` restricts to ``allowed`` inside the index (e.g. a bitmap
            selector); otherwise it over-fetches and post-filters.
    """

    exact: bool = False
    native_filter: bool = False


class AllowedRows:
    """The rows a filter allows, as :meth:`Index.search` takes them.

    Args:
        mask: ``bool[N]``.
        count: ``mask.sum()`` if known.

    :meth:`derived` memoises what a backend computes from the mask (thread-safe), so the
    query planner, which keeps one ``AllowedRows`` per recent filter, pays for it once.
    """

    def __init__(self, mask: np.ndarray, count: int | None = None) -> None:
        self.mask = np.asarray(mask, dtype=bool)
        self.count = int(np.count_nonzero(self.mask)) if count is None else int(count)
        self._memo: dict[str, Any] = {}
        self._lock = threading.Lock()

    def derived(self, key: str, make: Callable[[np.ndarray], T]) -> T:
        """``make(mask)``, computed once per ``key``."""
        with self._lock:
            if key not in self._memo:
                self._memo[key] = make(self.mask)
            return self._memo[key]


def as_allowed(allowed: "np.ndarray | AllowedRows", n: int) -> AllowedRows:
    """``allowed`` as :class:`AllowedRows` over ``n`` rows.

    Raises:
        ValueError: the mask is not ``bool[n]``.
    """
    a = allowed if isinstance(allowed, AllowedRows) else AllowedRows(allowed)
    if a.mask.shape != (n,):
        raise ValueError(f"allowed must be bool[{n}], got shape {a.mask.shape}")
    return a


class IndexError_(ImagemeshError, RuntimeError):
    """An index file is missing, truncated or does not match its manifest entry."""


def pad_results(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(inf float32[n, k], -1 int64[n, k])``."""
    return np.full((n, k), np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int, row_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force kNN by squared L2 (BLAS matrix product).

    Args:
        vectors: ``float32[m, d]`` candidate vectors.
        queries: ``float32[n, d]``.
        k: neighbours wanted.
        row_ids: ``int64[m]`` ids of ``vectors`` (default ``arange(m)``).

    Returns:
        ``(float32[n, k], int64[n, k])``, ascending distance, ties broken by row id,
        padded with ``(inf, -1)`` when ``m < k``.
    """
    n = queries.shape[0]
    m = vectors.shape[0]
    dist, ids = pad_results(n, k)
    if m == 0 or k == 0:
        return dist, ids
    if row_ids is None:
        row_ids = np.arange(m, dtype=np.int64)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    x = np.asarray(vectors, dtype=np.float32)
    d2 = (q * q).sum(1)[:, None] - 2.0 * (q @ x.T) + (x * x).sum(1)[None, :]
    np.maximum(d2, 0.0, out=d2)
    kk = min(k, m)
    if kk < m:
        part = np.argpartition(d2, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(m), (n, m))
    for i in range(n):
        cand = part[i]
        order = np.lexsort((row_ids[cand], d2[i, cand]))
        sel = cand[order]
        dist[i, :kk] = d2[i, sel]
        ids[i, :kk] = row_ids[sel]
    return dist, ids


class Index(abc.ABC):
    """A kNN index over vectors keyed by dense row ids ``0..N-1``.

    Lifecycle: ``add(row_ids, vectors)`` (any number of times) -> ``build()`` ->
    ``search(...)``; ``save(path)`` / ``load(path)``. Build-time parameters are passed
    to the constructor (e.g. Annoy ``n_trees``, a FAISS factory string); query-time
    knobs are ``search`` keyword arguments (``search_k``, ``ef_search``, ``nprobe``).
    """

    #: registry name of the backend
    backend: str = ""
    #: file name extension of :meth:`save`'s file
    file_ext: str = "idx"
    #: what :meth:`search` can do (see :class:`IndexCapabilities`)
    capabilities: IndexCapabilities = IndexCapabilities()

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)

    @abc.abstractmethod
    def add(self, row_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``float32[m, d]`` vectors with ``int64[m]`` row ids (dense, ascending, no gaps overall)."""

    @abc.abstractmethod
    def build(self) -> None:
        """Finish the index (train, build trees/graphs). After this the index is immutable."""

    @property
    @abc.abstractmethod
    def ntotal(self) -> int:
        """Number of indexed vectors ``N``."""

    @abc.abstractmethod
    def _search_unfiltered(self, queries: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        """Backend kNN without a filter; same return contract as :meth:`search`."""

    @abc.abstractmethod
    def save(self, path: Path) -> None:
        """Write the index to ``path`` (a single file)."""

    @classmethod
    @abc.abstractmethod
    def load(cls, path: Path, dim: int, params: dict[str, Any]) -> "Index":
        """Open an index written by :meth:`save`, memory-mapped where the backend allows.

        Raises:
            IndexError_: the file is missing or unreadable.
        """

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """Build parameters (stored in the manifest and passed back to :meth:`load`)."""

    def _check_add(self, row_ids: np.ndarray, vectors: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Validate an :meth:`add` call: ``float32[m, d]`` vectors with the dense row ids
        ``start .. start + m - 1``. Returns ``(int64[m] ids, float32[m, d] vectors)``.

        Raises:
            ValueError: wrong shapes, or ids that are not dense and ascending.
        """
        ids = np.asarray(row_ids, dtype=np.int64)
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != self.dim or len(ids) != len(v):
            raise ValueError(f"vectors must be float32[m, {self.dim}] with m row ids, got {v.shape} and {ids.shape}")
        if not np.array_equal(ids, np.arange(start, start + len(ids))):
            raise ValueError("row ids must be dense and ascending, continuing from the last added id")
        return ids, v

    def vectors_for(self, row_ids: np.ndarray) -> np.ndarray | None:
        """Stored vectors for ``row_ids`` if the backend keeps them, else ``None``."""
        return None

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: "np.ndarray | AllowedRows | None" = None,
        vectors: np.ndarray | None = None,
        fallback: bool = True,
        **params: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        """kNN search, optionally restricted to ``allowed`` rows.

        Args:
            queries: ``float32[n, d]``.
            k: neighbours per query (``>= 1``).
            allowed: ``bool[N]`` mask or :class:`AllowedRows` of admissible rows, or
                ``None`` for all.
            vectors: ``float32[N, d]`` (e.g. memory-mapped) used for the exact
                fallback; without it the backend's own stored vectors are used when it
                has them.
            fallback: answer queries that come back short by an exact scan of the
                allowed rows (``False``: return them short, padded).
            **params: query-time knobs of the backend.

        Returns:
            ``(float32[n, k] squared L2, int64[n, k] row ids)``, ascending, padded with
            ``(inf, -1)``; with ``fallback`` each row holds ``min(k, allowed.sum())``
            results when a source of vectors exists.

        Raises:
            ValueError: bad shapes or ``k < 1``.
        """
        queries = self._check_queries(queries, k)
        if allowed is None:
            return self._search_unfiltered(queries, k, **params)
        a = as_allowed(allowed, self.ntotal)
        d, i = self._search_overfetch(queries, k, a.mask, a.count, **params)
        return self._fill_short(queries, k, a, d, i, vectors) if fallback else (d, i)

    def _fill_short(self, queries: np.ndarray, k: int, allowed: AllowedRows, d: np.ndarray, i: np.ndarray, vectors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact scan of the allowed rows for the queries with fewer than ``min(k, allowed)`` results."""
        short = np.flatnonzero((i >= 0).sum(1) < min(k, allowed.count))
        if short.size:
            rows = np.flatnonzero(allowed.mask)
            source = np.asarray(vectors[rows]) if vectors is not None else self.vectors_for(rows)
            if source is not None:
                d[short], i[short] = exact_search(source, queries[short], k, rows)
        return d, i

    def _check_queries(self, queries: np.ndarray, k: int) -> np.ndarray:
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be float32[n, {self.dim}], got shape {q.shape}")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        return np.ascontiguousarray(q)

    def _search_overfetch(self, queries: np.ndarray, k: int, allowed: np.ndarray, n_allowed: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        """Post-filter with adaptive over-fetch (fetch ``2k / selectivity``, then 4x per
        round, until every query has ``min(k, n_allowed)`` results or all rows were fetched)."""
        want = min(k, n_allowed)
        dist, ids = pad_results(queries.shape[0], k)
        if want == 0:
            return dist, ids
        total = self.ntotal
        fetch = min(total, max(2 * k, int(np.ceil(2 * k / (n_allowed / max(total, 1))))))
        pending = np.arange(queries.shape[0])
        while pending.size:
            d_raw, i_raw = self._search_unfiltered(queries[pending], fetch, **params)
            ok = (i_raw >= 0) & allowed[np.maximum(i_raw, 0)]
            still: list[int] = []
            for row, qi in enumerate(pending):
                got = i_raw[row][ok[row]][:k]
                if got.size >= want:
                    ids[qi, : got.size] = got
                    dist[qi, : got.size] = d_raw[row][ok[row]][:k]
                else:
                    still.append(int(qi))
            pending = np.asarray(still, dtype=np.int64)
            if not pending.size or fetch >= total:
                break
            fetch = min(total, fetch * 4)
        return dist, ids
