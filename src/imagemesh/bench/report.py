"""Outputs of ``imagemesh bench``: JSON, a markdown table and recall-vs-QPS plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TARGET_RECALL = 0.95


def write_outputs(results: dict[str, Any], out: Path, tag: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{tag}.json", out / f"{tag}.md"]
    paths[0].write_text(json.dumps(results, indent=1))
    paths[1].write_text(markdown(results))
    for ds in results["datasets"]:
        p = out / f"{tag}-{ds['dataset']}.png"
        if plot(ds, p):
            paths.append(p)
    return paths


def _fmt_qps(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 else f"{v:.1f}"


def best_at_target(ds: dict[str, Any], contender: str, fname: str) -> dict[str, Any] | None:
    """The fastest configuration of ``contender`` on ``fname`` with recall >= 0.95 and every slot filled."""
    ok = [r for r in ds["results"] if r["contender"] == contender and r["filter"] == fname and r["recall"] >= TARGET_RECALL and r["fill"] >= 0.9999]
    return max(ok, key=lambda r: r["qps"]) if ok else None


def planner_summary(ds: dict[str, Any]) -> dict[str, Any]:
    """Minimum planner QPS over the filters at recall >= 0.95 (None if a filter misses the recall)."""
    rows = [r for r in ds["results"] if r["contender"] == "planner"]
    if not rows:
        return {}
    ok = all(r["recall"] >= TARGET_RECALL and r["fill"] >= 0.9999 for r in rows)
    worst = min(rows, key=lambda r: r["qps"])
    lance = {}
    for f in ds["filters"]:
        b = best_at_target(ds, "lance-pre", f)
        anyl = [r for r in ds["results"] if r["contender"] == "lance-pre" and r["filter"] == f]
        lance[f] = b["qps"] if b else (max(r["qps"] for r in anyl) if anyl else None)
    ratios = {r["filter"]: round(r["qps"] / lance[r["filter"]], 1) for r in rows if lance.get(r["filter"])}
    return {
        "all_at_target": ok,
        "min_qps": worst["qps"],
        "min_qps_filter": worst["filter"],
        "min_recall": min(r["recall"] for r in rows),
        "min_fill": min(r["fill"] for r in rows),
        "ratio_to_lance_prefilter": ratios,
        "min_ratio_to_lance_prefilter": min(ratios.values()) if ratios else None,
    }


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# imagemesh filtered-kNN benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_mb']} MB; {m['platform']}; Python {m['python']}, numpy {m['numpy']}, "
        f"faiss {m['faiss']}, lancedb {m['lancedb']}; {m['date']}. Queries single-threaded (FAISS OpenMP 1, BLAS 1, LANCE_CPU_THREADS={m['env'].get('LANCE_CPU_THREADS')}); "
        f"builds with {results['config'].get('build_threads')} threads. QPS = median of {results['config']['reps']} repetitions "
        f"(each at most {results['config']['budget_s']} s of single queries); recall@10 against the exact filtered top-10; "
        "fill = fraction of the min(10, matches) slots filled. Cells: QPS / recall / fill.",
        "",
    ]
    for ds in results["datasets"]:
        filters = list(ds["filters"])
        lines += [f"## {ds['dataset']} ({ds['queries']} queries)", ""]
        lines.append("| filter | " + " | ".join(filters) + " |")
        lines.append("|---|" + "---|" * len(filters))
        lines.append("| rows kept | " + " | ".join(f"{ds['filters'][f]['n_allowed']:,} ({100 * ds['filters'][f]['selectivity']:.3g}%)" for f in filters) + " |")
        if any("filter_eval_ms" in ds["filters"][f] for f in filters):
            lines.append("| LanceDB filter eval, cold (ms) | " + " | ".join(str(ds["filters"][f].get("filter_eval_ms", "")) for f in filters) + " |")
        lines.append("")
        s = planner_summary(ds)
        if s:
            lines.append(
                f"**Planner**: minimum QPS over the filters {_fmt_qps(s['min_qps'])} (at {s['min_qps_filter']}); min recall {s['min_recall']:.3f}, "
                f"min fill {s['min_fill']:.3f}; every filter at recall >= 0.95 with all slots filled: {'yes' if s['all_at_target'] else 'no'}; "
                f"min ratio to LanceDB prefilter: {s['min_ratio_to_lance_prefilter']}x."
            )
            strat = {r["filter"]: r.get("strategy") for r in ds["results"] if r["contender"] == "planner"}
            lines.append("Strategies: " + ", ".join(f"{f}: {v}" for f, v in strat.items()) + ".")
            lines.append("")
        # best configuration at target per contender
        lines.append("Fastest configuration with recall@10 >= 0.95 and every slot filled (QPS; '-' = none reaches it):")
        lines.append("")
        lines.append("| contender | " + " | ".join(filters) + " |")
        lines.append("|---|" + "---|" * len(filters))
        contenders = list(dict.fromkeys(r["contender"] for r in ds["results"]))
        for c in contenders:
            cells = []
            for f in filters:
                b = best_at_target(ds, c, f)
                cells.append(f"{_fmt_qps(b['qps'])} ({b['config']})" if b else "-")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("All configurations (QPS / recall@10 / fill):")
        lines.append("")
        lines.append("| contender | config | " + " | ".join(filters) + " |")
        lines.append("|---|---|" + "---|" * len(filters))
        configs = list(dict.fromkeys((r["contender"], r["config"]) for r in ds["results"]))
        by = {(r["contender"], r["config"], r["filter"]): r for r in ds["results"]}
        for c, cfg in configs:
            cells = []
            for f in filters:
                r = by.get((c, cfg, f))
                cells.append(f"{_fmt_qps(r['qps'])} / {r['recall']:.2f} / {r['fill']:.2f}" if r else "")
            lines.append(f"| {c} | {cfg} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Builds (index bytes; build time with the build threads; peak RSS of the building process):")
        lines.append("")
        lines.append("| index | params | build s | bytes | peak RSS MB |")
        lines.append("|---|---|---|---|---|")
        for tag, b in ds["builds"].items():
            lines.append(f"| {tag} | {json.dumps(b.get('params', {}))} | {b.get('build_s')} | {b.get('index_bytes'):,} | {b.get('peak_rss_mb')} |")
        if ds.get("planner"):
            p = ds["planner"]
            lines.append("")
            lines.append(f"Planner preparation: k-means {p.get('kmeans_s')} s (nlist {p.get('nlist')}, once per embedding); cached subsets after the run: {p.get('cache')}.")
            colds = {r["filter"]: r.get("cold_first_query_ms") for r in ds["results"] if r["contender"] == "planner"}
            lines.append("First query per filter (gathers and caches the subset), ms: " + ", ".join(f"{f}: {v}" for f, v in colds.items()) + ".")
        lines.append("")
    return "\n".join(lines) + "\n"


def plot(ds: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    filters = list(ds["filters"])
    cols = min(4, len(filters))
    rows = (len(filters) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    contenders = list(dict.fromkeys(r["contender"] for r in ds["results"]))
    cmap = plt.get_cmap("tab10")
    for n, f in enumerate(filters):
        ax = axes[n // cols][n % cols]
        for ci, c in enumerate(contenders):
            pts = sorted((r["recall"], r["qps"], r["fill"]) for r in ds["results"] if r["contender"] == c and r["filter"] == f)
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            style = "*" if c == "planner" else "o"
            ax.plot(xs, ys, style + "-", color=cmap(ci % 10), ms=7 if c == "planner" else 3, lw=1, label=c)
        ax.set_yscale("log")
        ax.set_xlim(-0.02, 1.02)
        ax.axvline(0.95, color="grey", lw=0.5, ls=":")
        ax.set_title(f"{f} ({ds['filters'][f]['n_allowed']:,} rows)", fontsize=8)
        ax.tick_params(labelsize=7)
        if n % cols == 0:
            ax.set_ylabel("QPS (1 thread)", fontsize=7)
        if n // cols == rows - 1:
            ax.set_xlabel("recall@10", fontsize=7)
    for n in range(len(filters), rows * cols):
        axes[n // cols][n % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=7, frameon=False)
    fig.suptitle(f"{ds['dataset']}: recall@10 vs QPS per filter", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return True
