"""``imagemesh embed --executor ray``: Ray Data on a local Ray (num_cpus=2) gives the same
vectors as the local executor. Skipped only when Ray is not installed (the ``ray`` extra)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from imagemesh.ingest.build import BuildOptions, build_collection
from imagemesh.ingest.embed import add_embedding
from imagemesh.query.collection import open_collection

from .conftest import make_subset

pytest.importorskip("ray.data")


def test_ray_executor_matches_local(tmp_path: Path) -> None:
    src = make_subset(tmp_path / "src", 12)
    base = tmp_path / "base"
    build_collection(src, base, BuildOptions(embeddings=["raw"], backend="exact", progress=False, map_2d=False))
    local, remote = tmp_path / "local", tmp_path / "ray"
    shutil.copytree(base, local)
    shutil.copytree(base, remote)
    add_embedding(local, "ternary", BuildOptions(chunk_size=4, progress=False, map_2d=False))
    add_embedding(remote, "ternary", BuildOptions(chunk_size=4, progress=False, map_2d=False, executor="ray", ray_cpus=2, ray_actors=2))
    a, b = open_collection(local), open_collection(remote)
    va, vb = np.asarray(a.vectors("ternary")), np.asarray(b.vectors("ternary"))
    assert va.shape == vb.shape == (12, va.shape[1])
    assert np.allclose(va, vb, atol=1e-5)
    for i in range(12):
        pa, pb = a.get(i)["predictions"]["ternary"], b.get(i)["predictions"]["ternary"]
        assert [p["label"] for p in pa] == [p["label"] for p in pb]
        assert np.allclose([p["p"] for p in pa], [p["p"] for p in pb], atol=1e-4)
