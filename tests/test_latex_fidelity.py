"""LaTeX that real arXiv papers use (issue 13): continued floats, link/revision markup and
notes in captions, titles and names, journal/conference front-matter macros, subfiles and
``\\graphicspath`` in an input preamble, sub-captions, and rotated graphics.

Inputs are small hand-written reproductions of patterns found in real papers and in the
templates of the classes concerned (elsarticle, IEEEtran, ICML, authblk, revtex)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from imagemesh.ingest.sources.arxiv_src.latex import LatexDocument, latex_to_text, parse_document, split_author_names
from imagemesh.ingest.sources.arxiv_src.package import ingest_package
from imagemesh.ingest.sources.arxiv_src.texfiles import expand_inputs, find_main_files, resolve_graphic, strip_comments

from .conftest import tar_package


def _png(size: tuple[int, int] = (40, 20), colour: str = "white", marker: str | None = None) -> bytes:
    img = Image.new("RGB", size, colour)
    if marker:  # a block in the top-left corner, to see where the top-left went
        img.paste(Image.new("RGB", (size[0] // 4, size[1] // 4), marker), (0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _parse(main: str, **others: str) -> tuple[LatexDocument, str]:
    sources = {"main.tex": strip_comments(main)} | {k.replace("__", "/") + ".tex": strip_comments(v) for k, v in others.items()}
    text, _used, problems = expand_inputs(find_main_files(sources)[0], sources)
    assert problems == []
    return parse_document(text), text


# -- 1. \ContinuedFloat -------------------------------------------------------------------------

CONTINUED = r"""\documentclass{article}
\usepackage{graphicx,subfig}
\begin{document}
\begin{figure}\includegraphics{setup}\caption{Experimental setup.}\end{figure}
\begin{figure}[p]
  \centering
  \subfloat[$t=0$]{\includegraphics[width=.45\textwidth]{evol_a}}\hfill
  \subfloat[$t=1$]{\includegraphics[width=.45\textwidth]{evol_b}}
  \caption[]{}
  \label{fig:evol}
\end{figure}
\begin{figure}[p]
  \ContinuedFloat
  \centering
  \subfloat[$t=2$]{\includegraphics[width=.45\textwidth]{evol_c}}\hfill
  \subfloat[$t=3$]{\includegraphics[width=.45\textwidth]{evol_d}}
  \caption{Time evolution of the density profile.}
\end{figure}
\begin{figure}[t]
  \begin{subfigure}{.5\linewidth}\includegraphics{loss}\caption{Loss}\end{subfigure}
  \caption{Training curves.}
\end{figure}
\begin{figure}[t]\continuedfloat
  \begin{subfigure}{.5\linewidth}\includegraphics{acc}\caption{Accuracy}\end{subfigure}
  \caption{(continued)}
\end{figure}
\begin{figure}\includegraphics{last}\caption{The last figure.}\end{figure}
\end{document}
"""


def test_continued_float_shares_number_and_caption() -> None:
    doc, _ = _parse(CONTINUED)
    got = [(g.name, g.figure, g.subfigure, g.caption, g.subcaption) for g in doc.graphics]
    evol = "Time evolution of the density profile."
    assert got == [
        ("setup", 1, None, "Experimental setup.", None),
        ("evol_a", 2, 1, evol, "t=0"),
        ("evol_b", 2, 2, evol, "t=1"),
        ("evol_c", 2, 3, evol, "t=2"),
        ("evol_d", 2, 4, evol, "t=3"),
        ("loss", 3, 1, "Training curves.", "Loss"),
        ("acc", 3, 2, "Training curves.", "Accuracy"),  # "(continued)" is no caption of its own
        ("last", 4, None, "The last figure.", None),
    ]
    assert doc.n_figures == 4  # as LaTeX numbers them: a continued float does not step the counter
    assert {g.label for g in doc.graphics if g.figure == 2} == {"fig:evol"}


def test_continued_float_package_keys(tmp_path: Path) -> None:
    names = ["setup", "evol_a", "evol_b", "evol_c", "evol_d", "loss", "acc", "last"]
    pkg = tar_package(tmp_path / "2101.00001.tar.gz", {"main.tex": CONTINUED} | {f"{n}.png": _png() for n in names})
    r = ingest_package(pkg, tmp_path / "work")
    assert r["outcome"] == "ok", r["reasons"]
    keys = {rec["referenced_as"]: (rec["key"], rec["caption"]) for rec in r["images"]}
    assert keys["evol_a"] == ("2101.00001/fig2.1", "Time evolution of the density profile.")
    assert keys["evol_d"] == ("2101.00001/fig2.4", "Time evolution of the density profile.")
    assert keys["last"][0] == "2101.00001/fig4" and r["n_figure_envs"] == 4
    assert r["counts"]["rasterised_with_caption"] == 8


# -- 2. caption, title and author text ------------------------------------------------------------


def test_caption_text_links_revisions_and_logos() -> None:
    doc, _ = _parse(r"""\documentclass{elsarticle}
\usepackage[final]{changes}
\begin{document}
\begin{figure}\includegraphics{f}
\caption{Data from \href{https://data.example.org/run7}{the public archive}; \added[id=kg]{corrected} rates
\replaced[id=ab]{per second}{per minute}\deleted[id=kg]{, preliminary}. Typeset with \LaTeX{} and \TeX.}
\end{figure}
\end{document}""")
    assert doc.graphics[0].caption == "Data from the public archive; corrected rates per second. Typeset with LaTeX and TeX."
    assert latex_to_text(r"\replaced{new}{old} \href[pdfnewwindow]{http://x.org}{link}") == "new link"


def test_author_notes_and_links_removed() -> None:
    doc, _ = _parse(r"""\documentclass[preprint]{elsarticle}
\begin{document}
\begin{frontmatter}
\title{On \LaTeX\ Figures\tnoteref{t1}\thanks{Funded by {NSF} grant 1234.}}
\tnotetext[t1]{This is a note.}
\author[a]{Jane Doe\corref{cor1}\fnref{fn1}}
\author[a,b]{John Q. Public\orcidlink{0000-0002-1825-0097}}
\author[b]{Mary Major\thanks{Also at \href{https://x.org}{X Lab}.}\footnote{Now elsewhere.}}
\cortext[cor1]{Corresponding author}
\address[a]{Department of Physics, Some University}
\end{frontmatter}
\end{document}""")
    assert doc.title == "On LaTeX Figures"
    assert doc.authors == ["Jane Doe", "John Q. Public", "Mary Major"]


# -- 3. class-specific title and author macros ----------------------------------------------------


def test_icml_title_and_authors() -> None:
    doc, _ = _parse(r"""\documentclass{article}
\usepackage{icml2019}
\icmltitlerunning{Short running title}
\begin{document}
\twocolumn[
\icmltitle{Learning to Rank Figures: \\ A Case Study}
\begin{icmlauthorlist}
\icmlauthor{Aeiou Bcd}{equal,goo}
\icmlauthor{Efg Hij-Klm}{equal,ed}
\icmlauthor{Nop Qrs}{goo}
\end{icmlauthorlist}
\icmlaffiliation{goo}{Googol ShallowMind, New London, Michigan, USA}
\icmlaffiliation{ed}{University of Edenborrow, Norwich, UK}
\icmlcorrespondingauthor{Aeiou Bcd}{a@b.com}
]
\end{document}""")
    assert doc.title == "Learning to Rank Figures: A Case Study"
    assert doc.authors == ["Aeiou Bcd", "Efg Hij-Klm", "Nop Qrs"]


def test_ieee_author_blocks() -> None:
    doc, _ = _parse(r"""\documentclass[conference]{IEEEtran}
\begin{document}
\title{Channel Estimation for \\ Massive Arrays}
\author{\IEEEauthorblockN{Anna Virtanen\IEEEauthorrefmark{1}\IEEEauthorrefmark{2},
Duc H. Tran\IEEEauthorrefmark{2}, Pekka Laine\IEEEauthorrefmark{1}, and Ravi K. Shah}
\IEEEauthorblockA{\IEEEauthorrefmark{1}Centre for Wireless Communications, University of Oulu, Finland}
\IEEEauthorblockA{\IEEEauthorrefmark{2}Drexel University, Philadelphia, PA. Email: \{dht, rks\}@drexel.edu}
\and
\IEEEauthorblockN{Lee Park}
\IEEEauthorblockA{Seoul National University\\ Seoul, Korea}}
\maketitle
\end{document}""")
    assert doc.title == "Channel Estimation for Massive Arrays"
    assert doc.authors == ["Anna Virtanen", "Duc H. Tran", "Pekka Laine", "Ravi K. Shah", "Lee Park"]


def test_authblk_and_short_title() -> None:
    doc, _ = _parse(r"""\documentclass{article}
\usepackage{authblk}
\title[Figures in arXiv]{Every Figure, Upright: Fidelity of arXiv Figure Extraction}
\author[1]{Ada Lovelace}
\author[1,2]{Charles Babbage, Jr.}
\author[2]{Mary Somerville}
\affil[1]{Analytical Engines Ltd, London}
\affil[2]{Royal Institution, London, UK}
\begin{document}\maketitle\end{document}""")
    assert doc.title == "Every Figure, Upright: Fidelity of arXiv Figure Extraction"
    assert doc.authors == ["Ada Lovelace", "Charles Babbage, Jr.", "Mary Somerville"]


def test_article_author_lines_and_name_lists() -> None:
    doc, _ = _parse(r"""\documentclass{article}
\title{X}
\author{Alice Smith$^{1}$, Bob Jones (Univ. of A, B and C), and Carl Lee, III \\ $^1$Some Institute, Town \and
Dana Wu \\ Other Lab \\ \texttt{dana@lab.org}}
\begin{document}\end{document}""")
    assert doc.authors == ["Alice Smith", "Bob Jones (Univ. of A, B and C)", "Carl Lee, III", "Dana Wu"]
    assert split_author_names("R. Feynman (Caltech, Pasadena), M. Gell-Mann and J. Smith, Jr.") == [
        "R. Feynman (Caltech, Pasadena)", "M. Gell-Mann", "J. Smith, Jr."]


def test_neurips_jmlr_llncs_author_blocks() -> None:
    neurips, _ = _parse(r"""\documentclass{article}
\title{\bf Deep Nets \\[2mm] \large a case study}
\author{David S.~Hippocampus\thanks{Use footnote for providing further information.} \\
  Department of Computer Science\\ Cranberry-Lemon University\\ \texttt{hippo@cs.cranberry-lemon.edu} \\
  \And Elias D.~Striatum \\ Affiliation \\ \AND Coauthor Three \\ Address}
\begin{document}\end{document}""")
    assert neurips.title == "Deep Nets a case study"
    assert neurips.authors == ["David S. Hippocampus", "Elias D. Striatum", "Coauthor Three"]
    jmlr, _ = _parse(r"""\documentclass{article}
\author{\name Alice Smith \email alice@x.edu \\ \addr Department of Statistics\\ Some University
  \AND \name Bob Jones \email bob@y.edu \\ \addr Other Place}
\begin{document}\end{document}""")
    assert jmlr.authors == ["Alice Smith", "Bob Jones"]
    llncs, _ = _parse(r"""\documentclass{llncs}
\author{Alice Smith\inst{1}\orcidID{0000-1111-2222-3333} \and Bob Jones\inst{2}}
\institute{Some University \and Other Institute}
\begin{document}\end{document}""")
    assert llncs.authors == ["Alice Smith", "Bob Jones"]


# -- 4. \subfile and \graphicspath in an \input preamble --------------------------------------------


def test_subfile_and_graphicspath_in_input_preamble(tmp_path: Path) -> None:
    main = r"""\documentclass{report}
\input{tex/preamble}
\begin{document}
\subfile{chapters/intro}
\end{document}"""
    preamble = r"""\usepackage{graphicx,subfiles}
\graphicspath{{figures/}{\subfix{plots/}}}
\newcommand{\dataset}{ImageNet}"""
    intro = r"""\documentclass[../main]{subfiles}
\graphicspath{{../elsewhere/}}
\begin{document}
\chapter{Introduction}
\begin{figure}\includegraphics{overview}\caption{Overview of \dataset.}\end{figure}
\subfile{intro_details}
\end{document}"""
    details = r"""\documentclass[../main]{subfiles}
\begin{document}
\begin{figure}\includegraphics{loss_curve}\caption{Loss.}\end{figure}
\end{document}"""
    doc, text = _parse(main, tex__preamble=preamble, chapters__intro=intro, chapters__intro_details=details)
    assert doc.graphicspath == ["figures/", "plots/"]  # the part's own preamble is not used when included
    assert text.count("\\begin{document}") == 1
    assert [(g.name, g.figure, g.caption) for g in doc.graphics] == [
        ("overview", 1, "Overview of ImageNet."), ("loss_curve", 2, "Loss.")]
    files = ["figures/overview.pdf", "plots/loss_curve.png", "elsewhere/overview.png"]
    assert resolve_graphic("overview", "", doc.graphicspath, files) == ("figures/overview.pdf", "extension")
    assert resolve_graphic("loss_curve", "", doc.graphicspath, files) == ("plots/loss_curve.png", "extension")

    pkg = tar_package(tmp_path / "2102.00002.tar.gz", {
        "main.tex": main, "tex/preamble.tex": preamble, "chapters/intro.tex": intro,
        "chapters/intro_details.tex": details, "figures/overview.png": _png(), "plots/loss_curve.png": _png(),
    })
    r = ingest_package(pkg, tmp_path / "work")
    assert r["outcome"] == "ok" and r["main_files"] == ["main.tex"], r["reasons"]
    got = {rec["key"]: (rec["source_file"], rec["caption"]) for rec in r["images"]}
    assert got == {"2102.00002/fig1": ("figures/overview.png", "Overview of ImageNet."),
                   "2102.00002/fig2": ("plots/loss_curve.png", "Loss.")}


# -- 5. sub-captions ---------------------------------------------------------------------------------


def test_subcaptionbox_and_subcaption() -> None:
    doc, _ = _parse(r"""\documentclass{article}
\usepackage{subcaption}
\begin{document}
\begin{figure}
  \centering
  \subcaptionbox{Raw input\label{fig:raw}}{\includegraphics[width=.3\linewidth]{raw}}\hfill
  \subcaptionbox[Short]{Denoised}[.3\linewidth][c]{\includegraphics[width=.3\linewidth]{den}}
  \caption{Denoising.}
\end{figure}
\begin{figure}
  \begin{minipage}{.48\linewidth}\centering\includegraphics{left}\subcaption{Left view}\end{minipage}
  \begin{subfigure}[b]{.48\linewidth}\includegraphics{right}\subcaption[R]{Right view}\end{subfigure}
  \caption{Two views.}
\end{figure}
\begin{figure}
  \begin{tabular}{cc}
  \includegraphics{p1} & \includegraphics{p2} \\
  \subcaption{First} & \subcaption{Second}
  \end{tabular}
  \caption{Grid.}
\end{figure}
\begin{figure}
  \includegraphics{q1}\captionof{subfigure}{Before}\hfill\includegraphics{q2}\subcaption{After}
  \caption{In sequence.}
\end{figure}
\end{document}""")
    got = [(g.name, g.figure, g.subfigure, g.caption, g.subcaption) for g in doc.graphics]
    assert got == [
        ("raw", 1, 1, "Denoising.", "Raw input"),
        ("den", 1, 2, "Denoising.", "Denoised"),
        ("left", 2, 1, "Two views.", "Left view"),
        ("right", 2, 2, "Two views.", "Right view"),
        ("p1", 3, 1, "Grid.", "First"),
        ("p2", 3, 2, "Grid.", "Second"),
        ("q1", 4, 1, "In sequence.", "Before"),
        ("q2", 4, 2, "In sequence.", "After"),
    ]


# -- 6. orientation ---------------------------------------------------------------------------------


def test_rotation_recorded() -> None:
    doc, _ = _parse(r"""\documentclass{article}
\usepackage{graphicx,rotating,epsfig}
\begin{document}
\begin{figure}\includegraphics[angle=90,width=.8\textwidth]{a}\caption{A.}\end{figure}
\begin{figure}\includegraphics[origin=c,angle=-90]{b}\caption{B.}\end{figure}
\begin{figure}\rotatebox[origin=c]{90}{\includegraphics[width=5cm]{c}}\caption{C.}\end{figure}
\begin{sidewaysfigure}\includegraphics{d}\caption{D, a wide table-like plot.}\end{sidewaysfigure}
\begin{figure}\centerline{\epsfig{file=e.eps,width=8cm,angle=270}}\caption{E.}\end{figure}
\begin{figure}\begin{sideways}\includegraphics{f}\end{sideways}\caption{F.}\end{figure}
\begin{figure}\includegraphics[bb=0 0 100 100]{g}\caption{G.}\end{figure}
\begin{figure}\vspace{6cm}\special{psfile=h.ps hoffset=-20 voffset=250 hscale=45 vscale=45 angle=-90}\caption{H.}\end{figure}
\includegraphics[angle=180]{inline}
\end{document}""")
    got = {g.name: (g.rotate, g.float_rotate) for g in doc.graphics}
    assert got == {"a": (90, 0), "b": (270, 0), "c": (90, 0), "d": (0, 90), "e.eps": (270, 0), "f": (90, 0),
                   "g": (0, 0), "h.ps": (270, 0), "inline": (180, 0)}


def test_landscape_plot_included_with_angle_comes_out_portrait(tmp_path: Path) -> None:
    main = r"""\documentclass{article}
\usepackage{graphicx}
\begin{document}
\begin{figure}\centering\includegraphics[angle=90,width=.5\textwidth]{spectrum}\caption{Spectrum.}\end{figure}
\begin{figure}\centering\includegraphics{spectrum}\caption{The same, unrotated.}\end{figure}
\end{document}"""
    pkg = tar_package(tmp_path / "2103.00003.tar.gz", {"main.tex": main, "spectrum.png": _png((200, 100), marker="red")})
    work = tmp_path / "work"
    r = ingest_package(pkg, work)
    assert r["outcome"] == "ok", r["reasons"]
    rot, plain = r["images"][0], r["images"][1]
    assert rot["rotate"] == 90 and "rotate" not in plain
    assert rot["size"] == [100, 200] and plain["size"] == [200, 100]
    img = Image.open(work / rot["png"]).convert("RGB")
    assert img.height > img.width
    # turned counterclockwise: the top-left corner (red) is now bottom-left
    assert img.getpixel((5, img.height - 5)) == (255, 0, 0) and img.getpixel((5, 5)) == (255, 255, 255)
    assert Image.open(work / plain["png"]).convert("RGB").getpixel((5, 5)) == (255, 0, 0)
