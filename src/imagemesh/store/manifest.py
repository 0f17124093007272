"""The collection manifest: what a collection folder holds and how it was made.

``manifest.json`` is the single switch point of a collection: a build writes all its files
into a fresh ``builds/<build_id>/`` folder, then replaces ``manifest.json`` atomically
(write aside + ``os.replace``). Readers that opened the old manifest keep reading the old,
untouched files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagemesh.core.fileio import atomic_write_bytes

__all__ = ["FORMAT", "FORMAT_VERSION", "Manifest", "ManifestError"]

FORMAT = "imagemesh-collection"
FORMAT_VERSION = 3
# Version history: 1 = first format; 2 = images table gains ``search_text`` with a LanceDB
# full-text index (keyword filters); 3 = the manifest holds the metadata schema (fields,
# kinds, roles, facet labels), so collections of any source carry their own fields. Older collections are refused with a clear error;
# rebuild them (``imagemesh demo`` rebuilds its cache by itself).


class ManifestError(ValueError):
    """A manifest is missing, malformed, of another format version, or does not match its files."""


@dataclass
class Manifest:
    """Parsed ``manifest.json``.

    ``schema`` is the :class:`~imagemesh.core.schema.MetadataSchema` as a dict.
    ``embeddings`` maps an embedding name to ``{"config": EmbeddingConfig dict, "dim": int,
    "pca": {...}, "vectors": {"file", "shape", "bytes", "sha256"}, "index": {"backend",
    "params", "file", "bytes", "sha256"}}``; paths are relative to ``data_dir``.
    """

    build_id: str
    data_dir: str
    n_images: int
    table: dict[str, Any]
    embeddings: dict[str, dict[str, Any]]
    created: str
    source: dict[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "format_version": self.format_version,
            "build_id": self.build_id,
            "data_dir": self.data_dir,
            "created": self.created,
            "n_images": self.n_images,
            "table": self.table,
            "embeddings": self.embeddings,
            "source": self.source,
            "schema": self.schema,
        }

    @classmethod
    def from_dict(cls, d: Any) -> "Manifest":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ManifestError("not an imagemesh collection manifest")
        if d.get("format_version") != FORMAT_VERSION:
            raise ManifestError(f"collection format version {d.get('format_version')!r}; this imagemesh reads version {FORMAT_VERSION}")
        try:
            return cls(
                build_id=str(d["build_id"]),
                data_dir=str(d["data_dir"]),
                n_images=int(d["n_images"]),
                table=dict(d["table"]),
                embeddings=dict(d["embeddings"]),
                created=str(d["created"]),
                source=dict(d.get("source") or {}),
                schema=dict(d["schema"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"malformed manifest: {e}") from e

    @classmethod
    def read(cls, root: Path) -> "Manifest":
        path = Path(root) / "manifest.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ManifestError(f"{root} is not an imagemesh collection (no manifest.json)") from None
        except (OSError, ValueError) as e:
            raise ManifestError(f"cannot read {path}: {e}") from e
        m = cls.from_dict(data)
        if Path(m.data_dir).is_absolute() or ".." in Path(m.data_dir).parts:
            raise ManifestError("manifest data_dir must be a relative path inside the collection")
        return m

    def write(self, root: Path) -> None:
        atomic_write_bytes(Path(root) / "manifest.json", json.dumps(self.to_dict(), indent=2, sort_keys=True).encode())
