"""Integrity of a collection folder: :func:`verify` checks it, :func:`repair` rebuilds what
can be rebuilt from what is intact.

What :func:`verify` checks, against ``manifest.json``:

* every file the manifest names (per embedding: ``vectors``, ``index``, ``pca``, ``map``)
  exists and has the recorded size and sha256;
* the vectors ``.npy`` header says ``float32[n_images, dim]``;
* both LanceDB tables (``images``, ``media``) open at the recorded versions and hold
  ``n_images`` rows;
* (``models=True``) the embedding networks installed here are the ones that built the
  collection (same config incl. model file sha256). A mismatch is a *warning*: the
  collection still answers queries, but uploads and ``--append`` would need a rebuild.

:func:`repair` rebuilds damaged **index** and **map** files from the stored (intact)
reduced vectors, with the manifest's recorded backend parameters, into a fresh
``builds/<id>.partial/`` folder (intact files are hard-linked), and switches
``manifest.json`` atomically, exactly as a build does. Damaged vectors, PCA files or
tables cannot be rebuilt from what is stored: repair refuses and says to rebuild.

:func:`check_file` is what :class:`~imagemesh.store.reader.CollectionReader` uses before it hands
an index file to a native loader: Annoy (and FAISS HNSW graphs) memory-map the file and
follow the offsets inside it, so a same-size corrupted file could crash the process
during a query. Checking its sha256 first turns that into a clear error on open.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imagemesh.store.lock import holding_writer_lock
from imagemesh.store.manifest import Manifest, ManifestError
from imagemesh.core.fileio import sha256_file

__all__ = ["FileCheck", "VerifyReport", "RepairError", "verify", "repair", "check_file", "IntegrityError"]

log = logging.getLogger(__name__)

FILE_KINDS = ("vectors", "index", "pca", "map")
REBUILDABLE = ("index", "map")


class IntegrityError(ManifestError):
    """A file does not match the checksum recorded in the manifest."""


class RepairError(RuntimeError):
    """The collection cannot be repaired from what it stores (rebuild it)."""


# (path, size, mtime_ns, inode) -> sha256, so that reopening an unchanged file (a server
# picking up a new version, several collections sharing files) hashes it only once.
_VERIFIED: dict[tuple[str, int, int, int], str] = {}
_VERIFIED_LOCK = threading.Lock()


def _stat_key(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def check_file(path: Path, expected_sha256: str | None, expected_bytes: int | None = None) -> None:
    """Raise :class:`IntegrityError` unless ``path`` has the given size and sha256.

    A file already verified in this process with the same size, mtime and inode is not
    hashed again.
    """
    path = Path(path)
    try:
        key = _stat_key(path)
    except OSError as e:
        raise IntegrityError(f"{path} cannot be read: {e.strerror or e}") from None
    if expected_bytes is not None and key[1] != int(expected_bytes):
        raise IntegrityError(f"{path.name} is {key[1]} bytes, manifest says {expected_bytes} (truncated or replaced); run `imagemesh verify --repair`")
    if not expected_sha256:
        return
    with _VERIFIED_LOCK:
        known = _VERIFIED.get(key)
    if known is None:
        known = sha256_file(path)
        with _VERIFIED_LOCK:
            _VERIFIED[key] = known
    if known != expected_sha256:
        raise IntegrityError(f"{path.name} does not match the sha256 recorded in the manifest (corrupted or replaced); run `imagemesh verify --repair`")


@dataclass
class FileCheck:
    """The outcome for one file (or table): ``status`` is ``ok``, ``missing``, ``size``,
    ``sha256``, ``shape`` or ``error``."""

    embedding: str | None
    kind: str
    path: str
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class VerifyReport:
    root: str
    build_id: str | None
    checks: list[FileCheck] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # the manifest itself could not be read

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)

    @property
    def problems(self) -> list[FileCheck]:
        return [c for c in self.checks if not c.ok]

    @property
    def repairable(self) -> bool:
        """Every problem is a damaged index or map file (rebuildable from vectors)."""
        return self.error is None and all(c.kind in REBUILDABLE and c.embedding for c in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "build_id": self.build_id,
            "ok": self.ok,
            "repairable": self.repairable,
            "error": self.error,
            "checks": [c.to_dict() for c in self.checks],
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        if self.error:
            return f"{self.root}: FAILED: {self.error}"
        lines = [f"{self.root} (build {self.build_id}): {len(self.checks)} checks, {len(self.problems)} problem(s)"]
        for c in self.checks:
            where = f"{c.embedding}/{c.kind}" if c.embedding else c.kind
            lines.append(f"  {'ok  ' if c.ok else 'FAIL'} {where:<22} {c.path}{'  ' + c.detail if c.detail else ''}")
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        if not self.ok:
            lines.append("  -> repairable with `imagemesh verify --repair`" if self.repairable else "  -> not repairable from stored data: rebuild the collection")
        return "\n".join(lines)


def _check_entry(data_dir: Path, name: str, kind: str, entry: dict[str, Any], n: int, dim: int) -> FileCheck:
    rel = str(entry.get("file", "?"))
    path = data_dir / rel
    if not path.is_file():
        return FileCheck(name, kind, rel, "missing", "file is missing")
    size = path.stat().st_size
    if "bytes" in entry and size != int(entry["bytes"]):
        return FileCheck(name, kind, rel, "size", f"{size} bytes, manifest says {entry['bytes']}")
    if entry.get("sha256"):
        got = sha256_file(path)
        if got != entry["sha256"]:
            return FileCheck(name, kind, rel, "sha256", f"sha256 {got[:12]}..., manifest says {str(entry['sha256'])[:12]}...")
    else:
        return FileCheck(name, kind, rel, "error", "manifest records no sha256 for this file")
    if kind in ("vectors", "map"):
        want = (n, dim) if kind == "vectors" else (n, 2)
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            return FileCheck(name, kind, rel, "shape", f"unreadable .npy: {e}")
        if arr.shape != want or arr.dtype != np.float32:
            return FileCheck(name, kind, rel, "shape", f"{arr.dtype}{list(arr.shape)}, expected float32{list(want)}")
    return FileCheck(name, kind, rel, "ok")


def _check_tables(root: Path, m: Manifest) -> list[FileCheck]:
    import lancedb

    t = m.table
    lance_dir = root / t.get("dir", "lance")
    out: list[FileCheck] = []
    for kind, name_key, ver_key, default in (("table", "name", "version", "images"), ("media table", "media", "media_version", "media")):
        name = t.get(name_key, default)
        rel = f"{t.get('dir', 'lance')}/{name}.lance@v{t.get(ver_key)}"
        try:
            tbl = lancedb.connect(str(lance_dir)).open_table(name)
            tbl.checkout(int(t[ver_key]))
            rows = tbl.count_rows()
            # Reading the data (not just the row count) catches missing/damaged fragments.
            ids = tbl.search().select(["row_id"]).limit(None).to_arrow()["row_id"].to_numpy()
        except Exception as e:  # LanceDB raises ValueError/RuntimeError/OSError/KeyError
            out.append(FileCheck(None, kind, rel, "error", f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"))
            continue
        if rows != m.n_images or len(ids) != m.n_images:
            out.append(FileCheck(None, kind, rel, "shape", f"{rows} rows, manifest says {m.n_images}"))
        elif not np.array_equal(np.sort(ids), np.arange(m.n_images)):
            out.append(FileCheck(None, kind, rel, "shape", "row ids are not 0..N-1"))
        else:
            out.append(FileCheck(None, kind, rel, "ok"))
    return out


def _check_table_files(root: Path, m: Manifest) -> list[FileCheck]:
    """The LanceDB files recorded at publish (``table["files"]``): present, same size, same sha256."""
    base = root / m.table.get("dir", "lance")
    out: list[FileCheck] = []
    bad = 0
    for rel, rec in sorted((m.table.get("files") or {}).items()):
        f = base / rel
        if not f.is_file():
            out.append(FileCheck(None, "table file", rel, "missing", "file is missing"))
        elif f.stat().st_size != int(rec.get("bytes", -1)):
            out.append(FileCheck(None, "table file", rel, "size", f"{f.stat().st_size} bytes, manifest says {rec.get('bytes')}"))
        elif sha256_file(f) != rec.get("sha256"):
            out.append(FileCheck(None, "table file", rel, "sha256", "does not match the sha256 recorded at publish"))
        else:
            continue
        bad += 1
    n = len(m.table.get("files") or {})
    if n and not bad:
        out.append(FileCheck(None, "table files", f"{m.table.get('dir', 'lance')}/ ({n} files)", "ok"))
    return out


def verify(root: str | Path, tables: bool = True, models: bool = True) -> VerifyReport:
    """Check every file and table version recorded in ``root/manifest.json``.

    Args:
        root: the collection folder.
        tables: also open both LanceDB tables at their versions and read their row ids.
        models: also compare the embedding networks installed here with the recorded
            configs (differences are warnings).

    Returns:
        A :class:`VerifyReport`; ``report.ok`` is true when nothing is wrong.
    """
    root = Path(root)
    try:
        m = Manifest.read(root)
    except ManifestError as e:
        return VerifyReport(str(root), None, error=str(e))
    rep = VerifyReport(str(root), m.build_id)
    data_dir = root / m.data_dir
    if not data_dir.is_dir():
        rep.error = f"build folder {m.data_dir} is missing"
        return rep
    for name, entry in m.embeddings.items():
        try:
            dim = int(entry["dim"])
        except (KeyError, TypeError, ValueError):
            rep.checks.append(FileCheck(name, "entry", "manifest.json", "error", "malformed embedding entry"))
            continue
        for kind in FILE_KINDS:
            if kind in entry:
                rep.checks.append(_check_entry(data_dir, name, kind, entry[kind], m.n_images, dim))
            elif kind in ("vectors", "index", "pca"):
                rep.checks.append(FileCheck(name, kind, "-", "missing", "not in the manifest"))
    if tables:
        rep.checks.extend(_check_tables(root, m))
        rep.checks.extend(_check_table_files(root, m))
    if models:
        rep.warnings.extend(_model_warnings(m))
    return rep


def _model_warnings(m: Manifest) -> list[str]:
    from imagemesh.core.embedding import make_embedding
    from imagemesh.core.registry import RegistryError
    from imagemesh.plugins import default_registries

    regs = default_registries()
    out = []
    for name, entry in m.embeddings.items():
        try:
            emb = make_embedding(regs.embeddings.get(name), 0)
            here = emb.config().to_dict()
        except RegistryError:
            out.append(f"embedding {name!r} is not installed here (queries work; uploads and --append do not)")
            continue
        except Exception as e:  # a plugin failing to load its model
            out.append(f"embedding {name!r} could not be loaded here: {type(e).__name__}")
            continue
        if here != entry.get("config"):
            rec = (entry.get("config") or {}).get("model_sha256")
            out.append(f"embedding {name!r} installed here differs from the one that built the collection "
                       f"(model sha256 {str(here.get('model_sha256'))[:12]} vs {str(rec)[:12]}); queries work, uploads and --append need a rebuild")
    return out


@holding_writer_lock("a repair (imagemesh verify --repair)", "root")
def repair(root: str | Path, registries: Any = None) -> VerifyReport:
    """Rebuild damaged index and map files from the stored vectors and switch the manifest
    atomically (:class:`~imagemesh.store.writer.VersionWriter`). Returns the :func:`verify`
    report of the repaired collection.

    Raises:
        RepairError: the damage is not in index/map files (vectors, PCA, tables or the
            manifest), so nothing trustworthy is left to rebuild from.
    """
    from imagemesh.plugins import default_registries
    from imagemesh.store.writer import VersionWriter

    root = Path(root)
    before = verify(root, models=False)
    if before.ok:
        log.info("nothing to repair")
        return before
    if not before.repairable:
        bad = ", ".join(f"{c.embedding + '/' if c.embedding else ''}{c.kind} ({c.status})" for c in before.problems) or before.error
        raise RepairError(f"cannot repair from stored data: {bad}; rebuild the collection")
    regs = registries or default_registries()
    m = Manifest.read(root)
    old_dir = root / m.data_dir
    damaged = {(c.embedding, c.kind) for c in before.problems}
    writer = VersionWriter(root)
    embeddings: dict[str, dict[str, Any]] = {}
    try:
        for name, entry in m.embeddings.items():
            entry = {k: (dict(v) if isinstance(v, dict) else v) for k, v in entry.items()}
            writer.link_files(old_dir, entry, [k for k in FILE_KINDS if (name, k) not in damaged])
            vectors = np.load(old_dir / entry["vectors"]["file"], mmap_mode="r")
            if (name, "index") in damaged:
                ie = entry["index"]
                params = {k: v for k, v in ie.get("params", {}).items() if k not in ("ntotal", "file_bytes")}
                log.info("[%s] rebuilding %s index %s from %d stored vectors", name, ie["backend"], params, vectors.shape[0])
                entry["index"] = writer.write_index(name, vectors, regs.backends.get(ie["backend"]), params, ie["backend"])
            if (name, "map") in damaged:
                log.info("[%s] recomputing the 2-D map", name)
                entry["map"] = writer.write_map(name, vectors)
            embeddings[name] = entry
    except BaseException:
        writer.abort()
        raise
    writer.publish(m.n_images, dict(m.table), embeddings, {**m.source, "repaired_from": m.build_id}, m.schema)
    after = verify(root, models=False)
    log.info("repaired: build %s -> %s; %d problem(s) left", m.build_id, writer.build_id, len(after.problems))
    return after
