"""Add (or recompute) one embedding of an existing collection, from its stored canonical images.

The images are the canonical JPEGs of the ``media`` table, read in row order in chunks
(bounded memory), embedded locally (decode thread + ONNX Runtime) or on Ray Data
(:mod:`imagemesh.ingest.distributed`), saved as resumable chunk files; then PCA, vectors,
index and map of this embedding are written and the new version is published by
:class:`~imagemesh.store.writer.VersionWriter` (the other embeddings' files are linked).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

import lancedb
import numpy as np
import pyarrow as pa
from tqdm import tqdm

from imagemesh.store.lock import holding_writer_lock
from imagemesh.core.embedding import Embedding, make_embedding
from imagemesh.core.registry import Registries
from imagemesh.ingest.chunks import iter_vectors, load_chunk, save_chunk
from imagemesh.ingest.options import BuildOptions
from imagemesh.ingest.prefetch import embed_prepared, prefetched
from imagemesh.media.canonical import decode_jpeg
from imagemesh.plugins import default_registries
from imagemesh.store.reader import CollectionReader
from imagemesh.store.writer import VersionWriter, index_search_text

__all__ = ["add_embedding"]

log = logging.getLogger(__name__)


def _ray_embed_into_chunks(out: Path, name: str, dim: int, n: int, options: BuildOptions, chunk_paths: Sequence[Path], bar: Any) -> None:
    """Embed every row on Ray Data and write the same chunk files as the local executor."""
    from imagemesh.ingest.distributed import ray_embed_rows

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
        save_chunk(path, {f"vec__{name}": np.asarray(vec[s:e]), f"pred__{name}": np.array(preds[s:e], dtype=str)})
    del vec
    (work / "ray-vectors.npy").unlink(missing_ok=True)


def _merge_predictions(out: Path, table: dict[str, Any], name: str, predictions: list[str]) -> int:
    """A new images-table version whose ``predictions`` JSON holds ``name``'s; returns it."""
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
            d[name] = json.loads(new)
        merged.append(json.dumps(d) if d else None)
    col = cur.schema.get_field_index("predictions")
    cur = cur.set_column(col, "predictions", pa.array(merged, pa.string()))
    # A new version in row order (overwrite keeps older versions readable), so row
    # offsets stay equal to row ids.
    tbl = db.create_table("images", data=cur, mode="overwrite")
    index_search_text(tbl)  # overwrite drops indices
    return int(tbl.version)


@holding_writer_lock("an embedding being added (imagemesh embed / add_embedding)", "out")
def add_embedding(
    out: Path,
    name: str,
    options: BuildOptions | None = None,
    registries: Registries | None = None,
    embedding: Embedding | None = None,
) -> dict[str, Any]:
    """Add (or recompute) embedding ``name`` of an existing collection without re-ingesting.

    Args:
        out: the collection folder.
        name: registry name of the embedding (ignored if ``embedding`` is given).
        options: :class:`~imagemesh.ingest.options.BuildOptions` (``chunk_size``, ``threads``,
            ``executor``, ``pca_dim``, ``map_2d``; the backend is the collection's).
        embedding: an already constructed embedding (e.g. an imported ONNX model).

    Returns:
        The new manifest entry of the embedding.

    Raises:
        CollectionError: ``out`` is not a valid collection. RegistryError: unknown name.
        ValueError: an unknown executor. RuntimeError: Ray is missing or lost rows.
    """
    options = options or BuildOptions()
    if options.executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {options.executor!r}; use 'local' or 'ray'")
    regs = registries or default_registries()
    out = Path(out)
    c = CollectionReader(out, registries=regs)
    emb = embedding or make_embedding(regs.embeddings.get(name), options.threads)
    first = c.manifest.embeddings[c.embeddings[0]]["index"]
    backend = first["backend"]
    index_params = {k: v for k, v in first["params"].items() if k not in ("ntotal", "file_bytes")}
    index_params.update(options.index_params or {})

    n = len(c)
    digest = hashlib.sha256(json.dumps(emb.config().to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    work = out / ".work" / f"embed-{emb.name}-{digest}-{c.manifest.build_id}"
    work.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=n, unit="img", desc=f"embedding {emb.name}", disable=not options.progress)
    starts = list(range(0, n, options.chunk_size))
    chunk_paths = [work / f"chunk-{s // options.chunk_size:05d}.npz" for s in starts]
    pending = []
    for s, path in zip(starts, chunk_paths):
        data = load_chunk(path) if path.exists() else None
        if data is None or len(data[f"vec__{emb.name}"]) != min(n, s + options.chunk_size) - s:
            pending.append(s)
        else:
            bar.update(len(data[f"vec__{emb.name}"]))

    def read_and_prepare(s: int, reader: CollectionReader = c) -> Any:
        images = [decode_jpeg(b) for b in reader.images(list(range(s, min(n, s + options.chunk_size))))]
        return emb.prepare(images), len(images)

    if options.executor == "ray" and pending:
        _ray_embed_into_chunks(out, name if embedding is None else emb.name, emb.dim, n, options, chunk_paths, bar)
        pending = []
    # Reading + decoding + resizing chunk i+1 (background thread) overlaps the network on chunk i.
    for s, (prepared, n_rows) in prefetched(pending, read_and_prepare):
        save_chunk(chunk_paths[s // options.chunk_size], embed_prepared([emb], [prepared], n_rows))
        bar.update(n_rows)
    bar.close()
    predictions: list[str] = []
    for path in chunk_paths:
        with np.load(path, allow_pickle=False) as z:
            predictions.extend(z[f"pred__{emb.name}"].tolist())

    writer = VersionWriter(out)
    for other, entry in c.manifest.embeddings.items():
        if other != emb.name:
            writer.link_files(c.data_dir, entry)
    entry = writer.write_embedding(
        emb.name, emb.config(), lambda: iter_vectors(chunk_paths, emb.name), n,
        pca_dim=options.pca_dim, backend=backend, backend_cls=regs.backends.get(backend), index_params=index_params, map_2d=options.map_2d,
    )
    table = dict(c.manifest.table)
    if any(predictions):
        table["version"] = _merge_predictions(out, table, emb.name, predictions)
    embeddings = dict(c.manifest.embeddings)
    embeddings[emb.name] = entry
    m = c.manifest
    del c
    writer.publish(n, table, embeddings, m.source, m.schema)
    shutil.rmtree(work, ignore_errors=True)
    return entry
