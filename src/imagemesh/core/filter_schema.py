"""The JSON Schema of a collection's filters, for API descriptions (OpenAPI 3.1).

:func:`filter_json_schema` describes the shorthand form that
:func:`~imagemesh.core.filters.from_dict` reads and
:func:`~imagemesh.core.filter_sql.to_lance_predicate` compiles, with the same value
limits: which condition each field kind takes (ranges on numbers, ``contains`` on
text), text length and characters, number magnitude, list sizes. Two limits cannot be
written in JSON Schema and are enforced by the parser alone: nesting depth
(:data:`~imagemesh.core.filters.MAX_DEPTH`) and the number of nodes
(:data:`~imagemesh.core.filters.MAX_NODES`); the API adds a cap on the filter's length.
The canonical ``{"op": ...}`` form is accepted too but not described here.
"""

from __future__ import annotations

from typing import Any, Sequence

from imagemesh.core.filters import MAX_IN_VALUES, MAX_NUMBER, MAX_TEXT_LEN
from imagemesh.core.schema import FieldKind, MetadataSchema

__all__ = ["filter_json_schema", "cluster_json_schema"]

_NUMBER = {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER}
_INTEGER = {"type": "integer", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER}
#: no NUL (refused by the parser); list fields also refuse U+001F, their element separator
_TEXT = {"type": "string", "maxLength": MAX_TEXT_LEN, "pattern": "^[^\\x00]*$"}
_LIST_TEXT = {"type": "string", "maxLength": MAX_TEXT_LEN, "pattern": "^[^\\x00\\x1f]*$"}


def _condition(kind: FieldKind) -> dict[str, Any]:
    """The schema of ``{field: condition}`` for a field of ``kind``."""
    value = {FieldKind.INT: _INTEGER, FieldKind.FLOAT: _NUMBER}.get(kind, _TEXT)
    values = {"type": "array", "items": value, "maxItems": MAX_IN_VALUES}
    ops: dict[str, Any] = {"eq": value, "in": values}
    if kind in (FieldKind.INT, FieldKind.FLOAT):
        ops.update({op: _NUMBER for op in ("gt", "gte", "lt", "lte")})
    else:
        ops["contains"] = _LIST_TEXT if kind is FieldKind.TEXT_LIST else _TEXT
    obj = {"type": "object", "properties": ops, "additionalProperties": False, "minProperties": 1}
    return {"anyOf": [value, values, obj]}


def cluster_json_schema(embeddings: Sequence[str] | None = None) -> dict[str, Any]:
    """The schema of a ``cluster`` condition: ``{"embedding": name, "id": id or [ids]}``
    (``embedding`` one of ``embeddings`` when given; ids non-negative integers)."""
    emb: dict[str, Any] = {"type": "string", "enum": list(embeddings)} if embeddings is not None else {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_LEN}
    cid = {"type": "integer", "minimum": 0, "maximum": MAX_NUMBER}
    ids = {"anyOf": [cid, {"type": "array", "items": cid, "minItems": 1, "maxItems": MAX_IN_VALUES}]}
    return {
        "type": "object",
        "description": "rows in the k-means cluster(s) `id` of `embedding` (ids from the collection's clusters)",
        "properties": {"embedding": emb, "id": ids},
        "required": ["embedding", "id"],
        "additionalProperties": False,
    }


def filter_json_schema(schema: MetadataSchema, embeddings: Sequence[str] | None = None) -> dict[str, Any]:
    """JSON Schema (draft 2020-12, OpenAPI 3.1) of a filter over ``schema``'s fields.

    An object whose keys are filterable fields (value: a value, a list of values meaning
    "any of", or ``{eq, in, gt, gte, lt, lte}`` on numbers / ``{eq, in, contains}`` on
    text), ``keyword`` (words that must all occur in the keyword fields), ``cluster``
    (``{"embedding", "id"}``, :func:`cluster_json_schema`; ``embedding`` is an enum of
    ``embeddings`` when they are given, e.g. ``collection.embeddings``), and ``and`` /
    ``or`` (lists of filters) and ``not`` (a filter). Several keys mean AND.

    Returns:
        a self-contained schema (recursion through ``$defs``).
    """
    props: dict[str, Any] = {name: _condition(kind) for name, kind in sorted(schema.filterable().items())}
    ref = {"$ref": "#/$defs/filter"}
    cluster = cluster_json_schema(embeddings)
    # a metadata field named "cluster" keeps its conditions (the parser tells them apart)
    props["cluster"] = {"anyOf": [props["cluster"], cluster]} if "cluster" in props else cluster
    props.update({"keyword": _TEXT, "and": {"type": "array", "items": ref}, "or": {"type": "array", "items": ref}, "not": ref})
    node = {"type": "object", "properties": props, "additionalProperties": False}
    return {"$defs": {"filter": node}, **ref}
