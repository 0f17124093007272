"""What a source is: value types, the :class:`Source` protocol and source discovery.

A source turns input data (a folder, a CSV, archives) into :class:`SourceItem` records (an
image file plus its metadata) and says which fields that metadata has (a
:class:`~imagemesh.core.schema.MetadataSchema`). Sources register as entry points of the
group ``imagemesh.sources`` (a module or object with ``name``, ``detect`` and ``read``), so a
new source is one module plus one line in ``pyproject.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from imagemesh.core.registry import Registry
from imagemesh.core.schema import MetadataSchema

__all__ = ["SourceItem", "SourceProblem", "SourceData", "Source", "source_registry", "load_source"]


@dataclass(frozen=True)
class SourceItem:
    """One image to ingest.

    ``key`` is the stable, unique image key (e.g. ``"2306.01841v1/fig1"``); the build
    sorts items by key, so row ids follow from the input, not from timing.
    ``metadata`` holds values for the fields of the source's schema.
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


@dataclass(frozen=True)
class SourceData:
    """What a source read: the items, the rows it skipped, and the schema of their metadata."""

    items: list[SourceItem]
    problems: list[SourceProblem]
    schema: MetadataSchema


class Source(Protocol):
    """A registered source (entry-point group ``imagemesh.sources``)."""

    name: str

    def detect(self, path: Path) -> bool:
        """Whether ``path`` is input of this source."""

    def read(self, path: Path) -> SourceData:
        """Read ``path``.

        Raises:
            ValueError: the input is malformed as a whole (bad rows are problems).
        """


def source_registry() -> Registry[Any]:
    """A fresh registry of the installed sources (entry-point group ``imagemesh.sources``)."""
    reg: Registry[Any] = Registry("source")
    for ep in entry_points(group="imagemesh.sources"):
        if ep.name not in reg:
            reg.register(ep.name, ep.value)
    return reg


def load_source(path: Path, source: str | None = None) -> SourceData:
    """Read ``path`` with the named ``source``, or with the first installed source (in name
    order) whose ``detect`` accepts it.

    Raises:
        ValueError: no source recognises ``path``, or the source rejects it.
        RegistryError: an unknown source name.
    """
    path = Path(path)
    reg = source_registry()
    if source is not None:
        return reg.get(source).read(path)
    for name in reg.names():
        src = reg.get(name)
        if src.detect(path):
            return src.read(path)
    raise ValueError(f"{path}: not a recognised source ({', '.join(reg.names())}): expected a figures CSV, a folder with figures.csv, or a folder with metadata.jsonl")
