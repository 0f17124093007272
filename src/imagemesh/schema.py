"""The metadata schema of a collection's ``images`` table.

One row per image; ``row_id`` is the dense integer id that indices use (0..n-1, in
the deterministic build order). Everything a filter may name is listed here with its
kind, so the filter compiler can refuse unknown columns.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .text_search import SEARCH_TEXT_FIELDS

__all__ = ["FieldKind", "MetadataSchema", "IMAGES_ARROW_SCHEMA", "MEDIA_ARROW_SCHEMA", "FILTERABLE_FIELDS"]


class FieldKind(enum.Enum):
    TEXT = "text"
    TEXT_LIST = "text_list"
    INT = "int"
    FLOAT = "float"


#: Columns of the ``images`` LanceDB table.
IMAGES_ARROW_SCHEMA = pa.schema(
    [
        pa.field("row_id", pa.int64(), nullable=False),
        pa.field("image_key", pa.string(), nullable=False),  # stable id, e.g. "2306.01841v1/fig1"
        pa.field("arxiv_id", pa.string()),  # "2306.01841", "hep-th/9901001"
        pa.field("version", pa.int32()),  # 1 for "v1"
        pa.field("title", pa.string()),
        pa.field("authors", pa.string()),
        pa.field("authors_list", pa.list_(pa.string())),
        pa.field("abstract", pa.string()),
        pa.field("caption", pa.string()),
        pa.field("figure", pa.string()),  # figure number/label as printed, e.g. "1"
        pa.field("archive", pa.string()),  # primary archive, e.g. "cs"
        pa.field("category", pa.string()),  # primary category, e.g. "cs.CL"
        pa.field("categories", pa.list_(pa.string())),  # all categories, primary first
        pa.field("year", pa.int32()),
        pa.field("source_file", pa.string()),  # file name inside the source
        # arXiv source ingest (null for other sources)
        pa.field("subfigure", pa.int32()),  # 1-based index of the graphic inside its figure, if it has several
        pa.field("subcaption", pa.string()),  # caption of its sub-figure (\subfigure[...], subfigure env)
        pa.field("label", pa.string()),  # the figure's \label
        pa.field("unreferenced", pa.int32()),  # 1 = image file that no figure references
        pa.field("source_package", pa.string()),  # the source package's file name
        pa.field("width", pa.int32()),  # of the decoded image, px
        pa.field("height", pa.int32()),
        pa.field("content_sha256", pa.string()),  # of the source image file
        pa.field("predictions", pa.string()),  # JSON {embedding: [{"label", "p"}, ...]}
        # keyword search: the metadata text joined, with a LanceDB FTS index (imagemesh.text_search)
        pa.field("search_text", pa.string()),
    ]
)

#: Columns of the ``media`` LanceDB table (binary payloads kept apart from metadata scans).
MEDIA_ARROW_SCHEMA = pa.schema(
    [
        pa.field("row_id", pa.int64(), nullable=False),
        pa.field("thumb", pa.binary()),  # JPEG, longest side 256 px
        pa.field("image", pa.binary()),  # canonical JPEG, longest side <= 512 px (what embeddings see)
    ]
)

FILTERABLE_FIELDS: dict[str, FieldKind] = {
    "image_key": FieldKind.TEXT,
    "arxiv_id": FieldKind.TEXT,
    "version": FieldKind.INT,
    "title": FieldKind.TEXT,
    "authors": FieldKind.TEXT,
    "authors_list": FieldKind.TEXT_LIST,
    "abstract": FieldKind.TEXT,
    "caption": FieldKind.TEXT,
    "figure": FieldKind.TEXT,
    "archive": FieldKind.TEXT,
    "category": FieldKind.TEXT,
    "categories": FieldKind.TEXT_LIST,
    "year": FieldKind.INT,
    "width": FieldKind.INT,
    "height": FieldKind.INT,
    "subfigure": FieldKind.INT,
    "subcaption": FieldKind.TEXT,
    "label": FieldKind.TEXT,
    "unreferenced": FieldKind.INT,
    "source_package": FieldKind.TEXT,
    "row_id": FieldKind.INT,
}

#: Fields searched by a ``keyword`` filter ("keyword over all fields"), through the
#: ``search_text`` column composed from them (see :mod:`imagemesh.text_search`).
KEYWORD_FIELDS: tuple[str, ...] = SEARCH_TEXT_FIELDS


@dataclass(frozen=True)
class MetadataSchema:
    """Field names and kinds that filters may use."""

    fields: dict[str, FieldKind] = field(default_factory=lambda: dict(FILTERABLE_FIELDS))
    keyword_fields: tuple[str, ...] = KEYWORD_FIELDS

    @classmethod
    def default(cls) -> "MetadataSchema":
        return cls()

    def kind(self, name: str) -> FieldKind:
        """Kind of field ``name``.

        Raises:
            FilterError: the field is not in the schema.
        """
        from .filters import FilterError

        try:
            return self.fields[name]
        except (KeyError, TypeError):
            raise FilterError(f"unknown field {name!r}; filterable fields: {', '.join(sorted(self.fields))}, keyword") from None

    def to_dict(self) -> dict[str, Any]:
        return {"fields": {k: v.value for k, v in self.fields.items()}, "keyword_fields": list(self.keyword_fields)}
