"""The contenders and the sweep of ``imagemesh bench``: per dataset, build every index and measure every
contender on every filter (datasets: :mod:`imagemesh.bench.datasets`; timing: :mod:`imagemesh.bench.measure`)."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from imagemesh.bench.config import CONTENDERS, K, BenchConfig
from imagemesh.bench.datasets import Dataset, demo_dataset, synthetic
from imagemesh.bench.measure import ground_truth, machine_info, measure, rss_peak_mb, spawn_build

__all__ = ["BenchConfig", "CONTENDERS", "run_dataset", "run_benchmark"]


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
        truth[name] = ground_truth(x, q, m)
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
            res["builds"][tag] = {**spawn_build("faiss", ds, path, params, cfg.build_threads), "params": params}
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
            **spawn_build("lance", ds, lance_path, {"meta": str(meta_path), "partitions": parts, "sub_vectors": 16}, cfg.build_threads),
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

                    r = measure(fn, q, truth[name], min(K, int(m.sum())), budget, reps)
                    record("planner", f"HNSW{M}+auto", name, r, {"strategy": plan.strategy, "plan": plan.to_dict(), "cold_first_query_ms": round(cold_ms, 2)})
                res["planner"]["cache"] = planner.cache_info()

        with guarded("exact in want_c"):
            if "exact" in want_c:
                ex = ExactIndex(d)
                ex._vectors = x
                for name, m in ds.masks.items():
                    allowed = None if m.all() else m
                    r = measure(lambda qq, a=allowed: ex.search(qq, K, allowed=a)[1][0], q, truth[name], min(K, int(m.sum())), budget, reps)
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
                    r = measure(lambda qq, p=p: inner.search(qq, K, params=p)[1][0], q, truth[name], min(K, int(m.sum())), budget, reps)
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

                                record("hnsw-post", f"{tag},ef{ef}", name, measure(post, q, truth[name], min(K, int(m.sum())), budget, reps))

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
                    res["builds"][tag] = {**spawn_build("annoy", ds, path, {"n_trees": trees}, cfg.build_threads), "params": {"n_trees": trees}}
                    log(f"    {res['builds'][tag]}")
                    ann = AnnoyIndex.load(path, d, {"n_trees": trees, "ntotal": n})
                    for sk in sw["search_k"]:
                        if "annoy" in want_c:
                            for name, m in ds.masks.items():
                                allowed = None if m.all() else m
                                fn = lambda qq, a=allowed, sk=sk: ann.search(qq, K, allowed=a, vectors=x, search_k=sk)[1][0]
                                record("annoy", f"{tag},sk{sk}", name, measure(fn, q, truth[name], min(K, int(m.sum())), budget, reps))
                        if "annoy-post" in want_c and sk == sw["search_k"][-1]:
                            for name, m in ds.masks.items():

                                def post_a(qq, m=m, sk=sk):
                                    i = np.asarray(ann._index.get_nns_by_vector(qq[0], K, search_k=sk), dtype=np.int64)
                                    return i[m[i]]

                                record("annoy-post", f"{tag},sk{sk}", name, measure(post_a, q, truth[name], min(K, int(m.sum())), budget, reps))

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
                            record(contender, cname, name, measure(lq, q, truth[name], min(K, int(m.sum())), budget, reps))
    res["loadavg_end"] = list(os.getloadavg())
    return res


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every dataset of ``cfg``; returns the results (also written by :func:`write_outputs`)."""
    out: dict[str, Any] = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}, "machine": machine_info(), "datasets": []}
    t0 = time.perf_counter()
    if cfg.demo:
        ds = demo_dataset(cfg.work, cfg.queries, cfg.seed)
        out["datasets"].append(run_dataset(ds, cfg, log))
    for n in cfg.sizes:
        ds = synthetic(n, 128, cfg.queries, cfg.seed, cfg.work)
        out["datasets"].append(run_dataset(ds, cfg, log))
        del ds
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["peak_rss_mb_bench_process"] = round(rss_peak_mb(), 1)
    return out
