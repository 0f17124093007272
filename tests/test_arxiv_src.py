"""arXiv source ingest: every package in shared/data/arxiv-src and every file in
shared/data/arxiv-eps, hostile archives made here, LaTeX parsing, metadata, the
95% figure+caption target, containment in the work folder, and kill-then-resume."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image

from imagemesh.media.images import ImageLimits, ImageLoadError
from imagemesh.ingest.sources.arxiv_src.extract import ExtractError, ExtractLimits, extract_package
from imagemesh.media.ghostscript import GhostscriptError, GhostscriptLimits, rasterise_postscript, split_dos_eps
from imagemesh.ingest.sources.arxiv_src.latex import parse_document
from imagemesh.ingest.sources.arxiv_src.texfiles import decode_tex, expand_inputs, find_main_files, resolve_graphic, strip_comments
from imagemesh.ingest.sources.arxiv_src.metadata import arxiv_id_from_name, merge_record, read_metadata
from imagemesh.ingest.sources.arxiv_src.package import IngestLimits, ingest_package, rasterise

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SRC = SHARED / "arxiv-src"
EPS = SHARED / "arxiv-eps"
ABS = SHARED / "arxiv-metadata" / "abs"
needs_shared = pytest.mark.skipif(not SRC.is_dir(), reason="../shared/data not present")
needs_gs = pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript not installed (apt-get install ghostscript)")

# outcome and a reason fragment for every package in shared/data/arxiv-src
EXPECTED = {
    "10240_null_chars.tar": ("rejected", "only NUL bytes"),
    "1602.00123.tar": ("ok", None),
    "1801.03879-1.tar.gz": ("ok", None),
    "Upload9BadFileNames.tar.gz": ("partial", "not in the package"),
    "UploadTestWindowCDrive.tar.gz": ("rejected", "Windows drive letter"),
    "gzipped.gz": ("rejected", "not LaTeX"),
    "mutau2-sub_first10kB.tar": ("rejected", "truncated"),
    "relative_path.tar.gz": ("rejected", "'..'"),
    "sampleA_ps.tar.gz": ("ok", None),
    "sampleB_ps.tar.gz": ("ok", None),
    "sampleF_html.tar.gz": ("rejected", "HTML submission"),
    "testtar.tar": ("rejected", "no LaTeX source"),
    "upload-nested-zip-and-tar.zip": ("partial", "Bad CRC-32"),
    "upload1.tar.gz": ("rejected", "LaTeX files are empty"),
    "upload4.gz": ("ok", None),
    "upload6.tgz": ("ok", None),
    "upload7.tar.gz": ("rejected", "HTML submission"),
    "with__MACOSX_hidden.tar.gz": ("partial", "leps.eps"),
}


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.fixture(scope="module")
def shared_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Ingest every shared package once; also checks nothing lands outside the work folder."""
    if not SRC.is_dir():
        pytest.skip("../shared/data not present")
    root = tmp_path_factory.mktemp("contain")
    work = root / "work"
    systmp = root / "systmp"
    systmp.mkdir()
    (root / "sentinel.txt").write_text("x")
    before = _files_under(root)
    old = tempfile.tempdir
    tempfile.tempdir = str(systmp)  # anything using the default temp folder would show up here
    cwd = os.getcwd()
    os.chdir(systmp)  # ... and anything writing relative paths here
    try:
        results = {p.name: ingest_package(p, work) for p in sorted(SRC.iterdir())}
    finally:
        tempfile.tempdir = old
        os.chdir(cwd)
    after = _files_under(root)
    outside = {p for p in after - before if work not in p.parents and p != work}
    assert outside == set(), f"written outside the work folder: {sorted(outside)[:5]}"
    assert not (work / "tmp").exists() or not any((work / "tmp").iterdir()), "extraction folders must be removed"
    results["__work__"] = {"path": str(work)}  # type: ignore[assignment]
    return results


def test_every_shared_package_is_listed() -> None:
    if not SRC.is_dir():
        pytest.skip("../shared/data not present")
    assert sorted(p.name for p in SRC.iterdir()) == sorted(EXPECTED)


@needs_shared
@needs_gs
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_package_outcome(shared_results: dict[str, dict], name: str) -> None:
    r = shared_results[name]
    outcome, fragment = EXPECTED[name]
    assert r["outcome"] == outcome, r["reasons"]
    if fragment:
        assert any(fragment in x for x in r["reasons"]), r["reasons"]
    else:
        assert r["reasons"] == []
    json.dumps(r)  # JSON-able
    work = Path(shared_results["__work__"]["path"])
    assert json.loads((work / "packages" / f"{r['sha256']}.json").read_text()) == r
    for im in r["images"]:
        if im.get("png"):
            with Image.open(work / im["png"]) as img:
                assert img.mode == "RGB" and max(img.size) <= 1024


@needs_shared
@needs_gs
def test_specific_figures(shared_results: dict[str, dict]) -> None:
    a = {im["key"]: im for im in shared_results["sampleA_ps.tar.gz"]["images"]}
    assert shared_results["sampleA_ps.tar.gz"]["paper_id"] == "0901.1786"  # from the gzip header's file name
    assert a["0901.1786/fig10.2"]["source_file"] == "10b.eps" and a["0901.1786/fig10.2"]["subfigure"] == 2
    assert a["0901.1786/fig3"]["caption"].startswith("μ_p G_E^p/G_M^p")  # math kept readable
    assert a["0901.1786/fig1"]["label"] == "Fig_1"
    b = {im["key"]: im for im in shared_results["sampleB_ps.tar.gz"]["images"]}
    assert b["0901.1901/fig2"]["source_file"] == "Fig2.eps" and b["0901.1901/fig2"]["resolved_by"] == "extension"
    assert b["0901.1901/fig1"]["caption"].startswith("(Color online) (a)-(c) 2μm × 2μm LEEM")  # from the caption list
    z = {im["key"]: im for im in shared_results["upload-nested-zip-and-tar.zip"]["images"]}
    assert z["pkg-a9266fc459b0/fig1.3"]["source_file"] == "dynamics3.eps"  # from the nested dyn.tar.gz
    assert "png" in z["pkg-a9266fc459b0/fig1.3"] and "png" not in z["pkg-a9266fc459b0/fig2"]
    u = {im["key"]: im for im in shared_results["Upload9BadFileNames.tar.gz"]["images"]}
    assert u["pkg-e8db756817b3/fig13.1"]["resolved_by"] == "basename"
    assert u["pkg-e8db756817b3/fig13.1"]["subcaption"] == "(++)-start, θ^0_1=2, E(00-1-1)"
    assert u["pkg-e8db756817b3/file/+1110(79).png"]["unreferenced"] is True
    assert shared_results["1801.03879-1.tar.gz"]["latex"]["title"] == "Parameterized (Approximate) Defective Coloring"
    assert {im["source_file"] for im in shared_results["1801.03879-1.tar.gz"]["images"]} == {"cc-by.pdf", "lipics-logo-bw.pdf"}
    assert shared_results["1801.03879-1.tar.gz"]["extraction"]["ignored"]  # macOS ._ files left out
    assert shared_results["upload6.tgz"]["images"][0]["caption"].startswith("W(Δ,P_γ) from")


# -- the 95% target, counted independently of the ingest code ------------------------------

_GRAPHIC = re.compile(r"\\includegraphics\*?\s*(?:\[[^\]]*\]\s*)*\{([^}]*)\}|\\(?:epsfig|psfig)\s*\{[^}]*?figure\s*=\s*([^,}]+)")


def _archive_listing(path: Path) -> tuple[dict[str, bytes], set[str]]:
    """(.tex texts, all member base names) read straight from the archive, nested ones too."""
    texts: dict[str, bytes] = {}
    names: set[str] = set()

    def walk_bytes(name: str, data: bytes) -> None:
        names.add(PurePosixPath(name).name)
        if name.endswith(".tex"):
            texts[name] = data
        elif name.endswith((".tar.gz", ".tgz", ".tar")):
            try:
                with tarfile.open(fileobj=io.BytesIO(data)) as t:
                    walk_tar(t)
            except tarfile.TarError:
                pass
        elif name.endswith(".zip"):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    for n in z.namelist():
                        names.add(PurePosixPath(n).name)  # listed, even if its data is corrupt
                        try:
                            walk_bytes(n, z.read(n))
                        except (zipfile.BadZipFile, OSError, EOFError):
                            pass
            except zipfile.BadZipFile:
                pass

    def walk_tar(t: tarfile.TarFile) -> None:
        for m in t:
            if m.isreg():
                f = t.extractfile(m)
                walk_bytes(m.name, f.read() if f else b"")

    if path.suffix == ".zip":
        walk_bytes(path.name, path.read_bytes())
    elif path.name.endswith(".gz") and not path.name.endswith(".tar.gz"):
        data = gzip.decompress(path.read_bytes())
        if data[257:262] == b"ustar":
            walk_tar(tarfile.open(fileobj=io.BytesIO(data)))
        else:
            texts[path.name[:-3] + ".tex"] = data
    else:
        try:
            with tarfile.open(path) as t:
                walk_tar(t)
        except (tarfile.TarError, EOFError):
            pass
    return texts, names


def _truth(path: Path) -> list[tuple[str, bool]]:
    """Every \\includegraphics / \\epsfig target of the package's .tex files (comments
    removed) and whether a file of that base name (any graphics extension) is in it."""
    texts, names = _archive_listing(path)
    stems = {n.lower().rsplit(".", 1)[0] for n in names} | {n.lower() for n in names}
    out = []
    for data in texts.values():
        text = "\n".join(re.sub(r"(?<!\\)%.*", "", ln) for ln in data.decode("latin-1").splitlines())
        for m in _GRAPHIC.finditer(text):
            target = PurePosixPath((m.group(1) or m.group(2)).strip()).name.lower()
            out.append((target, target in stems or target.rsplit(".", 1)[0] in stems))
    return out


@needs_shared
@needs_gs
def test_95_percent_of_included_graphics_become_images_with_captions(shared_results: dict[str, dict]) -> None:
    total = present = got = 0
    lines = []
    for name in sorted(EXPECTED):
        r = shared_results[name]
        if r["outcome"] == "rejected":
            continue  # not a readable package
        truth = _truth(SRC / name)
        n_present = sum(1 for _, ok in truth if ok)
        ok = r["counts"]["rasterised_with_caption"]
        total += len(truth)
        present += n_present
        got += ok
        lines.append(f"{name}: {len(truth)} referenced, {n_present} in the package, {ok} rasterised with caption")
        assert r["counts"]["graphics_referenced"] == len(truth), name
    print("\n".join(lines))
    print(f"total: {got}/{present} of the graphics present = {got / present:.1%}; {got}/{total} of all references")
    assert present >= 45
    assert got / present >= 0.95


# -- EPS / PS / raster files --------------------------------------------------------------

EPS_EXPECTED = {
    "P11_cmplx_plane.eps": "ok",
    "PostscriptPhotoshop1.eps": "ok",
    "PostscriptPreview1.eps": "ok",
    "cond-mat.vasili.1890.fig3.eps": "ok",  # DOS EPS binary header
    "dos_eps_1.eps": "ok",  # DOS EPS with TIFF preview
    "dos_eps_2.eps": "ok",
    "image.tif": "ok",
    "minimal.pdf": "ok",
    "one.ps": "ok",
    "ps1_broken.eps": "unsupported format",  # a tar header glued in front of the PostScript
}


def test_every_eps_file_is_listed() -> None:
    if not EPS.is_dir():
        pytest.skip("../shared/data not present")
    assert sorted(p.name for p in EPS.iterdir()) == sorted(EPS_EXPECTED)


@needs_shared
@needs_gs
@pytest.mark.parametrize("name", sorted(EPS_EXPECTED))
def test_eps_files(tmp_path: Path, name: str) -> None:
    limits = IngestLimits(image=ImageLimits(raster_max_side=256))
    if EPS_EXPECTED[name] == "ok":
        img = rasterise(EPS / name, limits, tmp_path)
        assert img.mode == "RGB" and 0 < max(img.size) <= 256
        arr = np.asarray(img)
        assert arr.std() > 1  # something was drawn
    else:
        with pytest.raises(ImageLoadError, match=EPS_EXPECTED[name]):
            rasterise(EPS / name, limits, tmp_path)
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "gs"]) or not any(tmp_path.rglob("*.png"))


@needs_shared
@needs_gs
def test_dos_eps_falls_back_to_tiff_preview() -> None:
    data = (EPS / "dos_eps_1.eps").read_bytes()
    ps, tiff = split_dos_eps(data)
    assert ps.startswith(b"%!PS") and tiff is not None and tiff[:2] in (b"II", b"MM")
    # break the PostScript section: Ghostscript fails, the TIFF preview stands in
    import struct

    off, length = struct.unpack_from("<II", data, 4)
    broken = data[:off] + b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(oops) cvx exec nonsense\n".ljust(length, b" ") + data[off + length:]
    img = rasterise_postscript(broken)
    assert img.size == Image.open(io.BytesIO(tiff)).size
    with pytest.raises(GhostscriptError, match="outside the file"):
        split_dos_eps(data[:40])


@needs_gs
def test_broken_and_endless_postscript(tmp_path: Path) -> None:
    with pytest.raises(GhostscriptError, match="Ghostscript failed"):
        rasterise_postscript(b"%!PS-Adobe-3.0\n/foo bar baz\nshowpage\n", work=tmp_path)
    t = time.perf_counter()
    with pytest.raises(GhostscriptError, match="timed out"):
        rasterise_postscript(b"%!PS\n{ 1 pop } loop\n", GhostscriptLimits(timeout=1.5), work=tmp_path)
    assert time.perf_counter() - t < 10
    # a multi-page document: the first page only
    pages = b"%!PS\n" + b"".join(b"newpath 100 100 moveto 300 300 lineto stroke showpage\n" for _ in range(50))
    assert rasterise_postscript(pages, GhostscriptLimits(max_side=200), work=tmp_path).size[1] <= 200
    assert list(tmp_path.iterdir()) == []  # Ghostscript's temporary folder is gone


# -- hostile archives made here -------------------------------------------------------------


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as t:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _info(name: str, type_: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    i = tarfile.TarInfo(name)
    i.type = type_
    i.linkname = link
    i.mode = 0o644
    return i


TEX = rb"""\documentclass{article}\begin{document}
\begin{figure}\includegraphics{fig}\caption{A figure.}\end{figure}
\end{document}"""


def _png(w: int = 40, h: int = 30) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_hostile_members_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    pkg = _tar(tmp_path / "hostile.tar", [
        (_info("paper.tex"), TEX),
        (_info("fig.png"), _png()),
        (_info("../outside.txt"), b"escape"),
        (_info("/etc/passwd-imagemesh"), b"abs"),
        (_info("C:\\evil.txt"), b"win"),
        (_info("a\\..\\..\\b.txt"), b"win2"),
        (_info("bad\x01name.txt"), b"ctl"),
        (_info("link.png", tarfile.SYMTYPE, "../../outside.txt"), None),
        (_info("hard.png", tarfile.LNKTYPE, "fig.png"), None),
        (_info("dev", tarfile.CHRTYPE), None),
        (_info("fifo", tarfile.FIFOTYPE), None),
        (_info("__MACOSX/._fig.png"), b"junk"),
    ])
    r = ingest_package(pkg, tmp_path / "work")
    reasons = "\n".join(r["reasons"])
    assert r["outcome"] == "partial"
    for frag in ("'..'", "absolute path", "Windows drive letter", "backslash", "control character", "symlink", "hard link",
                 "character device", "FIFO"):
        assert frag in reasons, frag
    assert not outside.exists() and not Path("/etc/passwd-imagemesh").exists()
    assert [im["key"] for im in r["images"] if im.get("png")] == ["pkg-" + r["sha256"][:12] + "/fig1"]
    assert not any(p.is_symlink() for p in (tmp_path / "work").rglob("*"))


def test_nul_in_member_name(tmp_path: Path) -> None:
    # a raw ustar header whose name field holds "ok.tex\0../../x" (tar stops at the NUL)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        i = _info("ok.tex")
        i.size = len(TEX)
        t.addfile(i, io.BytesIO(TEX))
    raw = bytearray(buf.getvalue())
    raw[6:14] = b"\x00../../x"
    raw[148:156] = b"        "
    raw[148:155] = f"{sum(raw[:512]):06o}\x00".encode()
    (tmp_path / "nul.tar").write_bytes(bytes(raw))
    res = extract_package(tmp_path / "nul.tar", tmp_path / "out")
    assert res.files == ["ok.tex"]  # the name ends at the NUL; nothing escapes
    assert not (tmp_path / "x").exists()


def test_truncated_and_garbage_archives(tmp_path: Path) -> None:
    good = _tar(tmp_path / "good.tar", [(_info("paper.tex"), TEX), (_info("fig.png"), _png()), (_info("big.bin"), os.urandom(200_000))])
    data = good.read_bytes()
    (tmp_path / "trunc.tar").write_bytes(data[: len(data) - 100_000])
    res = extract_package(tmp_path / "trunc.tar", tmp_path / "o1")
    assert "paper.tex" in res.files and res.errors and "truncated" in res.errors[0]
    r = ingest_package(tmp_path / "trunc.tar", tmp_path / "work")
    assert r["outcome"] == "partial" and r["counts"]["rasterised_with_caption"] == 1
    (tmp_path / "trunc.tar.gz").write_bytes(gzip.compress(data)[:3000])
    assert ingest_package(tmp_path / "trunc.tar.gz", tmp_path / "work")["outcome"] in ("partial", "rejected")
    (tmp_path / "empty.tar.gz").write_bytes(b"")
    r = ingest_package(tmp_path / "empty.tar.gz", tmp_path / "work")
    assert r["outcome"] == "rejected" and "empty file" in r["reasons"][0]
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04" + os.urandom(200))
    r = ingest_package(tmp_path / "junk.zip", tmp_path / "work")
    assert r["outcome"] == "rejected" and "zip" in r["reasons"][0]


def test_decompression_bomb_limits(tmp_path: Path) -> None:
    limits = ExtractLimits(max_total_bytes=5_000_000, max_members=50, max_depth=2)
    # bytes: 50 MB of zeros in a 50 kB gzip
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as t:
        i = _info("zeros.tex")
        i.size = 50_000_000

        class Zeros(io.RawIOBase):
            left = 50_000_000

            def readinto(self, b):  # type: ignore[no-untyped-def]
                n = min(len(b), self.left)
                b[:n] = bytes(n)
                self.left -= n
                return n

        t.addfile(i, Zeros())
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ExtractError, match="decompression bomb|limit"):
        extract_package(bomb, tmp_path / "o1", limits)
    assert list((tmp_path / "o1").iterdir()) == []  # what was written is removed
    r = ingest_package(bomb, tmp_path / "work", IngestLimits(extract=limits))
    assert r["outcome"] == "rejected"
    # gzip of a single huge file
    gz = tmp_path / "single.gz"
    gz.write_bytes(gzip.compress(bytes(20_000_000)))
    with pytest.raises(ExtractError, match="decompression bomb"):
        extract_package(gz, tmp_path / "o2", limits)
    # member count
    many = _tar(tmp_path / "many.tar", [(_info(f"f{i}.txt"), b"x") for i in range(200)])
    with pytest.raises(ExtractError, match="archive members"):
        extract_package(many, tmp_path / "o3", limits)
    # nesting depth: tar in tar in tar
    inner = _tar(tmp_path / "l3.tar", [(_info("deep.tex"), TEX)]).read_bytes()
    mid = _tar(tmp_path / "l2.tar", [(_info("l3.tar"), inner)]).read_bytes()
    outer = _tar(tmp_path / "l1.tar", [(_info("paper.tex"), TEX), (_info("l2.tar"), mid)])
    res = extract_package(outer, tmp_path / "o4", limits)
    assert any("nested deeper" in s["reason"] for s in res.skipped)
    assert "deep.tex" not in res.files
    # image pixels: a PNG whose header claims 30000 x 30000
    png = bytearray(_png(8, 8))
    import struct
    import zlib

    png[16:24] = struct.pack(">II", 30000, 30000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])) & 0xFFFFFFFF)
    pk = _tar(tmp_path / "pixels.tar", [(_info("paper.tex"), TEX), (_info("fig.png"), bytes(png))])
    r = ingest_package(pk, tmp_path / "work", IngestLimits(image=ImageLimits(max_pixels=10_000_000)))
    assert r["outcome"] == "partial" and any("decompression bomb" in x for x in r["reasons"])


def test_bulk_archive_and_old_style_ids(tmp_path: Path) -> None:
    from imagemesh.ingest.sources.base import SourceProblem
    from imagemesh.ingest.sources.arxiv_src.ingest import expand_sources

    paper = _tar(tmp_path / "p.tar", [(_info("paper.tex"), TEX), (_info("fig.png"), _png())]).read_bytes()
    bulk = _tar(tmp_path / "arXiv_src_0901_001.tar", [
        (_info("0901/0901.0001.gz"), gzip.compress(paper)),
        (_info("0901/hep-th0901002.gz"), gzip.compress(TEX)),
        (_info("0901/../../evil.gz"), b"x"),
    ])
    problems: list[SourceProblem] = []
    pkgs = expand_sources([bulk], tmp_path / "work", problems)
    assert [n for _, n in pkgs] == ["arXiv_src_0901_001.tar:0901/0901.0001.gz", "arXiv_src_0901_001.tar:0901/hep-th0901002.gz"]
    assert problems and "'..'" in problems[0].reason
    r1 = ingest_package(pkgs[0][0], tmp_path / "work")
    assert r1["outcome"] == "ok" and r1["images"][0]["key"] == "0901.0001/fig1"
    assert arxiv_id_from_name("hep-th0701002.gz").id == "hep-th/0701002"
    assert arxiv_id_from_name("hep-th0901002.gz") is None  # old-style ids end with 0703 (arXiv identifier scheme)
    assert arxiv_id_from_name("math.GT0309136v2.tar.gz").id == "math.GT/0309136"
    assert arxiv_id_from_name("2306.01841v1.tar.gz").version == 1
    assert arxiv_id_from_name("upload4.gz") is None
    pdf = tmp_path / "0901.0003.gz"
    pdf.write_bytes(gzip.compress((EPS / "minimal.pdf").read_bytes() if EPS.is_dir() else b"%PDF-1.4\n%%EOF"))
    r = ingest_package(pdf, tmp_path / "work")
    assert r["outcome"] == "rejected" and "PDF-only" in r["reasons"][0] and r["arxiv_id"] == "0901.0003"


# -- LaTeX -----------------------------------------------------------------------------------


def test_latex_figures_subfigures_inputs_and_paths() -> None:
    main = r"""
\documentclass{article}
\newcommand{\Ham}{\mathcal{H}}
\graphicspath{{figs/}{img/}}
\title{A {\em Title} with $\alpha$}
\author{Ada Lovelace \and Alan Turing}
\begin{document}
\begin{abstract} We study $x^2$. \end{abstract}
% \includegraphics{commented}
\input{sections/results}
\begin{figure*}[t]
  \centering
  \subfloat[Left panel]{\includegraphics[width=.4\textwidth]{left}}
  \subfloat[Right]{\resizebox{2cm}{!}{\includegraphics{Right.PNG}}}
  \caption[short]{Two panels of $\Ham$ with {nested {braces}} and 50\% more.}\label{fig:two}
\end{figure*}
\begin{wrapfigure}{r}{0.4\textwidth}\includegraphics{wrap}\end{wrapfigure}
\includegraphics{logo}
\end{document}
"""
    results = r"""\begin{figure}
\begin{subfigure}{.5\linewidth}\includegraphics{a.eps}\caption{sub a}\end{subfigure}
\begin{subfigure}{.5\linewidth}\includegraphics{b}\caption{sub b}\end{subfigure}
\caption{Results.}\label{fig:res}
\end{figure}"""
    sources = {"main.tex": strip_comments(main), "sections/results.tex": strip_comments(results)}
    assert find_main_files(sources) == ["main.tex"]
    text, used, problems = expand_inputs("main.tex", sources)
    assert used == ["main.tex", "sections/results.tex"] and problems == []
    doc = parse_document(text)
    assert doc.title == "A Title with α" and doc.authors == ["Ada Lovelace", "Alan Turing"] and doc.abstract == "We study x^2."
    assert doc.graphicspath == ["figs/", "img/"]
    g = [(x.name, x.figure, x.subfigure, x.caption, x.subcaption, x.label) for x in doc.graphics]
    assert g == [
        ("a.eps", 1, 1, "Results.", "sub a", "fig:res"),
        ("b", 1, 2, "Results.", "sub b", "fig:res"),
        ("left", 2, 1, "Two panels of ℋ with nested braces and 50% more.", "Left panel", "fig:two"),
        ("Right.PNG", 2, 2, "Two panels of ℋ with nested braces and 50% more.", "Right", "fig:two"),
        ("wrap", 3, None, None, None, None),
        ("logo", None, None, None, None, None),
    ]
    files = ["figs/left.pdf", "img/right.png", "a.pdf", "b.jpg", "b.eps", "other/wrap.eps"]
    assert resolve_graphic("left", "", doc.graphicspath, files) == ("figs/left.pdf", "extension")
    assert resolve_graphic("Right.PNG", "", doc.graphicspath, files) == ("img/right.png", "case")
    assert resolve_graphic("a.eps", "", [], files) == ("a.pdf", "extension")  # shipped converted, as pdflatex would need
    assert resolve_graphic("b", "", [], files) == ("b.jpg", "extension")  # .jpg before .eps
    assert resolve_graphic("wrap", "", [], files) == ("other/wrap.eps", "basename")
    assert resolve_graphic("../../etc/passwd", "", [], files)[0] is None
    assert resolve_graphic("/etc/passwd", "", [], files) == (None, "absolute path")


def test_input_cycles_and_missing_files() -> None:
    sources = {"a.tex": r"\documentclass{x}\input{b}", "b.tex": r"\input{a}\include{missing}\input{../../etc/passwd}"}
    text, used, problems = expand_inputs("a.tex", sources)
    assert used == ["a.tex", "b.tex"]
    assert any("cycle" in p for p in problems) and any("missing" in p for p in problems)


def test_non_utf8_latex(tmp_path: Path) -> None:
    tex = "\\documentclass{article}\\title{Caf\u00e9 na\u00efve}\\begin{document}\\begin{figure}\\includegraphics{fig}" \
          "\\caption{R\u00e9sultats \u00e0 $T=0$}\\end{figure}\\end{document}".encode("latin-1")
    assert decode_tex(tex) == (tex.decode("latin-1"), "latin-1")
    assert decode_tex("é".encode())[1] == "utf-8"
    pkg = _tar(tmp_path / "latin1.tar", [(_info("paper.tex"), tex), (_info("fig.png"), _png())])
    r = ingest_package(pkg, tmp_path / "work")
    assert r["outcome"] == "ok" and r["encoding"] == ["latin-1"]
    assert r["images"][0]["caption"] == "Résultats à T=0" and r["latex"]["title"] == "Café naïve"


# -- metadata --------------------------------------------------------------------------------


@needs_shared
def test_abs_records_and_merge() -> None:
    recs, problems = read_metadata([ABS])
    assert problems == [] and len(recs) == 1001
    r = recs["0704.0001"]
    assert r.title.startswith("Calculation of prompt diphoton") and r.authors_list[0] == "C. Balázs"
    assert r.category == "hep-ph" and r.archive == "hep-ph" and r.year == 2007
    md = merge_record({"caption": "c"}, r, {"title": "from latex", "authors": ["X"]})
    assert md["title"] == r.title and md["categories"] == ["hep-ph"] and md["caption"] == "c"
    md = merge_record({}, None, {"title": "from latex", "authors": ["X", "Y"], "abstract": "abs"})
    assert md["title"] == "from latex" and md["authors"] == "X, Y" and md["authors_list"] == ["X", "Y"] and md.get("category") is None
    snap = SHARED / "arxiv-metadata" / "arxiv-metadata-oai-snapshot.sample.jsonl"
    recs2, _ = read_metadata([snap])
    assert recs2["0704.0001"].category == "hep-ph"


# -- the whole ingest: CLI, append, kill and resume ------------------------------------------

SUBSET = ["upload6.tgz", "sampleB_ps.tar.gz", "with__MACOSX_hidden.tar.gz", "Upload9BadFileNames.tar.gz",
          "upload-nested-zip-and-tar.zip", "1801.03879-1.tar.gz", "relative_path.tar.gz", "upload1.tar.gz", "gzipped.gz"]


def _ingest_cmd(src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "imagemesh.cli", "ingest", "arxiv", str(src), "--out", str(out), "--workers", "2",
            "--embeddings", "raw", "--backend", "exact", "--pca-dim", "8", "--quiet", *extra]


def _snapshot(out: Path) -> tuple[list[str], np.ndarray, list[dict]]:
    import imagemesh

    c = imagemesh.open(out)
    keys = c.image_keys()
    rows = [c.get(i) for i in range(len(keys))]
    return keys, np.asarray(c.vectors("raw")), rows


@needs_shared
@needs_gs
def test_cli_ingest_kill_resume_and_append(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for n in SUBSET:
        shutil.copy(SRC / n, src / n)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    from imagemesh.ingest.build import BuildOptions
    from imagemesh.ingest.sources.arxiv_src.ingest import ingest_arxiv

    opts = BuildOptions(embeddings=["raw"], backend="exact", pca_dim=8, progress=False)
    # uninterrupted (in-process, one worker)
    full = tmp_path / "full"
    rep = ingest_arxiv([src], full, metadata_files=[ABS], workers=1, build_options=opts, progress=False)
    report = json.loads((full / "ingest-report.json").read_text())
    assert report["counts"] == rep.counts
    assert {x["package"]: x["outcome"] for x in report["packages"]}["relative_path.tar.gz"] == "rejected"
    # killed after some packages were done, then resumed
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_ingest_cmd(src, killed, "--metadata", str(ABS)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list((killed / ".ingest" / "packages").glob("*.json"))) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = len(list((killed / ".ingest" / "packages").glob("*.json")))
    assert 3 <= n_done < len(SUBSET), n_done
    assert not (killed / "manifest.json").exists()
    time.sleep(0.5)  # orphaned workers (if any) finish or die
    p = subprocess.run(_ingest_cmd(src, killed, "--metadata", str(ABS)), capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "0811.1787" in p.stdout and "rejected" in p.stdout
    k1, v1, r1 = _snapshot(full)
    k2, v2, r2 = _snapshot(killed)
    assert k1 == k2 and len(k1) == 26
    np.testing.assert_array_equal(v1, v2)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("build_id",)} for r in rows]  # noqa: E731
    assert strip(r1) == strip(r2)
    # append: a new package keeps every existing row id
    ingest_arxiv([SRC / "1602.00123.tar"], full, workers=1, build_options=opts, progress=False)
    k3, v3, r3 = _snapshot(full)
    assert len(k3) == len(k1) + 4
    old = {r["image_key"]: r["row_id"] for r in r1}
    assert all(old[r["image_key"]] == r["row_id"] for r in r3 if r["image_key"] in old)  # existing row ids kept
    import imagemesh

    c = imagemesh.open(full)
    row = c.get("1602.00123/fig1")
    assert row["caption"].startswith("(Color online). (a) Temperature dependence")
    assert row["title"].startswith("Unconventional high-energy-state") and row["year"] == 2016
    assert c.count({"unreferenced": 1}) == 5
