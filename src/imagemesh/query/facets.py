"""Facet counts: value counts of the schema's facet fields over the rows a filter keeps."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

import pyarrow as pa

from imagemesh.query.filtering import Selection
from imagemesh.store.reader import CollectionReader

__all__ = ["FacetCounter"]


class FacetCounter:
    """Counts facet values; the facet columns are read once per collection version (a
    version never changes) and the results of recent filters are cached (LRU).

    Args:
        reader: the open collection (its schema's ``facet_fields`` and ``labels``).
        cache_size: results kept.
    """

    def __init__(self, reader: CollectionReader, cache_size: int = 64) -> None:
        self.reader = reader
        self.fields = tuple(reader.schema.facet_fields)
        self._columns: Any = None
        self._cache: OrderedDict[tuple[str | None, int], str] = OrderedDict()
        self._lock = threading.Lock()
        self._size = int(cache_size)

    def counts(self, selection: Selection, top: int = 200) -> dict[str, list[dict[str, Any]]]:
        """``{field: [{"value", "label", "count"}, ...]}`` per facet field, most frequent
        first, at most ``top`` each. A ``None`` value counts images without one (label
        ``"(unknown)"``); ``label`` is the schema's display label (e.g. the official arXiv
        category name) or the value."""
        key = (selection.key, int(top))
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return json.loads(cached)
        t = self._columns
        if t is None:
            t = self._columns = self.reader.columns(self.fields)
        if selection.mask is not None:
            t = t.filter(pa.array(selection.mask[t["row_id"].to_numpy()]))
        schema = self.reader.schema
        out: dict[str, list[dict[str, Any]]] = {}
        for col in self.fields:
            items = []
            for c in t.group_by(col).aggregate([([], "count_all")]).to_pylist():
                v = c[col]
                label = schema.label(col, v)
                items.append({"value": v, "label": label or (str(v) if v is not None else "(unknown)"), "count": int(c["count_all"])})
            items.sort(key=lambda x: (-x["count"], str(x["value"])))
            out[col] = items[:top]
        with self._lock:
            self._cache[key] = json.dumps(out)
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return out
