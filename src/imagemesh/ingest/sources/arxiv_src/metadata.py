"""Paper metadata for arXiv source packages: ids from package names, ``.abs`` records,
the metadata snapshot, and the fallback from the LaTeX source itself.

Precedence per field: a metadata record (``.abs`` or snapshot, by arXiv id without
version) beats what the LaTeX says (title, authors, abstract); categories, primary
category and archive come only from records, mapped by the official taxonomy
(subsumed archives and aliases; primary = first listed).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from imagemesh.profiles.arxiv.records import ArxivId, MetadataRecord, Taxonomy, newer_record, parse_arxiv_id, read_snapshot, record_from_snapshot

__all__ = ["arxiv_id_from_name", "read_abs", "read_metadata", "merge_record", "split_authors"]

_SUFFIXES = re.compile(r"(\.(tar\.gz|tar\.bz2|tgz|tar|gz|zip|pdf|tex|bz2))+$", re.I)
_OLD_FLAT = re.compile(r"^([a-z][a-z\-]*(?:\.[A-Z]{2})?)(\d{7}(?:v\d+)?)$")


def arxiv_id_from_name(name: str | None) -> ArxivId | None:
    """The arXiv id a package file is named after, or ``None``.

    ``1602.00123.tar``, ``2306.01841v2.tar.gz``, ``hep-th9901001.gz`` (bulk-archive
    spelling of ``hep-th/9901001``), ``1801.03879-1.tar.gz`` (a ``-N`` suffix is a copy
    number, not a version).
    """
    if not name:
        return None
    stem = _SUFFIXES.sub("", Path(name).name)
    stem = re.sub(r"-\d+$", "", stem)
    m = _OLD_FLAT.match(stem)
    if m:
        stem = f"{m.group(1)}/{m.group(2)}"
    try:
        return parse_arxiv_id(stem)
    except ValueError:
        return None


#: name suffixes that follow a comma but belong to the name before it ("Smith, Jr.")
_SUFFIX = re.compile(r"^(?:Jr|Sr|Jnr|Snr)\.?$|^(?:II|III|IV|V|VI)$", re.I)


def _top_level_parts(text: str) -> list[str]:
    """Split at commas, semicolons and the word "and" outside parentheses/brackets."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
        if depth == 0:
            if c in ",;":
                parts.append("".join(cur))
                cur = []
                i += 1
                continue
            m = re.match(r"\s+and\s+", text[i:]) if c.isspace() else None
            if m:
                parts.append("".join(cur))
                cur = []
                i += m.end()
                continue
        cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def split_authors(text: str) -> list[str]:
    """Author names of an arXiv ``Authors:`` line, without affiliations.

    The format is arXiv's (https://info.arxiv.org/help/prep.html#authors): names separated
    by commas, the last one by "and" (optionally ", and"); affiliations in parentheses
    after a name, or numbered (``A (1), B (2) ((1) MIT, (2) CERN)``). So commas and "and"
    inside parentheses do not separate names, the parenthesised affiliations are dropped,
    and a generational suffix after a comma (``Jr.``, ``Sr.``, ``III``) stays with its name.
    """
    names: list[str] = []
    for part in _top_level_parts(text):
        name = " ".join(re.sub(r"\([^()]*(?:\([^()]*\)[^()]*)*\)", " ", part).split())
        name = re.sub(r"^and\s+", "", name)
        if not name:
            continue
        if names and _SUFFIX.match(name):
            names[-1] = f"{names[-1]}, {name}"
        else:
            names.append(name)
    return names


def _abs_version(text: str, path: Path) -> int | None:
    """The newest version an ``.abs`` record describes: ``Date (revised vN)`` lines, else 1
    when it has a ``Date:`` line; a ``vN`` in the file name counts too."""
    found = [int(v) for v in re.findall(r"^Date \(revised v(\d+)\)", text, re.M)]
    if re.search(r"^Date:", text, re.M):
        found.append(1)
    m = re.search(r"v(\d+)\.abs$", path.name)
    if m:
        found.append(int(m.group(1)))
    return max(found) if found else None


def _abs_fields(text: str) -> tuple[dict[str, str], str]:
    parts = re.split(r"^\\\\\s*$", text, flags=re.M)
    header = parts[1] if len(parts) > 2 else text
    abstract = parts[2] if len(parts) > 2 else ""
    fields: dict[str, str] = {}
    key = None
    for line in header.splitlines():
        m = re.match(r"^([A-Za-z][A-Za-z\-]*):\s?(.*)$", line)
        if line.startswith("arXiv:"):
            fields["id"] = line[6:].strip()
            key = None
        elif m:
            key = m.group(1).lower()
            fields[key] = m.group(2).strip()
        elif key and line.startswith((" ", "\t")):
            fields[key] += " " + line.strip()
    return fields, abstract


def read_abs(path: Path, taxonomy: Taxonomy) -> MetadataRecord:
    """One arXiv ``.abs`` record (arxiv-browse format).

    Raises:
        ValueError: no valid ``arXiv:`` id line.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    fields, abstract = _abs_fields(text)
    if "id" not in fields:
        m = re.search(r"^Paper:\s*(\S+)", text, re.M)
        if m:
            fields["id"] = m.group(1)
    from imagemesh.ingest.sources.arxiv_src.latex import latex_to_text  # .abs titles and names are TeX-encoded (Bal\\'azs)

    authors = latex_to_text(fields.get("authors", "")) if "\\" in fields.get("authors", "") else fields.get("authors", "")
    if "title" in fields and "\\" in fields["title"]:
        fields["title"] = latex_to_text(fields["title"])
    authors_list = split_authors(authors)
    obj: dict[str, Any] = {
        "id": fields.get("id", ""),
        "title": fields.get("title"),
        "authors": authors or None,
        "categories": fields.get("categories", ""),
        "abstract": abstract.strip() or None,
    }
    rec = record_from_snapshot(obj, taxonomy)
    rec.authors_list = authors_list
    rec.version = _abs_version(text, Path(path))
    return rec


def read_metadata(paths: Iterable[Path], taxonomy: Taxonomy | None = None) -> tuple[dict[str, MetadataRecord], list[str]]:
    """Read metadata files: snapshot JSON lines (``.json``/``.jsonl``), ``.abs`` records,
    or folders of ``.abs`` records (searched recursively).

    Of several records of one paper (``0704.0001.abs`` and ``0704.0001v1.abs``, or a
    snapshot and an ``.abs``) the newest version wins, whatever the order the files are
    read in; for the same version a record with a title beats one without, then the
    later file wins (:func:`~imagemesh.profiles.arxiv.records.newer_record`).

    Returns ``(records by arXiv id without version, problems)``; bad entries, unreadable
    files and folders without ``.abs`` records are problems, never exceptions.
    """
    taxonomy = taxonomy or Taxonomy.load()
    records: dict[str, MetadataRecord] = {}
    problems: list[str] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*.abs") if f.is_file())
            if not files:
                problems.append(f"{p}: no .abs records in this folder")
        else:
            files = [p]
        for f in files:
            recs: dict[str, MetadataRecord]
            probs: list[str] = []
            try:
                if f.suffix.lower() == ".abs":
                    one = read_abs(f, taxonomy)
                    recs = {one.arxiv_id: one}
                else:
                    recs, probs = read_snapshot(f, taxonomy)
            except (ValueError, OSError) as e:
                problems.append(f"{f.name}: {e}")
                continue
            problems.extend(f"{f.name}: {x}" for x in probs)
            for aid, rec in recs.items():
                if newer_record(rec, records.get(aid)):
                    records[aid] = rec
    return records, problems


def merge_record(md: dict[str, Any], rec: MetadataRecord | None, latex: dict[str, Any] | None) -> dict[str, Any]:
    """Fill ``md`` (an image's metadata) from a record, falling back to the LaTeX front matter."""
    out = dict(md)
    latex = latex or {}
    if rec is not None:
        out["title"] = rec.title or latex.get("title")
        out["authors"] = rec.authors or (", ".join(latex.get("authors") or []) or None)
        out["authors_list"] = rec.authors_list or latex.get("authors") or None
        out["abstract"] = rec.abstract or latex.get("abstract")
        out["categories"] = rec.categories or None
        out["category"] = rec.category
        out["archive"] = rec.archive
    else:
        out["title"] = latex.get("title")
        out["authors"] = ", ".join(latex.get("authors") or []) or None
        out["authors_list"] = latex.get("authors") or None
        out["abstract"] = latex.get("abstract")
    return out
