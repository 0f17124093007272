"""Index builds in a fresh process (peak memory) and the timing loop (median QPS, recall@k) of ``imagemesh bench``."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from imagemesh.bench.config import K
from imagemesh.bench.datasets import Dataset

__all__ = ["rss_peak_mb", "build_job", "spawn_build", "path_bytes", "measure", "ground_truth", "machine_info"]

# ---------------------------------------------------------------------------- builds (in a fresh process)


def rss_peak_mb() -> float:
    """Peak RSS of this process (``VmHWM``; ``ru_maxrss`` would carry the parent's peak
    across fork + exec on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_job(kind: str, vectors_path: str, out_path: str, params: dict[str, Any], threads: int) -> dict[str, Any]:
    """Runs in a spawned process: build one index, save it, report time and peak RSS."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no OpenMP spin-waiting on a shared, busy machine
    os.environ["LANCE_CPU_THREADS"] = str(threads)  # builds use the build threads (a fresh process: read at LanceDB start)
    import faiss

    faiss.omp_set_num_threads(threads)
    x = np.load(vectors_path)
    base_rss = rss_peak_mb()
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
    return {"build_s": round(build_s, 3), "peak_rss_mb": round(rss_peak_mb(), 1), "rss_before_build_mb": round(base_rss, 1), "threads": threads}


def spawn_build(kind: str, ds: Dataset, out_path: Path, params: dict[str, Any], threads: int) -> dict[str, Any]:
    import concurrent.futures as cf
    import multiprocessing as mp

    with cf.ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        res = ex.submit(build_job, kind, str(ds.vectors_path), str(out_path), params, threads).result()
    res["index_bytes"] = path_bytes(out_path)
    return res


def path_bytes(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


# ---------------------------------------------------------------------------- measurement


def measure(fn: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, truth: np.ndarray, want: int, budget_s: float, reps: int) -> dict[str, Any]:
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


def ground_truth(x: np.ndarray, q: np.ndarray, mask: np.ndarray) -> np.ndarray:
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


def machine_info() -> dict[str, Any]:
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
