"""Index backends on the real embeddings of the 166 arXiv figures: recall against exact,
filtered search that never leaks and always fills min(k, matches), save/load, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagemesh import IndexError_, default_registries, exact_search
from imagemesh.backends.annoy_index import AnnoyIndex
from imagemesh.backends.exact import ExactIndex
from imagemesh.backends.faiss_index import FaissIndex

K = 10


def _build(cls, vectors: np.ndarray, **params):
    idx = cls(vectors.shape[1], **params)
    idx.add(np.arange(len(vectors)), vectors)
    idx.build()
    return idx


def recall_at_k(got: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(g[g >= 0]) & set(t[t >= 0])) for g, t in zip(got, truth))
    return hits / max(1, int((truth >= 0).sum()))


@pytest.fixture(scope="module", params=["imagenet", "raw"])
def vectors(request, real_collection) -> np.ndarray:
    return np.asarray(real_collection.vectors(request.param))


BACKENDS = [
    (AnnoyIndex, {"n_trees": 50}),
    (FaissIndex, {"recipe": "HNSW32"}),
    (FaissIndex, {"recipe": "IVF8,Flat", "nprobe": 4}),
]


@pytest.mark.parametrize("cls,params", BACKENDS, ids=["annoy", "faiss-hnsw", "faiss-ivf"])
def test_recall_at_10_against_exact_on_real_embeddings(vectors, cls, params) -> None:
    truth = exact_search(vectors, vectors, K)[1]
    got = _build(cls, vectors, **params).search(vectors, K)[1]
    r = recall_at_k(got, truth)
    print(f"{cls.backend} {params}: recall@10 = {r:.3f}")
    assert r >= 0.9


def test_exact_backend_is_self_first_and_sorted(vectors) -> None:
    d, i = _build(ExactIndex, vectors).search(vectors, K)
    assert (i[:, 0] == np.arange(len(vectors))).mean() > 0.99  # duplicates aside
    assert np.all(np.diff(d, axis=1) >= 0)


@pytest.mark.parametrize("cls,params", [(ExactIndex, {}), *BACKENDS], ids=["exact", "annoy", "faiss-hnsw", "faiss-ivf"])
@pytest.mark.parametrize("n_allowed", [0, 1, 3, 10, 40, 166])
def test_filtered_search_never_leaks_and_fills_min_k_matches(vectors, cls, params, n_allowed) -> None:
    rng = np.random.default_rng(n_allowed)
    allowed = np.zeros(len(vectors), bool)
    allowed[rng.choice(len(vectors), n_allowed, replace=False)] = True
    idx = _build(cls, vectors, **params)
    d, i = idx.search(vectors[:20], K, allowed=allowed, vectors=vectors)
    want = min(K, n_allowed)
    for row_d, row_i in zip(d, i):
        got = row_i[row_i >= 0]
        assert len(got) == want
        assert allowed[got].all()
        assert len(set(got.tolist())) == len(got)
        assert np.all(np.isinf(row_d[want:]))
    # exact order within the allowed subset for the exact backend
    if cls is ExactIndex:
        rows = np.flatnonzero(allowed)
        assert np.array_equal(i, exact_search(vectors[rows], vectors[:20], K, rows)[1])


@pytest.mark.parametrize("cls,params,ext", [(ExactIndex, {}, "npy"), (AnnoyIndex, {"n_trees": 10}, "ann"), (FaissIndex, {"recipe": "HNSW32"}, "faiss")])
def test_save_load_round_trip(tmp_path: Path, vectors, cls, params, ext) -> None:
    idx = _build(cls, vectors, **params)
    path = tmp_path / f"i.{ext}"
    idx.save(path)
    p = {**idx.params(), "file_bytes": path.stat().st_size}
    loaded = cls.load(path, vectors.shape[1], p)
    assert loaded.ntotal == len(vectors)
    assert np.array_equal(loaded.search(vectors[:5], K)[1], idx.search(vectors[:5], K)[1])


@pytest.mark.parametrize("cls,params,ext", [(AnnoyIndex, {"n_trees": 10}, "ann"), (FaissIndex, {"recipe": "HNSW32"}, "faiss"), (ExactIndex, {}, "npy")])
def test_truncated_index_file_is_a_clear_error(tmp_path: Path, vectors, cls, params, ext) -> None:
    idx = _build(cls, vectors, **params)
    path = tmp_path / f"i.{ext}"
    idx.save(path)
    size = path.stat().st_size
    p = {**idx.params(), "file_bytes": size}
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(IndexError_):
        cls.load(path, vectors.shape[1], p)
    # without the manifest's size, the backend's own checks must still refuse it
    p.pop("file_bytes")
    with pytest.raises(IndexError_):
        cls.load(path, vectors.shape[1], p)


def test_bad_queries_and_k_are_value_errors(vectors) -> None:
    idx = _build(ExactIndex, vectors)
    with pytest.raises(ValueError):
        idx.search(vectors[:, :3], K)
    with pytest.raises(ValueError):
        idx.search(vectors[:1], 0)
    with pytest.raises(ValueError):
        idx.search(vectors[:1], K, allowed=np.ones(3, bool))


def test_invalid_faiss_recipe_and_too_few_training_points() -> None:
    with pytest.raises(ValueError):
        FaissIndex(8, recipe="NotAnIndex")
    idx = FaissIndex(8, recipe="IVF256,Flat")
    idx.add(np.arange(10), np.random.default_rng(0).random((10, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="nlist"):
        idx.build()


def test_builtin_backends_register_through_entry_points() -> None:
    regs = default_registries()
    assert {"exact", "annoy", "faiss"} <= set(regs.backends.names())
    assert regs.backends.get("annoy") is AnnoyIndex
    assert {"raw", "imagenet"} <= set(regs.embeddings.names())
    assert "explorer" in regs.frontends.names()
