"""Compiling a :class:`~imagemesh.core.filters.MetadataFilter` to a LanceDB (DataFusion SQL) predicate.

Every field name is checked against the collection's :class:`~imagemesh.core.schema.MetadataSchema`
and every value is rendered as a typed, escaped literal: user input never reaches SQL by
concatenation of raw text. Every leaf is two-valued (``coalesce(..., false)``), so nulls
behave as in :meth:`MetadataFilter.matches` (the congruence tests in ``tests/test_filters.py``
check both agree).
"""

from __future__ import annotations

import math

from imagemesh.core.errors import FilterError
from imagemesh.core.filters import And, Contains, Eq, In, InCluster, Keyword, MetadataFilter, Not, Or, Range, Scalar, fold_case
from imagemesh.core.schema import FieldKind, MetadataSchema

__all__ = ["to_lance_predicate", "sql_string"]


def sql_string(value: str) -> str:
    """Render ``value`` as a SQL string literal (single quotes doubled).

    DataFusion's SQL dialect treats backslashes literally, so doubling ``'`` is the
    complete escape. NUL characters are refused by the parser above.
    """
    if "\x00" in value:
        raise FilterError("text contains a NUL character")
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    # Names are already checked against the schema (alphanumerics and '_').
    return f"`{name}`"


def _literal(value: Scalar, kind: FieldKind, field: str) -> str:
    if kind in (FieldKind.TEXT, FieldKind.TEXT_LIST):
        if not isinstance(value, str):
            raise FilterError(f"{field}: expected a string value, got {value!r}")
        return sql_string(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FilterError(f"{field}: expected a number, got {value!r}")
    if kind is FieldKind.INT:
        if isinstance(value, float):
            if not value.is_integer():
                raise FilterError(f"{field}: expected an integer, got {value!r}")
            value = int(value)
        return str(int(value))
    if not math.isfinite(float(value)):
        raise FilterError(f"{field}: number must be finite")
    return repr(float(value))


def _two_valued(expr: str) -> str:
    return f"coalesce(({expr}), false)"


def to_lance_predicate(f: MetadataFilter | None, schema: MetadataSchema) -> str | None:
    """Compile a filter to a LanceDB ``where`` predicate (DataFusion SQL).

    Every field is checked against ``schema``; every value is rendered as a typed,
    escaped literal; every leaf is wrapped in ``coalesce(..., false)`` so that nulls
    behave as in :meth:`MetadataFilter.matches`.

    Returns ``None`` for no filter.

    Raises:
        FilterError: unknown field, a value of the wrong type for its column, an
            operator the column does not support (e.g. ``Range`` on a text column), or a
            ``cluster`` leaf (:class:`~imagemesh.core.filters.InCluster`: not metadata, a
            collection evaluates it as a row mask).
    """
    if f is None:
        return None
    return _compile(f, schema)


def _compile(f: MetadataFilter, schema: MetadataSchema) -> str:
    if isinstance(f, And):
        return "(" + " AND ".join(_compile(s, schema) for s in f.filters) + ")" if f.filters else "true"
    if isinstance(f, Or):
        return "(" + " OR ".join(_compile(s, schema) for s in f.filters) + ")" if f.filters else "false"
    if isinstance(f, Not):
        return f"(NOT {_compile(f.filter, schema)})"
    if isinstance(f, Keyword):
        from imagemesh.core.text_search import keyword_predicate

        return keyword_predicate(f.text)
    if isinstance(f, InCluster):
        raise FilterError("a cluster filter has no SQL form: clusters are not metadata columns (a collection evaluates it from its clustering)")
    field = getattr(f, "field")
    kind = schema.kind(field)  # raises FilterError for unknown fields
    col = _ident(field)
    if isinstance(f, Eq):
        lit = _literal(f.value, kind, field)
        if kind is FieldKind.TEXT_LIST:
            return _two_valued(f"array_has({col}, {lit})")
        return _two_valued(f"{col} = {lit}")
    if isinstance(f, In):
        if not f.values:
            return "false"
        lits = ", ".join(_literal(v, kind, field) for v in f.values)
        if kind is FieldKind.TEXT_LIST:
            return _two_valued(f"array_has_any({col}, make_array({lits}))")
        return _two_valued(f"{col} IN ({lits})")
    if isinstance(f, Range):
        if kind not in (FieldKind.INT, FieldKind.FLOAT):
            raise FilterError(f"{field}: range filters need a numeric field")
        ops = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
        parts = [f"{col} {ops[op]} {_literal_range(b, kind, field)}" for op, b in f.bounds()]
        return _two_valued(" AND ".join(parts))
    if isinstance(f, Contains):
        if kind not in (FieldKind.TEXT, FieldKind.TEXT_LIST):
            raise FilterError(f"{field}: contains needs a text field")
        needle = sql_string(fold_case(f.text))
        if kind is FieldKind.TEXT_LIST:
            # array_to_string joins the elements; a separator no needle can span keeps elements apart.
            if "\x1f" in f.text:
                raise FilterError(f"{field}: text contains a control character")
            return _two_valued(f"cardinality({col}) > 0 AND strpos(lower(array_to_string({col}, '\x1f')), {needle}) > 0")
        return _two_valued(f"strpos(lower({col}), {needle}) > 0")
    raise FilterError(f"cannot compile filter node {type(f).__name__}")


def _literal_range(b: float | int, kind: FieldKind, field: str) -> str:
    if kind is FieldKind.INT and isinstance(b, float) and not b.is_integer():
        # compare an int column with a fractional bound as a float
        return repr(float(b))
    return _literal(b, kind, field)
