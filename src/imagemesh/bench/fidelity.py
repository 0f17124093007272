"""arXiv ingest fidelity on a real-world corpus: ``imagemesh bench fidelity`` (issue 13).

The corpus is ``tests/data/fidelity/``: arXiv-style source packages (``packages/<id>.tar.gz``) made
from public LaTeX repositories (``SOURCES.md``) and a hand-written truth (``truth.json``): per
package, every figure file that appears in the paper as a graphic, with its figure number,
sub-figure index and caption as LaTeX prints it.

Each package goes through :func:`imagemesh.ingest.sources.arxiv_src.ingest_package` (the per-package
step of ``imagemesh ingest arxiv``; no embeddings) into a temporary work folder, and every truth
entry is scored on four counts:

* **present**: the entry itself (the file is in the package and the paper shows it);
* **rasterised**: a record of the ingest report names the file and has a PNG;
* **cropped**: that PNG's longest side is at most 1024 px and its content box (the bounding box of
  the pixels darker than 245 of 255 in any channel, after compositing on white) covers at least
  50 % of the image; an image with no such pixel (blank) fails. If the truth gives an
  ``orientation`` (``landscape``/``portrait``), the PNG must have it too;
* **caption**: the record's caption, normalised, equals the truth's (see :func:`normalise`); a truth
  entry without caption (a graphic outside any captioned float) wants no caption.

Also counted (not one of the four): **numbered**, the record's figure number and sub-figure index
equal the truth's.

A truth entry is matched to one report record of the same file, preferring the same figure and
sub-figure, then the same figure, then any referenced record, then the file's "unreferenced"
record; a record serves one entry only.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = ["normalise", "content_fraction", "score_package", "run", "to_markdown", "main", "COUNTS"]

COUNTS = ("present", "rasterised", "cropped", "caption")
MAX_SIDE = 1024
MIN_CONTENT = 0.5
WHITE = 245

_DASHES = re.compile(r"[\u2010\u2011\u2012\u2013\u2014\u2015\u2212]|-{2,}")
_CITES = re.compile(r"\[[\d?,;\s\-]*\]|<cit\.>|<ref>|\?\?")
_MARKUP = re.compile(r"[$\\{}^_~]")
_QUOTES = {"\u2018": "'", "\u2019": "'", "`": "'", "\u201c": '"', "\u201d": '"', "''": '"'}


def normalise(text: str | None) -> str:
    """The form in which captions are compared.

    NFKC (folds compatibility forms such as ϕ/φ, ϵ/ε, 𝔪/m, non-breaking spaces); combining marks
    dropped (accents such as vector arrows or tildes over symbols); lower-case; every dash or
    minus sign (and ``--``) is ``-``; typographic quotes are ASCII; citation placeholders (``[?]``,
    ``[12]``, ``[3, 4]``, pylatexenc's ``<cit.>``) and unresolved-reference marks (``??``, ``<ref>``) removed
    (a reference to a figure of the same paper is written with its number in the truth, so printing
    ``<ref>`` there still fails); the characters LaTeX does
    not print (``$ \\ { } ^ _ ~``) removed; all whitespace removed (spacing around math and
    punctuation is not reliable text); a trailing period stripped. ``None`` is the empty string.
    """
    if not text:
        return ""
    s = unicodedata.normalize("NFKC", text)
    s = "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")
    s = s.lower()
    s = _DASHES.sub("-", s)
    for a, b in _QUOTES.items():
        s = s.replace(a, b)
    s = _CITES.sub("", s)
    s = _MARKUP.sub("", s)
    s = re.sub(r"\s+", "", s)
    return s.rstrip(".")


def content_fraction(png: Path) -> tuple[float, tuple[int, int]]:
    """(area of the non-white content box / image area, image size) of a PNG; 0.0 if blank."""
    with Image.open(png) as im:
        im.load()
        size = im.size
        rgba = im.convert("RGBA")
    flat = Image.new("RGBA", size, (255, 255, 255, 255))
    flat.alpha_composite(rgba)
    dark = flat.convert("RGB").point(lambda v: 255 if v < WHITE else 0).convert("L")
    box = dark.getbbox()
    if not box or not size[0] or not size[1]:
        return 0.0, size
    return (box[2] - box[0]) * (box[3] - box[1]) / (size[0] * size[1]), size


@dataclass
class Entry:
    """One truth entry and how it fared."""

    file: str
    figure: int | None
    subfigure: int | None
    caption: str | None
    key: str | None = None
    counts: dict[str, bool] = field(default_factory=dict)
    numbered: bool = False
    causes: list[str] = field(default_factory=list)


def _match(entries: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    used: set[int] = set()
    out: list[dict[str, Any] | None] = [None] * len(entries)

    def fig_of(r: dict[str, Any]) -> int | None:
        try:
            return int(str(r.get("figure"))) if r.get("figure") is not None else None
        except ValueError:
            return None

    tests = [
        lambda e, r: not r.get("unreferenced") and fig_of(r) == e.get("figure") and r.get("subfigure") == e.get("subfigure"),
        lambda e, r: not r.get("unreferenced") and fig_of(r) == e.get("figure"),
        lambda e, r: not r.get("unreferenced"),
        lambda e, r: True,
    ]
    for test in tests:
        for i, e in enumerate(entries):
            if out[i] is not None:
                continue
            for j, r in enumerate(records):
                if j not in used and r.get("source_file") == e["file"] and test(e, r):
                    out[i] = r
                    used.add(j)
                    break
    return out


def score_package(truth: dict[str, Any], result: dict[str, Any], work: Path) -> list[Entry]:
    """Score one package's truth entries against its ingest result (``ingest_package``'s dict)."""
    entries = truth["images"]
    records = result.get("images") or []
    matched = _match(entries, records)
    scored: list[Entry] = []
    for e, r in zip(entries, matched):
        ent = Entry(e["file"], e.get("figure"), e.get("subfigure"), e.get("caption"))
        ent.counts = {"present": True, "rasterised": False, "cropped": False, "caption": False}
        if r is None:
            why = "; ".join(result.get("reasons") or []) or "no record"
            ent.causes.append(f"not in the report (package {result.get('outcome')}: {why[:160]})")
            scored.append(ent)
            continue
        ent.key = r.get("key")
        if r.get("unreferenced"):
            ent.causes.append("kept as unreferenced: the LaTeX reference was not found")
        png = r.get("png")
        if png and (work / png).is_file():
            ent.counts["rasterised"] = True
            frac, size = content_fraction(work / png)
            ok = max(size) <= MAX_SIDE and frac >= MIN_CONTENT
            want = e.get("orientation")
            if want in ("landscape", "portrait") and (size[0] >= size[1]) != (want == "landscape"):
                ok = False
                ent.causes.append(f"not upright: {size[0]}x{size[1]}, truth is {want}")
            if max(size) > MAX_SIDE:
                ent.causes.append(f"too large: {size[0]}x{size[1]} px")
            if frac < MIN_CONTENT:
                ent.causes.append(f"badly cropped: content box {frac:.0%} of {size[0]}x{size[1]} px" if frac else f"blank image {size[0]}x{size[1]} px")
            ent.counts["cropped"] = ok
        else:
            ent.causes.append(f"not rasterised: {r.get('error') or 'no png'}")
        got = r.get("caption")
        ent.counts["caption"] = normalise(got) == normalise(e.get("caption"))
        if not ent.counts["caption"]:
            ent.causes.append(f"caption: got {_short(got)!s} want {_short(e.get('caption'))!s}")
        fig = r.get("figure")
        ent.numbered = (str(e.get("figure")) if e.get("figure") is not None else None) == (str(fig) if fig is not None else None) \
            and r.get("subfigure") == e.get("subfigure")
        if not ent.numbered:
            ent.causes.append(f"numbered fig {fig}.{r.get('subfigure')} want {e.get('figure')}.{e.get('subfigure')}")
        scored.append(ent)
    return scored


def _short(text: str | None, n: int = 90) -> str:
    if text is None:
        return "None"
    t = re.sub(r"\s+", " ", text).strip()
    return repr(t if len(t) <= n else t[: n - 1] + "…")


def _ingest_one(args: tuple[str, str]) -> dict[str, Any]:
    from imagemesh.ingest.sources.arxiv_src import ingest_package

    package, work = args
    t0 = time.perf_counter()
    res = ingest_package(package, work)
    res["_seconds"] = time.perf_counter() - t0
    return res


def run(corpus: Path, workers: int = 2, work: Path | None = None, only: list[str] | None = None) -> dict[str, Any]:
    """Ingest every package of ``corpus`` and score it against ``corpus/truth.json``."""
    truth = json.loads((corpus / "truth.json").read_text(encoding="utf-8"))["packages"]
    names = sorted(truth)
    if only:
        names = [n for n in names if n in set(only)]
    tmp_ctx = tempfile.TemporaryDirectory(prefix="imagemesh-fidelity-") if work is None else None
    work_dir = (Path(tmp_ctx.name) if tmp_ctx else Path(str(work))) / ".ingest"
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        jobs = [(str(corpus / "packages" / truth[n]["package"]), str(work_dir)) for n in names]
        t0 = time.perf_counter()
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as ex:
                results = list(ex.map(_ingest_one, jobs))
        else:
            results = [_ingest_one(j) for j in jobs]
        elapsed = time.perf_counter() - t0
        packages = []
        for n, res in zip(names, results):
            ents = score_package(truth[n], res, work_dir)
            row: dict[str, Any] = {"package": n, "outcome": res.get("outcome"), "seconds": round(res.get("_seconds", 0.0), 2)}
            for c in COUNTS:
                row[c] = sum(1 for e in ents if e.counts[c])
            row["numbered"] = sum(1 for e in ents if e.numbered)
            row["failures"] = [
                {"file": e.file, "figure": e.figure, "subfigure": e.subfigure, "key": e.key,
                 "failed": [c for c in COUNTS if not e.counts[c]] + ([] if e.numbered else ["numbered"]), "causes": e.causes}
                for e in ents if e.causes
            ]
            packages.append(row)
    finally:
        if tmp_ctx:
            tmp_ctx.cleanup()
    total: dict[str, Any] = {c: sum(p[c] for p in packages) for c in (*COUNTS, "numbered")}
    n_present = total["present"] or 1
    total["rates"] = {c: round(total[c] / n_present, 4) for c in (*COUNTS[1:], "numbered")}
    total["packages"] = len(packages)
    try:
        shown = str(Path(corpus).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        shown = str(corpus)
    return {"corpus": shown, "criteria": {"max_side": MAX_SIDE, "min_content": MIN_CONTENT, "white": WHITE},
            "seconds": round(elapsed, 1), "total": total, "packages": packages}


def to_markdown(res: dict[str, Any]) -> str:
    """The per-package table, the totals and the failures with their causes."""
    head = "| package | outcome | present | rasterised | cropped | caption | numbered |\n|---|---|---:|---:|---:|---:|---:|\n"
    rows = "".join(
        f"| {p['package']} | {p['outcome']} | {p['present']} | {p['rasterised']} | {p['cropped']} | {p['caption']} | {p['numbered']} |\n"
        for p in res["packages"])
    t = res["total"]
    rows += f"| **total ({t['packages']} packages)** | | **{t['present']}** | **{t['rasterised']}** | **{t['cropped']}** | **{t['caption']}** | **{t['numbered']}** |\n"
    rates = ", ".join(f"{k} {v:.1%}" for k, v in t["rates"].items())
    lines = ["# arXiv ingest fidelity (`imagemesh bench fidelity`)", "",
             f"Corpus `{res['corpus']}`; criteria: longest side ≤ {res['criteria']['max_side']} px, content box ≥ "
             f"{res['criteria']['min_content']:.0%} of the image; captions compared after `imagemesh.bench.fidelity.normalise`.", "",
             head + rows, f"Rates of present: {rates}. Ingest time {res['seconds']} s.", "", "## Failures", ""]
    for p in res["packages"]:
        for f in p["failures"]:
            lines.append(f"- `{p['package']}` `{f['file']}` (truth fig {f['figure']}.{f['subfigure']}, key `{f['key']}`): "
                         + "; ".join(f["causes"]))
    return "\n".join(lines) + "\n"


def print_table(res: dict[str, Any], echo: Any = print) -> None:
    """The table and the failures, as plain text."""
    echo(f"{'package':<18} {'outcome':<9} {'present':>7} {'raster':>6} {'crop':>5} {'capt':>5} {'numb':>5}")
    for p in res["packages"]:
        echo(f"{p['package']:<18} {str(p['outcome']):<9} {p['present']:>7} {p['rasterised']:>6} {p['cropped']:>5} {p['caption']:>5} {p['numbered']:>5}")
    t = res["total"]
    echo(f"{'total':<18} {'':<9} {t['present']:>7} {t['rasterised']:>6} {t['cropped']:>5} {t['caption']:>5} {t['numbered']:>5}")
    echo("rates: " + ", ".join(f"{k} {v:.1%}" for k, v in t["rates"].items()))
    echo("failures:")
    for p in res["packages"]:
        for f in p["failures"]:
            echo(f"  {p['package']} {f['file']} [{','.join(f['failed'])}]: " + "; ".join(f["causes"]))


def main(corpus: Path, out: Path | None, workers: int = 2, only: list[str] | None = None, echo: Any = print) -> dict[str, Any]:
    """Run, print, and (unless ``out`` is None) write ``out/fidelity.json`` and ``out/fidelity.md``."""
    res = run(corpus, workers=workers, only=only)
    print_table(res, echo)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "fidelity.json").write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        (out / "fidelity.md").write_text(to_markdown(res), encoding="utf-8")
        echo(f"wrote {out / 'fidelity.json'}, {out / 'fidelity.md'}")
    return res
