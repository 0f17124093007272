"""ivf-allowed with and without the scanned-rows cap (PlannerConfig.ivf_max_codes), interleaved.

Clustered synthetic vectors (n x 128, float32), filters at 10 % and 1 % (random rows) and a
correlated 1 % (the rows of a few clusters); each repetition runs both planners on the same
queries one after the other; medians of the repetitions, recall@10 against exact search over
the allowed rows. Usage: python benchmarks/planner_max_codes.py [n] [reps]
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from imagemesh.backends.exact import ExactIndex
from imagemesh.core.index import exact_search
from imagemesh.query.planner import PlannerConfig, QueryPlanner


def clustered(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(256, d)).astype(np.float32) * 4
    label = rng.integers(0, 256, n)
    x = centres[label] + rng.normal(size=(n, d)).astype(np.float32)
    return np.ascontiguousarray(x, np.float32), label


def main(n: int = 200_000, reps: int = 5, nq: int = 500, k: int = 10) -> None:
    x, label = clustered(n, 128, 0)
    rng = np.random.default_rng(1)
    q = x[rng.integers(0, n, nq)] + rng.normal(size=(nq, 128)).astype(np.float32) * 0.5
    idx = ExactIndex(128)
    idx.add(np.arange(n, dtype=np.int64), x)
    idx.build()
    planners = {"cap 4096": QueryPlanner(idx, x, "exact", PlannerConfig(exact_max_rows=1000)),
                "no cap": QueryPlanner(idx, x, "exact", PlannerConfig(exact_max_rows=1000, ivf_max_codes=0))}
    planners["no cap"].share_cells(planners["cap 4096"])  # the same k-means cells for both
    filters = {"10%": rng.random(n) < 0.10, "1%": rng.random(n) < 0.01, "corr-1%": np.isin(label, [3])}
    print(f"n={n} d=128 queries={nq} k={k} reps={reps}")
    print("| filter | planner | QPS (median) | recall@10 | ratio |")
    print("|---|---|---|---|---|")
    for name, allowed in filters.items():
        rows = np.flatnonzero(allowed)
        _, ti = exact_search(x[rows], q, k)
        truth = [set(rows[t[t >= 0]].tolist()) for t in ti]
        qps: dict[str, list[float]] = {p: [] for p in planners}
        rec: dict[str, float] = {}
        for p in planners.values():  # warm: subsets and k-means built before timing
            p.search(q[:5], k, allowed, key=name, strategy="ivf-allowed")
        for _ in range(reps):
            for pname, p in planners.items():
                t0 = time.perf_counter()
                _, ids, _ = p.search(q, k, allowed, key=name, strategy="ivf-allowed")
                qps[pname].append(nq / (time.perf_counter() - t0))
                rec[pname] = float(np.mean([len(set(r[r >= 0].tolist()) & t) / max(1, len(t)) for r, t in zip(ids, truth)]))
        base = statistics.median(qps["no cap"])
        for pname in planners:
            m = statistics.median(qps[pname])
            print(f"| {name} ({rows.size}) | {pname} | {m:,.0f} | {rec[pname]:.4f} | {m / base:.2f}x |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000, int(sys.argv[2]) if len(sys.argv) > 2 else 5)
