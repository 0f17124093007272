"""The filtered-kNN query planner: exact in count, fast at every selectivity.

For one query batch and one filter (a ``bool[N]`` mask of allowed rows) the planner picks
one of four strategies and reports it as a :class:`SearchPlan`:

``unfiltered``
    no filter, or a filter that keeps every row: the backend index as is.
``exact-allowed``
    at most ``exact_max_rows`` rows match (or the backend is exact): an exact scan of
    the allowed vectors, gathered once per filter and cached (a FAISS flat index over
    the subset; a single query runs FAISS's SIMD loop, a batch its BLAS path). The
    result is the exact ranking.
``ivf-allowed``
    a middle-sized subset: the allowed vectors, gathered once per filter, are put in
    an IVF whose lists are the planner's k-means cells *restricted to the cells that
    hold allowed rows*. A query probes the nearest non-empty cells only, so a filter
    made of a few whole clusters (where graph indices find nothing nearby) costs as
    little as a random one. ``nprobe`` grows as the subset thins out, so that about
    ``ivf_scan_rows`` allowed rows are scanned per query. The cells (k-means over all
    vectors, ``nlist ~ sqrt(N)``) are computed once per embedding, on first need.
``index-filtered``
    a filter keeping at least ``index_min_selectivity`` of the rows: the backend index's
    own filtered search, ``Index.search(q, k, allowed=AllowedRows, fallback=False)``
    (FAISS restricts natively with a bitmap and widens ``efSearch`` / ``nprobe``; Annoy and
    any backend without native filtering over-fetch). The planner sees the backend only
    through the :class:`~imagemesh.core.index.Index` interface and its
    :class:`~imagemesh.core.index.IndexCapabilities` (``exact``: no subsets needed).

Whatever the strategy, a query that comes back with fewer than ``min(k, matches)``
results is answered again by an exact scan of the allowed rows (``plan.fallbacks``
counts them), so every query gets exactly ``min(k, matches)`` results.

Why not one strategy: measured on 1M x 128 on one thread (see ``benchmarks/``), a FAISS
selector on a flat index scans all rows without BLAS, ``IDSelectorArray`` with HNSW is
linear per check, HNSW with a bitmap loses recall below ~10 % and fails on correlated
filters, post-filtering leaves slots empty, and gathering a subset per query costs ten
times the scan itself -- hence the per-filter cache.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imagemesh.core.index import AllowedRows, Index, exact_search, pad_results

__all__ = ["SearchPlan", "PlannerConfig", "QueryPlanner"]


def _faiss() -> Any:
    """faiss, imported on first use (``import imagemesh`` stays light); typed as Any because
    its bundled stubs lack the SWIG keyword arguments (``SearchParametersIVF(nprobe=)``)."""
    import faiss

    return faiss


@dataclass(frozen=True)
class SearchPlan:
    """How a filtered kNN query was answered (returned for debugging and benchmarks).

    Attributes:
        strategy: ``unfiltered`` | ``exact-allowed`` | ``ivf-allowed`` | ``index-filtered``.
        n_allowed: rows matching the filter.
        n_total: rows in the collection.
        backend: what answered (``exact``, ``planner-ivf`` or the index backend).
        selectivity: ``n_allowed / n_total``.
        params: query-time knobs used (``nprobe``, ``ef_search``, ...).
        fallbacks: queries that came back short and were answered by an exact scan.
        cached: the gathered subset of this filter was already cached.
    """

    strategy: str
    n_allowed: int
    n_total: int
    backend: str
    selectivity: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    fallbacks: int = 0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "n_allowed": self.n_allowed,
            "n_total": self.n_total,
            "backend": self.backend,
            "selectivity": self.selectivity,
            "params": dict(self.params),
            "fallbacks": self.fallbacks,
            "cached": self.cached,
        }


@dataclass(frozen=True)
class PlannerConfig:
    """Thresholds of the planner (defaults measured at 100k and 1M x 128; see README's Benchmark).

    Attributes:
        exact_max_rows: subsets up to this size are scanned exactly.
        index_min_selectivity: filters keeping at least this fraction use the backend
            index with the filter (selector / over-fetch).
        ivf_scan_rows: allowed rows an ``ivf-allowed`` query aims to scan.
        ivf_min_nprobe: lower bound of ``nprobe`` for ``ivf-allowed``.
        ivf_max_codes: most allowed rows one ``ivf-allowed`` query scans (FAISS
            ``SearchParametersIVF.max_codes``; 0: no cap). ``nprobe`` comes from the *average*
            cell size, but queries land in dense cells: at 1M x 128 and 10 % selectivity a
            query scanned ~9,790 rows for a target of 2,048 (issue 14); the cap stops the scan
            at the nearest cells' rows.
        nlist: k-means cells for ``ivf-allowed`` (default ``sqrt(N)``, 16..4096).
        cache_bytes: memory budget of the cached subsets (LRU).
        kmeans_iter, kmeans_points_per_cell, seed: k-means training.
    """

    exact_max_rows: int = 6_000
    index_min_selectivity: float = 0.5
    ivf_scan_rows: int = 2_048
    ivf_min_nprobe: int = 8
    ivf_max_codes: int = 4_096
    nlist: int | None = None
    cache_bytes: int = 1 << 30
    kmeans_iter: int = 10
    kmeans_points_per_cell: int = 64
    seed: int = 1234


class _Subset:
    """The allowed rows of one filter and a FAISS index over their vectors."""

    def __init__(self, rows: np.ndarray, index: Any, kind: str, keep: list[Any], nbytes: int) -> None:
        self.rows = rows  # int64[m], ascending
        self.index = index  # faiss.IndexFlatL2 (kind "flat") or IndexIVFFlat with ids (kind "ivf")
        self.kind = kind
        self.keep = keep  # objects the FAISS index points into (quantizer)
        self.nbytes = nbytes


def _sort_rows(d: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by (distance, row id); padding (inf, -1) last."""
    key_i = np.where(i < 0, np.iinfo(np.int64).max, i)
    order = np.lexsort((key_i, d), axis=-1)
    return np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1)


class QueryPlanner:
    """Plans and runs filtered kNN over one embedding's vectors and index.

    Args:
        index: the embedding's :class:`~imagemesh.core.index.Index`.
        vectors: ``float32[N, d]`` (memory-mapped is fine), row ``i`` = row id ``i``.
        backend: registry name of the index backend, reported in :class:`SearchPlan` only.
        config: :class:`PlannerConfig`.

    Thread-safe: the caches are guarded by a lock; FAISS searches on shared indices
    take per-call parameters and do not mutate them.
    """

    def __init__(self, index: Index, vectors: np.ndarray, backend: str, config: PlannerConfig | None = None) -> None:
        self.index = index
        self.vectors = vectors
        self.backend = backend
        self.config = config or PlannerConfig()
        self.n, self.dim = int(vectors.shape[0]), int(vectors.shape[1])
        self._lock = threading.RLock()
        self._cache: OrderedDict[tuple[str, str], _Subset] = OrderedDict()
        self._cache_used = 0
        self._allowed: OrderedDict[str, AllowedRows] = OrderedDict()  # filter key -> rows (+ backend memo)
        self._centroids: np.ndarray | None = None
        self._assign: np.ndarray | None = None
        self.exact_backend = bool(index.capabilities.exact)

    # ------------------------------------------------------------------ policy

    def choose(self, n_allowed: int) -> str:
        """The strategy for a filter keeping ``n_allowed`` of ``N`` rows."""
        if n_allowed >= self.n:
            return "unfiltered"
        if self.exact_backend or n_allowed <= self.config.exact_max_rows:
            return "exact-allowed"
        if n_allowed / max(self.n, 1) >= self.config.index_min_selectivity:
            return "index-filtered"
        return "ivf-allowed"

    # ------------------------------------------------------------------ search

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        key: str | None = None,
        strategy: str | None = None,
        **params: Any,
    ) -> tuple[np.ndarray, np.ndarray, SearchPlan]:
        """kNN of ``float32[n, d]`` queries among the ``allowed`` rows.

        Args:
            queries: ``float32[n, d]``.
            k: neighbours wanted (``>= 1``).
            allowed: ``bool[N]`` mask, or ``None`` for every row.
            key: a stable name of the filter (e.g. its compiled predicate) for the
                per-filter cache; default: a hash of the mask.
            strategy: force a strategy (benchmarks, tests); default: :meth:`choose`.
            **params: query-time knobs of the backend index (``ef_search``, ``nprobe``,
                ``search_k``) for the ``unfiltered`` / ``index-filtered`` paths.

        Returns:
            ``(squared L2 float32[n, k], row ids int64[n, k], plan)``, ascending by
            (distance, row id), each row holding ``min(k, matches)`` results, padded
            with ``(inf, -1)``.

        Raises:
            ValueError: bad shapes, ``k < 1`` or an unknown strategy.
        """
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be float32[n, {self.dim}], got shape {q.shape}")
        rows_allowed: AllowedRows | None = None
        if allowed is None:
            n_allowed = self.n
        else:
            allowed = np.asarray(allowed, dtype=bool)
            if allowed.shape != (self.n,):
                raise ValueError(f"allowed must be bool[{self.n}], got shape {allowed.shape}")
            if key is None:
                key = "mask:" + hashlib.blake2b(np.packbits(allowed).tobytes(), digest_size=16).hexdigest()
            rows_allowed = self._allowed_rows(key, allowed)
            n_allowed = rows_allowed.count
        chosen = strategy or self.choose(n_allowed)
        sel = n_allowed / max(self.n, 1)
        if chosen == "unfiltered" or allowed is None:
            if allowed is not None and n_allowed < self.n:
                raise ValueError("strategy 'unfiltered' needs a filter that keeps every row")
            d, i = self.index.search(q, k, **params)
            # ANN indices can come back short (an IVF probing few lists): exact scan for those queries
            short = np.flatnonzero((i >= 0).sum(1) < min(k, self.n))
            if short.size:
                d[short], i[short] = exact_search(np.asarray(self.vectors), q[short], k)
            return (*_sort_rows(d, i), SearchPlan("unfiltered", n_allowed, self.n, self.backend, sel, dict(params), int(short.size)))
        if n_allowed == 0:
            d, i = pad_results(q.shape[0], k)
            return d, i, SearchPlan("exact-allowed", 0, self.n, "exact", 0.0)
        assert key is not None and rows_allowed is not None
        want = min(k, n_allowed)
        if chosen == "exact-allowed":
            sub, cached = self._subset(key, allowed, "flat")
            d, i = self._search_subset(sub, q, k)
            plan = SearchPlan("exact-allowed", n_allowed, self.n, "exact", sel, {}, 0, cached)
        elif chosen == "ivf-allowed":
            sub, cached = self._subset(key, allowed, "ivf")
            nlist = int(sub.index.nlist)
            nprobe = int(min(nlist, max(self.config.ivf_min_nprobe, math.ceil(self.config.ivf_scan_rows * nlist / n_allowed))))
            cap = int(self.config.ivf_max_codes)
            d, i = self._search_subset(sub, q, k, nprobe, cap)
            short = np.flatnonzero((i >= 0).sum(1) < want)
            if short.size:  # exhaustive over the subset: exact for those queries
                d[short], i[short] = self._search_subset(sub, q[short], k, nlist)
            plan = SearchPlan("ivf-allowed", n_allowed, self.n, "planner-ivf", sel, {"nprobe": nprobe, "nlist": nlist, "max_codes": cap}, int(short.size), cached)
        elif chosen == "index-filtered":
            d, i = self.index.search(q, k, allowed=rows_allowed, fallback=False, **params)
            used = dict(params)
            short = np.flatnonzero((i >= 0).sum(1) < want)
            if short.size:
                sub, _ = self._subset(key, allowed, "flat")
                d[short], i[short] = self._search_subset(sub, q[short], k)
            plan = SearchPlan("index-filtered", n_allowed, self.n, self.backend, sel, used, int(short.size))
        else:
            raise ValueError(f"unknown strategy {chosen!r}")
        return (*_sort_rows(d, i), plan)

    def _search_subset(self, sub: _Subset, q: np.ndarray, k: int, nprobe: int | None = None, max_codes: int = 0) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        params = None
        if sub.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=int(nprobe or 1))
            if max_codes > 0:
                params.max_codes = int(max_codes)
        d, i = sub.index.search(q, k, params=params)
        i = i.astype(np.int64)
        if sub.kind == "flat":  # local positions -> row ids
            i = np.where(i >= 0, sub.rows[np.maximum(i, 0)], -1)
        d = d.astype(np.float32)
        d[i < 0] = np.inf
        return d, i

    # ------------------------------------------------------------------ caches

    def cache_info(self) -> dict[str, Any]:
        """Cached subsets and their memory."""
        with self._lock:
            return {"entries": len(self._cache), "bytes": self._cache_used, "kmeans": self._centroids is not None}

    def _allowed_rows(self, key: str, allowed: np.ndarray) -> AllowedRows:
        """The :class:`AllowedRows` of a filter (count and backend memo), kept for recent filters."""
        with self._lock:
            hit = self._allowed.get(key)
            if hit is not None:
                self._allowed.move_to_end(key)
                return hit
            rows = self._allowed[key] = AllowedRows(allowed)
            if len(self._allowed) > 16:
                self._allowed.popitem(last=False)
            return rows

    def _subset(self, key: str, allowed: np.ndarray, kind: str) -> tuple[_Subset, bool]:
        ck = (key, kind)
        with self._lock:
            hit = self._cache.get(ck)
            if hit is not None:
                self._cache.move_to_end(ck)
                return hit, True
        sub = self._build_subset(allowed, kind)
        with self._lock:
            if ck not in self._cache:
                self._cache[ck] = sub
                self._cache_used += sub.nbytes
                while self._cache_used > self.config.cache_bytes and len(self._cache) > 1:
                    _, old = self._cache.popitem(last=False)
                    self._cache_used -= old.nbytes
            return self._cache[ck], False

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((rows.size, self.dim), dtype=np.float32)
        step = 262_144
        for s in range(0, rows.size, step):
            out[s : s + step] = self.vectors[rows[s : s + step]]
        return out

    def _build_subset(self, allowed: np.ndarray, kind: str) -> _Subset:
        faiss = _faiss()

        rows = np.flatnonzero(allowed).astype(np.int64)
        xs = self._gather(rows)
        if kind == "flat":
            flat = faiss.IndexFlatL2(self.dim)
            flat.add(xs)
            return _Subset(rows, flat, "flat", [], xs.nbytes)
        centroids, assign = self._kmeans()
        cells = assign[rows]
        used = np.unique(cells)
        remap = np.full(centroids.shape[0], -1, dtype=np.int64)
        remap[used] = np.arange(used.size)
        quantizer = faiss.IndexFlatL2(self.dim)
        quantizer.add(np.ascontiguousarray(centroids[used]))
        idx = faiss.IndexIVFFlat(quantizer, self.dim, int(used.size))
        idx.is_trained = True
        lists = np.ascontiguousarray(remap[cells])
        idx.add_core(int(rows.size), faiss.swig_ptr(xs), faiss.swig_ptr(rows), faiss.swig_ptr(lists))
        return _Subset(rows, idx, "ivf", [quantizer], xs.nbytes + rows.nbytes)

    def share_cells(self, other: "QueryPlanner") -> bool:
        """Reuse ``other``'s k-means cells (centroids and row assignment) if it has them
        and holds the same vectors (the caller checks content, e.g. by the manifest's
        sha256); saves the k-means of a new version with unchanged vectors. Returns
        whether the cells were taken."""
        with other._lock:
            cells = (other._centroids, other._assign)
        if cells[0] is None or cells[1] is None or other.n != self.n or other.dim != self.dim or other.config.nlist != self.config.nlist:
            return False
        with self._lock:
            if self._centroids is None:
                self._centroids, self._assign = cells
        return True

    def nlist(self) -> int:
        if self.config.nlist:
            return int(max(1, min(self.config.nlist, self.n)))
        return int(min(4096, max(16, round(math.sqrt(self.n))))) if self.n >= 1024 else max(1, self.n // 16)

    def _kmeans(self) -> tuple[np.ndarray, np.ndarray]:
        """k-means cells of all vectors (computed once, on first need)."""
        with self._lock:
            if self._centroids is not None and self._assign is not None:
                return self._centroids, self._assign
            faiss = _faiss()
            nlist = self.nlist()
            rng = np.random.default_rng(self.config.seed)
            m = min(self.n, nlist * self.config.kmeans_points_per_cell)
            sample = np.sort(rng.choice(self.n, size=m, replace=False)) if m < self.n else np.arange(self.n)
            xs = self._gather(sample)
            km = faiss.Kmeans(self.dim, nlist, niter=self.config.kmeans_iter, seed=self.config.seed, max_points_per_centroid=self.config.kmeans_points_per_cell, verbose=False)
            km.train(xs)
            centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
            q = faiss.IndexFlatL2(self.dim)
            q.add(centroids)
            assign = np.empty(self.n, dtype=np.int64)
            step = 65_536
            for s in range(0, self.n, step):
                block = np.ascontiguousarray(self.vectors[s : s + step], dtype=np.float32)
                assign[s : s + block.shape[0]] = q.search(block, 1)[1][:, 0]
            self._centroids, self._assign = centroids, assign
            return centroids, assign
