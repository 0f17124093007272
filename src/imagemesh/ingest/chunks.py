"""Resumable chunk files of a build: the work of one chunk of images, saved as it finishes.

A chunk file ``chunk-NNNNN.npz`` holds, for a fixed list of source items: their keys, which
decoded (``ok``) and why not (``errors``), the sha256 and size of each source file, the
thumbnail and canonical JPEGs (packed: ``<name>_offsets`` + ``<name>_bytes``), and per
embedding the raw network outputs ``vec__<name>`` (``float32[n_ok, dim]``) and predictions
``pred__<name>`` (JSON strings). Files are written aside and renamed
(:func:`~imagemesh.core.fileio.atomic_write_bytes`), so a killed build leaves whole chunks
only; a damaged one reads as missing and is recomputed.

The folder of a build's chunks is named by :func:`fingerprint` of its inputs and settings, so a
rerun with the same arguments finds and reuses them, and one with other inputs does not.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from imagemesh.core.embedding import Embedding
from imagemesh.core.fileio import atomic_write_bytes
from imagemesh.ingest.options import BuildOptions
from imagemesh.ingest.sources.base import SourceItem
from imagemesh.media.canonical import CANONICAL_MAX_SIDE, CANONICAL_QUALITY

__all__ = ["fingerprint", "pack_blobs", "unpack_blob", "save_chunk", "load_chunk", "iter_vectors"]


def fingerprint(items: Sequence[SourceItem], embeddings: Sequence[Embedding], options: BuildOptions) -> str:
    """16 hex digits identifying a build's inputs: every item's key, path, size and mtime,
    every embedding's config, the chunk size, image limits and canonical-image settings."""
    h = hashlib.sha256()
    for it in items:
        st = it.path.stat()
        h.update(f"{it.key}\0{it.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    h.update(json.dumps([e.config().to_dict() for e in embeddings], sort_keys=True).encode())
    h.update(json.dumps([options.chunk_size, options.limits.__dict__, CANONICAL_MAX_SIDE, CANONICAL_QUALITY], sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def pack_blobs(blobs: Sequence[bytes], prefix: str) -> dict[str, np.ndarray]:
    """Byte strings -> ``{prefix_offsets: int64[n+1], prefix_bytes: uint8[total]}``."""
    return {
        f"{prefix}_offsets": np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64),
        f"{prefix}_bytes": np.frombuffer(b"".join(blobs), dtype=np.uint8),
    }


def unpack_blob(z: Any, prefix: str, j: int) -> bytes:
    """The ``j``-th byte string packed by :func:`pack_blobs` in ``z`` (an ``.npz`` or dict)."""
    offs = z[f"{prefix}_offsets"]
    return z[f"{prefix}_bytes"][offs[j] : offs[j + 1]].tobytes()


def save_chunk(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a chunk file atomically.

    Raises:
        OSError: the folder is not writable.
    """
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types the kwargs as allow_pickle
    atomic_write_bytes(path, buf.getvalue())


def load_chunk(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a chunk file, or ``None`` if it is missing or damaged (recompute it)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None


def iter_vectors(paths: Sequence[Path], name: str) -> Iterator[np.ndarray]:
    """The ``vec__<name>`` arrays of the chunk files, in order (one file open at a time)."""
    for p in paths:
        with np.load(p, allow_pickle=False) as z:
            yield z[f"vec__{name}"]
