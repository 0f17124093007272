"""The body of ``imagemesh bench`` (imported lazily by :mod:`imagemesh.cli`)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

from imagemesh.bench.report import planner_summary, write_outputs
from imagemesh.bench.runner import CONTENDERS, BenchConfig, run_benchmark


def _size(text: str) -> int:
    t = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t.rstrip("km")) * mult)


def run_cli(*, quick: bool, sizes: str, demo: bool, contenders: str | None, queries: int, budget: float, reps: int, out: Path, work: Path, tag: str | None, as_json: bool) -> None:
    os.environ.setdefault("LANCE_LOG", "error")  # LanceDB's per-query deprecation warnings
    names = [c.strip() for c in contenders.split(",") if c.strip()] if contenders else None
    unknown = set(names or []) - set(CONTENDERS)
    if unknown:
        raise click.BadParameter(f"unknown contenders {sorted(unknown)}; choose from {', '.join(CONTENDERS)}", param_hint="--contenders")
    if quick:
        scratch = Path(tempfile.mkdtemp(prefix="imagemesh-bench-"))
        cfg = BenchConfig(sizes=[20_000], demo=False, contenders=names or ["planner"], queries=min(queries, 100), budget_s=min(budget, 0.2), reps=reps, out=scratch / "results", work=scratch / "work", quick=True)
    else:
        cfg = BenchConfig(sizes=[_size(s) for s in sizes.split(",") if s.strip()], demo=demo, contenders=names, queries=queries, budget_s=budget, reps=reps, out=out, work=work, reuse=os.environ.get("IMAGEMESH_BENCH_REUSE") == "1")
    log = (lambda s: click.echo(s, err=True)) if as_json else (lambda s: click.echo(s))
    results = run_benchmark(cfg, log=log)
    stem = tag or ("bench-quick" if quick else "bench-" + "-".join(s.strip() for s in sizes.split(",")))
    paths = write_outputs(results, cfg.out, stem)
    if as_json:
        summary = []
        for ds in results["datasets"]:
            rows = [
                {"filter": r["filter"], "selectivity": ds["filters"][r["filter"]]["selectivity"], "n_allowed": ds["filters"][r["filter"]]["n_allowed"],
                 "strategy": r.get("strategy"), "recall@10": r["recall"], "fill": r["fill"], "qps": r["qps"]}
                for r in ds["results"] if r["contender"] == "planner"
            ]
            summary.append({"dataset": ds["dataset"], "planner": rows, "summary": planner_summary(ds)})
        json.dump(summary, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        click.echo("wrote " + ", ".join(str(p) for p in paths))
