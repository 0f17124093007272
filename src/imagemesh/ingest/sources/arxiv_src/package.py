"""The per-package step: one arXiv source package -> rasterised figures + records.

:func:`ingest_package` is a pure function of (package file, limits, work folder): it
reads nothing else, writes only under ``work`` and returns a JSON-able dict, so it runs
in a worker process (or on a distributed executor) as well as inline. Its result is
also saved as ``work/packages/<sha256>.json`` (atomically, last), which makes a rerun
skip the package: a killed run loses at most the packages that were in flight.

Layout under ``work``::

    packages/<sha256>.json        the result (see below)
    staging/<sha256>/<n>.png      rasterised images (RGB PNG, longest side <= max_side)
    tmp/<sha256>-<pid>/           extraction folder, removed when the package is done

Result: ``{"format": 1, "package", "sha256", "arxiv_id", "version", "paper_id",
"id_source", "outcome": "ok"|"partial"|"rejected", "reasons": [...], "kind",
"extraction": {...}, "main_files", "encoding", "latex": {"title", "authors",
"abstract"}, "images": [record, ...], "counts": {...}}``; each record has ``key``,
``figure``, ``subfigure``, ``caption``, ``subcaption``, ``label``, ``source_file``,
``referenced_as``, ``resolved_by``, ``unreferenced``, ``png`` (relative to ``work``) or
``error``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, ImageChops

from imagemesh.media.images import ImageLimits, ImageLoadError, load_image, sniff_format
from imagemesh.core.fileio import atomic_write_bytes, sha256_file
from imagemesh.ingest.sources.arxiv_src.extract import ExtractError, ExtractLimits, extract_package
from imagemesh.media.ghostscript import JUNK_SEARCH_BYTES, GhostscriptError, GhostscriptLimits, rasterise_postscript
from imagemesh.ingest.sources.arxiv_src.latex import GraphicRef, parse_document
from imagemesh.ingest.sources.arxiv_src.texfiles import GRAPHIC_EXTENSIONS, TEX_EXTENSIONS, decode_tex, expand_inputs, find_main_files, resolve_graphic, strip_comments
from imagemesh.ingest.sources.arxiv_src.metadata import arxiv_id_from_name
from imagemesh.ingest.sources.arxiv_src.raster_pool import BUDGET_REASON, PrerenderedFigures

__all__ = ["IngestLimits", "ingest_package", "result_path", "RESULT_FORMAT"]

RESULT_FORMAT = 1


@dataclass(frozen=True)
class IngestLimits:
    """All limits of the per-package step (extraction, LaTeX, rasterisation)."""

    extract: ExtractLimits = field(default_factory=ExtractLimits)
    image: ImageLimits = field(default_factory=ImageLimits)
    ghostscript: GhostscriptLimits = field(default_factory=GhostscriptLimits)
    max_images: int = 2000
    max_tex_bytes: int = 32 * 1024 * 1024
    #: threads rendering a package's PostScript figures (each waits on one Ghostscript)
    raster_workers: int = 4
    #: wall-clock seconds for all of a package's PostScript figures together
    raster_budget: float = 120.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IngestLimits":
        return cls(ExtractLimits(**d["extract"]), ImageLimits(**d["image"]), GhostscriptLimits(**d["ghostscript"]),
                   d["max_images"], d["max_tex_bytes"], d.get("raster_workers", 4), d.get("raster_budget", 120.0))


def result_path(work: Path, sha256: str) -> Path:
    return Path(work) / "packages" / f"{sha256}.json"


def rasterise(path: Path, limits: IngestLimits, tmp: Path, timeout: float | None = None) -> Image.Image:
    """Any supported figure file -> RGB image. EPS/PS go to Ghostscript with its temporary
    files under ``tmp`` (``timeout``: seconds, if shorter than the Ghostscript limit's);
    everything else through :func:`imagemesh.media.images.load_image`.

    Vector figures (PDF, EPS/PS) have their uniform white margins trimmed (:func:`trim_margins`):
    a matplotlib PDF saved as a whole letter page, or an EPS with a generous BoundingBox, would
    otherwise be a small drawing in a white field. When the drawing is much smaller than the
    raster, the file is rendered again at a higher resolution (at most :data:`_MAX_ZOOM` times)
    so the trimmed figure still gets its ``raster_max_side`` pixels. Raster files (PNG, JPEG,
    ...) are left as the authors made them: their white borders are pixels, not page layout.

    Raises:
        ImageLoadError: with the reason.
    """
    with open(path, "rb") as f:
        head = f.read(JUNK_SEARCH_BYTES)  # PostScript may follow junk (sniff_format looks this far)
    kind = sniff_format(head)
    side = limits.image.raster_max_side
    if kind == "eps":
        size = path.stat().st_size
        if size > limits.image.max_file_bytes:
            raise ImageLoadError(path, f"file is {size} bytes, limit is {limits.image.max_file_bytes}")
        data = path.read_bytes()
        started = time.monotonic()

        def render(max_side: int, left: float | None) -> Image.Image:
            gl = limits.ghostscript
            gl = dataclasses.replace(gl, max_side=max_side, max_pixels=min(gl.max_pixels, limits.image.max_pixels),
                                     timeout=min(gl.timeout, left) if left is not None else gl.timeout)
            try:
                return rasterise_postscript(data, gl, work=tmp)
            except GhostscriptError as e:
                raise ImageLoadError(path, e.reason) from e

        img = render(side, timeout)
        zoom = _zoom(img, side)
        if zoom > 1:
            left = None if timeout is None else timeout - (time.monotonic() - started)
            if left is None or left > 1:
                try:
                    img = render(round(side * zoom), left)
                except ImageLoadError:
                    pass  # keep the first rendering (trimmed below)
        return _fit(trim_margins(img), side)
    img = load_image(path, limits.image)
    if kind == "pdf":
        zoom = _zoom(img, side)
        if zoom > 1:
            bigger = dataclasses.replace(limits.image, raster_max_side=round(side * zoom))
            try:
                img = load_image(path, bigger)
            except ImageLoadError:
                pass
        img = trim_margins(img)
    return _fit(img, side)


#: the most a vector figure is re-rendered beyond ``raster_max_side`` to fill it after trimming
_MAX_ZOOM = 4.0
#: a channel value at or above this is "white" paper for :func:`trim_margins`
_PAPER = 250


def _fit(img: Image.Image, side: int) -> Image.Image:
    if max(img.size) > side:  # big rasters are stored at the same size as rasterised vectors
        img.thumbnail((side, side), Image.Resampling.LANCZOS)
    return img


def _content_box(img: Image.Image) -> tuple[int, int, int, int] | None:
    """Bounding box of the pixels darker than :data:`_PAPER` in any channel, or ``None``."""
    rgb = img.convert("RGB")
    r, g, b = rgb.split()
    darkest = ImageChops.darker(ImageChops.darker(r, g), b)
    return darkest.point(lambda v: 255 if v < _PAPER else 0).getbbox()


def _zoom(img: Image.Image, side: int) -> float:
    """How much larger to render ``img`` (a rendering limited to ``side`` px) for its content box
    to fill ``side`` px: 1.0 when the content already spans two thirds of it, when the rendering
    was limited by a resolution cap rather than ``side``, or when it is blank; at most
    :data:`_MAX_ZOOM`."""
    box = _content_box(img)
    if box is None or max(img.size) < side - 1:
        return 1.0
    longest = max(box[2] - box[0], box[3] - box[1])
    if longest * 3 >= side * 2:
        return 1.0
    return min(_MAX_ZOOM, side / max(1, longest))


def trim_margins(img: Image.Image, pad: float = 0.02) -> Image.Image:
    """``img`` without its uniform near-white margins, keeping a padding of ``pad`` times the
    content's longest side (at least 2 px, never beyond the image). A blank image is returned
    as it is (never trimmed to nothing)."""
    box = _content_box(img)
    if box is None:
        return img
    p = max(2, round(pad * max(box[2] - box[0], box[3] - box[1])))
    crop = (max(0, box[0] - p), max(0, box[1] - p), min(img.width, box[2] + p), min(img.height, box[3] + p))
    if crop == (0, 0, img.width, img.height):
        return img
    return img.crop(crop)


def _write_png(img: Image.Image, dest: Path) -> None:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, buf.getvalue())


def _paper_id(package: Path, gzip_name: str | None, sha: str) -> tuple[str, str | None, int | None, str]:
    aid = arxiv_id_from_name(package.name)
    source = "file name"
    if aid is None and gzip_name:
        aid = arxiv_id_from_name(gzip_name)
        source = "gzip header name"
    if aid is None:
        return f"pkg-{sha[:12]}", None, None, "none"
    return str(aid), aid.id, aid.version, source


#: ``\includepdf[options]{file}`` (pdfpages): whole pages of a PDF, not a figure.
_INCLUDEPDF = re.compile(r"\\includepdf\s*(?:\[[^\]]*\]\s*)?\{([^{}]+)\}")


def _is_tex(rel: str, data: bytes) -> bool:
    if rel.lower().endswith(TEX_EXTENSIONS):
        return True
    return PurePosixPath(rel).suffix == "" and (b"\\documentclass" in data[:65536] or b"\\documentstyle" in data[:65536])


def ingest_package(package: str | Path, work: str | Path, limits: IngestLimits | dict[str, Any] | None = None,
                   *, sha256: str | None = None, display_name: str | None = None) -> dict[str, Any]:
    """Extract, parse and rasterise one package; see the module docstring.

    Args:
        package: the package file.
        work: the ingest work folder (``<collection>/.ingest``).
        limits: :class:`IngestLimits` (or its ``to_dict()`` form, for other processes).
        sha256: the package's sha256 if already known.
        display_name: name used in the report (default: the file name).

    Returns:
        The result dict (also written to ``work/packages/<sha256>.json``). Never raises
        for bad input: a package that cannot be read is ``rejected`` with the reason.
    """
    package = Path(package)
    work = Path(work)
    if isinstance(limits, dict):
        limits = IngestLimits.from_dict(limits)
    limits = limits or IngestLimits()
    sha = sha256 or sha256_file(package)
    out_json = result_path(work, sha)
    if out_json.is_file():
        try:
            done = json.loads(out_json.read_text(encoding="utf-8"))
            if done.get("format") == RESULT_FORMAT:
                return done
        except (OSError, ValueError):
            pass
    staging = work / "staging" / sha
    tmp = work / "tmp" / f"{sha[:16]}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    result: dict[str, Any] = {
        "format": RESULT_FORMAT, "package": display_name or package.name, "sha256": sha, "bytes": package.stat().st_size,
        "outcome": "ok", "reasons": [], "images": [],
    }
    try:
        _ingest(package, sha, tmp, staging, work, limits, result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    imgs = result["images"]
    refd = [r for r in imgs if not r["unreferenced"]]
    result["counts"] = {
        "graphics_referenced": len(refd),
        "graphics_resolved": sum(1 for r in refd if r.get("source_file")),
        "rasterised": sum(1 for r in refd if r.get("png")),
        "rasterised_with_caption": sum(1 for r in refd if r.get("png") and r.get("caption")),
        "unreferenced_files": len(imgs) - len(refd),
        "unreferenced_rasterised": sum(1 for r in imgs if r["unreferenced"] and r.get("png")),
    }
    out_json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_json, json.dumps(result, indent=1, ensure_ascii=False).encode("utf-8"))
    return result


def _reject(result: dict[str, Any], reason: str) -> None:
    result["outcome"] = "rejected"
    result["reasons"].append(reason)


def _partial(result: dict[str, Any], reason: str) -> None:
    if result["outcome"] == "ok":
        result["outcome"] = "partial"
    result["reasons"].append(reason)


def _ingest(package: Path, sha: str, tmp: Path, staging: Path, work: Path, limits: IngestLimits, result: dict[str, Any]) -> None:
    src = tmp / "src"
    try:
        ex = extract_package(package, src, limits.extract)
    except ExtractError as e:
        pid, aid, ver, idsrc = _paper_id(package, None, sha)
        result.update(paper_id=pid, arxiv_id=aid, version=ver, id_source=idsrc, kind=None)
        _reject(result, f"unreadable package: {e}")
        return
    pid, aid, ver, idsrc = _paper_id(package, ex.gzip_name, sha)
    result.update(paper_id=pid, arxiv_id=aid, version=ver, id_source=idsrc, kind=ex.kind, extraction=ex.to_dict())
    for s in ex.skipped:
        _partial(result, f"member {s['name']!r} not extracted: {s['reason']}")
    for err in ex.errors:
        _partial(result, err)

    files = ex.files
    sources: dict[str, str] = {}
    encodings: dict[str, str] = {}
    total = 0
    for rel in files:
        p = src / rel
        if p.stat().st_size > limits.max_tex_bytes:
            continue
        is_tex_name = rel.lower().endswith(TEX_EXTENSIONS)
        data = p.read_bytes() if is_tex_name or PurePosixPath(rel).suffix == "" else b""
        if (data or is_tex_name) and _is_tex(rel, data):
            total += len(data)
            if total > limits.max_tex_bytes:
                _partial(result, f"LaTeX sources exceed {limits.max_tex_bytes} bytes; the rest is not parsed")
                break
            text, enc = decode_tex(data)
            sources[rel] = strip_comments(text)
            encodings[rel] = enc
    graphic_files = [f for f in files if PurePosixPath(f).suffix.lower() in GRAPHIC_EXTENSIONS]
    result["encoding"] = sorted(set(encodings.values()))

    if not sources:
        if ex.kind in ("gzip-pdf", "pdf"):
            _reject(result, "PDF-only submission: no LaTeX source, no extractable figures")
        elif any(f.lower().endswith((".htm", ".html")) for f in files):
            _reject(result, "HTML submission: no LaTeX source (its images are not figures)")
        elif result["outcome"] != "rejected":
            names = ", ".join(files[:5]) or "nothing"
            _reject(result, f"no LaTeX source in the package (files: {names})" if files else
                    "nothing usable was extracted" + (f" ({len(ex.skipped)} member(s) refused)" if ex.skipped else ""))
        return
    if not any(t.strip() for t in sources.values()):
        _reject(result, "the LaTeX files are empty")
        return
    if not any("\\" in t for t in sources.values()):
        _reject(result, "the source is not LaTeX (no LaTeX commands)")
        return

    mains = find_main_files(sources)
    result["main_files"] = mains
    latex_md: dict[str, Any] = {"title": None, "authors": [], "abstract": None}
    refs: list[tuple[str, GraphicRef, list[str], int]] = []
    wrapped: list[tuple[str, str, list[str]]] = []  # \includepdf'd documents: (base, name, graphicspath)
    n_figs = 0
    for mf in mains:
        text, _used, problems = expand_inputs(mf, sources)
        for problem in problems:
            result.setdefault("latex_problems", []).append(problem)
        doc = parse_document(text)
        result.setdefault("latex_problems", []).extend(doc.problems)
        latex_md["title"] = latex_md["title"] or doc.title
        latex_md["authors"] = latex_md["authors"] or doc.authors
        latex_md["abstract"] = latex_md["abstract"] or doc.abstract
        base = str(PurePosixPath(mf).parent) if "/" in mf else ""
        wrapped.extend((base, m.group(1), doc.graphicspath) for m in _INCLUDEPDF.finditer(text))
        for g in doc.graphics:
            refs.append((base, g, doc.graphicspath, n_figs))
        n_figs += doc.n_figures
    result["latex"] = latex_md
    result["n_figure_envs"] = n_figs
    pdf_pages = {f for base, name, gp in wrapped if (f := resolve_graphic(name, base, gp, files)[0])}
    if wrapped and not refs:
        names = ", ".join(sorted(pdf_pages) or sorted({n for _b, n, _g in wrapped}))
        _reject(result, f"PDF-only submission: the LaTeX only wraps a PDF with \\includepdf (pdfpages): {names[:200]}")
        return

    records: list[dict[str, Any]] = []
    used: set[str] = set(pdf_pages)  # pages of a wrapped PDF are not figures
    keys: set[str] = set()
    n_inline = 0
    for base, g, gpath, offset in refs:
        found, how = resolve_graphic(g.name, base, gpath, files)
        fig_no = g.figure + offset if g.figure is not None else None
        if fig_no is not None:
            key = f"{pid}/fig{fig_no}" + (f".{g.subfigure}" if g.subfigure else "")
        else:
            n_inline += 1
            key = f"{pid}/inline{n_inline}"
        while key in keys:
            key += "+"
        keys.add(key)
        rec: dict[str, Any] = {
            "key": key, "figure": str(fig_no) if fig_no is not None else None, "subfigure": g.subfigure,
            "caption": g.caption, "subcaption": g.subcaption, "label": g.label, "referenced_as": g.name,
            "command": g.command, "source_file": found, "resolved_by": how if found else None, "unreferenced": False,
        }
        if found is None:
            rec["error"] = f"\\{g.command}{{{g.name}}}: {how}"
        else:
            used.add(found)
        records.append(rec)
    for rel in graphic_files:
        if rel not in used:
            key = f"{pid}/file/{rel}"
            records.append({"key": key, "figure": None, "subfigure": None, "caption": None, "subcaption": None, "label": None,
                            "referenced_as": None, "command": None, "source_file": rel, "resolved_by": None, "unreferenced": True})
    if len(records) > limits.max_images:
        _partial(result, f"{len(records)} images, only the first {limits.max_images} are rasterised")
        records = records[: limits.max_images]

    done: dict[str, tuple[str | None, str | None, list[int] | None]] = {}
    gs_tmp = tmp / "gs"
    pre = _prerender(records, src, tmp, limits)
    for i, rec in enumerate(records):
        rel = rec["source_file"]
        if rel is None:
            continue
        turn = refs[i][1].rotate if i < len(refs) else 0  # records start with refs, in order; LaTeX's angle=, \rotatebox
        if turn:
            rec["rotate"] = turn
        cached = f"{rel}\0{turn}" if turn else rel
        if cached not in done:
            png = staging / f"{len(done):05d}.png"
            try:
                img = pre.load(rel) if rel in pre else rasterise(src / rel, limits, gs_tmp)
                if turn:  # turned as on the page, so the figure comes out upright
                    img = img.rotate(turn, expand=True, fillcolor="white")
                    img.thumbnail((limits.image.raster_max_side,) * 2, Image.Resampling.LANCZOS)
                _write_png(img, png)
                done[cached] = (png.relative_to(work).as_posix(), None, list(img.size))
            except ImageLoadError as e:
                done[cached] = (None, e.reason, None)
        made, why, size = done[cached]
        if made:
            rec["png"] = made
            rec["size"] = size
        else:
            rec["error"] = f"{rel}: {why}"
    result["images"] = records

    missing = [r for r in records if not r["unreferenced"] and not r.get("source_file")]
    failed = [r for r in records if r.get("source_file") and not r.get("png") and BUDGET_REASON not in r.get("error", "")]
    over = sorted({r["source_file"] for r in records if BUDGET_REASON in r.get("error", "")})
    if over:
        _partial(result, f"{len(over)} image(s) skipped: the package's rasterisation time budget ({limits.raster_budget:g} s) ran out: " + ", ".join(over[:8]))
    if missing:
        _partial(result, f"{len(missing)} referenced graphic(s) not in the package: " + ", ".join(sorted({r['referenced_as'] for r in missing})[:8]))
    if failed:
        _partial(result, f"{len(failed)} image(s) could not be rasterised: " + "; ".join(sorted({r['error'] for r in failed})[:5]))


_PS_SUFFIXES = (".eps", ".ps", ".epsi", ".epsf", ".epi")


def _prerender(records: list[dict[str, Any]], src: Path, tmp: Path, limits: IngestLimits) -> PrerenderedFigures:
    """Render the package's PostScript files (the slow ones: an external Ghostscript each)
    in parallel, within ``limits.raster_budget`` seconds in all. Other formats are decoded
    in the loop, in this process: they are fast, and pdfium is not thread-safe."""
    ps: list[str] = []
    for rel in dict.fromkeys(r["source_file"] for r in records if r.get("source_file")):
        with open(src / rel, "rb") as f:
            head = f.read(1024)
        if rel.lower().endswith(_PS_SUFFIXES) or sniff_format(head) == "eps":
            ps.append(rel)
    gs_tmp = tmp / "gs"
    return PrerenderedFigures(ps, src, tmp / "prerendered", lambda p, left: rasterise(p, limits, gs_tmp, timeout=left),
                              workers=limits.raster_workers, budget=limits.raster_budget)
