"""Ingest orchestration: source items -> images -> embeddings -> PCA -> indices -> collection.

The build is **resumable**, **atomic** and **incremental**:

1. Items are sorted by key and cut into fixed chunks. Each chunk's results (canonical
   image and thumbnail JPEGs, raw embedding vectors, predictions, failures) are saved to
   ``DIR/.work/<fingerprint>/chunk-NNNNN.npz`` (:mod:`imagemesh.ingest.chunks`); a rerun with
   the same inputs and settings skips finished chunks, so a killed build resumes.
2. Every embedding is computed from the *canonical image* (:mod:`imagemesh.media.canonical`).
   The same bytes are stored in the ``media`` table, so an embedding added later
   (:func:`imagemesh.ingest.embed.add_embedding`) sees exactly the pixels the build saw.
3. Row ids are assigned after all chunks exist, in key order over the images that decoded,
   so they depend only on the input (never on timing or threads). ``append=True`` keeps
   every existing row id and appends new keys after them (PCA is reused, indices rebuilt).
4. The new version is written and published by :class:`imagemesh.store.writer.VersionWriter`
   (new table versions, a fresh build folder, the atomic ``manifest.json`` switch). Readers of
   the previous version keep reading it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import lancedb
import numpy as np
import pyarrow as pa
from tqdm import tqdm

from imagemesh.store.lock import holding_writer_lock
from imagemesh.core.embedding import make_embedding
from imagemesh.core.fileio import atomic_write_bytes
from imagemesh.core.registry import Registries
from imagemesh.core.schema import MEDIA_ARROW_SCHEMA, MetadataSchema
from imagemesh.core.text_search import compose_search_text
from imagemesh.ingest.chunks import fingerprint, iter_vectors, load_chunk, save_chunk, unpack_blob
from imagemesh.ingest.decode import decode_and_prepare
from imagemesh.ingest.options import BuildOptions, BuildReport
from imagemesh.ingest.prefetch import embed_prepared, prefetched
from imagemesh.ingest.sources.base import SourceItem, SourceProblem, load_source
from imagemesh.media.isolate import IsolatedDecoder
from imagemesh.plugins import default_registries
from imagemesh.profiles.arxiv import profile as arxiv
from imagemesh.profiles.arxiv.records import Taxonomy
from imagemesh.store.manifest import ManifestError
from imagemesh.store.pca import PcaReducer
from imagemesh.store.reader import CollectionError, CollectionReader
from imagemesh.store.writer import DEFAULT_INDEX_PARAMS, VersionWriter, write_table

__all__ = ["BuildOptions", "BuildReport", "build_collection"]

log = logging.getLogger(__name__)


def _open_existing(out: Path, regs: Registries) -> CollectionReader | None:
    try:
        return CollectionReader(out, registries=regs)
    except ManifestError as e:
        if (out / "manifest.json").exists() and isinstance(e, CollectionError):
            raise
        return None


def _run_chunks(todo: Sequence[SourceItem], embeddings: Sequence[Any], options: BuildOptions, work: Path) -> tuple[list[Path], int]:
    """Stage 1: decode + embed every chunk not already saved; returns the chunk paths and
    how many were reused."""
    chunks = [todo[i : i + options.chunk_size] for i in range(0, len(todo), options.chunk_size)]
    paths = [work / f"chunk-{n:05d}.npz" for n in range(len(chunks))]
    reused = 0
    bar = tqdm(total=len(todo), unit="img", desc="images", disable=not options.progress)
    pending: list[int] = []
    for n_chunk, (chunk, path) in enumerate(zip(chunks, paths)):
        data = load_chunk(path) if path.exists() else None
        if data is not None and list(data["keys"]) == [it.key for it in chunk]:
            reused += 1
            bar.update(len(chunk))
        else:
            pending.append(n_chunk)
        del data
    # Decoding/resizing of chunk i+1 (one background thread) overlaps the networks on chunk i.
    with IsolatedDecoder(options.limits, options.isolation) if options.isolate_decoders and pending else contextlib.nullcontext() as decoder:
        for n_chunk, (data, prepared, n_ok) in prefetched(pending, lambda i: decode_and_prepare(chunks[i], embeddings, options.limits, decoder)):
            data.update(embed_prepared(embeddings, prepared, n_ok))
            save_chunk(paths[n_chunk], data)
            bar.update(len(chunks[n_chunk]))
    bar.close()
    return paths, reused


@holding_writer_lock("a build (imagemesh build / build_collection)", "out")
def build_collection(
    source: Path | None,
    out: Path,
    options: BuildOptions | None = None,
    registries: Registries | None = None,
    *,
    items: Sequence[SourceItem] | None = None,
    problems: Sequence[SourceProblem] = (),
    schema: MetadataSchema | None = None,
    append: bool = False,
) -> BuildReport:
    """Build, rebuild or extend the collection at ``out``.

    Args:
        source: input that an installed source recognises (a figures CSV or a folder with
            ``figures.csv`` + ``images/``; a folder with ``metadata.jsonl``; see
            :mod:`imagemesh.ingest.sources`); ignored when ``items`` is given.
        out: the collection folder (created if missing). An existing collection is
            replaced (or, with ``append``, extended) atomically when the build succeeds.
        options: :class:`BuildOptions`.
        registries: embedding/backend registries (default: built-ins + plugins).
        items: the images to ingest, instead of reading ``source`` (e.g. from the arXiv
            source ingest); ``problems`` are carried into the report, ``schema`` (default:
            the arXiv profile's) describes their metadata.
        append: keep the existing collection's rows (and row ids, PCA, embeddings) and add
            the items whose keys are new. Without an existing collection this is a fresh
            build.

    Returns:
        A :class:`BuildReport` (also written to ``<out>/build-report.json``).

    Raises:
        ValueError: an unknown source format, no decodable image (one is a valid collection), invalid backend
            parameters, or (``append``) an embedding whose model or a schema that changed.
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
        data = load_source(Path(source))
        items, problems, schema = data.items, data.problems, data.schema
    schema = schema or arxiv.ARXIV_SCHEMA
    all_items = sorted(items, key=lambda it: it.key)
    if len({it.key for it in all_items}) != len(all_items):
        raise ValueError("image keys must be unique")

    existing = _open_existing(out, regs) if append else None
    if existing is not None:
        if existing.schema.fields != schema.fields:
            raise ValueError("the new items' fields differ from the collection's; rebuild without append")
        names = existing.embeddings
        backend = existing.manifest.embeddings[names[0]]["index"]["backend"]
        options = BuildOptions(**{**options.__dict__, "backend": backend})
        old_keys = set(existing.image_keys())
        todo = [it for it in all_items if it.key not in old_keys]
    else:
        names = options.embeddings or regs.embeddings.names()
        todo = all_items
    if not todo and existing is None:
        raise ValueError(f"{source}: no images found" if source is not None else "no images to build a collection from")

    embeddings = [make_embedding(regs.embeddings.get(name), options.threads) for name in names]
    if existing is not None:
        for emb in embeddings:
            if emb.config().to_dict() != existing.manifest.embeddings[emb.name]["config"]:
                raise ValueError(f"embedding {emb.name!r} differs from the one that built this collection; rebuild without append")
    backend_cls = regs.backends.get(options.backend)
    index_params = dict(DEFAULT_INDEX_PARAMS.get(options.backend, {}))
    if existing is not None:
        index_params = {k: v for k, v in existing.manifest.embeddings[names[0]]["index"]["params"].items() if k not in ("ntotal", "file_bytes")}
    index_params.update(options.index_params or {})

    is_arxiv = schema.profile == "arxiv"
    taxonomy = Taxonomy.load() if is_arxiv else None
    records: dict[str, Any] = {}
    md_problems: list[str] = []
    if taxonomy is not None and options.metadata_files:  # snapshots, .abs records, folders of them
        from imagemesh.ingest.sources.arxiv_src.metadata import read_metadata

        records, md_problems = read_metadata(options.metadata_files, taxonomy)
    if options.metadata_files and not is_arxiv:
        raise ValueError("metadata files (arXiv snapshots) join only arXiv collections")

    # -- stage 1: chunks (resumable)
    work = out / ".work" / fingerprint(todo, embeddings, options)
    work.mkdir(parents=True, exist_ok=True)
    chunk_paths, reused = _run_chunks(todo, embeddings, options, work)

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
                md = dict(item.metadata)
                if is_arxiv:
                    rec = records.get(str(md.get("arxiv_id")))
                    n_joined += rec is not None
                    md = arxiv.merge_record(md, rec)
                row_id = n_old + len(rows)
                pred_obj = {name: json.loads(p[j]) for name, p in preds.items() if p[j]}
                md.update(row_id=row_id, image_key=key, width=int(sizes[i][0]), height=int(sizes[i][1]),
                          content_sha256=str(shas[i]), predictions=json.dumps(pred_obj) if pred_obj else None)
                md["search_text"] = arxiv.compose_search_text(md, taxonomy.category_name) if taxonomy else compose_search_text(md, schema.keyword_fields)
                rows.append(md)
                media.append({"row_id": row_id, "thumb": unpack_blob(z, "thumb", j), "image": unpack_blob(z, "image", j)})
                j += 1
    n = n_old + len(rows)
    if n < 1:
        raise ValueError(f"no image could be decoded (failures: {failures[:3]})")
    if taxonomy is not None:
        labels = arxiv.facet_labels(rows, taxonomy)
        if existing is not None:
            labels = {f: {**existing.schema.labels.get(f, {}), **labels.get(f, {})} for f in set(labels) | set(existing.schema.labels)}
        schema = schema.with_labels(labels)

    writer = VersionWriter(out)
    db = lancedb.connect(str(out / "lance"))
    base = existing.manifest.table if existing is not None else {}
    arrow = schema.arrow_schema()
    dropped = sorted({k for r in rows for k in r} - set(arrow.names))
    if dropped:  # said, not silent: the schema decides what a collection stores
        md_problems.append(f"metadata fields not in the {schema.profile or 'collection'} schema were not stored: {', '.join(map(str, dropped[:20]))}")
    images_version = write_table(db, "images", pa.Table.from_pylist([{f.name: r.get(f.name) for f in arrow} for r in rows], schema=arrow),
                                 base.get("version"), fresh=existing is None, fts=True)
    media_version = write_table(db, "media", pa.Table.from_pylist(media, schema=MEDIA_ARROW_SCHEMA), base.get("media_version"), fresh=existing is None)
    del media

    # -- stage 3: PCA, reduced vectors, index, map per embedding
    emb_entries: dict[str, dict[str, Any]] = {}
    for emb in embeddings:
        old_vectors = reducer = None
        if existing is not None:
            old_vectors = existing.vectors(emb.name)
            reducer = PcaReducer.load(existing.data_dir / existing.manifest.embeddings[emb.name]["pca"]["file"])
        entry = writer.write_embedding(
            emb.name, emb.config(), functools.partial(iter_vectors, chunk_paths, emb.name), len(rows),
            pca_dim=options.pca_dim, backend=options.backend, backend_cls=backend_cls, index_params=index_params,
            map_2d=options.map_2d, old_vectors=old_vectors, reducer=reducer,
        )
        if existing is not None:
            entry["pca"]["fitted_on"] = existing.manifest.embeddings[emb.name]["pca"].get("fitted_on")
        emb_entries[emb.name] = entry

    table = {"dir": "lance", "name": "images", "version": images_version, "media": "media", "media_version": media_version}
    source_info = {
        "path": str(Path(source).resolve()) if source is not None else None,
        "n_items": len(all_items),
        "metadata_files": [str(p) for p in options.metadata_files],
        "appended": existing is not None,
    }
    del existing
    manifest = writer.publish(n, table, emb_entries, source_info, schema.to_dict())
    shutil.rmtree(out / ".work", ignore_errors=True)

    report = BuildReport(
        out=out,
        build_id=manifest.build_id,
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
