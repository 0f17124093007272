"""Settings and report of a build (values only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagemesh.media.images import ImageLimits
from imagemesh.media.isolate import IsolationLimits

__all__ = ["BuildOptions", "BuildReport"]


@dataclass
class BuildOptions:
    """Settings of a build.

    Attributes:
        embeddings: embedding names (``None`` = every registered embedding; with
            ``append`` the collection's own embeddings).
        backend: index backend name (``exact``, ``annoy``, ``faiss``).
        index_params: backend build parameters (default :data:`~imagemesh.store.writer.DEFAULT_INDEX_PARAMS`).
        pca_dim: output dimension of the PCA per embedding (capped by the data).
        chunk_size: images per resumable chunk.
        metadata_files: arXiv metadata snapshots (JSON lines) joined by arXiv id.
        limits: image decoding limits.
        isolate_decoders: decode source files in an :class:`~imagemesh.media.isolate.IsolatedDecoder`
            worker process (default), so a decoder that crashes, hangs or exhausts memory
            on a hostile file fails that image, not the build. ``False`` decodes in
            process (slightly faster; for trusted files). The output is identical.
        isolation: time and memory limits of that worker, per file.
        progress: show progress bars.
        threads: ONNX Runtime intra-op threads (0 = its default).
        map_2d: compute a 2-D map of each embedding for the explorer's map view.
        executor: ``"local"`` (decode thread + ONNX Runtime in this process) or ``"ray"``
            (:func:`~imagemesh.ingest.embed.add_embedding` on Ray Data, see
            :mod:`imagemesh.ingest.distributed`).
        ray_address, ray_cpus, ray_actors: Ray cluster address (``None``: start a local Ray
            with ``ray_cpus`` CPUs) and the size of the actor pool.
    """

    embeddings: list[str] | None = None
    backend: str = "faiss"
    index_params: dict[str, Any] | None = None
    pca_dim: int = 64
    chunk_size: int = 64
    metadata_files: list[Path] = field(default_factory=list)
    limits: ImageLimits = field(default_factory=ImageLimits)
    isolate_decoders: bool = True
    isolation: IsolationLimits = field(default_factory=IsolationLimits)
    progress: bool = True
    threads: int = 0
    map_2d: bool = True
    executor: str = "local"
    ray_address: str | None = None
    ray_cpus: int | None = None
    ray_actors: int = 2


@dataclass
class BuildReport:
    """What a build did; ``failures`` lists images that were skipped, with reasons."""

    out: Path
    build_id: str
    n_items: int
    n_images: int
    n_new: int
    failures: list[dict[str, str]]
    source_problems: list[dict[str, str]]
    metadata_problems: list[str]
    n_with_metadata_record: int
    embeddings: dict[str, dict[str, Any]]
    chunks_reused: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["out"] = str(self.out)
        return d

    def summary(self) -> str:
        lines = [
            f"collection: {self.out} (build {self.build_id})",
            f"images: {self.n_images} indexed ({self.n_new} new) of {self.n_items} found; {len(self.failures)} skipped; "
            f"{len(self.source_problems)} source rows skipped; {self.chunks_reused} chunk(s) resumed",
        ]
        if self.n_with_metadata_record or self.metadata_problems:  # only when --metadata joined records
            lines.append(f"metadata records joined: {self.n_with_metadata_record}")
        for name, e in self.embeddings.items():
            lines.append(f"embedding {name}: {e['input_dim']}-d -> PCA {e['dim']}-d (explained variance {e['explained_variance']:.2f}), index {e['backend']}")
        for f in self.failures[:20]:
            lines.append(f"  skipped {f['key']}: {f['reason']}")
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more (see build-report.json)")
        for p in self.source_problems[:10]:
            lines.append(f"  source: {p['where']}: {p['reason']}")
        return "\n".join(lines)
