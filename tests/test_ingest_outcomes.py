"""arXiv ingest outcomes (issue 13): PDF wrappers, ``./`` members, same-name nested
archives, all-rejected ingests, one-image collections, metadata (authors, newest
version, ``build --metadata``), the arXiv identifier scheme, and the per-package
rasterisation budget. Packages are made here with tarfile/gzip."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image

from imagemesh.cli import cli
from imagemesh.ingest.sources.arxiv_src.extract import extract_package
from imagemesh.ingest.sources.arxiv_src.metadata import read_abs, read_metadata, split_authors
from imagemesh.ingest.sources.arxiv_src.package import IngestLimits, ingest_package
from imagemesh.media.ghostscript import GhostscriptLimits
from imagemesh.profiles.arxiv.records import Taxonomy, parse_arxiv_id

needs_gs = pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript not installed (apt-get install ghostscript)")

PAPER = rb"""\documentclass{article}\usepackage{graphicx}\begin{document}
\title{A one-figure paper}\author{Ann Author}\maketitle
\begin{figure}\includegraphics[width=\linewidth]{fig}\caption{The only figure.}\end{figure}
\end{document}"""


def _png(w: int = 60, h: int = 40, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    im = Image.new("RGB", (w, h), (255, 255, 255))
    im.paste(Image.new("RGB", (w // 2, h // 2), colour), (w // 4, h // 4))
    im.save(buf, format="PNG")
    return buf.getvalue()


def _pdf() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (200, 280), (240, 240, 240)).save(buf, format="PDF")
    return buf.getvalue()


def _targz(path: Path, members: list[tuple[str, bytes | None]]) -> Path:
    """A gzipped tar; a ``None`` body makes a folder member."""
    with tarfile.open(path, "w:gz") as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if data is None else 0o644
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return path


def _targz_bytes(members: list[tuple[str, bytes | None]], tmp: Path, name: str) -> bytes:
    return _targz(tmp / name, members).read_bytes()


# -- 1. a LaTeX wrapper around a full-paper PDF ------------------------------------------------


def test_includepdf_wrapper_is_rejected_as_pdf_only(tmp_path: Path) -> None:
    wrapper = rb"""\documentclass{article}\usepackage{pdfpages}
\begin{document}\includepdf[pages=-,fitpaper]{paper_final}\end{document}"""
    pkg = _targz(tmp_path / "2101.00001.tar.gz", [("main.tex", wrapper), ("paper_final.pdf", _pdf())])
    r = ingest_package(pkg, tmp_path / "work")
    assert r["outcome"] == "rejected", r["reasons"]
    assert "PDF-only submission" in r["reasons"][0] and "includepdf" in r["reasons"][0] and "paper_final.pdf" in r["reasons"][0]
    assert not any(im.get("png") for im in r["images"])
    # a real paper with an \includepdf'd appendix: its figures count, the appendix pages do not
    paper = PAPER.replace(rb"\end{document}", rb"\includepdf[pages=1-2]{appendix.pdf}\end{document}")
    pkg2 = _targz(tmp_path / "2101.00002.tar.gz", [("main.tex", paper), ("fig.png", _png()), ("appendix.pdf", _pdf())])
    r2 = ingest_package(pkg2, tmp_path / "work")
    assert r2["outcome"] == "ok", r2["reasons"]
    assert [im["source_file"] for im in r2["images"]] == ["fig.png"]


# -- 2. "tar czf p.tar.gz -C dir ." --------------------------------------------------------


@pytest.mark.parametrize("root", ["./", "."])
def test_dot_root_member_is_not_a_problem(tmp_path: Path, root: str) -> None:
    pkg = _targz(tmp_path / "2101.00003.tar.gz", [(root, None), ("./main.tex", PAPER), ("./figs", None), ("./fig.png", _png())])
    ex = extract_package(pkg, tmp_path / "x")
    assert ex.skipped == [] and ex.files == ["fig.png", "main.tex"]
    r = ingest_package(pkg, tmp_path / "work")
    assert r["outcome"] == "ok" and r["reasons"] == []
    assert r["images"][0]["key"] == "2101.00003/fig1" and r["images"][0]["png"]


def test_dot_root_from_real_tar(tmp_path: Path) -> None:
    """The same with the real ``tar`` command, as authors make their packages."""
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("no tar command")
    import subprocess

    d = tmp_path / "paper"
    d.mkdir()
    (d / "main.tex").write_bytes(PAPER)
    (d / "fig.png").write_bytes(_png())
    pkg = tmp_path / "2101.00004.tar.gz"
    subprocess.run([tar, "czf", str(pkg), "-C", str(d), "."], check=True)
    r = ingest_package(pkg, tmp_path / "work")
    assert r["outcome"] == "ok" and r["reasons"] == [], r["reasons"]


# -- 3. same-name nested archives ------------------------------------------------------------


def test_same_name_nested_archives_are_extracted(tmp_path: Path) -> None:
    inner = _targz_bytes([("fig.png", _png())], tmp_path, "inner.tar.gz")
    middle = _targz_bytes([("figs.tar.gz", inner)], tmp_path, "middle.tar.gz")
    pkg = _targz(tmp_path / "2101.00005.tar.gz", [("main.tex", PAPER), ("figs.tar.gz", middle)])
    ex = extract_package(pkg, tmp_path / "x")  # depth 1 (package), 2 (figs), 3 (figs inside figs): within the limit
    assert ex.skipped == [] and ex.errors == [] and ex.files == ["fig.png", "main.tex"]
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["fig.png", "main.tex"]  # nothing left aside
    r = ingest_package(pkg, tmp_path / "work")
    assert r["outcome"] == "ok" and r["reasons"] == [], r["reasons"]
    assert r["images"][0]["png"]
    # a same-named zip in a folder, beside a same-named file that is not an archive
    import zipfile

    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("plots.zip", _zip_bytes({"a.png": _png()}))
    pkg2 = _targz(tmp_path / "2101.00006.tar.gz", [("main.tex", PAPER), ("sub/plots.zip", zbuf.getvalue()), ("fig.png", _png())])
    ex2 = extract_package(pkg2, tmp_path / "y")
    assert ex2.skipped == [] and ex2.files == ["fig.png", "main.tex", "sub/a.png"]
    # beyond the depth limit it is still refused, with the reason
    deeper = _targz_bytes([("figs.tar.gz", middle)], tmp_path, "deeper.tar.gz")
    pkg3 = _targz(tmp_path / "2101.00007.tar.gz", [("main.tex", PAPER), ("figs.tar.gz", deeper)])
    ex3 = extract_package(pkg3, tmp_path / "z")
    assert any("nested deeper than 3" in s["reason"] for s in ex3.skipped)


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    return buf.getvalue()


# -- 4. an ingest where every package is rejected ---------------------------------------------


def test_all_rejected_ingest_prints_table_and_summary(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "2101.00010.tar.gz").write_bytes(b"\x00" * 4096)
    _targz(src / "2101.00011.tar.gz", [("main.tex", b"")])
    _targz(src / "2101.00012.tar.gz", [("main.tex", rb"\documentclass{article}\begin{document}\includepdf{p}\end{document}"), ("p.pdf", _pdf())])
    out = tmp_path / "coll"
    res = CliRunner().invoke(cli, ["ingest", "arxiv", str(src), "--out", str(out), "--workers", "1", "--embeddings", "raw",
                                   "--backend", "exact", "--quiet"])
    assert res.exit_code == 1, res.output
    text = res.output + (res.stderr if hasattr(res, "stderr") else "")
    assert "None" not in text and "Traceback" not in text
    for name in ("2101.00010.tar.gz", "2101.00011.tar.gz", "2101.00012.tar.gz"):
        assert name in text
    assert "only NUL bytes" in text and "LaTeX files are empty" in text and "PDF-only" in text
    assert "packages: 0 ok, 0 partial, 3 rejected" in text
    assert "error: no images: all 3 package(s) were rejected" in text
    report = json.loads((out / "ingest-report.json").read_text())
    assert report["counts"]["rejected"] == 3 and report["error"].startswith("no images") and report["build"] is None
    assert not (out / "manifest.json").exists()
    # the Python API raises NothingIngested (a ValueError) carrying the report
    from imagemesh.ingest.build import BuildOptions
    from imagemesh.ingest.sources.arxiv_src.ingest import NothingIngested, ingest_arxiv

    with pytest.raises(NothingIngested, match="all 3 package") as exc:
        ingest_arxiv([src], tmp_path / "coll2", workers=1, progress=False, build_options=BuildOptions(embeddings=["raw"], progress=False))
    assert exc.value.report.counts["rejected"] == 3 and len(exc.value.report.packages) == 3
    # --json prints the report too, and still exits 1
    res = CliRunner().invoke(cli, ["ingest", "arxiv", str(src), "--out", str(out), "--workers", "1", "--embeddings", "raw", "--json", "--quiet"])
    assert res.exit_code == 1 and '"rejected": 3' in res.output


# -- 5. one paper, one figure: a one-image collection -----------------------------------------



@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["exact", "faiss", "annoy"])
async def test_single_figure_paper_is_a_one_image_collection(tmp_path: Path, backend: str) -> None:
    import imagemesh
    from imagemesh.ingest.build import BuildOptions
    from imagemesh.ingest.sources.arxiv_src.ingest import ingest_arxiv
    from imagemesh.web.app import create_app

    pkg = _targz(tmp_path / "2101.00020.tar.gz", [("main.tex", PAPER), ("fig.png", _png(300, 200))])
    out = tmp_path / "coll"
    rep = ingest_arxiv([pkg], out, workers=1, progress=False,
                       build_options=BuildOptions(embeddings=["raw"], backend=backend, pca_dim=64, progress=False))
    assert rep.build is not None and rep.build["n_images"] == 1
    assert rep.build["embeddings"]["raw"]["dim"] == 1  # PCA capped at n
    c = imagemesh.open(out)
    assert len(c) == 1 and c.image_keys() == ["2101.00020/fig1"]
    row = c.get("2101.00020/fig1")
    assert row["caption"] == "The only figure." and row["title"] == "A one-figure paper"
    hits = c.neighbors("2101.00020/fig1", k=10)
    assert [h.id for h in hits] == [0] and hits[0].distance == pytest.approx(0.0, abs=1e-5)
    assert [h.id for h in c.random(5, seed=1)] == [0]
    xy, method = c.map_2d()
    assert xy.shape == (1, 2) and xy.tolist() == [[0.5, 0.5]] and method == "trivial"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(c)), base_url="http://127.0.0.1") as client:
        info = (await client.get("/api/info")).json()
        assert info["n_images"] == 1
        r = await client.get("/api/neighbors?id=0&k=5")
        assert r.status_code == 200 and [h["id"] for h in r.json()["results"]] == [0]
        r = await client.get("/api/random?n=12&seed=2")
        assert r.status_code == 200 and [h["id"] for h in r.json()["results"]] == [0]
        r = await client.get("/api/map?embedding=raw")
        assert r.status_code == 200
        r = await client.post("/api/query", data={"k": "5", "positive": "0"})
        assert r.status_code == 200 and [h["id"] for h in r.json()["results"]] == [0]
        r = await client.post("/api/query", data={"k": "3"}, files={"positive_image": ("q.png", _png(80, 60), "image/png")})
        assert r.status_code == 200 and [h["id"] for h in r.json()["results"]] == [0]
        assert (await client.get("/api/facets")).status_code == 200
    # the CLI on the one-image collection
    res = CliRunner().invoke(cli, ["neighbors", str(out), "2101.00020/fig1", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)[0]["id"] == 0
    # and appending a second paper keeps the first row
    pkg2 = _targz(tmp_path / "2101.00021.tar.gz", [("main.tex", PAPER), ("fig.png", _png(300, 200, (20, 20, 200)))])
    ingest_arxiv([pkg2], out, workers=1, progress=False, build_options=BuildOptions(embeddings=["raw"], backend=backend, progress=False))
    c2 = imagemesh.open(out)
    assert c2.image_keys() == ["2101.00020/fig1", "2101.00021/fig1"] and c2.get("2101.00020/fig1")["row_id"] == 0


def test_cli_build_verify_and_random_on_one_image(tmp_path: Path) -> None:
    from imagemesh.testing import make_image_folder

    src = make_image_folder(tmp_path / "src", 1)
    out = tmp_path / "coll"
    res = CliRunner().invoke(cli, ["build", str(src), "--out", str(out), "--embeddings", "raw", "--backend", "faiss", "--quiet"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["random", str(out), "-n", "5", "--json"])
    assert res.exit_code == 0 and [h["id"] for h in json.loads(res.output)] == [0]
    res = CliRunner().invoke(cli, ["verify", str(out), "--no-models"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["info", str(out), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["n_images"] == 1


def test_fit_pca_on_one_sample() -> None:
    import numpy as np

    from imagemesh.store.pca import fit_pca

    x = np.arange(1, 9, dtype=np.float32).reshape(1, 8)
    r = fit_pca([x], 1, 8, 64)
    assert r.n_components == 1 and r.describe()["explained_variance"] == 1.0
    y = r.transform(x)
    assert y.shape == (1, 1) and y[0, 0] == pytest.approx(float(np.linalg.norm(x)))
    with pytest.raises(ValueError):
        fit_pca([], 0, 8, 64)


# -- 6. metadata -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line,names",
    [
        ("A. Smith (MIT, Cambridge and Harvard), B. Jones (Caltech), and C. Brown", ["A. Smith", "B. Jones", "C. Brown"]),
        ("John Smith, Jr., Ann Lee and Bob Roe, III", ["John Smith, Jr.", "Ann Lee", "Bob Roe, III"]),
        ("A. Smith (1), B. Jones (2) ((1) MIT, (2) University of X and Y)", ["A. Smith", "B. Jones"]),
        ("Alexander Anderson and Sandra Andrews", ["Alexander Anderson", "Sandra Andrews"]),
        ("C. Bal\\'azs, E. L. Berger", ["C. Bal\\'azs", "E. L. Berger"]),
        ("M. L. King Jr, P. Q. Sr", ["M. L. King Jr", "P. Q. Sr"]),
    ],
)
def test_split_authors(line: str, names: list[str]) -> None:
    assert split_authors(line) == names


def _abs(aid: str, title: str, authors: str, revisions: int = 0) -> str:
    dates = "Date: Mon, 2 Apr 2007 19:18:42 GMT   (443kb)\n" + "".join(
        f"Date (revised v{v}): Tue, 24 Jul 2007 20:10:27 GMT   (370kb)\n" for v in range(2, revisions + 2))
    return ("------------------------------------------------------------------------------\n\\\\\n"
            f"arXiv:{aid}\nFrom: Someone <x@y.z>\n{dates}\nTitle: {title}\nAuthors: {authors}\n"
            f"Categories: cs.CV cs.LG\nComments: 3 pages\n\\\\\n  The abstract.\n\\\\\n")


def test_abs_authors_and_newest_version_wins(tmp_path: Path) -> None:
    t = Taxonomy.load()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    old = tmp_path / "b" / "2306.01841v1.abs"  # read last in sorted order, but older
    old.write_text(_abs("2306.01841", "Old title", "A. One, B. Two"), encoding="utf-8")
    new = tmp_path / "a" / "2306.01841.abs"
    new.write_text(_abs("2306.01841", "New title", "A. One (Lab X, Y and Z), B. Two, Jr., and C. Three", revisions=2), encoding="utf-8")
    rec = read_abs(new, t)
    assert rec.version == 3 and rec.authors_list == ["A. One", "B. Two, Jr.", "C. Three"]
    assert read_abs(old, t).version == 1
    for order in ([tmp_path], [new, old], [old, new]):
        recs, problems = read_metadata(order, t)
        assert problems == [] and recs["2306.01841"].title == "New title", order
    # snapshot records: the newest version wins too, whatever the order
    snap = tmp_path / "s.jsonl"
    lines = [{"id": "2306.01841", "title": "Snap v3", "versions": [{"version": "v1"}, {"version": "v2"}, {"version": "v3"}]},
             {"id": "2306.01841", "title": "Snap v1", "versions": [{"version": "v1"}]}]
    snap.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    recs, _ = read_metadata([snap], t)
    assert recs["2306.01841"].title == "Snap v3"
    recs, _ = read_metadata([snap, new], t)  # v3 and v3: same version, the later file wins
    assert recs["2306.01841"].title == "New title"
    # a folder without records is a problem, not a traceback
    empty = tmp_path / "empty"
    empty.mkdir()
    recs, problems = read_metadata([empty], t)
    assert recs == {} and "no .abs records" in problems[0]


def test_build_metadata_accepts_abs_files_and_folders(tmp_path: Path) -> None:
    from .conftest import make_subset

    src = make_subset(tmp_path / "figs", 2)
    first = (src / "figures.csv").read_text(encoding="utf-8").splitlines()[1].split(",")
    aid = next(x for x in first if x[:1].isdigit())
    aid_nov = parse_arxiv_id(aid).id
    folder = tmp_path / "abs"
    (folder / "deep").mkdir(parents=True)
    (folder / "deep" / f"{aid_nov}v1.abs").write_text(_abs(aid_nov, "Old title", "X. Old"), encoding="utf-8")
    (folder / f"{aid_nov}.abs").write_text(_abs(aid_nov, "Joined from abs", "A. Smith (MIT and CERN), B. Jones, Jr.", revisions=1), encoding="utf-8")
    for meta in (folder, folder / f"{aid_nov}.abs"):
        out = tmp_path / f"coll-{meta.name}"
        res = CliRunner().invoke(cli, ["build", str(src), "--out", str(out), "--metadata", str(meta), "--embeddings", "raw",
                                       "--backend", "exact", "--pca-dim", "4", "--quiet"])
        assert res.exit_code == 0, res.output
        import imagemesh

        c = imagemesh.open(out)
        row = next(c.get(i) for i in range(len(c)) if c.get(i)["arxiv_id"] == aid_nov)
        assert row["title"] == "Joined from abs" and row["authors_list"] == ["A. Smith", "B. Jones, Jr."], row
        assert row["category"] == "cs.CV"


@pytest.mark.parametrize("good", ["0704.0001", "1412.9999", "1501.00001", "2306.01841v2", "hep-th/9108001", "hep-th/0703999",
                                  "math.GT/0309136", "arXiv:0706.0001v1", "9001.00001"])
def test_id_scheme_valid(good: str) -> None:
    parse_arxiv_id(good)


@pytest.mark.parametrize("bad", ["0703.1234", "9912.99999", "1413.1234", "0700.1234", "1501.0001", "1412.99999", "0704.0000",
                                 "2306.00000", "hep-th/0704001", "hep-th/9107001", "hep-th/9913001", "hep-th/0101000",
                                 "2306.01841v0", "0612.1234"])
def test_id_scheme_invalid(bad: str) -> None:
    with pytest.raises(ValueError, match="arxiv_identifier"):
        parse_arxiv_id(bad)


# -- 7. several looping EPS files: in parallel, under one budget -----------------------------

LOOP_EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n{ 1 pop } loop\n"
GOOD_EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nnewpath 10 10 moveto 90 90 lineto 5 setlinewidth stroke\nshowpage\n"


def _eps_package(tmp_path: Path, n_loops: int) -> Path:
    figs = "".join(f"\\begin{{figure}}\\includegraphics{{loop{i}}}\\caption{{Loop {i}.}}\\end{{figure}}\n" for i in range(n_loops))
    tex = ("\\documentclass{article}\\begin{document}\n" + figs +
           "\\begin{figure}\\includegraphics{good}\\caption{Good.}\\end{figure}\n"
           "\\begin{figure}\\includegraphics{fig}\\caption{Raster.}\\end{figure}\n\\end{document}\n").encode()
    members: list[tuple[str, bytes | None]] = [("main.tex", tex), ("good.eps", GOOD_EPS), ("fig.png", _png())]
    members += [(f"loop{i}.eps", LOOP_EPS) for i in range(n_loops)]
    return _targz(tmp_path / "2101.00030.tar.gz", members)


@needs_gs
def test_looping_eps_files_run_in_parallel(tmp_path: Path) -> None:
    pkg = _eps_package(tmp_path, 4)
    limits = IngestLimits(ghostscript=GhostscriptLimits(timeout=3.0), raster_workers=4, raster_budget=60.0)
    t = time.perf_counter()
    r = ingest_package(pkg, tmp_path / "work", limits)
    took = time.perf_counter() - t
    assert took < 10, f"{took:.1f} s: four 3 s timeouts in series would take 12 s"
    by = {im["source_file"]: im for im in r["images"]}
    assert by["good.eps"].get("png") and by["fig.png"].get("png")
    assert all("timed out" in by[f"loop{i}.eps"]["error"] for i in range(4))
    assert r["outcome"] == "partial" and any("could not be rasterised" in x for x in r["reasons"])


@needs_gs
def test_package_rasterisation_budget(tmp_path: Path) -> None:
    pkg = _eps_package(tmp_path, 6)
    # Ghostscript's own timeout is 60 s; the package's budget of 3 s stops all of them
    limits = IngestLimits(ghostscript=GhostscriptLimits(timeout=60.0), raster_workers=2, raster_budget=3.0)
    t = time.perf_counter()
    r = ingest_package(pkg, tmp_path / "work", limits)
    took = time.perf_counter() - t
    assert took < 15, f"{took:.1f} s"
    by = {im["source_file"]: im for im in r["images"]}
    assert by["fig.png"].get("png")  # other formats are not held up
    skipped = [im for im in r["images"] if "rasterisation time budget (3 s) ran out" in (im.get("error") or "")]
    assert len(skipped) >= 6
    assert r["outcome"] == "partial"
    assert any("skipped: the package's rasterisation time budget (3 s) ran out" in x for x in r["reasons"]), r["reasons"]
    assert json.loads(json.dumps(IngestLimits.from_dict(limits.to_dict()).to_dict())) == limits.to_dict()
