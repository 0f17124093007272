"""The arXiv profile: fields of an arXiv figure collection and how they are filled.

* :data:`ARXIV_SCHEMA`: the fields (arXiv id, title, authors, abstract, caption, archive,
  category, year, and the source-ingest fields), which of them keyword search reads, which
  have facets, which are suggested.
* :func:`load_records` / :func:`merge_record`: the join of metadata-snapshot records by
  arXiv id (a record's title/authors/categories beat the source's).
* :func:`compose_search_text`: the keyword-search text, with the arXiv id's versioned form
  and the official names of the categories, so "computer vision" finds ``cs.CV``.
* :func:`facet_labels`: official archive and category names for the values in a collection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from imagemesh.core.schema import FieldKind, MetadataSchema
from imagemesh.core.text_search import compose_search_text as join_text
from imagemesh.profiles.arxiv.records import MetadataRecord, Taxonomy, newer_record, read_snapshot

__all__ = ["ARXIV_SCHEMA", "IMAGES_ARROW_SCHEMA", "KEYWORD_FIELDS", "compose_search_text", "facet_labels", "load_records", "merge_record"]

_T, _L, _I = FieldKind.TEXT, FieldKind.TEXT_LIST, FieldKind.INT

#: Fields joined into ``search_text`` (plus the versioned id and official category names).
KEYWORD_FIELDS: tuple[str, ...] = ("title", "authors", "abstract", "caption", "subcaption", "arxiv_id", "category", "categories")

ARXIV_SCHEMA = MetadataSchema(
    fields={
        "arxiv_id": _T,  # "2306.01841", "hep-th/9901001"
        "version": _I,  # 1 for "v1"
        "title": _T,
        "authors": _T,
        "authors_list": _L,
        "abstract": _T,
        "caption": _T,
        "figure": _T,  # figure number/label as printed, e.g. "1"
        "archive": _T,  # primary archive, e.g. "cs"
        "category": _T,  # primary category, e.g. "cs.CL"
        "categories": _L,  # all categories, primary first
        "year": _I,
        "source_file": _T,  # file name inside the source
        # arXiv source ingest (null for other sources)
        "subfigure": _I,  # 1-based index of the graphic inside its figure, if it has several
        "subcaption": _T,  # caption of its sub-figure
        "label": _T,  # the figure's \label
        "unreferenced": _I,  # 1 = image file that no figure references
        "source_package": _T,  # the source package's file name
    },
    keyword_fields=KEYWORD_FIELDS,
    facet_fields=("archive", "category", "year"),
    range_fields=("year",),
    text_fields=("title", "caption", "authors", "abstract"),
    suggest_fields=("title", "authors", "year", "category", "archive", "arxiv_id", "figure"),
    hit_fields=("arxiv_id", "version", "title", "authors", "caption", "figure", "archive", "category", "categories", "year"),
    title_field="title",
    profile="arxiv",
)

#: Columns of the ``images`` table of an arXiv collection.
IMAGES_ARROW_SCHEMA = ARXIV_SCHEMA.arrow_schema()


def load_records(files: Sequence[Path], taxonomy: Taxonomy) -> tuple[dict[str, MetadataRecord], list[str]]:
    """Read arXiv metadata snapshots (JSON lines); for the same id the newest version wins
    (:func:`~imagemesh.profiles.arxiv.records.newer_record`), then the later file. ``.abs``
    records and folders of them are read by
    :func:`imagemesh.ingest.sources.arxiv_src.metadata.read_metadata` (which the build uses).

    Returns:
        ``(records by arXiv id without version, problems as "file: reason" lines)``.
    """
    records: dict[str, MetadataRecord] = {}
    problems: list[str] = []
    for mf in files:
        recs, probs = read_snapshot(Path(mf), taxonomy)
        records.update({k: r for k, r in recs.items() if newer_record(r, records.get(k))})
        problems.extend(f"{Path(mf).name}: {p}" for p in probs)
    return records, problems


def merge_record(metadata: Mapping[str, Any], rec: MetadataRecord | None) -> dict[str, Any]:
    """A source item's metadata joined with its arXiv record: the record's title, authors and
    categories win; the source's abstract wins (captions' papers carry their own)."""
    md = dict(metadata)
    if rec is not None:
        md["title"] = rec.title or md.get("title")
        md["authors"] = rec.authors or md.get("authors")
        md["authors_list"] = rec.authors_list or md.get("authors_list")
        md["abstract"] = md.get("abstract") or rec.abstract
        md["categories"] = rec.categories or md.get("categories")
        md["category"] = rec.category or md.get("category")
        md["archive"] = rec.archive or md.get("archive")
    return md


def compose_search_text(row: Mapping[str, Any], category_name: Callable[[str], str | None] | None = None) -> str | None:
    """The keyword-search text of an arXiv row: :data:`KEYWORD_FIELDS`, the versioned arXiv id
    (so ``2306.01841v1`` finds it), and the official names of its categories."""
    extra: list[str] = []
    if row.get("arxiv_id") and row.get("version"):
        extra.append(f"{row['arxiv_id']}v{row['version']}")
    if category_name is not None:
        cats = list(row.get("categories") or []) + ([row["category"]] if row.get("category") else [])
        extra.extend(name for c in dict.fromkeys(cats) if (name := category_name(c)))
    return join_text(row, KEYWORD_FIELDS, extra)


def facet_labels(rows: Iterable[Mapping[str, Any]], taxonomy: Taxonomy) -> dict[str, dict[str, str]]:
    """Official names of the archive and category values in ``rows``:
    ``{"archive": {"cs": "Computer Science"}, "category": {"cs.CL": "Computation and Language"}}``."""
    out: dict[str, dict[str, str]] = {"archive": {}, "category": {}}
    for r in rows:
        a, c = r.get("archive"), r.get("category")
        if a and a not in out["archive"] and (name := taxonomy.archive_name(a)):
            out["archive"][a] = name
        if c and c not in out["category"] and (name := taxonomy.category_name(c)):
            out["category"][c] = name
    return {k: v for k, v in out.items() if v}
