"""Value types shared by sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SourceItem", "SourceProblem", "load_source"]


@dataclass(frozen=True)
class SourceItem:
    """One image to ingest.

    ``key`` is the stable, unique image key (e.g. ``"2306.01841v1/fig1"``); the build
    sorts items by key, so row ids follow from the input, not from timing.
    ``metadata`` holds values for the columns of :data:`imagemesh.schema.IMAGES_ARROW_SCHEMA`.
    """

    key: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceProblem:
    """Something in the input that was skipped, with the reason."""

    where: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "reason": self.reason}


def load_source(path: Path) -> tuple[list[SourceItem], list[SourceProblem]]:
    """Detect the source format of ``path`` and read it.

    ``path`` may be a figures CSV or a folder holding ``figures.csv`` and ``images/``.

    Raises:
        ValueError: the format is not recognised.
    """
    from .figures_csv import read_figures_csv

    path = Path(path)
    if path.is_dir() and (path / "figures.csv").is_file():
        return read_figures_csv(path / "figures.csv")
    if path.is_file() and path.suffix.lower() == ".csv":
        return read_figures_csv(path)
    raise ValueError(f"{path}: not a recognised source (expected a figures CSV or a folder with figures.csv)")
