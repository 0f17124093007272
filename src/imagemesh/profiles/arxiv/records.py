"""arXiv identifiers, the official taxonomy, and metadata-snapshot records.

Ids follow arXiv's identifier scheme ("Understanding the arXiv identifier",
https://info.arxiv.org/help/arxiv_identifier.html): old style ``archive[.SUBJ]/YYMMNNN[vV]``
(``hep-th/9901001``, ``math.GT/0309136``) from August 1991 up to March 2007 (``0703``); new
style ``YYMM.NNNN[vV]`` from April 2007 (``0704``) to December 2014 (``1412``) and
``YYMM.NNNNN[vV]`` from January 2015 (``1501``); ``MM`` is a month 01-12, sequence
numbers start at 1, versions at 1. The year comes from ``YYMM`` (old ids: 91-99 -> 19xx,
00-07 -> 20xx). Archive and category names come
from ``arxiv-taxonomy.json`` (arxiv-base ``taxonomy/definitions.py``), with subsumed
archives and category aliases mapped to their canonical category; the primary category
is the first listed (arXiv metadata snapshot convention).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["ArxivId", "parse_arxiv_id", "Taxonomy", "MetadataRecord", "newer_record", "read_snapshot"]

_NEW = re.compile(r"^(?P<num>(?P<yymm>\d{4})\.(?P<seq>\d{4,5}))(?:v(?P<v>[1-9]\d*))?$")
_OLD = re.compile(r"^(?P<num>(?P<arch>[a-z][a-z\-]*(?:\.[A-Z]{2})?)/(?P<yymm>\d{4})(?P<seq>\d{3}))(?:v(?P<v>[1-9]\d*))?$")
_SCHEME = "https://info.arxiv.org/help/arxiv_identifier.html"


@dataclass(frozen=True)
class ArxivId:
    """A parsed arXiv id: ``id`` without version, ``version`` (or None), ``year``."""

    id: str
    version: int | None
    year: int
    old_style_archive: str | None = None

    def __str__(self) -> str:
        return f"{self.id}v{self.version}" if self.version else self.id


def _year(yymm: str) -> int:
    yy = int(yymm[:2])
    return 1900 + yy if yy >= 91 else 2000 + yy


def _month(yymm: str) -> int:
    """``YYMM`` as a comparable month count (1991-01 -> 0 ... 2090-12): ``9912`` is
    December 1999, before ``0001``, so a new-style ``9912.xxxxx`` predates the scheme."""
    return (_year(yymm) - 1991) * 12 + int(yymm[2:]) - 1


def parse_arxiv_id(text: str) -> ArxivId:
    """Parse ``2306.01841v1``, ``0704.0001``, ``hep-th/9901001v2``, ``math.GT/0309136``.

    An ``arXiv:`` prefix is accepted. The rules are arXiv's identifier scheme
    (https://info.arxiv.org/help/arxiv_identifier.html): ``archive(.SUBJ)/YYMMNNN`` from
    9108 up to 0703; ``YYMM.NNNN`` from 0704 to 1412; ``YYMM.NNNNN`` from 1501; month
    01-12; sequence numbers and versions from 1. So ``0703.1234`` (before the new scheme),
    ``9912.99999``, ``1413.1234`` (month 13), ``1501.0001`` (4 digits after 2014) and
    ``hep-th/0901001`` (old style after 0703) are not ids; ``0704.0001`` and
    ``1501.00001`` are.

    Raises:
        ValueError: not an arXiv id (the reason names the rule broken).
    """
    s = text.strip()
    if s.lower().startswith("arxiv:"):
        s = s[6:]
    m = _NEW.match(s)
    if m:
        yymm = m["yymm"]
        if not 1 <= int(yymm[2:]) <= 12:
            raise ValueError(f"not an arXiv id: {text!r} (month {yymm[2:]} is not 01-12; {_SCHEME})")
        if _month(yymm) < _month("0704") or (len(m["seq"]) == 5) != (_month(yymm) >= _month("1501")):
            raise ValueError(f"not an arXiv id: {text!r} (YYMM.NNNN from 0704 to 1412, YYMM.NNNNN from 1501; {_SCHEME})")
        if int(m["seq"]) == 0:
            raise ValueError(f"not an arXiv id: {text!r} (sequence numbers start at 1; {_SCHEME})")
        return ArxivId(m["num"], int(m["v"]) if m["v"] else None, _year(yymm))
    m = _OLD.match(s)
    if m:
        yymm = m["yymm"]
        if not 1 <= int(yymm[2:]) <= 12:
            raise ValueError(f"not an arXiv id: {text!r} (month {yymm[2:]} is not 01-12; {_SCHEME})")
        if not _month("9108") <= _month(yymm) <= _month("0703"):
            raise ValueError(f"not an arXiv id: {text!r} (archive/YYMMNNN ids run from 9108 to 0703; {_SCHEME})")
        if int(m["seq"]) == 0:
            raise ValueError(f"not an arXiv id: {text!r} (sequence numbers start at 1; {_SCHEME})")
        return ArxivId(m["num"], int(m["v"]) if m["v"] else None, _year(yymm), m["arch"].split(".")[0])
    raise ValueError(f"not an arXiv id: {text!r} ({_SCHEME})")


@dataclass(frozen=True)
class Taxonomy:
    """The official arXiv taxonomy (archives and categories with their full names)."""

    archives: dict[str, dict[str, Any]]
    categories: dict[str, dict[str, Any]]
    archives_subsumed: dict[str, str]
    category_aliases: dict[str, str]

    @classmethod
    def load(cls, path: Path | None = None) -> "Taxonomy":
        """Load ``path`` or the copy bundled with imagemesh."""
        if path is None:
            text = (resources.files("imagemesh.profiles.arxiv") / "data" / "arxiv-taxonomy.json").read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        d = json.loads(text)
        return cls(d["ARCHIVES"], d["CATEGORIES"], d.get("ARCHIVES_SUBSUMED", {}), d.get("CATEGORY_ALIASES", {}))

    def canonical_category(self, cat: str) -> str:
        """Map aliases (``math.IT`` -> ``cs.IT``) and subsumed archives (``cmp-lg`` -> ``cs.CL``)."""
        cat = cat.strip()
        cat = self.category_aliases.get(cat, cat)
        return self.archives_subsumed.get(cat, cat)

    def archive_of(self, cat: str) -> str | None:
        info = self.categories.get(cat)
        if info is not None:
            return info.get("in_archive")
        head = cat.split(".")[0]
        return head if head in self.archives else None

    def category_name(self, cat: str) -> str | None:
        info = self.categories.get(cat)
        return info.get("full_name") if info else None

    def archive_name(self, archive: str) -> str | None:
        info = self.archives.get(archive)
        return info.get("full_name") if info else None


@dataclass
class MetadataRecord:
    """The fields imagemesh keeps from an arXiv metadata record."""

    arxiv_id: str
    title: str | None = None
    authors: str | None = None
    authors_list: list[str] = field(default_factory=list)
    abstract: str | None = None
    categories: list[str] = field(default_factory=list)
    archive: str | None = None
    category: str | None = None
    year: int | None = None
    #: the newest version the record describes (``.abs``: its ``Date (revised vN)`` lines;
    #: snapshot: its ``versions`` list), ``None`` if it does not say
    version: int | None = None


def _clean(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    return " ".join(text.split()) or None


def record_from_snapshot(obj: dict[str, Any], taxonomy: Taxonomy) -> MetadataRecord:
    """One JSON object of the arXiv metadata snapshot -> :class:`MetadataRecord`.

    Raises:
        ValueError: no valid ``id``.
    """
    aid = parse_arxiv_id(str(obj.get("id", "")))
    cats_raw = obj.get("categories") or ""
    cats: list[str] = []
    for c in str(cats_raw).split():
        cc = taxonomy.canonical_category(c)
        if cc not in cats:
            cats.append(cc)
    primary = cats[0] if cats else None
    authors_list: list[str] = []
    parsed = obj.get("authors_parsed")
    if isinstance(parsed, list):
        for a in parsed:
            if isinstance(a, list) and a:
                name = " ".join(p for p in [a[1] if len(a) > 1 else "", a[0]] if isinstance(p, str) and p).strip()
                if name:
                    authors_list.append(name)
    return MetadataRecord(
        version=_snapshot_version(obj.get("versions")) or aid.version,
        arxiv_id=aid.id,
        title=_clean(obj.get("title")),
        authors=_clean(obj.get("authors")),
        authors_list=authors_list,
        abstract=_clean(obj.get("abstract")),
        categories=cats,
        archive=taxonomy.archive_of(primary) if primary else None,
        category=primary,
        year=aid.year,
    )


def _snapshot_version(versions: Any) -> int | None:
    """The highest ``vN`` of a snapshot record's ``versions`` list (``[{"version": "v1", ...}]``)."""
    best = None
    if isinstance(versions, list):
        for v in versions:
            m = re.fullmatch(r"v([1-9]\d*)", str(v.get("version", "")) if isinstance(v, dict) else "")
            if m:
                best = max(best or 0, int(m.group(1)))
    return best


def newer_record(new: MetadataRecord, old: MetadataRecord | None) -> bool:
    """Whether ``new`` should replace ``old`` (same arXiv id): the newest version wins
    (an unknown version counts as the oldest); for the same version, a record with a title
    beats one without, else the later one wins."""
    if old is None:
        return True
    return (new.version or 0, bool(new.title)) >= (old.version or 0, bool(old.title))


def read_snapshot(path: Path, taxonomy: Taxonomy) -> tuple[dict[str, MetadataRecord], list[str]]:
    """Read a metadata-snapshot JSON-lines file.

    Returns:
        ``(records by arXiv id without version, problems)``; a bad line is reported in
        ``problems`` (``"line N: reason"``) and skipped, never fatal. Of several records
        of one id the newest version wins (:func:`newer_record`).
    """
    records: dict[str, MetadataRecord] = {}
    problems: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
                rec = record_from_snapshot(obj, taxonomy)
            except ValueError as e:
                problems.append(f"line {n}: {e}")
                continue
            if newer_record(rec, records.get(rec.arxiv_id)):
                records[rec.arxiv_id] = rec
    return records, problems
