"""The one collection writer: every new version of a collection is made here.

A version is written aside and switched in atomically (see README "Collection format")::

    DIR/manifest.json          the switch point, replaced atomically
    DIR/lance/                 LanceDB tables ``images`` (metadata) and ``media`` (thumbnail and
                               canonical image JPEGs); every version commits new table versions
    DIR/builds/<id>/           vectors/, pca/, index/, map/ of that version (immutable)

:class:`VersionWriter` is used by the builder (:mod:`imagemesh.ingest.build`), by adding an
embedding (:mod:`imagemesh.ingest.embed`), by repair (:mod:`imagemesh.store.integrity`) and
by :func:`republish`. It creates ``builds/<id>.partial/``; its methods fill it (tables,
per-embedding files, or hard links to an older version's files); :meth:`VersionWriter.publish`
renames the folder into place, replaces ``manifest.json`` atomically and prunes builds that no
reader of the current or the previous version needs. A writer that is never published leaves
only a ``.partial`` folder, which the next publish removes.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pyarrow as pa

from imagemesh.store.lock import holding_writer_lock
from imagemesh.core.embedding import EmbeddingConfig
from imagemesh.core.fileio import sha256_file
from imagemesh.core.index import Index
from imagemesh.core.text_search import FTS_COLUMN, fts_config
from imagemesh.store.manifest import Manifest, ManifestError
from imagemesh.store.pca import PcaReducer, fit_pca
from imagemesh.store.projection import project_2d

__all__ = ["VersionWriter", "DEFAULT_INDEX_PARAMS", "FILE_KINDS", "republish", "publish_columns", "write_table", "index_search_text", "table_file_checksums"]

log = logging.getLogger(__name__)

#: Default build parameters per backend (a user passes their own with ``--index-params``).
DEFAULT_INDEX_PARAMS: dict[str, dict[str, Any]] = {
    "exact": {},
    "annoy": {"n_trees": 50},
    "faiss": {"recipe": "HNSW32", "ef_search": 64},
}
#: Per-embedding files of a version, in the manifest entry and under ``builds/<id>/``.
FILE_KINDS = ("vectors", "index", "pca", "map")
_ADD_STEP = 65_536  # vectors handed to Index.add per call (bounded memory)


def _file_entry(root: Path, rel: str, **extra: Any) -> dict[str, Any]:
    p = root / rel
    return {**extra, "file": rel, "bytes": p.stat().st_size, "sha256": sha256_file(p)}


def write_table(db: Any, name: str, data: pa.Table, base_version: int | None, fresh: bool, fts: bool = False) -> int:
    """Commit ``data`` as a new version of LanceDB table ``name``; returns the version.

    ``fresh``: replace the table's content (``mode="overwrite"`` keeps old versions readable).
    Otherwise ``data`` is appended to ``base_version`` (rows a failed earlier attempt
    committed after ``base_version`` are rolled back first with ``restore``).
    ``fts``: then (re)build the full-text index of ``search_text``, one more version.
    """
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
        index_search_text(tbl)
    return int(tbl.version)


def index_search_text(tbl: Any) -> None:
    """(Re)build the LanceDB FTS index of ``search_text`` (config: :func:`~imagemesh.core.text_search.fts_config`).

    Rebuilt whole rather than optimised incrementally, so an index always covers every row."""
    tbl.create_index(FTS_COLUMN, config=fts_config(), replace=True)


def table_file_checksums(root: Path, table_dir: str = "lance", previous: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every immutable file of the LanceDB tables under ``root/table_dir``:
    data files, index files and version manifests (not ``latest_version_hint.json`` nor the
    transaction log). Lance never rewrites these files, so a file already in ``previous``
    (the last published record) with the same size is not hashed again.

    Returns:
        ``{"images.lance/data/….lance": {"bytes": int, "sha256": str}, ...}`` (paths relative to ``table_dir``).
    """
    base = Path(root) / table_dir
    old = dict(previous or {})
    out: dict[str, dict[str, Any]] = {}
    for tbl in sorted(base.glob("*.lance")):
        for sub in ("data", "_indices", "_versions"):
            for f in sorted((tbl / sub).rglob("*")):
                if not f.is_file() or (sub == "_versions" and not f.name.endswith(".manifest")):
                    continue
                rel = f.relative_to(base).as_posix()
                size = f.stat().st_size
                prev = old.get(rel)
                out[rel] = dict(prev) if prev and prev.get("bytes") == size else {"bytes": size, "sha256": sha256_file(f)}
    return out


class VersionWriter:
    """Writes one new version of the collection at ``root``.

    Args:
        root: the collection folder (created if missing).

    Attributes:
        build_id: ``YYYYMMDDTHHMMSS-<8 hex>`` (UTC), unique per version.
        folder: ``root/builds/<build_id>.partial`` until :meth:`publish`.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.build_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        builds = self.root / "builds"
        builds.mkdir(exist_ok=True)
        self.folder = builds / f"{self.build_id}.partial"
        self.folder.mkdir()
        for sub in ("vectors", "pca", "index", "map"):
            (self.folder / sub).mkdir()

    # ------------------------------------------------------------------ files

    def link_files(self, old_data_dir: Path, entry: Mapping[str, Any], kinds: Iterable[str] = FILE_KINDS) -> None:
        """Hard-link (or copy, across file systems) an older version's files of one
        embedding entry into this version."""
        for kind in kinds:
            if kind in entry:
                src, dst = Path(old_data_dir) / entry[kind]["file"], self.folder / entry[kind]["file"]
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)

    def write_index(self, name: str, vectors: np.ndarray, backend_cls: type[Index], params: dict[str, Any], backend: str) -> dict[str, Any]:
        """Build and save the index of ``float32[n, d]`` vectors (row ids ``0..n-1``).

        Returns:
            The manifest ``index`` entry ``{"backend", "params", "file", "bytes", "sha256"}``.

        Raises:
            ValueError: invalid backend parameters (e.g. an IVF with more lists than vectors).
        """
        n, d = vectors.shape
        log.info("[%s] building %s index %s over %d vectors", name, backend, params, n)
        index = backend_cls(d, **params)
        for s in range(0, n, _ADD_STEP):
            index.add(np.arange(s, min(n, s + _ADD_STEP), dtype=np.int64), np.asarray(vectors[s : s + _ADD_STEP]))
        index.build()
        rel = f"index/{name}.{getattr(backend_cls, 'file_ext', 'idx')}"
        index.save(self.folder / rel)
        del index
        return _file_entry(self.folder, rel, backend=backend, params={**params, "ntotal": int(n)})

    def write_map(self, name: str, vectors: np.ndarray) -> dict[str, Any]:
        """Compute and save the 2-D map of ``float32[n, d]`` vectors (:func:`~imagemesh.store.projection.project_2d`).

        Returns:
            The manifest ``map`` entry ``{"method", "file", "bytes", "sha256"}``.
        """
        xy, method = project_2d(np.asarray(vectors))
        rel = f"map/{name}.npy"
        with open(self.folder / rel, "wb") as f:
            np.save(f, xy)
        return _file_entry(self.folder, rel, method=method)

    def write_embedding(
        self,
        name: str,
        cfg: EmbeddingConfig,
        raw_batches: Callable[[], Iterable[np.ndarray]],
        n_new: int,
        *,
        pca_dim: int,
        backend: str,
        backend_cls: type[Index],
        index_params: dict[str, Any],
        map_2d: bool = True,
        old_vectors: np.ndarray | None = None,
        reducer: PcaReducer | None = None,
    ) -> dict[str, Any]:
        """PCA (fitted on ``raw_batches`` unless ``reducer`` is given), reduced vectors (the
        ``old_vectors`` first, then the new ones; L2-normalised for cosine embeddings), index
        and 2-D map of one embedding.

        Args:
            raw_batches: a callable returning an iterable of ``float32[b, cfg.dim]`` network
                outputs, ``n_new`` rows in all; called twice (fit, transform).
            old_vectors: ``float32[n_old, d]`` reduced vectors kept from the previous version
                (append), with the ``reducer`` that made them.

        Returns:
            The embedding's manifest entry.

        Raises:
            RuntimeError: ``raw_batches`` did not yield ``n_new`` rows.
        """
        n_old = 0 if old_vectors is None else int(old_vectors.shape[0])
        n = n_old + n_new
        if reducer is None:
            reducer = fit_pca(raw_batches(), n_new, cfg.dim, pca_dim)
            capped = f" (capped from {pca_dim} by the number of images)" if reducer.n_components < pca_dim else ""
            log.info("[%s] PCA %d-d -> %d-d over %d images%s", name, cfg.dim, reducer.n_components, n_new, capped)
        d = reducer.n_components
        reducer.save(self.folder / "pca" / f"{name}.npz")
        vec_rel = f"vectors/{name}.npy"
        mm = np.lib.format.open_memmap(self.folder / vec_rel, mode="w+", dtype=np.float32, shape=(n, d))
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
        vectors = np.load(self.folder / vec_rel, mmap_mode="r")
        entry: dict[str, Any] = {
            "config": cfg.to_dict(),
            "dim": d,
            "pca": _file_entry(self.folder, f"pca/{name}.npz", **reducer.describe(), fitted_on=n_new if n_old == 0 else None),
            "vectors": _file_entry(self.folder, vec_rel, shape=[n, d]),
            "index": self.write_index(name, vectors, backend_cls, index_params, backend),
        }
        if map_2d:
            entry["map"] = self.write_map(name, vectors)
        return entry

    # ------------------------------------------------------------------ publish

    def publish(
        self,
        n_images: int,
        table: dict[str, Any],
        embeddings: dict[str, dict[str, Any]],
        source: dict[str, Any],
        schema: dict[str, Any] | None = None,
    ) -> Manifest:
        """Rename the build folder into place, switch ``manifest.json`` atomically, prune
        builds no reader needs (all but this one and the previous one).

        Returns:
            The published :class:`~imagemesh.store.manifest.Manifest`.
        """
        previous_manifest = None
        try:
            previous_manifest = Manifest.read(self.root)
        except ManifestError:
            pass
        table = dict(table)
        # What the tables hold now (LanceDB commits are done): every immutable file with its
        # sha256, so `imagemesh verify` can tell a damaged fragment from an intact one.
        table["files"] = table_file_checksums(self.root, table.get("dir", "lance"), (previous_manifest.table.get("files") if previous_manifest else None))
        manifest = Manifest(
            build_id=self.build_id,
            data_dir=f"builds/{self.build_id}",
            n_images=int(n_images),
            table=table,
            embeddings=embeddings,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            source=source,
            schema=schema or {},
        )
        final = self.folder.with_name(self.build_id)
        os.replace(self.folder, final)
        self.folder = final
        previous = previous_manifest.data_dir if previous_manifest is not None else None
        manifest.write(self.root)  # the atomic switch
        keep = {final.name} | ({Path(previous).name} if previous else set())
        for old in (self.root / "builds").iterdir():
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
        return manifest

    def abort(self) -> None:
        """Remove the unpublished build folder."""
        shutil.rmtree(self.folder, ignore_errors=True)


def republish(root: Path) -> str:
    """Publish the current content of collection ``root`` as a new version: hard links to
    its build folder's files under a new build id, then the atomic manifest switch.

    Servers pick it up like any new build; the load benchmark and the hot-reload tests use
    it. Returns the new build id.

    Raises:
        ManifestError: ``root`` holds no readable manifest.
        OSError: the files cannot be linked or copied.
    """
    root = Path(root)
    m = Manifest.read(root)
    w = VersionWriter(root)
    for entry in m.embeddings.values():
        w.link_files(root / m.data_dir, entry)
    w.publish(m.n_images, dict(m.table), dict(m.embeddings), dict(m.source), m.schema)
    return w.build_id


@holding_writer_lock("new columns being published (imagemesh concept save)", "root")
def publish_columns(
    root: Path,
    columns: Mapping[str, pa.Array],
    schema: Mapping[str, Any],
    source: Mapping[str, Any] | None = None,
    expect_build_id: str | None = None,
) -> Manifest:
    """Publish a new version of collection ``root`` whose ``images`` table has ``columns`` added.

    The table at the manifest's version is read in row-id order, the columns are appended
    and the result is committed as a new LanceDB version (``overwrite``: older versions stay
    readable) with its full-text index rebuilt; every embedding's files are hard links to the
    current version's; then the manifest switches atomically (:meth:`VersionWriter.publish`).
    Until that switch readers see the old version, and a failure (or a crash) before it
    leaves the collection as it was: an unreferenced table version and at most a
    ``.partial`` folder, which the next publish removes.

    Args:
        columns: name -> ``pyarrow.Array`` of ``n_images`` values in row-id order.
        schema: the new :class:`~imagemesh.core.schema.MetadataSchema` as a dict (it should
            declare the new columns).
        source: the manifest's new ``source`` record (default: unchanged).
        expect_build_id: refuse (``ValueError``) if the current version is not this one, so
            columns computed from one version are not published over another.

    Returns:
        The published manifest.

    Raises:
        ManifestError: ``root`` holds no readable manifest.
        ValueError: a column of the wrong length, a name the table already has, or another
            version than ``expect_build_id``.
        OSError: a file system error.
    """
    import lancedb

    root = Path(root)
    m = Manifest.read(root)
    if expect_build_id is not None and m.build_id != expect_build_id:
        raise ValueError(f"the collection changed while the columns were computed (version {m.build_id}, expected {expect_build_id}); run again")
    table = dict(m.table)
    db = lancedb.connect(str(root / table.get("dir", "lance")))
    name = table.get("name", "images")
    tbl = db.open_table(name)
    tbl.checkout(int(table["version"]))
    cur = tbl.to_arrow().sort_by("row_id")
    for col, values in columns.items():
        if col in cur.schema.names:
            raise ValueError(f"the {name} table already has a column {col!r}")
        if len(values) != m.n_images:
            raise ValueError(f"column {col!r} has {len(values)} values, the collection has {m.n_images} images")
        cur = cur.append_column(col, values)
    w = VersionWriter(root)
    try:
        for entry in m.embeddings.values():
            w.link_files(root / m.data_dir, entry)
        # A new version in row order (offsets stay equal to row ids); overwrite drops indices.
        new = db.create_table(name, data=cur, mode="overwrite")
        index_search_text(new)
        table["version"] = int(new.version)
    except BaseException:
        w.abort()
        raise
    return w.publish(m.n_images, table, dict(m.embeddings), dict(m.source if source is None else source), dict(schema))
