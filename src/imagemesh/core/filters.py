"""Metadata filters as data.

A :class:`MetadataFilter` is a small tree of frozen dataclasses (``Eq``, ``In``,
``Range``, ``Contains``, ``Keyword``, ``InCluster``, ``And``, ``Or``, ``Not``) with

* a JSON form (:meth:`MetadataFilter.to_dict` / :func:`from_dict`, which also accepts
  the shorthands used by the CLI's ``--where`` and the web API's ``filter=``),
* a pure-Python reference evaluator :meth:`MetadataFilter.matches` over one row
  (a ``dict``), and
* a compiler :func:`imagemesh.core.filter_sql.to_lance_predicate` to a LanceDB (DataFusion SQL) predicate that
  checks every field name against the table schema and renders every value as an
  escaped literal. User input never reaches SQL by concatenation of raw text.

Semantics (shared by ``matches`` and the compiled predicate, checked by congruence
tests): every leaf is two-valued -- a missing/null value never matches a leaf, so
``Not(Eq("year", 2020))`` matches rows whose year is null. Text matching
(``Contains``, ``Keyword``) is a case-insensitive substring test. On list fields
(``categories``, ``authors_list``) ``Eq`` means "contains the element" and ``In``
means "contains any of".

The shape follows Qdrant's payload filters and LanceDB's typed expressions (see
``shared/STYLE.md``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from imagemesh.core.errors import FilterError

__all__ = [
    "FilterError",
    "MetadataFilter",
    "Eq",
    "In",
    "Range",
    "Contains",
    "Keyword",
    "InCluster",
    "And",
    "Or",
    "Not",
    "from_dict",
    "parse_filter",
]

Scalar = str | int | float

MAX_TEXT_LEN = 1_000
MAX_IN_VALUES = 1_000
MAX_DEPTH = 16
MAX_NODES = 256
#: Largest magnitude of a number in a filter: the int64 range of the metadata columns.
MAX_NUMBER = 2**63 - 1
#: Longest filter text :func:`parse_filter` reads (the API's own cap is usually lower).
MAX_FILTER_CHARS = 100_000


class MetadataFilter:
    """Base class of all filter nodes (frozen dataclasses)."""

    def matches(self, row: Mapping[str, Any]) -> bool:  # pragma: no cover - abstract
        """Reference evaluation of this filter on one metadata row (``dict`` of column values)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """Canonical JSON-able form; ``from_dict(f.to_dict()) == f``."""
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    def __and__(self, other: MetadataFilter) -> MetadataFilter:
        return And((self, other))

    def __or__(self, other: MetadataFilter) -> MetadataFilter:
        return Or((self, other))

    def __invert__(self) -> MetadataFilter:
        return Not(self)


def fold_case(text: str) -> str:
    """How text matching folds case (``Contains``): Python's ``str.lower``, as SQL ``lower``."""
    return text.lower()


@dataclass(frozen=True)
class Eq(MetadataFilter):
    """``field == value``; on a list field, "the list contains value"."""

    field: str
    value: Scalar

    def matches(self, row: Mapping[str, Any]) -> bool:
        v = row.get(self.field)
        if v is None:
            return False
        if isinstance(v, (list, tuple)):
            return any(x == self.value for x in v if x is not None)
        return bool(v == self.value)

    def to_dict(self) -> dict[str, Any]:
        return {"op": "eq", "field": self.field, "value": self.value}


@dataclass(frozen=True)
class In(MetadataFilter):
    """``field IN values``; on a list field, "the list shares an element with values"."""

    field: str
    values: tuple[Scalar, ...]

    def matches(self, row: Mapping[str, Any]) -> bool:
        v = row.get(self.field)
        if v is None:
            return False
        items = v if isinstance(v, (list, tuple)) else [v]
        return any(x in self.values for x in items if x is not None)

    def to_dict(self) -> dict[str, Any]:
        return {"op": "in", "field": self.field, "values": list(self.values)}


@dataclass(frozen=True)
class Range(MetadataFilter):
    """Numeric range; any of ``gt``, ``gte``, ``lt``, ``lte`` (at least one)."""

    field: str
    gt: float | int | None = None
    gte: float | int | None = None
    lt: float | int | None = None
    lte: float | int | None = None

    def bounds(self) -> list[tuple[str, float | int]]:
        return [(op, b) for op, b in (("gt", self.gt), ("gte", self.gte), ("lt", self.lt), ("lte", self.lte)) if b is not None]

    def matches(self, row: Mapping[str, Any]) -> bool:
        v = row.get(self.field)
        if v is None or isinstance(v, (list, tuple, str)):
            return False
        for op, b in self.bounds():
            if op == "gt" and not v > b:
                return False
            if op == "gte" and not v >= b:
                return False
            if op == "lt" and not v < b:
                return False
            if op == "lte" and not v <= b:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"op": "range", "field": self.field}
        d.update(dict(self.bounds()))
        return d


@dataclass(frozen=True)
class Contains(MetadataFilter):
    """Case-insensitive substring match of ``text`` in a text (or list-of-text) field."""

    field: str
    text: str

    def matches(self, row: Mapping[str, Any]) -> bool:
        v = row.get(self.field)
        if v is None:
            return False
        needle = fold_case(self.text)
        items = v if isinstance(v, (list, tuple)) else [v]
        return any(isinstance(x, str) and needle in fold_case(x) for x in items)

    def to_dict(self) -> dict[str, Any]:
        return {"op": "contains", "field": self.field, "text": self.text}


@dataclass(frozen=True)
class Keyword(MetadataFilter):
    """Full-text match: every word of ``text`` is a word of the row's ``search_text``.

    ``search_text`` joins title, authors, abstract, caption, sub-caption, arXiv id,
    categories and official category names (composed at build time); what a word is, and
    why there is no stemming, is in :mod:`imagemesh.core.text_search`. A collection answers
    this from its LanceDB full-text index; :func:`to_lance_predicate` compiles it to an
    equivalent (scanning) regex predicate. A query with no word, or with a word of 40
    UTF-8 bytes or more, matches nothing.
    """

    text: str

    def matches(self, row: Mapping[str, Any]) -> bool:
        from imagemesh.core.text_search import FTS_COLUMN, matches_words

        return matches_words(self.text, row.get(FTS_COLUMN))

    def to_dict(self) -> dict[str, Any]:
        return {"op": "keyword", "text": self.text}


@dataclass(frozen=True)
class InCluster(MetadataFilter):
    """Rows in any of the clusters ``ids`` of the collection's k-means clustering under
    ``embedding`` (:mod:`imagemesh.query.clusters`); JSON
    ``{"cluster": {"embedding": "imagenet", "id": 12}}`` or ``"id": [1, 2]``.

    Cluster ids are not metadata: a collection evaluates this leaf as a row mask from its
    cached clustering (and refuses an unknown embedding or a cluster id it does not have);
    it has no SQL form. :meth:`matches` reads a row's cluster id under
    :meth:`row_key` (``"cluster:<embedding>"``), absent in metadata rows, so plain metadata
    never matches.
    """

    embedding: str
    ids: tuple[int, ...]

    @staticmethod
    def row_key(embedding: str) -> str:
        """Where :meth:`matches` looks for a row's cluster id under ``embedding``."""
        return f"cluster:{embedding}"

    def matches(self, row: Mapping[str, Any]) -> bool:
        v = row.get(self.row_key(self.embedding))
        return v is not None and not isinstance(v, bool) and v in self.ids

    def to_dict(self) -> dict[str, Any]:
        return {"op": "cluster", "embedding": self.embedding, "id": self.ids[0] if len(self.ids) == 1 else list(self.ids)}


@dataclass(frozen=True)
class And(MetadataFilter):
    filters: tuple[MetadataFilter, ...]

    def matches(self, row: Mapping[str, Any]) -> bool:
        return all(f.matches(row) for f in self.filters)

    def to_dict(self) -> dict[str, Any]:
        return {"op": "and", "filters": [f.to_dict() for f in self.filters]}


@dataclass(frozen=True)
class Or(MetadataFilter):
    filters: tuple[MetadataFilter, ...]

    def matches(self, row: Mapping[str, Any]) -> bool:
        return any(f.matches(row) for f in self.filters)

    def to_dict(self) -> dict[str, Any]:
        return {"op": "or", "filters": [f.to_dict() for f in self.filters]}


@dataclass(frozen=True)
class Not(MetadataFilter):
    filter: MetadataFilter

    def matches(self, row: Mapping[str, Any]) -> bool:
        return not self.filter.matches(row)

    def to_dict(self) -> dict[str, Any]:
        return {"op": "not", "filter": self.filter.to_dict()}



# ---------------------------------------------------------------------------------
# JSON form
# ---------------------------------------------------------------------------------

_RANGE_OPS = ("gt", "gte", "lt", "lte")


def _check_scalar(value: Any, where: str) -> Scalar:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FilterError(f"{where}: expected a string or number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(f"{where}: number must be finite")
    if isinstance(value, (int, float)) and abs(value) > MAX_NUMBER:
        raise FilterError(f"{where}: number out of range (|x| <= 2**63 - 1)")
    if isinstance(value, str):
        _check_text(value, where)
    return value


def _check_text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise FilterError(f"{where}: expected a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT_LEN:
        raise FilterError(f"{where}: text longer than {MAX_TEXT_LEN} characters")
    if "\x00" in value:
        raise FilterError(f"{where}: text contains a NUL character")
    return value


def _check_field(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise FilterError(f"field name must be a non-empty string, got {name!r}")
    return name


def _field_condition(field: str, cond: Any) -> MetadataFilter:
    """Shorthand ``{field: cond}``."""
    if isinstance(cond, list):
        return In(field, tuple(_check_scalar(v, field) for v in _limit_values(cond, field)))
    if not isinstance(cond, dict):
        return Eq(field, _check_scalar(cond, field))
    unknown = set(cond) - {"eq", "in", "contains", *_RANGE_OPS}
    if unknown or not cond:
        raise FilterError(f"{field}: unknown condition keys {sorted(unknown) or '(none)'}; use eq, in, contains, gt, gte, lt, lte")
    parts: list[MetadataFilter] = []
    if "eq" in cond:
        parts.append(Eq(field, _check_scalar(cond["eq"], field)))
    if "in" in cond:
        vals = cond["in"]
        if not isinstance(vals, list):
            raise FilterError(f"{field}: 'in' takes a list")
        parts.append(In(field, tuple(_check_scalar(v, field) for v in _limit_values(vals, field))))
    if "contains" in cond:
        parts.append(Contains(field, _check_text(cond["contains"], field)))
    bounds = {op: cond[op] for op in _RANGE_OPS if op in cond}
    if bounds:
        for op, b in bounds.items():
            if isinstance(b, bool) or not isinstance(b, (int, float)) or (isinstance(b, float) and not math.isfinite(b)):
                raise FilterError(f"{field}.{op}: expected a finite number")
            if abs(b) > MAX_NUMBER:
                raise FilterError(f"{field}.{op}: number out of range (|x| <= 2**63 - 1)")
        parts.append(Range(field, **bounds))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _cluster(spec: Any) -> InCluster:
    """``{"embedding": name, "id": id or [ids]}`` (ids sorted, duplicates dropped)."""
    if not isinstance(spec, dict):
        raise FilterError('cluster: expected {"embedding": name, "id": cluster id or list of ids}')
    unknown = set(spec) - {"embedding", "id"}
    if unknown:
        raise FilterError(f"cluster: unknown keys {sorted(unknown)}; use embedding, id")
    if "embedding" not in spec or "id" not in spec:
        raise FilterError(f"cluster: missing {'embedding' if 'embedding' not in spec else 'id'!r}")
    emb = _check_text(spec["embedding"], "cluster.embedding")
    if not emb:
        raise FilterError("cluster.embedding: expected an embedding name")
    raw = spec["id"]
    ids = raw if isinstance(raw, list) else [raw]
    if not ids:
        raise FilterError("cluster.id: expected a cluster id or a non-empty list of ids")
    for i in _limit_values(ids, "cluster.id"):
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i <= MAX_NUMBER:
            raise FilterError(f"cluster.id: expected non-negative integers, got {i!r}")
    return InCluster(emb, tuple(sorted(set(ids))))


def _limit_values(vals: list[Any], field: str) -> list[Any]:
    if len(vals) > MAX_IN_VALUES:
        raise FilterError(f"{field}: more than {MAX_IN_VALUES} values")
    return vals


def from_dict(data: Any, *, _depth: int = 0) -> MetadataFilter | None:
    """Parse a filter from its JSON form (canonical or shorthand).

    Canonical nodes carry ``"op"``: ``eq`` (field, value), ``in`` (field, values),
    ``range`` (field, gt/gte/lt/lte), ``contains`` (field, text), ``keyword`` (text),
    ``cluster`` (embedding, id), ``and``/``or`` (filters), ``not`` (filter).

    Shorthands (several keys mean AND)::

        {"year": 2023}                              # Eq
        {"year": {"gte": 2020, "lt": 2024}}         # Range
        {"category": {"in": ["cs.CL", "cs.CV"]}}    # In  (also {"category": [...]})
        {"title": {"contains": "transformer"}}      # Contains
        {"keyword": "transformer"}                  # every word, anywhere in the metadata (full-text index)
        {"cluster": {"embedding": "imagenet", "id": 12}}  # InCluster (also "id": [1, 2])
        {"or": [{...}, {...}]}, {"and": [...]}, {"not": {...}}

    Returns ``None`` for an empty filter (``{}`` or ``None``).

    Raises:
        FilterError: malformed input, wrong value types, too deep or too large.
    """
    if _depth > MAX_DEPTH:
        raise FilterError(f"filter nested deeper than {MAX_DEPTH} levels")
    if data is None:
        return None
    if not isinstance(data, dict):
        raise FilterError(f"a filter is a JSON object, got {type(data).__name__}")
    if not data:
        return None
    if "op" in data:
        return _from_canonical(data, _depth)
    parts: list[MetadataFilter] = []
    for key, cond in data.items():
        if key in ("and", "or"):
            if not isinstance(cond, list):
                raise FilterError(f"'{key}' takes a list of filters")
            subs = [f for f in (from_dict(c, _depth=_depth + 1) for c in cond) if f is not None]
            if subs:
                parts.append(And(tuple(subs)) if key == "and" else Or(tuple(subs)))
        elif key == "not":
            sub = from_dict(cond, _depth=_depth + 1)
            if sub is not None:
                parts.append(Not(sub))
        elif key == "keyword":
            parts.append(Keyword(_check_text(cond, "keyword")))
        elif key == "cluster" and isinstance(cond, dict) and ("embedding" in cond or "id" in cond):
            parts.append(_cluster(cond))  # other conditions on "cluster": a metadata field of that name
        else:
            parts.append(_field_condition(_check_field(key), cond))
    result = parts[0] if len(parts) == 1 else And(tuple(parts))
    _check_size(result)
    return result


def _from_canonical(d: dict[str, Any], depth: int) -> MetadataFilter:
    op = d.get("op")
    try:
        if op == "eq":
            return Eq(_check_field(d["field"]), _check_scalar(d["value"], str(d["field"])))
        if op == "in":
            vals = d["values"]
            if not isinstance(vals, list):
                raise FilterError("'values' must be a list")
            return In(_check_field(d["field"]), tuple(_check_scalar(v, str(d["field"])) for v in _limit_values(vals, str(d["field"]))))
        if op == "range":
            bounds = {k: d[k] for k in _RANGE_OPS if k in d and d[k] is not None}
            if not bounds:
                raise FilterError("range needs at least one of gt, gte, lt, lte")
            return _field_condition(_check_field(d["field"]), bounds)
        if op == "contains":
            return Contains(_check_field(d["field"]), _check_text(d["text"], str(d["field"])))
        if op == "keyword":
            return Keyword(_check_text(d["text"], "keyword"))
        if op == "cluster":
            return _cluster({k: v for k, v in d.items() if k != "op"})
        if op in ("and", "or"):
            subs_raw = d["filters"]
            if not isinstance(subs_raw, list):
                raise FilterError(f"'{op}' takes a list of filters")
            subs = tuple(f for f in (from_dict(s, _depth=depth + 1) for s in subs_raw) if f is not None)
            return And(subs) if op == "and" else Or(subs)
        if op == "not":
            sub = from_dict(d["filter"], _depth=depth + 1)
            if sub is None:
                raise FilterError("'not' needs a non-empty filter")
            return Not(sub)
    except KeyError as e:
        raise FilterError(f"filter op {op!r} is missing key {e.args[0]!r}") from None
    raise FilterError(f"unknown filter op {op!r}")


def _count(f: MetadataFilter) -> int:
    if isinstance(f, (And, Or)):
        return 1 + sum(_count(s) for s in f.filters)
    if isinstance(f, Not):
        return 1 + _count(f.filter)
    return 1


def _check_size(f: MetadataFilter) -> None:
    if _count(f) > MAX_NODES:
        raise FilterError(f"filter has more than {MAX_NODES} nodes")


def parse_filter(text: str | None) -> MetadataFilter | None:
    """Parse the JSON text of a filter (CLI ``--where``, HTTP ``filter=``).

    Raises:
        FilterError: invalid JSON or invalid filter.
    """
    if text is None or not text.strip():
        return None
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"filter longer than {MAX_FILTER_CHARS} characters")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FilterError(f"filter is not valid JSON: {e.msg} at position {e.pos}") from None
    except RecursionError:
        raise FilterError(f"filter is nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as e:  # e.g. an integer over Python's digit limit
        raise FilterError(f"filter is not valid JSON: {str(e)[:120]}") from None
    if not isinstance(data, dict):
        raise FilterError(f"a filter is a JSON object, got {type(data).__name__ if data is not None else 'null'}")
    return from_dict(data)
