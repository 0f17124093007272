"""``imagemesh bench``: the benchmarks, all in :mod:`imagemesh.bench`, results in ``benchmarks/results/``.

* ``imagemesh bench [--quick] ...``: filtered kNN, the planner against exact, Annoy, FAISS and
  LanceDB (:mod:`imagemesh.bench.runner`);
* ``imagemesh bench load``: loopback load test of ``imagemesh serve`` (:mod:`imagemesh.bench.load`);
* ``imagemesh bench switch-memory DIR``: memory across version switches (:mod:`imagemesh.bench.switch_memory`);
* ``imagemesh bench embed-throughput``: the embed pipeline against bare ONNX Runtime
  (:mod:`imagemesh.bench.embed_throughput`);
* ``imagemesh bench fidelity``: arXiv ingest fidelity on the real-world corpus in
  ``tests/data/fidelity`` (:mod:`imagemesh.bench.fidelity`).

Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

__all__ = ["bench_group"]


def _size(text: str) -> int:
    t = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t.rstrip("km")) * mult)


@click.group("bench", invoke_without_command=True)
@click.option("--quick", is_flag=True, help="Planner only on 20k synthetic vectors, 100 queries, no demo dataset; under a minute.")
@click.option("--sizes", default="100k", show_default=True, help="Synthetic dataset sizes, e.g. 100k,1M (ignored with --quick).")
@click.option("--demo/--no-demo", default=True, show_default=True, help="Also run on the demo collection's real embeddings.")
@click.option("--contenders", default=None, help="Comma-separated subset of: planner, exact, hnsw, hnsw-post, ivf, ivfpq, annoy, annoy-post, lance-pre, lance-post.")
@click.option("--queries", default=200, show_default=True, type=click.IntRange(10, 100_000))
@click.option("--budget", default=1.0, show_default=True, type=float, help="Seconds per repetition of one measurement.")
@click.option("--reps", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option("--out", default="benchmarks/results", show_default=True, type=click.Path(path_type=Path))
@click.option("--work", default="benchmarks/.work", show_default=True, type=click.Path(path_type=Path), help="Scratch folder for indices.")
@click.option("--tag", default=None, help="Output file name stem (default: bench-<sizes>).")
@click.option("--json", "as_json", is_flag=True, help="Print the planner's per-filter recall, fill and QPS as JSON.")
@click.pass_context
def bench_group(ctx: click.Context, quick: bool, sizes: str, demo: bool, contenders: str | None, queries: int, budget: float, reps: int, out: Path, work: Path, tag: str | None, as_json: bool) -> None:
    """Benchmarks. Without a sub-command: filtered kNN, the query planner against exact, Annoy, FAISS and LanceDB."""
    if ctx.invoked_subcommand is not None:
        return
    os.environ.setdefault("LANCE_CPU_THREADS", "1")  # single-thread queries (read when LanceDB starts)
    os.environ.setdefault("LANCE_LOG", "error")  # LanceDB's per-query deprecation warnings
    from imagemesh.bench.report import planner_summary, write_outputs
    from imagemesh.bench.runner import CONTENDERS, BenchConfig, run_benchmark

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


@bench_group.command("load")
@click.option("--seconds", default=60.0, show_default=True, type=click.FloatRange(1, 3600), help="Length of the measured window per collection.")
@click.option("--connections", default=32, show_default=True, type=click.IntRange(1, 1024))
@click.option("--switches", default=2, show_default=True, type=click.IntRange(0, 100), help="New collection versions published during the measured window (evenly spaced).")
@click.option("--warmup", default=0.0, show_default=True, type=click.FloatRange(0, 3600), help="Seconds of the same mix before the measured window (not recorded).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--synthetic-n", default=1_000_000, show_default=True, type=click.IntRange(1000, 100_000_000))
@click.option("--only", type=click.Choice(["demo", "synthetic"]), default=None)
@click.option("--work", default="benchmarks/.work/load", show_default=True, type=click.Path(path_type=Path))
@click.option("--out", default="benchmarks/results", show_default=True, type=click.Path(path_type=Path))
@click.option("--tag", default="load", show_default=True)
@click.option("--hostile-uploads", "hostile", default=0, type=click.IntRange(0, 256),
              help="Instead: N clients loop pixel-heavy uploads while a probe measures /api/neighbors latency, "
              "against idle windows interleaved (imagemesh.bench.hostile_uploads; the demo collection).")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1, 100), help="With --hostile-uploads: idle/hostile window pairs.")
def load_cmd(seconds: float, connections: int, switches: int, warmup: float, workers: int, synthetic_n: int, only: str | None, work: Path, out: Path, tag: str, hostile: int, rounds: int) -> None:
    """Loopback load test of `imagemesh serve` (bounded: fixed duration, 127.0.0.1 only)."""
    if hostile:
        import subprocess
        import sys

        from imagemesh.bench import hostile_uploads

        demo = subprocess.run([sys.executable, "-m", "imagemesh.cli", "demo", "--no-serve", "--quiet"], capture_output=True, text=True, check=True)
        hostile_uploads.main(Path(demo.stdout.strip().splitlines()[-1]), hostile, rounds, min(seconds, 600), out)
        return
    from imagemesh.bench.load import main

    main(seconds, connections, switches, warmup, workers, synthetic_n, only, work, out, tag)


@bench_group.command("switch-memory")
@click.argument("collection", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--switches", default=4, show_default=True, type=click.IntRange(1, 100))
def switch_memory_cmd(collection: Path, switches: int) -> None:
    """Anonymous memory of one process across version switches of COLLECTION (it is republished)."""
    from imagemesh.bench.switch_memory import main

    main(collection, switches)


@bench_group.command("embed-throughput")
@click.option("--embedding", default="imagenet", show_default=True)
@click.option("--n", "n", default=512, show_default=True, type=click.IntRange(1, 1_000_000), help="Images (the demo figures, repeated).")
@click.option("--batch", default=64, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--reps", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option("--threads", default=0, show_default=True, type=click.IntRange(0, 256))
@click.option("--json", "json_out", default=None, type=click.Path(path_type=Path), help="Also write the full result here.")
def embed_throughput_cmd(embedding: str, n: int, batch: int, reps: int, threads: int, json_out: Path | None) -> None:
    """The embed pipeline (decode + prepare overlapped with ONNX Runtime) against bare ONNX Runtime."""
    from imagemesh.bench.embed_throughput import run

    res = run(embedding, n, batch, reps, threads)
    click.echo(json.dumps({k: v for k, v in res.items() if k != "reps"}, indent=1))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(res, indent=1) + "\n")


@bench_group.command("fidelity")
@click.option("--corpus", default="tests/data/fidelity", show_default=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder with packages/*.tar.gz and the hand-written truth.json.")
@click.option("--out", default="benchmarks/results", show_default=True, type=click.Path(path_type=Path), help="Writes fidelity.json and fidelity.md here.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--only", default=None, help="Comma-separated package ids (truth.json keys) to run.")
@click.option("--no-write", is_flag=True, help="Print only; write no files.")
def fidelity_cmd(corpus: Path, out: Path, workers: int, only: str | None, no_write: bool) -> None:
    """arXiv ingest fidelity on the real-world corpus: figures rasterised, cropped, captioned right (issue 13)."""
    from imagemesh.bench.fidelity import main

    ids = [s.strip() for s in only.split(",") if s.strip()] if only else None
    main(corpus, None if no_write else out, workers=workers, only=ids, echo=click.echo)
