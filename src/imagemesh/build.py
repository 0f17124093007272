"""Ingest orchestration: source items -> images -> embeddings -> PCA -> indices -> collection.

The build is **resumable** and **atomic**:

1. Items are sorted by key and cut into fixed chunks. Each chunk's results (decoded
   image sizes, thumbnails, raw embedding vectors, predictions, failures) are saved to
   ``<out>/.work/<fingerprint>/chunk-NNNNN.npz`` by write-aside-and-rename. A rerun with
   the same inputs and settings skips finished chunks, so a killed build resumes.
2. Row ids are assigned after all chunks exist, in key order over the images that
   decoded, so they depend only on the input (never on timing or threads).
3. Everything of the new version is written into ``builds/<id>.partial/``, renamed to
   ``builds/<id>/``, and only then ``manifest.json`` is atomically replaced. A reader of
   the previous version keeps its files (the previous build folder is kept; older ones
   are removed).
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import lancedb
import numpy as np
import pyarrow as pa
from tqdm import tqdm

from .arxiv import MetadataRecord, Taxonomy, read_snapshot
from .embedding import Embedding
from .images import ImageLimits, ImageLoadError, load_image, make_thumbnail
from .manifest import Manifest, atomic_write_bytes, sha256_file
from .pca import fit_pca
from .registry import Registries, default_registries
from .schema import IMAGES_ARROW_SCHEMA
from .sources import SourceItem, load_source

__all__ = ["BuildOptions", "BuildReport", "build_collection", "DEFAULT_INDEX_PARAMS"]

#: Default build parameters per backend (a user passes their own with ``--index-params``).
DEFAULT_INDEX_PARAMS: dict[str, dict[str, Any]] = {
    "exact": {},
    "annoy": {"n_trees": 50},
    "faiss": {"recipe": "HNSW32", "ef_search": 64},
}


@dataclass
class BuildOptions:
    """Settings of a build.

    Attributes:
        embeddings: embedding names (``None`` = every registered embedding).
        backend: index backend name (``exact``, ``annoy``, ``faiss``).
        index_params: backend build parameters (default :data:`DEFAULT_INDEX_PARAMS`).
        pca_dim: output dimension of the PCA per embedding (capped by the data).
        chunk_size: images per resumable chunk.
        metadata_files: arXiv metadata snapshots (JSON lines) joined by arXiv id.
        limits: image decoding limits.
        progress: show progress bars.
        threads: ONNX Runtime intra-op threads (0 = its default).
    """

    embeddings: list[str] | None = None
    backend: str = "faiss"
    index_params: dict[str, Any] | None = None
    pca_dim: int = 64
    chunk_size: int = 64
    metadata_files: list[Path] = field(default_factory=list)
    limits: ImageLimits = field(default_factory=ImageLimits)
    progress: bool = True
    threads: int = 0


@dataclass
class BuildReport:
    """What a build did; ``failures`` lists images that were skipped, with reasons."""

    out: Path
    build_id: str
    n_items: int
    n_images: int
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
            f"images: {self.n_images} indexed of {self.n_items} found; {len(self.failures)} skipped; "
            f"{len(self.source_problems)} source rows skipped; {self.chunks_reused} chunk(s) resumed",
            f"metadata records joined: {self.n_with_metadata_record}",
        ]
        for name, e in self.embeddings.items():
            lines.append(f"embedding {name}: {e['input_dim']}-d -> PCA {e['dim']}-d (explained variance {e['explained_variance']:.2f}), index {e['backend']}")
        for f in self.failures[:20]:
            lines.append(f"  skipped {f['key']}: {f['reason']}")
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more (see build-report.json)")
        for p in self.source_problems[:10]:
            lines.append(f"  source: {p['where']}: {p['reason']}")
        return "\n".join(lines)


# ---------------------------------------------------------------------- chunk stage


def _fingerprint(items: list[SourceItem], embeddings: list[Embedding], options: BuildOptions) -> str:
    h = hashlib.sha256()
    for it in items:
        st = it.path.stat()
        h.update(f"{it.key}\0{it.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    h.update(json.dumps([e.config().to_dict() for e in embeddings], sort_keys=True).encode())
    h.update(json.dumps([options.chunk_size, options.limits.__dict__], sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _process_chunk(items: list[SourceItem], embeddings: list[Embedding], limits: ImageLimits) -> dict[str, np.ndarray]:
    """Decode, thumbnail and embed one chunk. Failures are recorded, never raised."""
    images = []
    ok = np.zeros(len(items), dtype=bool)
    errors = [""] * len(items)
    shas = [""] * len(items)
    sizes = np.zeros((len(items), 2), dtype=np.int32)
    thumbs: list[bytes] = []
    for i, it in enumerate(items):
        try:
            shas[i] = sha256_file(it.path)
            img = load_image(it.path, limits)
            thumb = make_thumbnail(img)
        except ImageLoadError as e:
            errors[i] = e.reason
            continue
        except Exception as e:  # a decoder bug must not end the build; report it
            errors[i] = f"{type(e).__name__}: {e}"
            continue
        images.append(img)
        ok[i] = True
        sizes[i] = img.size
        thumbs.append(thumb)
    out: dict[str, np.ndarray] = {
        "keys": np.array([it.key for it in items], dtype=str),
        "ok": ok,
        "errors": np.array(errors, dtype=str),
        "sha256": np.array(shas, dtype=str),
        "sizes": sizes,
        "thumb_offsets": np.cumsum([0] + [len(t) for t in thumbs]).astype(np.int64),
        "thumb_bytes": np.frombuffer(b"".join(thumbs), dtype=np.uint8),
    }
    for emb in embeddings:
        if images:
            vecs, preds = emb.embed_batch_with_predictions(images)
        else:
            vecs, preds = np.zeros((0, emb.dim), np.float32), None
        vecs = np.asarray(vecs, dtype=np.float32)
        if vecs.shape != (len(images), emb.dim) or not np.isfinite(vecs).all():
            raise RuntimeError(f"embedding {emb.name} returned {vecs.dtype}{list(vecs.shape)} (or non-finite values) for {len(images)} images")
        out[f"vec__{emb.name}"] = vecs
        pj = [json.dumps([p.to_dict() for p in pp]) for pp in preds] if preds else [""] * len(images)
        out[f"pred__{emb.name}"] = np.array(pj, dtype=str)
    return out


def _save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _load_chunk(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None  # a damaged chunk is recomputed


# ---------------------------------------------------------------------- assembly


def _merge_metadata(item: SourceItem, rec: MetadataRecord | None) -> dict[str, Any]:
    md = dict(item.metadata)
    if rec is not None:
        md["title"] = rec.title or md.get("title")
        md["authors"] = rec.authors or md.get("authors")
        md["authors_list"] = rec.authors_list or md.get("authors_list")
        md["abstract"] = md.get("abstract") or rec.abstract
        md["categories"] = rec.categories or md.get("categories")
        md["category"] = rec.category or md.get("category")
        md["archive"] = rec.archive or md.get("archive")
    return md


def _iter_chunk_vectors(chunk_paths: list[Path], name: str) -> Iterator[np.ndarray]:
    for p in chunk_paths:
        with np.load(p, allow_pickle=False) as z:
            yield z[f"vec__{name}"]


def _make_embedding(factory: Callable[..., Embedding], threads: int) -> Embedding:
    """Instantiate a registered embedding, passing ``threads`` if its factory takes it."""
    try:
        takes_threads = "threads" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_threads = False
    return factory(threads=threads) if takes_threads else factory()


def build_collection(
    source: Path,
    out: Path,
    options: BuildOptions | None = None,
    registries: Registries | None = None,
    log: Callable[[str], None] = print,
) -> BuildReport:
    """Build (or rebuild) the collection at ``out`` from ``source``.

    Args:
        source: a figures CSV or a folder with ``figures.csv`` + ``images/``.
        out: the collection folder (created if missing; an existing collection is
            replaced atomically when the build succeeds).
        options: :class:`BuildOptions`.
        registries: embedding/backend registries (default: built-ins + plugins).
        log: where progress messages go.

    Returns:
        A :class:`BuildReport` (also written to ``<out>/build-report.json``).

    Raises:
        ValueError: an unknown source format, no image could be decoded, fewer than two
            images, or invalid backend parameters.
        RegistryError: an unknown embedding or backend name.
    """
    t0 = time.perf_counter()
    options = options or BuildOptions()
    regs = registries or default_registries()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    items, problems = load_source(Path(source))
    if not items:
        raise ValueError(f"{source}: no images found")
    names = options.embeddings or regs.embeddings.names()
    embeddings: list[Embedding] = []
    for name in names:
        factory = regs.embeddings.get(name)
        embeddings.append(_make_embedding(factory, options.threads))
    backend_cls = regs.backends.get(options.backend)
    index_params = dict(DEFAULT_INDEX_PARAMS.get(options.backend, {}))
    index_params.update(options.index_params or {})

    taxonomy = Taxonomy.load()
    records: dict[str, MetadataRecord] = {}
    md_problems: list[str] = []
    for mf in options.metadata_files:
        recs, probs = read_snapshot(Path(mf), taxonomy)
        records.update(recs)
        md_problems.extend(f"{Path(mf).name}: {p}" for p in probs)

    # -- stage 1: chunks (resumable)
    fp = _fingerprint(items, embeddings, options)
    work = out / ".work" / fp
    work.mkdir(parents=True, exist_ok=True)
    chunks = [items[i : i + options.chunk_size] for i in range(0, len(items), options.chunk_size)]
    chunk_paths = [work / f"chunk-{n:05d}.npz" for n in range(len(chunks))]
    reused = 0
    bar = tqdm(total=len(items), unit="img", desc="embedding", disable=not options.progress)
    for chunk, path in zip(chunks, chunk_paths):
        data = _load_chunk(path) if path.exists() else None
        if data is not None and list(data["keys"]) == [it.key for it in chunk]:
            reused += 1
        else:
            _save_npz_atomic(path, _process_chunk(chunk, embeddings, options.limits))
        bar.update(len(chunk))
    bar.close()

    # -- stage 2: rows, metadata and thumbnails
    rows: list[dict[str, Any]] = []
    thumb_ids: list[int] = []
    thumb_blobs: list[bytes] = []
    failures: list[dict[str, str]] = []
    by_key = {it.key: it for it in items}
    n_joined = 0
    for path in chunk_paths:
        with np.load(path, allow_pickle=False) as z:
            keys, ok, errors, shas, sizes = z["keys"], z["ok"], z["errors"], z["sha256"], z["sizes"]
            offs, blob = z["thumb_offsets"], z["thumb_bytes"]
            preds = {e.name: z[f"pred__{e.name}"] for e in embeddings}
        j = 0
        for i, key in enumerate(keys.tolist()):
            item = by_key[key]
            if not ok[i]:
                failures.append({"key": key, "path": str(item.path), "reason": str(errors[i])})
                continue
            rec = records.get(str(item.metadata.get("arxiv_id")))
            n_joined += rec is not None
            md = _merge_metadata(item, rec)
            row_id = len(rows)
            pred_obj = {name: json.loads(p[j]) for name, p in preds.items() if p[j]}
            md.update(
                row_id=row_id,
                image_key=key,
                width=int(sizes[i][0]),
                height=int(sizes[i][1]),
                content_sha256=str(shas[i]),
                predictions=json.dumps(pred_obj) if pred_obj else None,
            )
            rows.append(md)
            thumb_ids.append(row_id)
            thumb_blobs.append(blob[offs[j] : offs[j + 1]].tobytes())
            j += 1
    n = len(rows)
    if n < 2:
        raise ValueError(f"only {n} image(s) could be decoded; a collection needs at least 2 (failures: {failures[:3]})")

    build_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    builds = out / "builds"
    builds.mkdir(exist_ok=True)
    partial = builds / f"{build_id}.partial"
    final = builds / build_id
    partial.mkdir()
    for sub in ("vectors", "pca", "index"):
        (partial / sub).mkdir()

    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in IMAGES_ARROW_SCHEMA} for r in rows], schema=IMAGES_ARROW_SCHEMA)
    db = lancedb.connect(str(partial / "lance"))
    tbl = db.create_table("images", data=table)
    thumbs_tbl = db.create_table(
        "thumbs", data=pa.table({"row_id": pa.array(thumb_ids, pa.int64()), "jpeg": pa.array(thumb_blobs, pa.binary())})
    )

    # -- stage 3: PCA, reduced vectors, index per embedding
    emb_entries: dict[str, dict[str, Any]] = {}
    ok_paths = chunk_paths
    for emb in embeddings:
        cfg = emb.config()
        log(f"[{emb.name}] PCA {cfg.dim}-d -> {options.pca_dim}-d over {n} images")
        reducer = fit_pca(_iter_chunk_vectors(ok_paths, emb.name), n, cfg.dim, options.pca_dim)
        d = reducer.n_components
        pca_file = partial / "pca" / f"{emb.name}.npz"
        reducer.save(pca_file)
        vec_file = partial / "vectors" / f"{emb.name}.npy"
        mm = np.lib.format.open_memmap(vec_file, mode="w+", dtype=np.float32, shape=(n, d))
        pos = 0
        for raw in _iter_chunk_vectors(ok_paths, emb.name):
            red = reducer.transform(raw)
            if cfg.metric == "cosine":
                norms = np.linalg.norm(red, axis=1, keepdims=True)
                red = red / np.maximum(norms, 1e-12)
            mm[pos : pos + len(red)] = red
            pos += len(red)
        mm.flush()
        del mm
        vectors = np.load(vec_file, mmap_mode="r")
        log(f"[{emb.name}] building {options.backend} index {index_params}")
        index = backend_cls(d, **index_params)
        step = 65_536
        for s in range(0, n, step):
            index.add(np.arange(s, min(n, s + step), dtype=np.int64), np.asarray(vectors[s : s + step]))
        index.build()
        ext = {"annoy": "ann", "faiss": "faiss", "exact": "npy"}.get(options.backend, "idx")
        idx_file = partial / "index" / f"{emb.name}.{ext}"
        index.save(idx_file)
        del index
        emb_entries[emb.name] = {
            "config": cfg.to_dict(),
            "dim": d,
            "pca": {**reducer.describe(), "file": f"pca/{emb.name}.npz", "sha256": sha256_file(pca_file)},
            "vectors": {"file": f"vectors/{emb.name}.npy", "shape": [n, d], "bytes": vec_file.stat().st_size, "sha256": sha256_file(vec_file)},
            "index": {
                "backend": options.backend,
                "params": {**index_params, "ntotal": n},
                "file": f"index/{emb.name}.{ext}",
                "bytes": idx_file.stat().st_size,
                "sha256": sha256_file(idx_file),
            },
        }

    manifest = Manifest(
        build_id=build_id,
        data_dir=f"builds/{build_id}",
        n_images=n,
        table={"dir": "lance", "name": "images", "version": tbl.version, "thumbs": "thumbs", "thumbs_version": thumbs_tbl.version},
        embeddings=emb_entries,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        source={"path": str(Path(source).resolve()), "n_items": len(items), "metadata_files": [str(p) for p in options.metadata_files]},
    )
    os.replace(partial, final)
    previous = None
    try:
        previous = Manifest.read(out).data_dir
    except ValueError:
        pass
    manifest.write(out)  # the atomic switch
    keep = {final.name} | ({Path(previous).name} if previous else set())
    for old in builds.iterdir():
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(out / ".work", ignore_errors=True)

    report = BuildReport(
        out=out,
        build_id=build_id,
        n_items=len(items),
        n_images=n,
        failures=failures,
        source_problems=[p.to_dict() for p in problems],
        metadata_problems=md_problems,
        n_with_metadata_record=n_joined,
        embeddings={
            k: {"input_dim": v["config"]["dim"], "dim": v["dim"], "explained_variance": v["pca"]["explained_variance"], "backend": v["index"]["backend"]}
            for k, v in emb_entries.items()
        },
        chunks_reused=reused,
        seconds=round(time.perf_counter() - t0, 2),
    )
    atomic_write_bytes(out / "build-report.json", json.dumps(report.to_dict(), indent=2).encode())
    return report

