"""Ingest arXiv source packages into a collection: parallel, resumable, incremental.

1. Sources are package files, folders of them, or bulk archives
   (``arXiv_src_YYMM_NNN.tar``: a tar of ``YYMM/<id>.gz``), which are split safely into
   ``<out>/.ingest/bulk/``.
2. Each package whose sha256 has no result yet in ``<out>/.ingest/packages/`` goes
   through :func:`~.package.ingest_package` in a process pool (``spawn``), with a
   progress bar. Results are saved per package, so a killed run resumes where it was.
3. Every rasterised image of every ingested package becomes a
   :class:`~imagemesh.ingest.sources.SourceItem` (metadata from ``.abs``/snapshot records, else
   the LaTeX), and :func:`imagemesh.ingest.build.build_collection` builds the collection, or
   appends the new image keys to an existing one (row ids kept, indices rebuilt).
4. ``<out>/ingest-report.json`` lists every package's outcome.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import re
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from imagemesh.store.lock import holding_writer_lock
from imagemesh.core.fileio import atomic_write_bytes, sha256_file
from imagemesh.ingest.sources.base import SourceItem, SourceProblem
from imagemesh.ingest.sources.arxiv_src.extract import safe_member_path
from imagemesh.ingest.sources.arxiv_src.metadata import merge_record, read_metadata
from imagemesh.ingest.sources.arxiv_src.package import RESULT_FORMAT, IngestLimits, ingest_package, result_path

log = logging.getLogger(__name__)

__all__ = ["ingest_arxiv", "IngestReport", "NothingIngested", "expand_sources", "items_from_results", "format_table", "format_summary"]

_BULK_MEMBER = re.compile(r"^(?:\./)?\d{4}/[^/]+\.(?:gz|pdf|tar|tgz)$")


@dataclass
class IngestReport:
    """What an ingest did: per-package outcomes and the build report."""

    out: Path
    packages: list[dict[str, Any]]
    counts: dict[str, int]
    problems: list[dict[str, str]] = field(default_factory=list)
    metadata_problems: list[str] = field(default_factory=list)
    build: dict[str, Any] | None = None
    seconds: float = 0.0

    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["out"] = str(self.out)
        return d


class NothingIngested(ValueError):
    """No image of any package could be ingested (every package rejected, or none had a
    figure that rasterised), and there is no existing collection to keep.

    Attributes:
        report: the :class:`IngestReport` (also written to ``out/ingest-report.json``),
            with every package's outcome and reasons.
    """

    def __init__(self, report: IngestReport) -> None:
        self.report = report
        super().__init__(report.error or "no image could be ingested")


def _is_bulk_tar(path: Path) -> bool:
    if path.name.startswith("arXiv_src_") and path.name.endswith(".tar"):
        return True
    try:
        with tarfile.open(path, "r:") as tf:
            names = []
            for m in tf:
                if m.isreg():
                    names.append(m.name)
                if len(names) >= 5:
                    break
    except (tarfile.TarError, OSError, EOFError):
        return False
    return bool(names) and all(_BULK_MEMBER.match(n) for n in names)


def _split_bulk(path: Path, work: Path, problems: list[SourceProblem]) -> list[tuple[Path, str]]:
    """Copy the per-paper members of a bulk tar into ``work/bulk/<tar sha>/`` (once)."""
    dest = work / "bulk" / sha256_file(path)[:16]
    done_marker = dest / ".complete"
    out: list[tuple[Path, str]] = []
    if done_marker.is_file():
        for line in done_marker.read_text(encoding="utf-8").splitlines():
            if line:
                out.append((dest / line, f"{path.name}:{line}"))
        return out
    dest.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                rel, why = safe_member_path(m.name, IngestLimits().extract)
                if not m.isreg() or rel is None:
                    if not m.isdir():
                        problems.append(SourceProblem(f"{path.name}:{m.name}", why or "not a regular file"))
                    continue
                flat = rel.as_posix()  # YYMM/<id>.gz: the file name keeps the arXiv id
                src = tf.extractfile(m)
                if src is None:
                    continue
                (dest / flat).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(dest / flat, src.read())
                names.append(flat)
    except (tarfile.TarError, OSError, EOFError) as e:
        problems.append(SourceProblem(path.name, f"bulk archive truncated or corrupt after {len(names)} member(s): {e}"))
    atomic_write_bytes(done_marker, "\n".join(names).encode())
    return [(dest / n, f"{path.name}:{n}") for n in names]


def expand_sources(sources: Sequence[Path], work: Path, problems: list[SourceProblem]) -> list[tuple[Path, str]]:
    """Package files (path, display name) from files, folders and bulk archives."""
    out: list[tuple[Path, str]] = []
    for s in sources:
        s = Path(s)
        if s.is_dir():
            files = sorted(p for p in s.rglob("*") if p.is_file() and not p.is_symlink())
        elif s.is_file():
            files = [s]
        else:
            problems.append(SourceProblem(str(s), "no such file or folder"))
            continue
        for f in files:
            if f.suffix == ".tar" and _is_bulk_tar(f):
                out.extend(_split_bulk(f, work, problems))
            else:
                out.append((f, f.name))
    return out


def _run_one(args: tuple[str, str, dict[str, Any], str, str]) -> dict[str, Any]:
    path, work, limits, sha, name = args
    return ingest_package(path, work, limits, sha256=sha, display_name=name)


def items_from_results(results: list[dict[str, Any]], work: Path, records: dict[str, Any]) -> list[SourceItem]:
    """The rasterised images of ingested packages as build items (metadata merged)."""
    items: list[SourceItem] = []
    seen: set[str] = set()
    for r in results:
        rec = records.get(r.get("arxiv_id") or "")
        for im in r.get("images", []):
            if not im.get("png") or im["key"] in seen:
                continue
            seen.add(im["key"])
            aid = r.get("arxiv_id")
            md: dict[str, Any] = {
                "arxiv_id": aid,
                "version": r.get("version"),
                "caption": im.get("caption"),
                "figure": im.get("figure"),
                "subfigure": im.get("subfigure"),
                "subcaption": im.get("subcaption"),
                "label": im.get("label"),
                "unreferenced": 1 if im.get("unreferenced") else 0,
                "source_file": im.get("source_file"),
                "source_package": r.get("package"),
                "year": None,
            }
            if aid:
                from imagemesh.profiles.arxiv.records import parse_arxiv_id

                md["year"] = parse_arxiv_id(aid).year
            md = merge_record(md, rec, r.get("latex"))
            items.append(SourceItem(key=im["key"], path=work / im["png"], metadata=md))
    items.sort(key=lambda it: it.key)
    return items


def format_table(packages: list[dict[str, Any]]) -> str:
    """A plain-text summary table of package outcomes."""
    head = f"{'package':<34} {'paper':<22} {'outcome':<9} {'refs':>4} {'found':>5} {'raster':>6} {'+capt':>5} {'unref':>5}  reason"
    lines = [head, "-" * len(head)]
    for p in packages:
        c = p.get("counts", {})
        reason = (p.get("reasons") or [""])[0]
        lines.append(
            f"{p['package'][:34]:<34} {str(p.get('paper_id') or '')[:22]:<22} {p['outcome']:<9} {c.get('graphics_referenced', 0):>4} "
            f"{c.get('graphics_resolved', 0):>5} {c.get('rasterised', 0):>6} {c.get('rasterised_with_caption', 0):>5} "
            f"{c.get('unreferenced_files', 0):>5}  {reason[:90]}"
        )
    return "\n".join(lines)


@holding_writer_lock("an ingest (imagemesh ingest arxiv)", "out")
def ingest_arxiv(
    sources: Sequence[Path],
    out: Path,
    *,
    metadata_files: Sequence[Path] = (),
    workers: int = 2,
    limits: IngestLimits | None = None,
    build_options: Any = None,
    registries: Any = None,
    build: bool = True,
    progress: bool = True,
) -> IngestReport:
    """Ingest arXiv source packages into the collection at ``out``; see the module docstring.

    Args:
        sources: package files, folders of packages, bulk ``arXiv_src_*.tar`` archives.
        out: the collection folder (its work area is ``out/.ingest``).
        metadata_files: snapshot JSON lines, ``.abs`` files or folders of them.
        workers: processes for the per-package step (``<= 1``: in this process).
        limits: :class:`IngestLimits`.
        build_options: :class:`imagemesh.ingest.options.BuildOptions` for the collection build.
        build: build/append the collection (``False``: only the per-package step).

    Returns:
        An :class:`IngestReport` (also written to ``out/ingest-report.json``).

    Raises:
        NothingIngested: (a ``ValueError``) no package gave an image and ``out`` holds no
            collection yet; the report is written first and carried by the exception.
        ValueError: the build failed (e.g. an embedding that differs from the collection's).
    """
    t0 = time.perf_counter()
    out = Path(out)
    work = out / ".ingest"
    (work / "packages").mkdir(parents=True, exist_ok=True)
    limits = limits or IngestLimits()
    problems: list[SourceProblem] = []
    pkgs = expand_sources(sources, work, problems)

    todo: list[tuple[str, str, dict[str, Any], str, str]] = []
    results: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for path, name in pkgs:
        sha = sha256_file(path)
        if sha in results or sha in {t[3] for t in todo}:
            problems.append(SourceProblem(name, "same content as another package (ingested once)"))
            continue
        order.append(sha)
        rp = result_path(work, sha)
        if rp.is_file():
            try:
                r = json.loads(rp.read_text(encoding="utf-8"))
                if r.get("format") == RESULT_FORMAT:
                    results[sha] = r
                    continue
            except (OSError, ValueError):
                pass
        todo.append((str(path), str(work), limits.to_dict(), sha, name))
    if len(results):
        log.info("%d package(s) already ingested, %d to do", len(results), len(todo))
    bar = tqdm(total=len(todo), unit="pkg", desc="packages", disable=not progress)
    if workers <= 1 or len(todo) <= 1:
        for t in todo:
            results[t[3]] = _run_one(t)
            bar.update(1)
    else:
        ctx = multiprocessing.get_context("spawn")  # no fork: the parent may hold threads (LanceDB, ONNX)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
            futs = {ex.submit(_run_one, t): t for t in todo}
            for f in as_completed(futs):
                t = futs[f]
                try:
                    results[t[3]] = f.result()
                except Exception as e:  # a crashed worker: report, never lose the others
                    results[t[3]] = {"package": t[4], "sha256": t[3], "outcome": "rejected", "images": [], "counts": {},
                                     "reasons": [f"ingest crashed: {type(e).__name__}: {e}"]}
                bar.update(1)
    bar.close()
    packages = [results[s] for s in order]

    # every package this collection has ever ingested (incremental ingest appends)
    all_results: list[dict[str, Any]] = []
    for rp in sorted((work / "packages").glob("*.json")):
        try:
            all_results.append(json.loads(rp.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    records, md_problems = read_metadata(metadata_files) if metadata_files else ({}, [])
    items = items_from_results(all_results, work, records)

    counts = {k: 0 for k in ("ok", "partial", "rejected")}
    for p in packages:
        counts[p["outcome"]] = counts.get(p["outcome"], 0) + 1
    for key in ("graphics_referenced", "graphics_resolved", "rasterised", "rasterised_with_caption", "unreferenced_files"):
        counts[key] = sum(p.get("counts", {}).get(key, 0) for p in packages)
    counts["items"] = len(items)
    report = IngestReport(out=out, packages=[_summary(p) for p in packages], counts=counts,
                          problems=[p.to_dict() for p in problems], metadata_problems=md_problems)
    append = (out / "manifest.json").is_file()
    if build and not items and not append:
        report.error = _nothing_message(counts, len(problems))
    elif build:
        from imagemesh.ingest.build import BuildOptions, build_collection

        opts = build_options or BuildOptions()
        breport = build_collection(None, out, opts, registries, items=items, problems=problems, append=append)
        report.build = breport.to_dict()
    report.seconds = round(time.perf_counter() - t0, 2)
    atomic_write_bytes(out / "ingest-report.json", json.dumps(report.to_dict(), indent=1, ensure_ascii=False).encode("utf-8"))
    if report.error:
        raise NothingIngested(report)
    return report


def _nothing_message(counts: dict[str, int], n_problems: int) -> str:
    n = counts["ok"] + counts["partial"] + counts["rejected"]
    if n == 0:
        return "no package to ingest" + (f" ({n_problems} source problem(s))" if n_problems else "")
    if counts["rejected"] == n:
        return f"no images: all {n} package(s) were rejected (the reasons are in the per-package report)"
    return (f"no images: {counts['rejected']} of {n} package(s) rejected, and no figure of the other "
            f"{n - counts['rejected']} could be rasterised (the reasons are in the per-package report)")


def format_summary(report: IngestReport) -> str:
    """The one-line summary of an ingest (package outcomes and graphics counts)."""
    c = report.counts
    return (f"packages: {c['ok']} ok, {c['partial']} partial, {c['rejected']} rejected; "
            f"graphics: {c['graphics_referenced']} referenced, {c['rasterised']} rasterised, {c['rasterised_with_caption']} with caption; "
            f"{c['unreferenced_files']} unreferenced image file(s)")


def _summary(p: dict[str, Any]) -> dict[str, Any]:
    keep = ("package", "sha256", "paper_id", "arxiv_id", "version", "id_source", "kind", "outcome", "reasons", "counts", "main_files", "encoding")
    d = {k: p.get(k) for k in keep}
    d["images"] = [{k: im.get(k) for k in ("key", "source_file", "figure", "subfigure", "caption", "png", "error", "unreferenced")}
                   for im in p.get("images", [])]
    return d
