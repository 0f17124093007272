"""`imagemesh verify [--repair]` and refusal of damaged index files on open (real figures,
real Annoy/FAISS indices): a truncated or same-size corrupted index is a clear error, never
a crash, and --repair rebuilds it from the stored vectors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imagemesh.ingest.build import BuildOptions, build_collection
from imagemesh.cli import cli
from imagemesh.store.reader import CollectionError
from imagemesh.query.collection import open_collection
from imagemesh.store.integrity import RepairError, repair, verify
from imagemesh.store.manifest import Manifest

from .conftest import make_subset


def _build(tmp: Path, backend: str) -> Path:
    src = make_subset(tmp / "src", 20)
    out = tmp / f"coll-{backend}"
    build_collection(src, out, BuildOptions(backend=backend, embeddings=["raw"], pca_dim=16, progress=False, map_2d=True))
    return out


@pytest.fixture(scope="module")
def annoy_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("integrity-annoy"), "annoy")


@pytest.fixture(scope="module")
def faiss_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("integrity-faiss"), "faiss")


@pytest.fixture
def annoy_coll(annoy_master: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "c"
    shutil.copytree(annoy_master, dst)
    return dst


def _file(root: Path, kind: str, emb: str = "raw") -> Path:
    m = Manifest.read(root)
    return root / m.data_dir / m.embeddings[emb][kind]["file"]


def _answers(root: Path) -> list[list[int]]:
    c = open_collection(root)
    return [[h.id for h in c.neighbors(r, embedding="raw", k=8)] for r in range(len(c))]


def _corrupt_same_size(path: Path, seed: int = 0) -> None:
    """Overwrite the middle of the file with random bytes, keeping its size."""
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    lo, hi = len(data) // 4, 3 * len(data) // 4
    data[lo:hi] = rng.integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def test_verify_clean_collection_cli(annoy_coll: Path) -> None:
    r = CliRunner().invoke(cli, ["verify", str(annoy_coll), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["ok"] and d["error"] is None
    kinds = {(c["embedding"], c["kind"]) for c in d["checks"]}
    assert {("raw", "vectors"), ("raw", "index"), ("raw", "pca"), ("raw", "map"), (None, "table"), (None, "media table")} <= kinds
    assert d["warnings"] == []  # the installed raw embedding is the one that built it


def test_truncated_annoy_index_clear_error_then_repair(annoy_coll: Path) -> None:
    before = _answers(annoy_coll)
    idx = _file(annoy_coll, "index")
    with open(idx, "r+b") as f:
        f.truncate(idx.stat().st_size // 2)
    with pytest.raises(CollectionError, match="truncated"):
        open_collection(annoy_coll)
    rep = verify(annoy_coll)
    assert not rep.ok and rep.repairable and [(c.kind, c.status) for c in rep.problems] == [("index", "size")]
    r = CliRunner().invoke(cli, ["verify", str(annoy_coll)])
    assert r.exit_code == 1 and "FAIL" in r.output and "repairable" in r.output
    old_build = Manifest.read(annoy_coll).build_id
    r = CliRunner().invoke(cli, ["verify", str(annoy_coll), "--repair"])
    assert r.exit_code == 0, r.output
    m = Manifest.read(annoy_coll)
    assert m.build_id != old_build and m.source["repaired_from"] == old_build
    assert verify(annoy_coll).ok
    assert _answers(annoy_coll) == before  # same vectors, same seeded Annoy build


def test_same_size_corrupted_annoy_index_is_refused_not_a_crash(annoy_coll: Path) -> None:
    idx = _file(annoy_coll, "index")
    size = idx.stat().st_size
    _corrupt_same_size(idx)
    assert idx.stat().st_size == size
    # In a child process, so that a crash would show up as a signal instead of killing pytest.
    code = textwrap.dedent(f"""
        import sys
        from imagemesh.store.reader import CollectionError
        from imagemesh.query.collection import open_collection
        try:
            c = open_collection({str(annoy_coll)!r})
        except CollectionError as e:
            print("REFUSED", e)
            sys.exit(3)
        for r in range(len(c)):
            c.neighbors(r, embedding="raw", k=8)
        print("ANSWERED")
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr[-2000:])
    assert "sha256" in p.stdout and "verify --repair" in p.stdout
    rep = repair(annoy_coll)
    assert rep.ok
    open_collection(annoy_coll).neighbors(0, embedding="raw", k=5)


def test_corrupted_faiss_index_and_map_refused_then_repaired(faiss_master: Path, tmp_path: Path) -> None:
    root = tmp_path / "c"
    shutil.copytree(faiss_master, root)
    before = _answers(root)
    _corrupt_same_size(_file(root, "index"), seed=1)
    _corrupt_same_size(_file(root, "map"), seed=2)
    with pytest.raises(CollectionError, match="sha256"):
        open_collection(root)
    rep = verify(root)
    assert sorted((c.kind, c.status) for c in rep.problems) == [("index", "sha256"), ("map", "sha256")]
    assert repair(root).ok
    assert _answers(root) == before
    xy, _ = open_collection(root).map_2d("raw")
    assert xy.shape == (20, 2)


def test_damaged_vectors_are_not_repairable(annoy_coll: Path) -> None:
    vec = _file(annoy_coll, "vectors")
    _corrupt_same_size(vec, seed=3)
    rep = verify(annoy_coll)
    assert [(c.kind, c.status) for c in rep.problems] == [("vectors", "sha256")] and not rep.repairable
    with pytest.raises(RepairError, match="rebuild"):
        repair(annoy_coll)
    r = CliRunner().invoke(cli, ["verify", str(annoy_coll), "--repair"])
    assert r.exit_code == 1 and "rebuild" in r.output and "Traceback" not in r.output


def test_missing_table_version_and_manifest_problems(annoy_coll: Path) -> None:
    m = Manifest.read(annoy_coll)
    m.table["version"] = 999
    m.write(annoy_coll)
    rep = verify(annoy_coll, models=False)
    assert [(c.kind, c.status) for c in rep.problems] == [("table", "error")]
    (annoy_coll / "manifest.json").write_text("{not json")
    rep = verify(annoy_coll)
    assert not rep.ok and rep.error and "manifest.json" in rep.error
    r = CliRunner().invoke(cli, ["verify", str(annoy_coll)])
    assert r.exit_code == 1 and "FAILED" in r.output
