"""Datasets of ``imagemesh bench``: synthetic clustered vectors with Zipf-like metadata and
correlated filters, and the demo collection's real ImageNet embeddings."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imagemesh.bench.config import RANDOM_FILTERS

__all__ = ["Dataset", "synthetic", "demo_dataset", "human_size"]

@dataclass
class Dataset:
    name: str
    vectors: np.ndarray  # float32[N, d]
    queries: np.ndarray  # float32[nq, d]
    masks: dict[str, np.ndarray]  # filter name -> bool[N]
    predicates: dict[str, str]  # filter name -> LanceDB predicate
    metadata: Any  # dict of pyarrow-able columns, or a pyarrow Table
    vectors_path: Path
    info: dict[str, Any] = field(default_factory=dict)


def synthetic(n: int, d: int, nq: int, seed: int, work: Path) -> Dataset:
    """Clustered vectors with Zipf-like metadata.

    ``n / 1000`` Gaussian clusters of log-normal sizes and varied spreads; each row has a
    category (150, Zipf 1.1, 70 % the cluster's dominant one), a year (1995-2024, skewed
    to recent), 1-3 keywords (Zipf over 500 words), a uniform ``shard`` in [0, 10000) for
    the random filters, and its ``cluster`` for the correlated one.
    """
    rng = np.random.default_rng(seed)
    c = max(16, n // 1000)
    weights = rng.lognormal(0.0, 0.6, c)
    weights /= weights.sum()
    centers = rng.normal(size=(c, d)).astype(np.float32)
    spread = rng.uniform(0.35, 0.65, c).astype(np.float32)
    cluster = rng.choice(c, size=n, p=weights)
    x = np.empty((n, d), dtype=np.float32)
    step = 131_072
    for s in range(0, n, step):
        cl = cluster[s : s + step]
        x[s : s + len(cl)] = centers[cl] + spread[cl, None] * rng.standard_normal((len(cl), d), dtype=np.float32)
    qc = rng.choice(c, size=nq, p=weights)
    queries = (centers[qc] + spread[qc, None] * rng.standard_normal((nq, d), dtype=np.float32)).astype(np.float32)

    n_cat = 150
    zipf_cat = 1.0 / np.arange(1, n_cat + 1) ** 1.1
    zipf_cat /= zipf_cat.sum()
    dominant = rng.choice(n_cat, size=c, p=zipf_cat)
    category = np.where(rng.random(n) < 0.7, dominant[cluster], rng.choice(n_cat, size=n, p=zipf_cat))
    years = np.arange(1995, 2025)
    py = np.exp(0.12 * (years - 1995))
    year = rng.choice(years, size=n, p=py / py.sum())
    vocab = 500
    zipf_kw = 1.0 / np.arange(1, vocab + 1) ** 1.05
    zipf_kw /= zipf_kw.sum()
    n_kw = rng.integers(1, 4, n)
    kw = rng.choice(vocab, size=(n, 3), p=zipf_kw)
    keywords = [[f"kw{w}" for w in kw[i, : n_kw[i]]] for i in range(n)]
    shard = rng.integers(0, 10_000, n)

    masks: dict[str, np.ndarray] = {}
    preds: dict[str, str] = {}
    for name, cut in RANDOM_FILTERS.items():
        masks[name] = shard < cut
        preds[name] = f"shard < {cut}"
    # correlated 1 %: whole clusters, added until they hold >= 1 % of the rows
    order = rng.permutation(c)
    sizes = np.bincount(cluster, minlength=c)
    chosen: list[int] = []
    for cl in order:
        if sizes[chosen].sum() + sizes[cl] > 0.015 * n:  # stay near 1 %
            continue
        chosen.append(int(cl))
        if sizes[chosen].sum() >= 0.01 * n:
            break
    if not chosen:  # small data: clusters are larger than 1 %; take the smallest one
        chosen = [int(np.argmin(np.where(sizes > 0, sizes, n + 1)))]
    masks["corr-1%"] = np.isin(cluster, chosen)
    preds["corr-1%"] = f"cluster IN ({', '.join(map(str, chosen))})"
    # a realistic compound filter: the 3rd most common category since 2020
    cat3 = int(np.argsort(-np.bincount(category, minlength=n_cat))[2])
    masks["cat+year"] = (category == cat3) & (year >= 2020)
    preds["cat+year"] = f"category = 'cat{cat3}' AND year >= 2020"

    meta = {
        "row_id": np.arange(n, dtype=np.int64),
        "category": np.array([f"cat{v}" for v in category]),
        "year": year.astype(np.int32),
        "keywords": keywords,
        "shard": shard.astype(np.int32),
        "cluster": cluster.astype(np.int32),
    }
    work.mkdir(parents=True, exist_ok=True)
    vpath = work / f"synthetic-{n}.npy"
    np.save(vpath, x)
    return Dataset(f"synthetic-{human_size(n)}x{d}", x, queries, masks, preds, meta, vpath, {"clusters": c, "corr_clusters": chosen, "kind": "synthetic"})


def demo_dataset(work: Path, nq: int, seed: int) -> Dataset:
    """The real imagenet embeddings of the 166 demo figures, with real metadata filters."""
    from importlib import resources

    from imagemesh.ingest.build import BuildOptions, build_collection
    from imagemesh.store.reader import CollectionError
    from imagemesh.query.collection import open_collection
    from imagemesh.store.manifest import ManifestError

    out = work / "demo-collection"
    try:
        c = open_collection(out)
    except (CollectionError, ManifestError, OSError):
        shutil.rmtree(out, ignore_errors=True)
        src = Path(str(resources.files("imagemesh") / "demo_data"))
        build_collection(src, out, BuildOptions(backend="exact", progress=False))
        c = open_collection(out)
    x = np.ascontiguousarray(c.vectors("imagenet"), dtype=np.float32)
    rng = np.random.default_rng(seed)
    qrows = rng.choice(len(x), size=min(nq, len(x)), replace=False)
    queries = x[qrows] + 0.0
    filters = {
        "100%": None,
        "year=2023": {"year": 2023},
        "kw:translation": {"keyword": "translation"},
        "kw:speech": {"keyword": "speech"},
        "not kw:model": {"not": {"keyword": "model"}},
        "title:dialogue": {"title": {"contains": "dialog"}},
    }
    from imagemesh.core.filter_sql import to_lance_predicate
    from imagemesh.core.filters import from_dict

    masks, preds = {}, {}
    for name, f in filters.items():
        m = c.allowed(f)
        masks[name] = np.ones(len(x), dtype=bool) if m is None else np.array(m)
        preds[name] = to_lance_predicate(from_dict(f), c.schema) if f else "true"
    t = c.table.search().select(["row_id", "year", "title", "search_text"]).limit(None).to_arrow().sort_by("row_id")
    meta = t  # keeps the collection's column types (e.g. list<string> categories, even if all null)
    vpath = work / "demo-imagenet.npy"
    np.save(vpath, x)
    return Dataset(f"demo-imagenet-{len(x)}x{x.shape[1]}", x, queries, masks, preds, meta, vpath, {"kind": "real", "collection": str(out)})


def human_size(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)
