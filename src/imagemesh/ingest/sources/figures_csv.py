"""The arXiv figures CSV (``shared/data/arxiv-figures/figures.csv``).

Columns: ``paper_title, arxiv_id, fig1_file_path, fig1_caption, abstract, introduction``.
The image is looked up as ``images/<arxiv_id>.<ext>`` next to the CSV (any case of the
extension), falling back to the CSV's own path relative to the CSV's folder. The CSV has
no categories, so archive/category stay empty unless a metadata file supplies them.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from imagemesh.profiles.arxiv.records import parse_arxiv_id
from imagemesh.ingest.sources.base import SourceData, SourceItem, SourceProblem
from imagemesh.profiles.arxiv.profile import ARXIV_SCHEMA

__all__ = ["read_figures_csv", "name", "detect", "read"]

name = "figures_csv"

_EXTS = (".pdf", ".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp", ".webp", ".eps", ".ps")


def _find_image(root: Path, arxiv_id: str, csv_path: str) -> Path | None:
    images = root / "images"
    if images.is_dir():
        wanted = {f"{arxiv_id}{e}".lower() for e in _EXTS}
        for p in sorted(images.iterdir()):
            if p.name.lower() in wanted and p.is_file():
                return p
    if csv_path:
        cand = (root / csv_path).resolve()
        if cand.is_file() and root.resolve() in cand.parents:
            return cand
    return None


def read_figures_csv(path: Path) -> tuple[list[SourceItem], list[SourceProblem]]:
    """Read the figures CSV at ``path``.

    Returns:
        ``(items, problems)``: rows with a bad arXiv id, a duplicate key or a missing
        image file are reported as problems and skipped.
    """
    path = Path(path)
    root = path.parent
    items: list[SourceItem] = []
    problems: list[SourceProblem] = []
    seen: set[str] = set()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        missing = {"arxiv_id", "paper_title"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for n, row in enumerate(reader, 2):
            raw_id = (row.get("arxiv_id") or "").strip()
            try:
                aid = parse_arxiv_id(raw_id)
            except ValueError as e:
                problems.append(SourceProblem(f"{path.name}:{n}", str(e)))
                continue
            key = f"{aid}/fig1"
            if key in seen:
                problems.append(SourceProblem(f"{path.name}:{n}", f"duplicate image {key}"))
                continue
            img = _find_image(root, str(aid), (row.get("fig1_file_path") or "").strip())
            if img is None:
                problems.append(SourceProblem(f"{path.name}:{n}", f"no image file for {aid}"))
                continue
            seen.add(key)
            items.append(
                SourceItem(
                    key=key,
                    path=img,
                    metadata={
                        "arxiv_id": aid.id,
                        "version": aid.version,
                        "title": " ".join((row.get("paper_title") or "").split()) or None,
                        "abstract": (row.get("abstract") or "").strip() or None,
                        "caption": (row.get("fig1_caption") or "").strip() or None,
                        "figure": "1",
                        "year": aid.year,
                        "source_file": img.name,
                    },
                )
            )
    items.sort(key=lambda it: it.key)
    return items, problems


def detect(path: Path) -> bool:
    """A ``.csv`` file, or a folder holding ``figures.csv``."""
    path = Path(path)
    return (path.is_dir() and (path / "figures.csv").is_file()) or (path.is_file() and path.suffix.lower() == ".csv")


def read(path: Path) -> SourceData:
    """Read a figures CSV (or the ``figures.csv`` of a folder); the arXiv schema.

    Raises:
        ValueError: the CSV lacks the required columns.
    """
    path = Path(path)
    items, problems = read_figures_csv(path / "figures.csv" if path.is_dir() else path)
    return SourceData(items, problems, ARXIV_SCHEMA)
