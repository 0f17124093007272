"""Filters evaluated to row masks, once per request: :class:`Selection` and :class:`FilterEvaluator`.

A request's filter is parsed, validated against the collection's schema and evaluated **once**
into a :class:`Selection` (the filter, its canonical key, its ``bool[N]`` mask and count),
which every later step (planner, sampling, facets, the query-image check) reuses.

Filters are compiled to escaped LanceDB predicates and evaluated by LanceDB; ``keyword``
leaves are answered by the full-text index of ``search_text``
(:mod:`imagemesh.core.text_search`) and ``cluster`` leaves by the collection's clustering of
that embedding (:mod:`imagemesh.query.clusters`), and combined with the rest by mask algebra
(``&``, ``|``, ``~``). The masks of recent filters are cached (LRU).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from imagemesh.core.errors import FilterError
from imagemesh.core.filter_sql import sql_string, to_lance_predicate
from imagemesh.core.filters import And, InCluster, Keyword, MetadataFilter, Not, Or, from_dict, parse_filter
from imagemesh.core.text_search import FTS_COLUMN, fts_query_text, keyword_predicate
from imagemesh.query.clusters import Clustering
from imagemesh.store.reader import CollectionReader

__all__ = ["Selection", "FilterEvaluator", "Where", "coerce_filter"]

@dataclass(frozen=True)
class Selection:
    """The rows a filter keeps, evaluated once.

    Attributes:
        filter: the parsed filter (``None``: no filter).
        key: its compiled predicate (a stable cache key; a ``cluster`` leaf is written
            ``cluster('<embedding>', [ids])``), ``None`` without a filter.
        mask: read-only ``bool[N]`` of matching rows, ``None`` without a filter.
        n_allowed: matching rows (``N`` without a filter).
    """

    filter: MetadataFilter | None
    key: str | None
    mask: np.ndarray | None
    n_allowed: int

    def rows(self, n: int) -> np.ndarray:
        """Matching row ids, ascending (``int64``)."""
        return np.arange(n, dtype=np.int64) if self.mask is None else np.flatnonzero(self.mask).astype(np.int64)

    def allows(self, row: int) -> bool:
        return self.mask is None or bool(self.mask[row])


#: What query methods accept as a filter: a filter, its JSON form (dict), JSON text, a
#: :class:`Selection` already evaluated, or ``None``.
Where = MetadataFilter | dict[str, Any] | str | Selection | None


def coerce_filter(where: Where) -> MetadataFilter | None:
    """A filter from any accepted form.

    Raises:
        FilterError: malformed.
    """
    if where is None or isinstance(where, MetadataFilter):
        return where
    if isinstance(where, str):
        return parse_filter(where)
    return from_dict(where)


def _has_leaf(f: MetadataFilter, kinds: tuple[type, ...] = (Keyword, InCluster)) -> bool:
    """Whether ``f`` has a leaf of ``kinds`` (by default: leaves LanceDB's SQL does not answer)."""
    if isinstance(f, kinds):
        return True
    if isinstance(f, (And, Or)):
        return any(_has_leaf(x, kinds) for x in f.filters)
    if isinstance(f, Not):
        return _has_leaf(f.filter, kinds)
    return False


class FilterEvaluator:
    """Evaluates filters over one collection version, with an LRU cache of masks.

    Args:
        reader: the open collection.
        cache_size: masks kept (one ``bool[N]`` each, 1 MB per 1M images).
        clustering: the clustering of an embedding (by name), for ``cluster`` filters;
            without it they are refused.

    Thread-safe (the web server queries from a thread pool).
    """

    def __init__(self, reader: CollectionReader, cache_size: int = 64, clustering: Callable[[str], Clustering] | None = None) -> None:
        self.reader = reader
        self.clustering = clustering
        self.n = len(reader)
        self._cache: OrderedDict[str, tuple[MetadataFilter, np.ndarray, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._size = int(cache_size)

    def select(self, where: Where) -> Selection:
        """Parse, validate and evaluate ``where``.

        Raises:
            FilterError: invalid filter (unknown field, wrong value type, ...), or LanceDB
                could not evaluate it.
        """
        if isinstance(where, Selection):
            return where
        f = coerce_filter(where)
        pred = self._key(f)  # also validates; the cache key
        if f is None or pred is None:
            return Selection(None, None, None, self.n)
        with self._lock:
            hit = self._cache.get(pred)
            if hit is not None:
                self._cache.move_to_end(pred)
                return Selection(hit[0], pred, hit[1], hit[2])
        mask = self._mask(f)
        mask.setflags(write=False)
        count = int(np.count_nonzero(mask))
        with self._lock:
            self._cache[pred] = (f, mask, count)
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return Selection(f, pred, mask, count)

    def recent(self, n: int = 16) -> list[MetadataFilter]:
        """The ``n`` most recently used filters, newest first."""
        with self._lock:
            return [f for f, _, _ in reversed(self._cache.values())][: max(0, int(n))]

    def _key(self, f: MetadataFilter | None) -> str | None:
        """The compiled predicate of ``f``; a ``cluster`` leaf (no SQL form) is written
        ``cluster('<embedding>', [ids])`` after its ids are checked against the clustering."""
        if f is None or not _has_leaf(f, (InCluster,)):
            return to_lance_predicate(f, self.reader.schema)
        if isinstance(f, InCluster):
            self._cluster_of(f)
            return f"cluster({sql_string(f.embedding)}, {sorted(set(f.ids))})"
        if isinstance(f, Not):
            return f"(NOT {self._key(f.filter)})"
        if isinstance(f, (And, Or)):
            if not f.filters:
                return "true" if isinstance(f, And) else "false"
            return "(" + f" {type(f).__name__.upper()} ".join(str(self._key(s)) for s in f.filters) + ")"
        raise FilterError(f"cannot evaluate filter node {type(f).__name__}")

    def _cluster_of(self, f: InCluster) -> Clustering:
        """The clustering ``f`` selects from, after checking its embedding and ids.

        Raises:
            FilterError: no clusters here, unknown embedding, or a cluster id out of range.
        """
        names = self.reader.embeddings
        if self.clustering is None:
            raise FilterError("cluster filters need a collection with clusters")
        if f.embedding not in names:
            raise FilterError(f"cluster: unknown embedding {f.embedding!r}; this collection has: {', '.join(names) or '(none)'}")
        c = self.clustering(f.embedding)
        bad = [i for i in f.ids if not 0 <= i < c.k]
        if bad:
            have = f"ids 0-{c.k - 1}" if c.k else "no clusters"
            raise FilterError(f"cluster: no cluster {bad[0]} under embedding {f.embedding!r} (it has {c.k} clusters: {have})")
        return c

    def _mask(self, f: MetadataFilter) -> np.ndarray:
        if not _has_leaf(f):
            return self._rows_to_mask(self.reader.table.search().where(to_lance_predicate(f, self.reader.schema)))
        if isinstance(f, Keyword):
            return self._keyword_mask(f.text)
        if isinstance(f, InCluster):
            return np.asarray(self._cluster_of(f).mask(f.ids), dtype=bool)
        if isinstance(f, Not):
            return ~self._mask(f.filter)
        if isinstance(f, (And, Or)):
            op = np.logical_and if isinstance(f, And) else np.logical_or
            out = np.full(self.n, isinstance(f, And))
            for sub in f.filters:
                out = op(out, self._mask(sub))
            return out
        raise FilterError(f"cannot evaluate filter node {type(f).__name__}")

    def _keyword_mask(self, text: str) -> np.ndarray:
        q = fts_query_text(text)
        if q is None:
            return np.zeros(self.n, dtype=bool)
        if not self.reader.has_fts:
            return self._rows_to_mask(self.reader.table.search().where(keyword_predicate(text)))
        from lancedb.query import FullTextOperator, MatchQuery

        query = MatchQuery(q, FTS_COLUMN, operator=FullTextOperator.AND)
        # the limit must cover every match: a filter is a set, not a top-k of BM25 scores
        return self._rows_to_mask(self.reader.table.search(query, query_type="fts").select(["row_id", "_score"]), fts=True)

    def _rows_to_mask(self, query: Any, fts: bool = False) -> np.ndarray:
        try:
            q = query.limit(max(self.n, 1)) if fts else query.select(["row_id"]).limit(None)
            t = q.to_arrow()
        except (ValueError, RuntimeError, OSError) as e:  # LanceDB reports SQL errors as ValueError/RuntimeError
            raise FilterError(f"the filter could not be evaluated: {e}") from e
        mask = np.zeros(self.n, dtype=bool)
        mask[t["row_id"].to_numpy()] = True
        return mask
