"""The metadata schema of a collection: its fields, their kinds and what each is for.

A collection stores its schema (in ``manifest.json``), so filters, keyword search, facets,
suggestions and the explorer know a collection's own fields, whatever the source: a
profile (``imagemesh.profiles.arxiv``) or a source (``imagemesh.ingest.sources.jsonl``)
makes one; nothing downstream hard-codes field names.

Every ``images`` table also has the *system* columns of :data:`SYSTEM_FIELDS` (row id,
stable image key, decoded size, source checksum, classifier predictions, and the
``search_text`` column that carries the full-text index). ``row_id`` is the dense integer id
that indices use (0..n-1, in the deterministic build order).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping

import pyarrow as pa

from imagemesh.core.errors import FilterError

__all__ = ["FieldKind", "MetadataSchema", "SYSTEM_FIELDS", "MEDIA_ARROW_SCHEMA", "infer_kind"]


class FieldKind(enum.Enum):
    """Kind of a metadata field: how it is stored, filtered and compared."""

    TEXT = "text"
    TEXT_LIST = "text_list"
    INT = "int"
    FLOAT = "float"


_ARROW = {
    FieldKind.TEXT: pa.string(),
    FieldKind.TEXT_LIST: pa.list_(pa.string()),
    FieldKind.INT: pa.int64(),
    FieldKind.FLOAT: pa.float64(),
}

#: Columns every ``images`` table has, whatever the source: name -> (arrow type, filterable kind or None).
SYSTEM_FIELDS: dict[str, tuple[pa.DataType, FieldKind | None]] = {
    "row_id": (pa.int64(), FieldKind.INT),
    "image_key": (pa.string(), FieldKind.TEXT),  # stable id, e.g. "2306.01841v1/fig1"
    "width": (pa.int32(), FieldKind.INT),  # of the decoded image, px
    "height": (pa.int32(), FieldKind.INT),
    "content_sha256": (pa.string(), None),  # of the source image file
    "predictions": (pa.string(), None),  # JSON {embedding: [{"label", "p"}, ...]}
    "search_text": (pa.string(), None),  # keyword search: the full-text fields joined (FTS index)
}

#: Columns of the ``media`` LanceDB table (binary payloads kept apart from metadata scans).
MEDIA_ARROW_SCHEMA = pa.schema(
    [
        pa.field("row_id", pa.int64(), nullable=False),
        pa.field("thumb", pa.binary()),  # JPEG, longest side 256 px
        pa.field("image", pa.binary()),  # canonical JPEG, longest side <= 512 px (what embeddings see)
    ]
)


def infer_kind(values: list[Any]) -> FieldKind | None:
    """The kind that holds every non-null value: all ``int`` -> INT, all numbers -> FLOAT,
    all lists of strings -> TEXT_LIST, all strings (or a mix of scalars) -> TEXT; ``None``
    when there is no value or a value is a dict or a list of non-strings."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    if any(isinstance(v, dict) for v in vals):
        return None
    if all(isinstance(v, list) for v in vals):
        return FieldKind.TEXT_LIST if all(isinstance(x, str) for v in vals for x in v) else None
    if any(isinstance(v, list) for v in vals):
        return None
    if all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return FieldKind.INT
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        return FieldKind.FLOAT
    return FieldKind.TEXT


@dataclass(frozen=True)
class MetadataSchema:
    """A collection's metadata fields and their roles.

    Attributes:
        fields: source field name -> kind (the system columns are added by :meth:`filterable`).
        keyword_fields: fields joined into ``search_text`` for ``keyword`` filters.
        facet_fields: fields with value counts (explorer dropdowns, ``/api/facets``).
        range_fields: numeric fields the explorer offers a value/range control for.
        text_fields: text fields offered as "contains" filters.
        suggest_fields: fields ``/api/suggest`` completes.
        hit_fields: fields returned with every search hit (the rest only by ``get``).
        title_field: the field shown as an image's title, if any.
        labels: display labels of facet values, ``{field: {value: label}}`` (e.g. official
            arXiv category names).
        profile: the name of the profile or source that made it (``arxiv``, ``jsonl``).
    """

    fields: dict[str, FieldKind]
    keyword_fields: tuple[str, ...] = ()
    facet_fields: tuple[str, ...] = ()
    range_fields: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ()
    suggest_fields: tuple[str, ...] = ()
    hit_fields: tuple[str, ...] = ()
    title_field: str | None = None
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    profile: str = ""

    def __post_init__(self) -> None:
        clash = set(self.fields) & set(SYSTEM_FIELDS)
        if clash:
            raise ValueError(f"metadata fields {sorted(clash)} clash with imagemesh's own columns")
        for role in ("keyword_fields", "facet_fields", "range_fields", "text_fields", "suggest_fields", "hit_fields"):
            unknown = [f for f in getattr(self, role) if f not in self.fields]
            if unknown:
                raise ValueError(f"{role} names unknown fields {unknown}")

    def filterable(self) -> dict[str, FieldKind]:
        """Every field a filter may name: the source fields and the filterable system columns."""
        out = {k: kind for k, (_, kind) in SYSTEM_FIELDS.items() if kind is not None}
        out.update(self.fields)
        return out

    def kind(self, name: str) -> FieldKind:
        """Kind of field ``name``.

        Raises:
            FilterError: the field is not in the schema.
        """
        try:
            return self.filterable()[name]
        except (KeyError, TypeError):
            raise FilterError(f"unknown field {name!r}; filterable fields: {', '.join(sorted(self.filterable()))}, keyword") from None

    def arrow_schema(self) -> pa.Schema:
        """The ``images`` table's Arrow schema: system columns, then the fields in order."""
        cols = [pa.field(n, t, nullable=(n not in ("row_id", "image_key"))) for n, (t, _) in SYSTEM_FIELDS.items()]
        cols += [pa.field(n, _ARROW[k]) for n, k in self.fields.items()]
        return pa.schema(cols)

    def label(self, field_name: str, value: Any) -> str | None:
        """Display label of a facet value, if the schema has one."""
        return self.labels.get(field_name, {}).get(str(value)) if value is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "fields": {k: v.value for k, v in self.fields.items()},
            "keyword_fields": list(self.keyword_fields),
            "facet_fields": list(self.facet_fields),
            "range_fields": list(self.range_fields),
            "text_fields": list(self.text_fields),
            "suggest_fields": list(self.suggest_fields),
            "hit_fields": list(self.hit_fields),
            "title_field": self.title_field,
            "labels": {k: dict(v) for k, v in self.labels.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MetadataSchema":
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: malformed (unknown kind, a role naming an unknown field, a clash
                with a system column).
        """
        try:
            return cls(
                fields={str(k): FieldKind(v) for k, v in dict(d["fields"]).items()},
                keyword_fields=tuple(d.get("keyword_fields") or ()),
                facet_fields=tuple(d.get("facet_fields") or ()),
                range_fields=tuple(d.get("range_fields") or ()),
                text_fields=tuple(d.get("text_fields") or ()),
                suggest_fields=tuple(d.get("suggest_fields") or ()),
                hit_fields=tuple(d.get("hit_fields") or ()),
                title_field=d.get("title_field"),
                labels={str(k): {str(a): str(b) for a, b in dict(v).items()} for k, v in dict(d.get("labels") or {}).items()},
                profile=str(d.get("profile") or ""),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"malformed schema: {e}") from None

    def with_labels(self, labels: dict[str, dict[str, str]]) -> "MetadataSchema":
        """A copy with these facet labels."""
        d = self.to_dict()
        d["labels"] = labels
        return MetadataSchema.from_dict(d)
