"""Value suggestions for autocompletion: the most frequent values of a field, by prefix."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from imagemesh.core.schema import MetadataSchema

__all__ = ["Suggestions"]


class Suggestions:
    """Top values of a metadata field, for autocompletion (counted once per field, lazily).

    The fields are the schema's ``suggest_fields``. A field ``X`` with a list column
    ``X_list`` (e.g. ``authors`` / ``authors_list``) counts the list's elements (single
    authors); list fields count their elements; the others count whole values.
    """

    def __init__(self, table: Any, schema: MetadataSchema) -> None:
        self.table = table
        self.fields = tuple(schema.suggest_fields)
        self._counts: dict[str, list[tuple[str, str, int]]] = {}
        self._lock = threading.Lock()

    def _load(self, field: str) -> list[tuple[str, str, int]]:
        with self._lock:
            if field not in self._counts:
                col = f"{field}_list" if f"{field}_list" in self.table.schema.names else field
                values = self.table.search().select([col]).limit(None).to_arrow()[col].to_pylist()
                c: Counter[str] = Counter()
                for v in values:
                    if v is None:
                        continue
                    if isinstance(v, list):
                        c.update(str(x).strip() for x in v if x and str(x).strip())
                    elif str(v).strip():
                        c[str(v).strip()] += 1
                ranked = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
                self._counts[field] = [(v, v.casefold(), n) for v, n in ranked]
            return self._counts[field]

    def top(self, field: str, prefix: str, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` values of ``field`` starting with ``prefix`` (case-insensitive;
        then values containing it, or a word starting with it), most frequent first."""
        items = self._load(field)
        p = prefix.casefold().strip()
        if not p:
            return [{"value": v, "count": n} for v, _, n in items[:limit]]
        starts = [(v, n) for v, f, n in items if f.startswith(p)]
        out = starts[:limit]
        if len(out) < limit:
            seen = {v for v, _ in out}
            words = [(v, n) for v, f, n in items if v not in seen and (" " + p) in (" " + f)]
            out += words[: limit - len(out)]
        return [{"value": v, "count": n} for v, n in out]
