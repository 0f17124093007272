"""Ingest orchestration: source items -> images -> embeddings -> PCA -> indices -> collection.

Layout written here (see README "Collection format")::

    DIR/manifest.json          the switch point, replaced atomically
    DIR/lance/                 LanceDB tables ``images`` (metadata) and ``media`` (thumbnail and
                               canonical image JPEGs); every build commits a new table version
    DIR/builds/<id>/           vectors/, pca/, index/, map/ of that build (immutable)

The build is **resumable**, **atomic** and **incremental**:

1. Items are sorted by key and cut into fixed chunks. Each chunk's results (canonical
   image and thumbnail JPEGs, raw embedding vectors, predictions, failures) are saved to
   ``DIR/.work/<fingerprint>/chunk-NNNNN.npz`` by write-aside-and-rename; a rerun with the
   same inputs and settings skips finished chunks, so a killed build resumes.
2. Every embedding is computed from the *canonical image*: the decoded figure at a longest
   side of at most 512 px, JPEG-encoded once and decoded again. The same bytes are stored in
   the ``media`` table, so an embedding added later (:func:`add_embedding`) sees exactly the
   pixels the build saw.
3. Row ids are assigned after all chunks exist, in key order over the images that decoded,
   so they depend only on the input (never on timing or threads). ``append=True`` keeps
   every existing row id and appends new keys after them (PCA is reused, indices rebuilt).
4. New table versions are committed to LanceDB, vectors and indices go into a fresh
   ``builds/<id>.partial/`` folder, renamed to ``builds/<id>/``, and only then is
   ``manifest.json`` atomically replaced. Readers of the previous version keep reading the
   old table version and the previous build folder (kept; older ones are removed).
"""

from __future__ import annotations

import contextlib
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
from typing import Any, Callable, Iterable, Iterator, Sequence

import lancedb
import numpy as np
import pyarrow as pa
from PIL import Image
from tqdm import tqdm

from .arxiv import MetadataRecord, Taxonomy, read_snapshot
from .embedding import Embedding, EmbeddingConfig
from .images import ImageLimits, ImageLoadError, load_image, make_thumbnail
from .isolate import IsolatedDecoder, IsolationLimits
from .manifest import Manifest, ManifestError, atomic_write_bytes, sha256_file
from .models.pipeline import embed_prepared, prefetched
from .pca import PcaReducer, fit_pca
from .projection import project_2d
from .registry import Registries, default_registries
from .schema import IMAGES_ARROW_SCHEMA, MEDIA_ARROW_SCHEMA
from .text_search import FTS_COLUMN, compose_search_text, fts_config
from .sources import SourceItem, SourceProblem, load_source

__all__ = ["BuildOptions", "BuildReport", "build_collection", "add_embedding", "DEFAULT_INDEX_PARAMS", "CANONICAL_MAX_SIDE"]

#: Default build parameters per backend (a user passes their own with ``--index-params``).
DEFAULT_INDEX_PARAMS: dict[str, dict[str, Any]] = {
    "exact": {},
    "annoy": {"n_trees": 50},
    "faiss": {"recipe": "HNSW32", "ef_search": 64},
}
#: Longest side (px) of the canonical image every embedding sees and the explorer shows.
CANONICAL_MAX_SIDE = 512
CANONICAL_QUALITY = 90
_INDEX_EXT = {"annoy": "ann", "faiss": "faiss", "exact": "npy"}


@dataclass
class BuildOptions:
    """Settings of a build.

    Attributes:
        embeddings: embedding names (``None`` = every registered embedding; with
            ``append`` the collection's own embeddings).
        backend: index backend name (``exact``, ``annoy``, ``faiss``).
        index_params: backend build parameters (default :data:`DEFAULT_INDEX_PARAMS`).
        pca_dim: output dimension of the PCA per embedding (capped by the data).
        chunk_size: images per resumable chunk.
        metadata_files: arXiv metadata snapshots (JSON lines) joined by arXiv id.
        limits: image decoding limits.
        isolate_decoders: decode source files in an :class:`~imagemesh.isolate.IsolatedDecoder`
            worker process (default), so a decoder that crashes, hangs or exhausts memory
            on a hostile file fails that image, not the build. ``False`` decodes in
            process (slightly faster; for trusted files). The output is identical.
        isolation: time and memory limits of that worker, per file.
        progress: show progress bars.
        threads: ONNX Runtime intra-op threads (0 = its default).
        map_2d: compute a 2-D map of each embedding for the explorer's map view.
        executor: ``"local"`` (decode thread + ONNX Runtime in this process) or ``"ray"``
            (:func:`add_embedding` on Ray Data, see :mod:`imagemesh.distributed`).
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


# ---------------------------------------------------------------------- helpers


def canonical_image(img: Image.Image) -> tuple[bytes, Image.Image]:
    """The canonical form of a decoded figure: JPEG bytes (longest side <= 512 px) and the
    RGB image decoded back from those bytes (what every embedding sees)."""
    data = make_thumbnail(img, max_side=CANONICAL_MAX_SIDE, quality=CANONICAL_QUALITY)
    return data, decode_jpeg(data)


def decode_jpeg(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.convert("RGB")


def _make_embedding(factory: Callable[..., Embedding], threads: int) -> Embedding:
    """Instantiate a registered embedding, passing ``threads`` if its factory takes it."""
    try:
        takes_threads = "threads" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_threads = False
    return factory(threads=threads) if takes_threads else factory()


def _fingerprint(items: Sequence[SourceItem], embeddings: Sequence[Embedding], options: BuildOptions) -> str:
    h = hashlib.sha256()
    for it in items:
        st = it.path.stat()
        h.update(f"{it.key}\0{it.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    h.update(json.dumps([e.config().to_dict() for e in embeddings], sort_keys=True).encode())
    h.update(json.dumps([options.chunk_size, options.limits.__dict__, CANONICAL_MAX_SIDE, CANONICAL_QUALITY], sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _pack(blobs: Sequence[bytes], prefix: str) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_offsets": np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64),
        f"{prefix}_bytes": np.frombuffer(b"".join(blobs), dtype=np.uint8),
    }


def _unpack(z: Any, prefix: str, j: int) -> bytes:
    offs = z[f"{prefix}_offsets"]
    return z[f"{prefix}_bytes"][offs[j] : offs[j + 1]].tobytes()


def _embed_all(embeddings: Sequence[Embedding], images: list[Image.Image]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
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


def _decode_chunk(items: Sequence[SourceItem], limits: ImageLimits, decoder: IsolatedDecoder | None = None) -> tuple[dict[str, np.ndarray], list[Image.Image]]:
    """Decode one chunk and make canonical images + thumbnails. Image failures are
    recorded, never raised. Returns the chunk arrays (without vectors) and the images.

    With ``decoder`` the source files are decoded in its worker process (a crash or hang
    there is a failed image); the canonical JPEG it returns is decoded here, exactly as
    :func:`canonical_image` does in process, so both give the same pixels and vectors."""
    images: list[Image.Image] = []
    ok = np.zeros(len(items), dtype=bool)
    errors = [""] * len(items)
    shas = [""] * len(items)
    sizes = np.zeros((len(items), 2), dtype=np.int32)
    thumbs: list[bytes] = []
    canon: list[bytes] = []
    for i, it in enumerate(items):
        try:
            shas[i] = sha256_file(it.path)
            if decoder is not None:
                size, c_bytes = decoder.canonical(it.path)
                c_img = decode_jpeg(c_bytes)
            else:
                img = load_image(it.path, limits)
                size = img.size
                c_bytes, c_img = canonical_image(img)
            thumb = make_thumbnail(c_img)
        except ImageLoadError as e:
            errors[i] = e.reason
            continue
        except Exception as e:  # a decoder bug must not end the build; report it
            errors[i] = f"{type(e).__name__}: {e}"
            continue
        images.append(c_img)
        ok[i] = True
        sizes[i] = size
        thumbs.append(thumb)
        canon.append(c_bytes)
    out: dict[str, np.ndarray] = {
        "keys": np.array([it.key for it in items], dtype=str),
        "ok": ok,
        "errors": np.array(errors, dtype=str),
        "sha256": np.array(shas, dtype=str),
        "sizes": sizes,
        **_pack(thumbs, "thumb"),
        **_pack(canon, "image"),
    }
    return out, images


def _decode_and_prepare(items: Sequence[SourceItem], embeddings: Sequence[Embedding], limits: ImageLimits, decoder: IsolatedDecoder | None = None) -> tuple[dict[str, np.ndarray], list[Any], int]:
    """The CPU work before the networks (decode, canonical image, thumbnail, each
    embedding's :meth:`~Embedding.prepare`): runs in the pipeline's background thread."""
    data, images = _decode_chunk(items, limits, decoder)
    return data, [emb.prepare(images) if images else [] for emb in embeddings], len(images)


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


def _new_build_dir(out: Path) -> tuple[str, Path]:
    build_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    builds = out / "builds"
    builds.mkdir(exist_ok=True)
    partial = builds / f"{build_id}.partial"
    partial.mkdir()
    for sub in ("vectors", "pca", "index", "map"):
        (partial / sub).mkdir()
    return build_id, partial


def _finish(out: Path, partial: Path, manifest: Manifest) -> None:
    """Rename the build folder into place, switch the manifest atomically, prune old builds."""
    final = partial.with_name(partial.name.removesuffix(".partial"))
    os.replace(partial, final)
    previous = None
    try:
        previous = Manifest.read(out).data_dir
    except ManifestError:
        pass
    manifest.write(out)  # the atomic switch
    keep = {final.name} | ({Path(previous).name} if previous else set())
    for old in (out / "builds").iterdir():
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


def republish(out: Path) -> str:
    """Publish the current content of collection ``out`` as a new version: a hard-linked
    copy of its build folder under a new build id, then the atomic manifest switch.

    Servers pick it up like any new build; the load benchmark and the hot-reload tests
    use it. Returns the new build id.

    Raises:
        ManifestError: ``out`` holds no readable manifest.
        OSError: the build folder cannot be linked (e.g. another file system).
    """
    out = Path(out)
    m = Manifest.read(out)
    build_id, partial = _new_build_dir(out)
    old = out / m.data_dir
    for p in old.rglob("*"):
        if p.is_file():
            dst = partial / p.relative_to(old)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(p, dst)
    m.build_id, m.data_dir = build_id, f"builds/{build_id}"
    _finish(out, partial, m)
    return build_id


def _write_table(db: Any, name: str, data: pa.Table, base_version: int | None, fresh: bool, fts: bool = False) -> int:
    """Commit ``data`` as a new version of table ``name``; returns the version.

    ``fresh``: replace the table's content (``mode="overwrite"`` keeps old versions readable).
    Otherwise ``data`` is appended to ``base_version`` (a failed earlier attempt that committed
    rows after ``base_version`` is rolled back first with ``restore``).
    ``fts``: then (re)build the full-text index of ``search_text``, one more version."""
    if fresh or name not in db.table_names():
        tbl = db.create_table(name, data=data, mode="overwrite") if name in db.table_names() else db.create_table(name, data=data)
    else:
        tbl = db.open_table(name)
        if base_version is not None and tbl.version != base_version:
            tbl.checkout(base_version)
            tbl.restore()
        if data.num_rows:
            tbl.add(data)
    if fts:
        _index_search_text(tbl)
    return int(tbl.version)


def _index_search_text(tbl: Any) -> None:
    """(Re)build the LanceDB FTS index of ``search_text`` (config: :func:`text_search.fts_config`).

    Rebuilt whole rather than optimised incrementally, so an index always covers every row."""
    tbl.create_index(FTS_COLUMN, config=fts_config(), replace=True)


def _reduce_and_index(
    name: str,
    cfg: EmbeddingConfig,
    raw_batches: Callable[[], Iterable[np.ndarray]],
    n_new: int,
    partial: Path,
    options: BuildOptions,
    backend_cls: Any,
    index_params: dict[str, Any],
    log: Callable[[str], None],
    old_vectors: np.ndarray | None = None,
    reducer: PcaReducer | None = None,
) -> dict[str, Any]:
    """PCA (fit unless given), reduced vectors (old ones first), index and 2-D map for one
    embedding; returns its manifest entry."""
    n_old = 0 if old_vectors is None else int(old_vectors.shape[0])
    n = n_old + n_new
    if reducer is None:
        log(f"[{name}] PCA {cfg.dim}-d -> {options.pca_dim}-d over {n_new} images")
        reducer = fit_pca(raw_batches(), n_new, cfg.dim, options.pca_dim)
    d = reducer.n_components
    pca_file = partial / "pca" / f"{name}.npz"
    reducer.save(pca_file)
    vec_file = partial / "vectors" / f"{name}.npy"
    mm = np.lib.format.open_memmap(vec_file, mode="w+", dtype=np.float32, shape=(n, d))
    if old_vectors is not None and n_old:
        mm[:n_old] = old_vectors
    pos = n_old
    for raw in raw_batches():
        red = reducer.transform(raw)
        if cfg.metric == "cosine":
            red = red / np.maximum(np.linalg.norm(red, axis=1, keepdims=True), 1e-12)
        mm[pos : pos + len(red)] = red
        pos += len(red)
    if pos != n:
        raise RuntimeError(f"[{name}] wrote {pos} vectors, expected {n}")
    mm.flush()
    del mm
    vectors = np.load(vec_file, mmap_mode="r")
    log(f"[{name}] building {options.backend} index {index_params} over {n} vectors")
    index = backend_cls(d, **index_params)
    step = 65_536
    for s in range(0, n, step):
        index.add(np.arange(s, min(n, s + step), dtype=np.int64), np.asarray(vectors[s : s + step]))
    index.build()
    ext = _INDEX_EXT.get(options.backend, "idx")
    idx_file = partial / "index" / f"{name}.{ext}"
    index.save(idx_file)
    del index
    entry: dict[str, Any] = {
        "config": cfg.to_dict(),
        "dim": d,
        "pca": {**reducer.describe(), "fitted_on": n_new if n_old == 0 else None, "file": f"pca/{name}.npz", "sha256": sha256_file(pca_file)},
        "vectors": {"file": f"vectors/{name}.npy", "shape": [n, d], "bytes": vec_file.stat().st_size, "sha256": sha256_file(vec_file)},
        "index": {
            "backend": options.backend,
            "params": {**index_params, "ntotal": n},
            "file": f"index/{name}.{ext}",
            "bytes": idx_file.stat().st_size,
            "sha256": sha256_file(idx_file),
        },
    }
    if options.map_2d:
        xy, method = project_2d(np.asarray(vectors))
        map_file = partial / "map" / f"{name}.npy"
        with open(map_file, "wb") as f:
            np.save(f, xy)
        entry["map"] = {"file": f"map/{name}.npy", "method": method, "bytes": map_file.stat().st_size, "sha256": sha256_file(map_file)}
    return entry


# ---------------------------------------------------------------------- build


def build_collection(
    source: Path | None,
    out: Path,
    options: BuildOptions | None = None,
    registries: Registries | None = None,
    log: Callable[[str], None] = print,
    *,
    items: Sequence[SourceItem] | None = None,
    problems: Sequence[SourceProblem] = (),
    append: bool = False,
) -> BuildReport:
    """Build, rebuild or extend the collection at ``out``.

    Args:
        source: a figures CSV or a folder with ``figures.csv`` + ``images/`` (ignored when
            ``items`` is given).
        out: the collection folder (created if missing). An existing collection is
            replaced (or, with ``append``, extended) atomically when the build succeeds.
        options: :class:`BuildOptions`.
        registries: embedding/backend registries (default: built-ins + plugins).
        log: where progress messages go.
        items: the images to ingest, instead of reading ``source`` (e.g. from the arXiv
            source ingest); ``problems`` are carried into the report.
        append: keep the existing collection's rows (and row ids, PCA, embeddings) and add
            the items whose keys are new. Without an existing collection this is a fresh
            build.

    Returns:
        A :class:`BuildReport` (also written to ``<out>/build-report.json``).

    Raises:
        ValueError: an unknown source format, fewer than two decodable images, invalid
            backend parameters, or (``append``) an embedding whose model changed.
        RegistryError: an unknown embedding or backend name.
    """
    t0 = time.perf_counter()
    options = options or BuildOptions()
    regs = registries or default_registries()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    if items is None:
        if source is None:
            raise ValueError("give a source path or items")
        items, problems = load_source(Path(source))
    all_items = sorted(items, key=lambda it: it.key)
    if len({it.key for it in all_items}) != len(all_items):
        raise ValueError("image keys must be unique")

    existing = None
    if append:
        from .collection import CollectionError, open_collection

        try:
            existing = open_collection(out, registries=regs)
        except ManifestError as e:
            if (out / "manifest.json").exists() and isinstance(e, CollectionError):
                raise
            existing = None
    if existing is not None:
        names = existing.embeddings
        backend = existing.manifest.embeddings[names[0]]["index"]["backend"]
        options = BuildOptions(**{**options.__dict__, "backend": backend})
        old_keys = set(existing.image_keys())
        todo = [it for it in all_items if it.key not in old_keys]
    else:
        names = options.embeddings or regs.embeddings.names()
        todo = all_items
    if not todo and existing is None:
        raise ValueError(f"{source}: no images found")

    embeddings = [_make_embedding(regs.embeddings.get(name), options.threads) for name in names]
    if existing is not None:
        for emb in embeddings:
            stored = existing.manifest.embeddings[emb.name]["config"]
            if emb.config().to_dict() != stored:
                raise ValueError(f"embedding {emb.name!r} differs from the one that built this collection; rebuild without append")
    backend_cls = regs.backends.get(options.backend)
    index_params = dict(DEFAULT_INDEX_PARAMS.get(options.backend, {}))
    if existing is not None:
        index_params = {k: v for k, v in existing.manifest.embeddings[names[0]]["index"]["params"].items() if k not in ("ntotal", "file_bytes")}
    index_params.update(options.index_params or {})

    taxonomy = Taxonomy.load()
    records: dict[str, MetadataRecord] = {}
    md_problems: list[str] = []
    for mf in options.metadata_files:
        recs, probs = read_snapshot(Path(mf), taxonomy)
        records.update(recs)
        md_problems.extend(f"{Path(mf).name}: {p}" for p in probs)

    # -- stage 1: chunks (resumable)
    fp = _fingerprint(todo, embeddings, options)
    work = out / ".work" / fp
    work.mkdir(parents=True, exist_ok=True)
    chunks = [todo[i : i + options.chunk_size] for i in range(0, len(todo), options.chunk_size)]
    chunk_paths = [work / f"chunk-{n:05d}.npz" for n in range(len(chunks))]
    reused = 0
    bar = tqdm(total=len(todo), unit="img", desc="images", disable=not options.progress)
    pending: list[int] = []
    for n_chunk, (chunk, path) in enumerate(zip(chunks, chunk_paths)):
        data = _load_chunk(path) if path.exists() else None
        if data is not None and list(data["keys"]) == [it.key for it in chunk]:
            reused += 1
            bar.update(len(chunk))
        else:
            pending.append(n_chunk)
        del data
    # Decoding/resizing of chunk i+1 (one background thread) overlaps the networks on chunk i.
    with IsolatedDecoder(options.limits, options.isolation) if options.isolate_decoders and pending else contextlib.nullcontext() as decoder:
        for n_chunk, (data, prepared, n_ok) in prefetched(pending, lambda i: _decode_and_prepare(chunks[i], embeddings, options.limits, decoder)):
            data.update(embed_prepared(embeddings, prepared, n_ok))
            _save_npz_atomic(chunk_paths[n_chunk], data)
            bar.update(len(chunks[n_chunk]))
    bar.close()

    # -- stage 2: rows, metadata and media
    n_old = len(existing) if existing is not None else 0
    rows: list[dict[str, Any]] = []
    media: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    by_key = {it.key: it for it in todo}
    n_joined = 0
    for path in chunk_paths:
        with np.load(path, allow_pickle=False) as z:
            keys, ok, errors, shas, sizes = z["keys"], z["ok"], z["errors"], z["sha256"], z["sizes"]
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
                row_id = n_old + len(rows)
                pred_obj = {name: json.loads(p[j]) for name, p in preds.items() if p[j]}
                md.update(
                    row_id=row_id,
                    image_key=key,
                    width=int(sizes[i][0]),
                    height=int(sizes[i][1]),
                    content_sha256=str(shas[i]),
                    predictions=json.dumps(pred_obj) if pred_obj else None,
                )
                md["search_text"] = compose_search_text(md, taxonomy.category_name)
                rows.append(md)
                media.append({"row_id": row_id, "thumb": _unpack(z, "thumb", j), "image": _unpack(z, "image", j)})
                j += 1
    n = n_old + len(rows)
    if n < 2:
        raise ValueError(f"only {n} image(s) could be decoded; a collection needs at least 2 (failures: {failures[:3]})")

    build_id, partial = _new_build_dir(out)
    db = lancedb.connect(str(out / "lance"))
    base = existing.manifest.table if existing is not None else {}
    images_version = _write_table(
        db, "images", pa.Table.from_pylist([{f.name: r.get(f.name) for f in IMAGES_ARROW_SCHEMA} for r in rows], schema=IMAGES_ARROW_SCHEMA),
        base.get("version"), fresh=existing is None, fts=True,
    )
    media_version = _write_table(db, "media", pa.Table.from_pylist(media, schema=MEDIA_ARROW_SCHEMA), base.get("media_version"), fresh=existing is None)
    del media

    # -- stage 3: PCA, reduced vectors, index, map per embedding
    emb_entries: dict[str, dict[str, Any]] = {}

    for emb in embeddings:

        def raw_batches(name: str = emb.name) -> Iterator[np.ndarray]:
            for p in chunk_paths:
                with np.load(p, allow_pickle=False) as z:
                    yield z[f"vec__{name}"]

        old_vectors = reducer = None
        if existing is not None:
            old_vectors = existing.vectors(emb.name)
            entry = existing.manifest.embeddings[emb.name]
            reducer = PcaReducer.load(existing.data_dir / entry["pca"]["file"])
        entry = _reduce_and_index(emb.name, emb.config(), raw_batches, len(rows), partial, options, backend_cls, index_params, log, old_vectors, reducer)
        if existing is not None:
            entry["pca"]["fitted_on"] = existing.manifest.embeddings[emb.name]["pca"].get("fitted_on")
        emb_entries[emb.name] = entry

    manifest = Manifest(
        build_id=build_id,
        data_dir=f"builds/{build_id}",
        n_images=n,
        table={"dir": "lance", "name": "images", "version": images_version, "media": "media", "media_version": media_version},
        embeddings=emb_entries,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        source={
            "path": str(Path(source).resolve()) if source is not None else None,
            "n_items": len(all_items),
            "metadata_files": [str(p) for p in options.metadata_files],
            "appended": existing is not None,
        },
    )
    _finish(out, partial, manifest)
    shutil.rmtree(out / ".work", ignore_errors=True)

    report = BuildReport(
        out=out,
        build_id=build_id,
        n_items=len(all_items),
        n_images=n,
        n_new=len(rows),
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


def _ray_embed_into_chunks(out: Path, name: str, dim: int, n: int, options: BuildOptions, chunk_paths: Sequence[Path], bar: Any) -> None:
    """Embed every row on Ray Data and write the same chunk files as the local executor."""
    from .distributed import ray_embed_rows

    work = chunk_paths[0].parent
    vec = np.lib.format.open_memmap(work / "ray-vectors.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    preds = [""] * n
    seen = np.zeros(n, dtype=bool)
    for ids, vecs, pj in ray_embed_rows(out, name, n, batch_size=options.chunk_size, num_actors=options.ray_actors, address=options.ray_address, num_cpus=options.ray_cpus, progress=bar.update):
        vec[ids] = vecs
        seen[ids] = True
        for i, p in zip(ids.tolist(), pj):
            preds[i] = p
    if not seen.all():
        raise RuntimeError(f"Ray returned {int(seen.sum())} of {n} rows")
    for k, path in enumerate(chunk_paths):
        s, e = k * options.chunk_size, min(n, (k + 1) * options.chunk_size)
        _save_npz_atomic(path, {f"vec__{name}": np.asarray(vec[s:e]), f"pred__{name}": np.array(preds[s:e], dtype=str)})
    del vec
    (work / "ray-vectors.npy").unlink(missing_ok=True)


def add_embedding(
    out: Path,
    name: str,
    options: BuildOptions | None = None,
    registries: Registries | None = None,
    log: Callable[[str], None] = print,
    embedding: Embedding | None = None,
) -> dict[str, Any]:
    """Add (or recompute) embedding ``name`` of an existing collection without re-ingesting.

    The images are the canonical JPEGs stored in the ``media`` table, read in row order in
    chunks (bounded memory); PCA, vectors, index and map are computed for this embedding;
    the other embeddings' files are hard-linked (or copied) into the new build folder, and
    the manifest is switched atomically.

    Args:
        out: the collection folder.
        name: registry name of the embedding (ignored if ``embedding`` is given).
        embedding: an already constructed embedding (e.g. an imported ONNX model).

    Returns:
        The new manifest entry of the embedding.

    Raises:
        CollectionError: ``out`` is not a valid collection. RegistryError: unknown name.
    """
    from .collection import open_collection

    options = options or BuildOptions()
    regs = registries or default_registries()
    out = Path(out)
    c = open_collection(out, registries=regs)
    emb = embedding or _make_embedding(regs.embeddings.get(name), options.threads)
    backend = c.manifest.embeddings[c.embeddings[0]]["index"]["backend"]
    options = BuildOptions(**{**options.__dict__, "backend": backend})
    backend_cls = regs.backends.get(backend)
    index_params = {k: v for k, v in c.manifest.embeddings[c.embeddings[0]]["index"]["params"].items() if k not in ("ntotal", "file_bytes")}
    index_params.update(options.index_params or {})

    n = len(c)
    work = out / ".work" / f"embed-{emb.name}-{hashlib.sha256(json.dumps(emb.config().to_dict(), sort_keys=True).encode()).hexdigest()[:12]}-{c.manifest.build_id}"
    work.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=n, unit="img", desc=f"embedding {emb.name}", disable=not options.progress)
    predictions: list[str] = []
    starts = list(range(0, n, options.chunk_size))
    chunk_paths = [work / f"chunk-{s // options.chunk_size:05d}.npz" for s in starts]
    pending = []
    for s, path in zip(starts, chunk_paths):
        data = _load_chunk(path) if path.exists() else None
        if data is None or len(data[f"vec__{emb.name}"]) != min(n, s + options.chunk_size) - s:
            pending.append(s)
        else:
            bar.update(len(data[f"vec__{emb.name}"]))

    def read_and_prepare(s: int) -> Any:
        images = [decode_jpeg(b) for b in c.images(list(range(s, min(n, s + options.chunk_size))))]
        return emb.prepare(images), len(images)

    if options.executor == "ray" and pending:
        _ray_embed_into_chunks(out, name if embedding is None else emb.name, emb.dim, n, options, chunk_paths, bar)
        pending = []
    elif options.executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {options.executor!r}; use 'local' or 'ray'")
    # Reading + decoding + resizing chunk i+1 (background thread) overlaps the network on chunk i.
    for s, (prepared, n_rows) in prefetched(pending, read_and_prepare):
        _save_npz_atomic(chunk_paths[s // options.chunk_size], embed_prepared([emb], [prepared], n_rows))
        bar.update(n_rows)
    bar.close()
    for path in chunk_paths:
        with np.load(path, allow_pickle=False) as z:
            predictions.extend(z[f"pred__{emb.name}"].tolist())

    def raw_batches() -> Iterator[np.ndarray]:
        for p in chunk_paths:
            with np.load(p, allow_pickle=False) as z:
                yield z[f"vec__{emb.name}"]

    build_id, partial = _new_build_dir(out)
    for other, entry in c.manifest.embeddings.items():
        if other == emb.name:
            continue
        for key in ("pca", "vectors", "index", "map"):
            if key in entry:
                src = c.data_dir / entry[key]["file"]
                dst = partial / entry[key]["file"]
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
    entry = _reduce_and_index(emb.name, emb.config(), raw_batches, n, partial, options, backend_cls, index_params, log)

    table = dict(c.manifest.table)
    if any(predictions):
        db = lancedb.connect(str(out / "lance"))
        tbl = db.open_table("images")
        if tbl.version != table["version"]:
            tbl.checkout(table["version"])
            tbl.restore()
        cur = tbl.to_arrow().sort_by("row_id")
        merged = []
        for old, new in zip(cur["predictions"].to_pylist(), predictions):
            d = json.loads(old) if old else {}
            if new:
                d[emb.name] = json.loads(new)
            merged.append(json.dumps(d) if d else None)
        col = cur.schema.get_field_index("predictions")
        cur = cur.set_column(col, "predictions", pa.array(merged, pa.string()))
        # A new version in row order (overwrite keeps older versions readable), so row
        # offsets stay equal to row ids.
        tbl = db.create_table("images", data=cur, mode="overwrite")
        _index_search_text(tbl)  # overwrite drops indices
        table["version"] = int(tbl.version)

    embeddings = dict(c.manifest.embeddings)
    embeddings[emb.name] = entry
    manifest = Manifest(
        build_id=build_id,
        data_dir=f"builds/{build_id}",
        n_images=n,
        table=table,
        embeddings=embeddings,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        source=c.manifest.source,
    )
    del c
    _finish(out, partial, manifest)
    shutil.rmtree(work, ignore_errors=True)
    return entry
