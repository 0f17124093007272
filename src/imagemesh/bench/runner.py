"""Datasets, contenders and the measurement loop of ``imagemesh bench``."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

K = 10

#: Random filters: name -> fraction of rows kept (over a uniform ``shard`` column in [0, 10000)).
RANDOM_FILTERS = {"100%": 10_000, "10%": 1_000, "1%": 100, "0.1%": 10, "0.01%": 1}


@dataclass
class BenchConfig:
    """What to run.

    Attributes:
        sizes: synthetic dataset sizes (rows of 128-d vectors).
        demo: also run on the real demo collection's embeddings.
        contenders: contender names (default: all; see :data:`CONTENDERS`).
        queries: queries per dataset.
        budget_s: time budget of one repetition of one measurement (queries stop early).
        reps: repetitions (median reported).
        out: results folder (JSON, markdown, PNG).
        work: scratch folder for indices and LanceDB tables.
        quick: small sweeps.
        seed: data seed.
    """

    sizes: list[int] = field(default_factory=lambda: [100_000])
    demo: bool = True
    contenders: list[str] | None = None
    queries: int = 200
    budget_s: float = 1.0
    reps: int = 3
    out: Path = Path("benchmarks/results")
    work: Path = Path("benchmarks/.work")
    quick: bool = False
    seed: int = 0
    build_threads: int = 2
    reuse: bool = False  # reuse FAISS index files already in ``work`` (build figures then come from the run that built them)


CONTENDERS = ["planner", "exact", "hnsw", "hnsw-post", "ivf", "ivfpq", "annoy", "annoy-post", "lance-pre", "lance-post"]


# ---------------------------------------------------------------------------- data


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
    return Dataset(f"synthetic-{_human(n)}x{d}", x, queries, masks, preds, meta, vpath, {"clusters": c, "corr_clusters": chosen, "kind": "synthetic"})


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


def _human(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


# ---------------------------------------------------------------------------- builds (in a fresh process)


def _rss_peak_mb() -> float:
    """Peak RSS of this process (``VmHWM``; ``ru_maxrss`` would carry the parent's peak
    across fork + exec on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _build_job(kind: str, vectors_path: str, out_path: str, params: dict[str, Any], threads: int) -> dict[str, Any]:
    """Runs in a spawned process: build one index, save it, report time and peak RSS."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no OpenMP spin-waiting on a shared, busy machine
    os.environ["LANCE_CPU_THREADS"] = str(threads)  # builds use the build threads (a fresh process: read at LanceDB start)
    import faiss

    faiss.omp_set_num_threads(threads)
    x = np.load(vectors_path)
    base_rss = _rss_peak_mb()
    t0 = time.perf_counter()
    if kind == "faiss":
        from imagemesh.backends.faiss_index import FaissIndex

        idx = FaissIndex(x.shape[1], **params)
        idx.add(np.arange(len(x)), x)
        idx.build()
        idx.save(Path(out_path))
    elif kind == "annoy":
        from annoy import AnnoyIndex as _Annoy

        a = _Annoy(x.shape[1], "euclidean")
        a.set_seed(42)
        for i in range(len(x)):
            a.add_item(i, x[i])
        a.build(int(params["n_trees"]), n_jobs=threads)
        a.save(out_path)
    elif kind == "lance":
        import lancedb
        import pyarrow as pa

        tbl_meta = pa.ipc.open_file(params["meta"]).read_all()
        vec = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])
        table = tbl_meta.append_column("vector", vec)
        shutil.rmtree(out_path, ignore_errors=True)
        db = lancedb.connect(out_path)
        tbl = db.create_table("vectors", data=table)
        if params.get("partitions"):
            tbl.create_index(metric="l2", vector_column_name="vector", index_type="IVF_PQ", num_partitions=int(params["partitions"]), num_sub_vectors=int(params["sub_vectors"]))
    else:
        raise ValueError(kind)
    build_s = time.perf_counter() - t0
    return {"build_s": round(build_s, 3), "peak_rss_mb": round(_rss_peak_mb(), 1), "rss_before_build_mb": round(base_rss, 1), "threads": threads}


def _spawn_build(kind: str, ds: Dataset, out_path: Path, params: dict[str, Any], threads: int) -> dict[str, Any]:
    import concurrent.futures as cf
    import multiprocessing as mp

    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        res = ex.submit(_build_job, kind, str(ds.vectors_path), str(out_path), params, threads).result()
    res["index_bytes"] = _path_bytes(out_path)
    return res


def _path_bytes(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


# ---------------------------------------------------------------------------- measurement


def _measure(fn: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, truth: np.ndarray, want: int, budget_s: float, reps: int) -> dict[str, Any]:
    """Run single queries for up to ``budget_s`` per repetition; QPS median over ``reps``.

    The first repetition fixes how many queries are run (at least 10, at most all) and
    gives recall@10 and the fill ratio."""
    got = []
    t0 = time.perf_counter()
    for j in range(len(queries)):
        got.append(fn(queries[j : j + 1]))
        if j + 1 >= 10 and time.perf_counter() - t0 > budget_s:
            break
    m = len(got)
    times = [time.perf_counter() - t0]
    for _ in range(reps - 1):
        t0 = time.perf_counter()
        for j in range(m):
            fn(queries[j : j + 1])
        times.append(time.perf_counter() - t0)
    ids = -np.ones((m, K), dtype=np.int64)
    for r, g in enumerate(got):
        g = np.asarray(g, dtype=np.int64).reshape(-1)[:K]
        ids[r, : g.size] = g
    hits = 0
    total = 0
    filled = 0
    for r in range(m):
        t = truth[r][truth[r] >= 0]
        g = ids[r][ids[r] >= 0]
        hits += len(set(g.tolist()) & set(t.tolist()))
        total += len(t)
        filled += min(len(set(g.tolist())), want)
    qps = [m / t for t in times]
    return {
        "qps": round(statistics.median(qps), 1),
        "qps_reps": [round(v, 1) for v in qps],
        "recall": round(hits / max(total, 1), 4),
        "fill": round(filled / max(m * want, 1), 4),
        "nq": m,
    }


def _ground_truth(x: np.ndarray, q: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import faiss

    rows = np.flatnonzero(mask)
    out = -np.ones((len(q), K), dtype=np.int64)
    if rows.size == 0:
        return out
    idx = faiss.IndexFlatL2(x.shape[1])
    idx.add(np.ascontiguousarray(x[rows]))
    _, i = idx.search(q, min(K, rows.size))
    out[:, : i.shape[1]] = np.where(i >= 0, rows[np.maximum(i, 0)], -1)
    return out


def _machine() -> dict[str, Any]:
    import faiss
    import lancedb
    from threadpoolctl import threadpool_info

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_mb": mem,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "lancedb": lancedb.__version__,
        "blas": [{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")} for i in threadpool_info()],
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "LANCE_CPU_THREADS")},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


# ---------------------------------------------------------------------------- sweeps


def _sweeps(n: int, quick: bool) -> dict[str, Any]:
    nlist = 1024 if n >= 500_000 else 256 if n >= 50_000 else max(8, int(np.sqrt(n)))
    if n < 5_000:
        nlist = 8
    s: dict[str, Any] = {
        "hnsw_M": [32] if n >= 500_000 or quick else [16, 32],
        "ef": [16, 32, 64, 128, 256] if not quick else [32, 64],
        "ef_post": [64, 128],
        "nlist": nlist,
        "nprobe": [1, 4, 8, 16, 32, 64] if not quick else [8, 16],
        "nprobe_pq": [8, 32, 64],
        "pq": "PQ32" if n >= 5_000 else None,
        "annoy_trees": [32] if n >= 500_000 or quick else [16, 64],
        "search_k": [1_000, 5_000, 20_000] if not quick else [5_000],
        "lance_configs": [(20, None), (20, 10), (50, 10)] if not quick else [(20, 10)],  # (nprobes, refine_factor)
        "lance_partitions": (nlist if n >= 10_000 else None),
    }
    return s


# ---------------------------------------------------------------------------- run


def run_dataset(ds: Dataset, cfg: BenchConfig, log: Callable[[str], None]) -> dict[str, Any]:
    import faiss
    from threadpoolctl import threadpool_limits

    from imagemesh.backends.annoy_index import AnnoyIndex
    from imagemesh.backends.exact import ExactIndex
    from imagemesh.backends.faiss_index import FaissIndex
    from imagemesh.query.planner import QueryPlanner

    want_c = cfg.contenders or CONTENDERS
    x, q = ds.vectors, ds.queries
    n, d = x.shape
    sw = _sweeps(n, cfg.quick)
    work = cfg.work / ds.name
    work.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"dataset": ds.name, "n": n, "d": d, "queries": len(q), "info": ds.info, "sweeps": sw, "filters": {}, "builds": {}, "results": [], "planner": {}}
    log(f"== {ds.name}: {n} x {d}, {len(q)} queries")

    truth = {}
    for name, m in ds.masks.items():
        truth[name] = _ground_truth(x, q, m)
        res["filters"][name] = {"n_allowed": int(m.sum()), "selectivity": round(float(m.mean()), 6), "predicate": ds.predicates[name]}

    def record(contender: str, config: str, fname: str, r: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        row = {"contender": contender, "config": config, "filter": fname, **r, **(extra or {})}
        res["results"].append(row)
        log(f"  {contender:<11} {config:<18} {fname:<8} qps {r['qps']:>9.1f}  recall {r['recall']:.3f}  fill {r['fill']:.3f}  (n={r['nq']})")

    def build_faiss(tag: str, params: dict[str, Any]) -> FaissIndex:
        path = work / f"{tag}.faiss"
        if tag not in res["builds"] and cfg.reuse and path.is_file():
            res["builds"][tag] = {"reused": str(path), "index_bytes": path.stat().st_size, "params": params}
        if tag not in res["builds"]:
            log(f"  building {tag} {params}")
            res["builds"][tag] = {**_spawn_build("faiss", ds, path, params, cfg.build_threads), "params": params}
            log(f"    {res['builds'][tag]}")
        return FaissIndex.load(path, d, {**params})

    # LanceDB: filter evaluation time (cold, on the metadata table) and the vector table
    lance_tbl = None
    if any(c.startswith("lance") for c in want_c) or "planner" in want_c:
        import pyarrow as pa

        meta_tbl = ds.metadata if isinstance(ds.metadata, pa.Table) else pa.table({k: pa.array(v) for k, v in ds.metadata.items()})
        meta_path = work / "meta.arrow"
        with pa.OSFile(str(meta_path), "wb") as f:
            with pa.ipc.new_file(f, meta_tbl.schema) as w:
                w.write_table(meta_tbl)
        lance_path = work / "lance"
        parts = sw["lance_partitions"] if any(c.startswith("lance") for c in want_c) else None
        log(f"  building lance table (IVF_PQ partitions={parts})")
        res["builds"]["lance-ivfpq" if parts else "lance-table"] = {
            **_spawn_build("lance", ds, lance_path, {"meta": str(meta_path), "partitions": parts, "sub_vectors": 16}, cfg.build_threads),
            "params": {"index_type": "IVF_PQ" if parts else None, "num_partitions": parts, "num_sub_vectors": 16},
        }
        import lancedb

        lance_tbl = lancedb.connect(str(lance_path)).open_table("vectors")
        for name, pred in ds.predicates.items():
            t0 = time.perf_counter()
            got = lance_tbl.search().where(pred).select(["row_id"]).limit(None).to_arrow()["row_id"].to_numpy()
            res["filters"][name]["filter_eval_ms"] = round(1000 * (time.perf_counter() - t0), 2)
            lm = np.zeros(n, dtype=bool)
            lm[got] = True
            res["filters"][name]["lance_mask_equal"] = bool(np.array_equal(lm, ds.masks[name]))

    res["errors"] = []

    @contextlib.contextmanager
    def guarded(what: str) -> Iterator[None]:
        """One contender failing must not lose the others' results: record and go on."""
        try:
            yield
        except Exception as exc:
            res["errors"].append(f"{what}: {type(exc).__name__}: {exc}")
            log(f"  ERROR {type(exc).__name__}: {exc}")

    res["loadavg_start"] = list(os.getloadavg())
    faiss.omp_set_num_threads(1)
    with threadpool_limits(1):
        budget, reps = cfg.budget_s, cfg.reps

        with guarded("planner in want_c"):
            if "planner" in want_c:
                M = 32 if n >= 5_000 else 16
                tag = f"HNSW{M}"
                base = build_faiss(tag, {"recipe": tag, "ef_search": 64})
                planner = QueryPlanner(base, x, "faiss")
                t0 = time.perf_counter()
                if n > planner.config.exact_max_rows:
                    planner._kmeans()
                res["planner"]["kmeans_s"] = round(time.perf_counter() - t0, 3)
                res["planner"]["nlist"] = planner.nlist()
                for name, m in ds.masks.items():
                    allowed = None if m.all() else m
                    t0 = time.perf_counter()
                    _, _, plan = planner.search(q[:1], K, allowed, key=name)
                    cold_ms = 1000 * (time.perf_counter() - t0)

                    def fn(qq: np.ndarray, allowed=allowed, name=name) -> np.ndarray:
                        return planner.search(qq, K, allowed, key=name)[1][0]

                    r = _measure(fn, q, truth[name], min(K, int(m.sum())), budget, reps)
                    record("planner", f"HNSW{M}+auto", name, r, {"strategy": plan.strategy, "plan": plan.to_dict(), "cold_first_query_ms": round(cold_ms, 2)})
                res["planner"]["cache"] = planner.cache_info()

        with guarded("exact in want_c"):
            if "exact" in want_c:
                ex = ExactIndex(d)
                ex._vectors = x
                for name, m in ds.masks.items():
                    allowed = None if m.all() else m
                    r = _measure(lambda qq, a=allowed: ex.search(qq, K, allowed=a)[1][0], q, truth[name], min(K, int(m.sum())), budget, reps)
                    record("exact", "gather+BLAS", name, r)
                res["builds"]["exact"] = {"build_s": 0.0, "index_bytes": int(x.nbytes), "peak_rss_mb": None}

        def bitmap_of(m: np.ndarray) -> Any:
            bm = np.packbits(m.astype(np.uint8), bitorder="little")
            return bm, faiss.IDSelectorBitmap(len(bm), faiss.swig_ptr(bm))

        selectors = {name: bitmap_of(m) for name, m in ds.masks.items()}

        def faiss_runs(contender: str, idx: FaissIndex, configs: list[tuple[str, Callable[[Any], Any]]]) -> None:
            inner = idx._index
            for cname, mk in configs:
                for name, m in ds.masks.items():
                    sel = None if m.all() else selectors[name][1]
                    p = mk(sel)
                    r = _measure(lambda qq, p=p: inner.search(qq, K, params=p)[1][0], q, truth[name], min(K, int(m.sum())), budget, reps)
                    record(contender, cname, name, r)

        with guarded("hnsw in want_c or hnsw-post in want_c"):
            if "hnsw" in want_c or "hnsw-post" in want_c:
                for M in sw["hnsw_M"] if n >= 5_000 else [16]:
                    tag = f"HNSW{M}"
                    idx = build_faiss(tag, {"recipe": tag, "ef_search": 64})
                    if "hnsw" in want_c:
                        faiss_runs("hnsw", idx, [(f"{tag},ef{ef}", lambda sel, ef=ef: faiss.SearchParametersHNSW(efSearch=ef, sel=sel)) for ef in sw["ef"]])
                    if "hnsw-post" in want_c and M == sw["hnsw_M"][-1]:
                        for ef in sw["ef_post"]:
                            for name, m in ds.masks.items():
                                p = faiss.SearchParametersHNSW(efSearch=ef)

                                def post(qq, p=p, m=m, inner=idx._index):
                                    i = inner.search(qq, K, params=p)[1][0]
                                    return i[(i >= 0) & m[np.maximum(i, 0)]]

                                record("hnsw-post", f"{tag},ef{ef}", name, _measure(post, q, truth[name], min(K, int(m.sum())), budget, reps))

        with guarded("ivf in want_c"):
            if "ivf" in want_c:
                tag = f"IVF{sw['nlist']},Flat"
                idx = build_faiss(tag, {"recipe": tag})
                faiss_runs("ivf", idx, [(f"{tag},np{npr}", lambda sel, npr=npr: faiss.SearchParametersIVF(nprobe=npr, sel=sel)) for npr in sw["nprobe"]])
        with guarded("ivfpq in want_c and sw[pq]"):
            if "ivfpq" in want_c and sw["pq"]:
                tag = f"IVF{sw['nlist']},{sw['pq']}"
                idx = build_faiss(tag, {"recipe": tag})
                faiss_runs("ivfpq", idx, [(f"{tag},np{npr}", lambda sel, npr=npr: faiss.SearchParametersIVF(nprobe=npr, sel=sel)) for npr in sw["nprobe_pq"]])

        with guarded("annoy in want_c or annoy-post in want_c"):
            if "annoy" in want_c or "annoy-post" in want_c:
                for trees in sw["annoy_trees"]:
                    tag = f"annoy{trees}"
                    path = work / f"{tag}.ann"
                    log(f"  building {tag}")
                    res["builds"][tag] = {**_spawn_build("annoy", ds, path, {"n_trees": trees}, cfg.build_threads), "params": {"n_trees": trees}}
                    log(f"    {res['builds'][tag]}")
                    ann = AnnoyIndex.load(path, d, {"n_trees": trees, "ntotal": n})
                    for sk in sw["search_k"]:
                        if "annoy" in want_c:
                            for name, m in ds.masks.items():
                                allowed = None if m.all() else m
                                fn = lambda qq, a=allowed, sk=sk: ann.search(qq, K, allowed=a, vectors=x, search_k=sk)[1][0]
                                record("annoy", f"{tag},sk{sk}", name, _measure(fn, q, truth[name], min(K, int(m.sum())), budget, reps))
                        if "annoy-post" in want_c and sk == sw["search_k"][-1]:
                            for name, m in ds.masks.items():

                                def post_a(qq, m=m, sk=sk):
                                    i = np.asarray(ann._index.get_nns_by_vector(qq[0], K, search_k=sk), dtype=np.int64)
                                    return i[m[i]]

                                record("annoy-post", f"{tag},sk{sk}", name, _measure(post_a, q, truth[name], min(K, int(m.sum())), budget, reps))

        with guarded("lance_tbl is not None"):
            if lance_tbl is not None:
                has_index = bool(sw["lance_partitions"])
                for contender, prefilter in (("lance-pre", True), ("lance-post", False)):
                    if contender not in want_c:
                        continue
                    for npr, refine in sw["lance_configs"] if has_index else [(0, None)]:
                        for name, m in ds.masks.items():
                            pred = None if m.all() else ds.predicates[name]

                            def lq(qq, pred=pred, npr=npr, refine=refine, prefilter=prefilter):
                                s = lance_tbl.search(qq[0], vector_column_name="vector")
                                if npr:
                                    s = s.nprobes(npr)
                                if refine:
                                    s = s.refine_factor(refine)
                                if pred is not None:
                                    s = s.where(pred, prefilter=prefilter)
                                return s.select(["row_id"]).limit(K).to_arrow()["row_id"].to_numpy()

                            cname = f"IVF_PQ{sw['lance_partitions']},np{npr}" + (f",refine{refine}" if refine else "") if has_index else "flat"
                            record(contender, cname, name, _measure(lq, q, truth[name], min(K, int(m.sum())), budget, reps))
    res["loadavg_end"] = list(os.getloadavg())
    return res


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every dataset of ``cfg``; returns the results (also written by :func:`write_outputs`)."""
    out: dict[str, Any] = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}, "machine": _machine(), "datasets": []}
    t0 = time.perf_counter()
    if cfg.demo:
        ds = demo_dataset(cfg.work, cfg.queries, cfg.seed)
        out["datasets"].append(run_dataset(ds, cfg, log))
    for n in cfg.sizes:
        ds = synthetic(n, 128, cfg.queries, cfg.seed, cfg.work)
        out["datasets"].append(run_dataset(ds, cfg, log))
        del ds
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["peak_rss_mb_bench_process"] = round(_rss_peak_mb(), 1)
    return out
