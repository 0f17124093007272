"""SIGKILL kill-point matrix for `imagemesh build` (and `build --append`).

Each case runs the real CLI in a child process and kills it with SIGKILL at one stage.
No hook exists in production code: the child is a small harness (``_HARNESS``) that wraps
one build function so that its n-th call SIGKILLs the process (before or after the real
call, or half-way through an atomic write), then runs ``imagemesh.cli.main()``. Two cases
are killed from outside instead, by watching files appear under ``DIR/.work`` and
``DIR/builds/*.partial``.

After every kill:
* the collection that was there before still opens and answers exactly as before
  (same neighbours, same metadata) -- or, for a kill after the manifest switch, the new
  collection is complete;
* rerunning the same command finishes, and the result has the same row ids (image keys in
  row order), the same vectors (bit for bit) and the same Annoy answers as an
  uninterrupted build of the same input.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imagemesh.ingest.build import BuildOptions, build_collection
from imagemesh.query.collection import open_collection

from .conftest import FIGURES, require_shared

#: The whole matrix takes several minutes; by default a representative subset runs (one
#: kill point per stage group). IMAGEMESH_KILL_MATRIX=full runs every case.
FULL = os.environ.get("IMAGEMESH_KILL_MATRIX") == "full"
DEFAULT_CASES = {"embedding", "metadata-table", "build-renamed", "append-metadata-table"}


def _cases(points: list[tuple]) -> list:
    skip = pytest.mark.skipif(not FULL, reason="part of the full kill matrix (IMAGEMESH_KILL_MATRIX=full)")
    return [pytest.param(*p, id=p[0], marks=() if p[0] in DEFAULT_CASES else skip) for p in points]


BUILD_ARGS = ["--embeddings", "raw", "--backend", "annoy", "--index-params", '{"n_trees": 8}', "--pca-dim", "12", "--chunk-size", "6", "--quiet"]

_HARNESS = r"""
import os, signal, sys, tempfile
target, where, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
argv = sys.argv[4:]
import importlib
mod_name, _, attr_path = target.partition(":")
obj = importlib.import_module(mod_name)
*parents, name = attr_path.split(".")
for p in parents:
    obj = getattr(obj, p)
orig = getattr(obj, name)
calls = [0]

def die():
    sys.stdout.flush(); sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

def wrapped(*a, **k):
    calls[0] += 1
    hit = calls[0] == nth
    if hit and where == "before":
        die()
    if hit and where == "torn":  # atomic_write_bytes(path, data): leave half a temp file, then die
        path, data = a[0], a[1]
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(str(path)) + ".", suffix=".tmp", dir=os.path.dirname(str(path)))
        os.write(fd, data[: len(data) // 2]); os.close(fd)
        die()
    r = orig(*a, **k)
    if hit and where == "after":
        die()
    return r

if isinstance(obj, type) and isinstance(obj.__dict__.get(name), staticmethod):
    wrapped = staticmethod(wrapped)
setattr(obj, name, wrapped)
from imagemesh.cli import cli
cli.main(args=argv, prog_name="imagemesh", standalone_mode=True)
"""

# (case id, function wrapped in the child, where, n-th call): the stage it interrupts.
KILL_POINTS = [
    ("decode", "imagemesh.media.isolate:IsolatedDecoder.canonical", "before", 9),  # stage 1, while decoding the 2nd chunk (in the isolated worker)
    ("chunk-written", "imagemesh.ingest.build:save_chunk", "after", 2),  # stage 1, between chunks
    ("embedding", "imagemesh.ingest.build:save_chunk", "before", 3),  # stage 1, 3rd chunk embedded, not saved
    ("chunk-torn-write", "imagemesh.ingest.chunks:atomic_write_bytes", "torn", 2),  # stage 1, half-written chunk temp file
    ("metadata-table", "imagemesh.ingest.build:write_table", "after", 1),  # stage 2, images table committed, media not
    ("fts-index", "imagemesh.store.writer:index_search_text", "before", 1),  # stage 2, images rows committed, full-text index not
    ("media-table", "imagemesh.ingest.build:write_table", "after", 2),  # stage 2, both tables committed, no vectors
    ("pca", "imagemesh.store.writer:fit_pca", "before", 1),  # stage 3, PCA
    ("vectors", "imagemesh.store.pca:PcaReducer.transform", "before", 2),  # stage 3, reduced vectors half written
    ("index-build", "imagemesh.backends.annoy_index:AnnoyIndex.build", "before", 1),  # stage 3, index build
    ("index-save", "imagemesh.backends.annoy_index:AnnoyIndex.save", "after", 1),  # stage 3, index saved, no map
    ("map", "imagemesh.store.writer:project_2d", "before", 1),  # stage 3, 2-D map
    ("build-renamed", "imagemesh.store.manifest:Manifest.write", "before", 1),  # builds/<id> in place, manifest not switched
    ("manifest-torn-write", "imagemesh.store.manifest:atomic_write_bytes", "torn", 1),  # manifest temp file half written
    ("after-switch", "imagemesh.store.manifest:Manifest.write", "after", 1),  # switched; old build + .work not yet pruned
]


def _non_pdf_rows() -> tuple[list[dict[str, str]], list[str]]:
    require_shared()
    with open(FIGURES / "figures.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows, fields = list(reader), list(reader.fieldnames or [])
    images = {p.stem: p for p in (FIGURES / "images").iterdir() if p.suffix.lower() != ".pdf"}
    return [r for r in rows if r["arxiv_id"] in images], fields


def _write_source(dst: Path, rows: list[dict[str, str]], fields: list[str]) -> Path:
    (dst / "images").mkdir(parents=True, exist_ok=True)
    with open(dst / "figures.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow(r)
            for p in (FIGURES / "images").glob(f"{r['arxiv_id']}.*"):
                shutil.copy(p, dst / "images" / p.name)
    return dst


def _opts() -> BuildOptions:
    return BuildOptions(embeddings=["raw"], backend="annoy", index_params={"n_trees": 8}, pca_dim=12, chunk_size=6, progress=False)


def _snapshot(root: Path) -> dict:
    """Everything a reader sees: row ids -> keys, vectors, neighbours, metadata."""
    c = open_collection(root)
    return {
        "build_id": c.manifest.build_id,
        "keys": c.image_keys(),
        "vectors": np.array(c.vectors("raw")),
        "neighbors": [[h.id for h in c.neighbors(r, embedding="raw", k=6)] for r in range(len(c))],
        "meta": [{k: v for k, v in c.get(r).items()} for r in range(len(c))],
        "thumb0": c.thumbnail(0),
    }


def _same_content(a: dict, b: dict) -> None:
    assert a["keys"] == b["keys"]
    assert a["vectors"].dtype == b["vectors"].dtype and np.array_equal(a["vectors"], b["vectors"])
    assert a["neighbors"] == b["neighbors"]
    assert a["meta"] == b["meta"]
    assert a["thumb0"] == b["thumb0"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    rows, fields = _non_pdf_rows()
    assert len(rows) >= 30
    base = tmp_path_factory.mktemp("kill")
    old_src = _write_source(base / "old-src", rows[:14], fields)
    new_src = _write_source(base / "new-src", rows[:26], fields)
    old = base / "old"
    build_collection(old_src, old, _opts())
    ref = base / "ref"
    build_collection(new_src, ref, _opts())
    ref_append = base / "ref-append"
    shutil.copytree(old, ref_append)
    build_collection(new_src, ref_append, _opts(), append=True)
    return {
        "base": base, "old": old, "old_src": old_src, "new_src": new_src,
        "old_snap": _snapshot(old), "ref_snap": _snapshot(ref), "ref_append_snap": _snapshot(ref_append),
    }


def _run_killed(target: str, where: str, nth: int, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _HARNESS, target, where, str(nth), *args], capture_output=True, text=True, timeout=300)


def _check_after_kill(setup: dict, coll: Path, case: str, append: bool) -> None:
    ref = setup["ref_append_snap"] if append else setup["ref_snap"]
    snap = _snapshot(coll)
    if case == "after-switch":
        _same_content(snap, ref)  # the new version is complete and in place
    else:
        assert snap["build_id"] == setup["old_snap"]["build_id"]
        _same_content(snap, setup["old_snap"])
    # Rerun the same command to completion (in process: same code path as the CLI).
    build_collection(setup["new_src"], coll, _opts(), append=append)
    _same_content(_snapshot(coll), ref)
    assert not (coll / ".work").exists()
    assert not list((coll / "builds").glob("*.partial"))


@pytest.mark.parametrize("case,target,where,nth", _cases(KILL_POINTS))
def test_sigkill_during_build_keeps_old_and_rerun_matches(setup: dict, tmp_path: Path, case: str, target: str, where: str, nth: int) -> None:
    coll = tmp_path / "coll"
    shutil.copytree(setup["old"], coll)
    p = _run_killed(target, where, nth, ["build", str(setup["new_src"]), "--out", str(coll), *BUILD_ARGS])
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr[-3000:])
    _check_after_kill(setup, coll, case, append=False)


APPEND_POINTS = [
    ("append-embedding", "imagemesh.ingest.build:save_chunk", "before", 2),
    ("append-metadata-table", "imagemesh.ingest.build:write_table", "after", 1),
    ("append-index-save", "imagemesh.backends.annoy_index:AnnoyIndex.save", "after", 1),
    ("append-build-renamed", "imagemesh.store.manifest:Manifest.write", "before", 1),
]


@pytest.mark.parametrize("case,target,where,nth", _cases(APPEND_POINTS))
def test_sigkill_during_append_keeps_old_and_rerun_matches(setup: dict, tmp_path: Path, case: str, target: str, where: str, nth: int) -> None:
    """`build --append` is the in-process API's ``append=True`` (the CLI's ingest uses it)."""
    coll = tmp_path / "coll"
    shutil.copytree(setup["old"], coll)
    code = (
        "import sys; from pathlib import Path; from imagemesh.ingest.build import build_collection, BuildOptions; "
        "build_collection(Path(sys.argv[1]), Path(sys.argv[2]), BuildOptions(embeddings=['raw'], backend='annoy', "
        "index_params={'n_trees': 8}, pca_dim=12, chunk_size=6, progress=False), append=True)"
    )
    harness = _HARNESS.replace(
        'from imagemesh.cli import cli\ncli.main(args=argv, prog_name="imagemesh", standalone_mode=True)',
        f"sys.argv = ['x', *argv]\nexec({code!r})",
    )
    p = subprocess.run([sys.executable, "-c", harness, target, where, str(nth), str(setup["new_src"]), str(coll)], capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr[-3000:])
    _check_after_kill(setup, coll, case, append=True)


def _kill_when(coll: Path, pattern: str, timeout: float = 120.0) -> tuple[int, str]:
    """Run the real CLI; SIGKILL it as soon as a file matching ``pattern`` (glob under the
    collection) appears. Returns (returncode, what was seen)."""
    proc = subprocess.Popen([sys.executable, "-m", "imagemesh.cli", "build", str(coll.parent / "src"), "--out", str(coll), *BUILD_ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    seen = ""
    try:
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            hits = list(coll.glob(pattern))
            if hits:
                seen = hits[0].name
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None and not seen:
            proc.kill()
        proc.wait(timeout=30)
    return proc.returncode, seen


@pytest.mark.parametrize("case,pattern", _cases([("watch-chunk", ".work/*/chunk-00001.npz"), ("watch-partial-index", "builds/*.partial/index/*")]))
def test_sigkill_from_outside_when_files_appear(setup: dict, tmp_path: Path, case: str, pattern: str) -> None:
    coll = tmp_path / "coll"
    shutil.copytree(setup["old"], coll)
    os.symlink(setup["new_src"], tmp_path / "src")
    code, seen = _kill_when(coll, pattern)
    if code != -signal.SIGKILL:
        pytest.fail(f"the build finished (exit {code}) before {pattern} was seen")
    assert seen
    _check_after_kill(setup, coll, case, append=False)


def test_reader_of_old_version_keeps_working_across_a_switch(setup: dict, tmp_path: Path) -> None:
    coll = tmp_path / "coll"
    shutil.copytree(setup["old"], coll)
    reader = open_collection(coll)
    before = [[h.id for h in reader.neighbors(r, embedding="raw", k=6)] for r in range(len(reader))]
    build_collection(setup["new_src"], coll, _opts())
    after = [[h.id for h in reader.neighbors(r, embedding="raw", k=6)] for r in range(len(reader))]
    assert after == before and len(reader) == 14
    assert [reader.get(r)["image_key"] for r in range(14)] == setup["old_snap"]["keys"]
    assert reader.thumbnail(0) == setup["old_snap"]["thumb0"]
    assert len(open_collection(coll)) == 26
