"""Failure classes found on the real-world fidelity corpus (``tests/data/fidelity``, issue 13):
EPS figures that never call ``showpage``, white margins around vector figures, caption text
(font macros, cross-references, braced macro names, labelled arrows, siunitx), figure
numbering that follows LaTeX's counter, and graphics that are no references (macro parameters,
verbatim examples). Inputs are minimal hand-written LaTeX/EPS/PDF."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from imagemesh.ingest.sources.arxiv_src.latex import LatexDocument, latex_to_text, parse_document, resolve_refs
from imagemesh.ingest.sources.arxiv_src.package import IngestLimits, ingest_package, rasterise, trim_margins
from imagemesh.ingest.sources.arxiv_src.texfiles import hide_untypeset, strip_comments
from imagemesh.media.ghostscript import rasterise_postscript

from .conftest import tar_package

needs_gs = pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript (gs) not installed")


def _png(size: tuple[int, int] = (40, 20)) -> bytes:
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).rectangle((0, 0, size[0] - 1, size[1] - 1), fill="navy")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _doc(body: str, preamble: str = "") -> LatexDocument:
    return parse_document(strip_comments("\\documentclass{article}\n" + preamble + "\n\\begin{document}\n" + body + "\n\\end{document}\n"))


def _ink_box(img: Image.Image) -> tuple[int, int, int, int] | None:
    return img.convert("L").point(lambda v: 255 if v < 245 else 0).getbbox()


def _ink_fraction(img: Image.Image) -> float:
    box = _ink_box(img)
    assert box is not None, "blank image"
    return (box[2] - box[0]) * (box[3] - box[1]) / (img.width * img.height)


# -- 1. EPS that never calls showpage ---------------------------------------------------------------

#: REVTeX's sample figures (and many EPS exports) draw and stop: the including document shows the page
NO_SHOWPAGE = b"""%!PS-Adobe-2.0 EPSF-2.0
%%BoundingBox: 0 0 200 100
%%EndComments
newpath 10 10 moveto 190 90 lineto 8 setlinewidth 0 0 1 setrgbcolor stroke
20 60 moveto 180 60 lineto stroke
%%EOF
"""


@needs_gs
def test_eps_without_showpage_is_rendered(tmp_path: Path) -> None:
    img = rasterise_postscript(NO_SHOWPAGE, work=tmp_path)
    assert max(img.size) == 1024 and _ink_box(img) is not None  # Ghostscript alone outputs nothing
    # a file that disables showpage (as EPS-including wrappers do) still gets its page shown
    noop = NO_SHOWPAGE.replace(b"newpath", b"/showpage {} def newpath", 1) + b"showpage\n"
    assert _ink_box(rasterise_postscript(noop, work=tmp_path)) is not None
    # one that shows its page is shown once, unchanged
    shown = NO_SHOWPAGE.replace(b"%%EOF", b"showpage\n%%EOF")
    assert rasterise_postscript(shown, work=tmp_path).tobytes() == img.tobytes()
    assert list(tmp_path.iterdir()) == []


@needs_gs
def test_revtex_style_package_with_showpage_less_eps(tmp_path: Path) -> None:
    tex = r"""\documentclass{revtex4-1}\usepackage{graphicx}\begin{document}
\begin{figure}\includegraphics{fig1}\caption{A sample figure.}\end{figure}\end{document}"""
    r = ingest_package(tar_package(tmp_path / "2101.00009.tar.gz", {"main.tex": tex, "fig1.eps": NO_SHOWPAGE}), tmp_path / "w")
    assert r["outcome"] == "ok", r["reasons"]
    rec = r["images"][0]
    img = Image.open(tmp_path / "w" / rec["png"])
    assert _ink_fraction(img) > 0.8 and rec["caption"] == "A sample figure."


# -- 2. white margins trimmed after rasterising vector figures --------------------------------------


def _letter_pdf(path: Path, box: tuple[int, int, int, int] | None) -> Path:
    """A US-letter page (612 x 792 pt) with a small dark rectangle, as matplotlib saves a figure
    onto a whole page."""
    page = Image.new("RGB", (612, 792), "white")
    if box:
        ImageDraw.Draw(page).rectangle(box, fill=(200, 30, 30), outline="black", width=3)
    page.save(path, format="PDF", resolution=72.0)
    return path


def test_pdf_on_a_whole_page_is_trimmed_to_its_content(tmp_path: Path) -> None:
    pdf = _letter_pdf(tmp_path / "plot.pdf", (100, 500, 300, 600))  # 200 x 100 pt of 612 x 792
    img = rasterise(pdf, IngestLimits(), tmp_path)
    assert max(img.size) <= 1024 and _ink_fraction(img) > 0.85  # was ~4 % of the page
    assert 1.6 < img.width / img.height < 2.2  # the drawing's shape (plus padding), not the page's
    assert max(img.size) > 900  # rendered again at a higher resolution, not just cut out
    # a small padding stays around the content
    box = _ink_box(img)
    assert box is not None and box[0] > 0 and box[1] > 0 and box[2] < img.width and box[3] < img.height


def test_blank_pdf_is_not_trimmed_to_nothing(tmp_path: Path) -> None:
    img = rasterise(_letter_pdf(tmp_path / "blank.pdf", None), IngestLimits(), tmp_path)
    assert max(img.size) == 1024 and abs(img.width / img.height - 612 / 792) < 0.01  # the whole page
    blank = Image.new("RGB", (30, 20), "white")
    assert trim_margins(blank) is blank


def test_trim_keeps_padding_and_near_white_counts_as_paper() -> None:
    img = Image.new("RGB", (400, 300), (252, 252, 252))  # off-white paper
    ImageDraw.Draw(img).rectangle((100, 100, 199, 149), fill="black")
    out = trim_margins(img)
    assert out.size == (104, 54)  # 100 x 50 content + 2 px padding each side
    dot = Image.new("RGB", (50, 50), "white")
    dot.putpixel((0, 0), (0, 0, 0))
    assert trim_margins(dot).size == (3, 3)  # never beyond the image, never empty


def test_raster_figures_keep_their_white_borders(tmp_path: Path) -> None:
    img = Image.new("RGB", (300, 200), "white")
    ImageDraw.Draw(img).rectangle((140, 90, 160, 110), fill="black")
    img.save(tmp_path / "photo.png")
    assert rasterise(tmp_path / "photo.png", IngestLimits(), tmp_path).size == (300, 200)


@needs_gs
def test_eps_with_generous_bounding_box_is_trimmed(tmp_path: Path) -> None:
    eps = tmp_path / "wide.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 600 600\n"
                    b"0 setgray 250 280 moveto 350 280 lineto 350 320 lineto 250 320 lineto closepath fill showpage\n")
    img = rasterise(eps, IngestLimits(), tmp_path)
    assert max(img.size) <= 1024 and _ink_fraction(img) > 0.85
    assert abs(img.width / img.height - 2.5) < 0.2
    assert max(img.size) > 600  # rendered again (at most 4x): 100 pt of a 600 pt box would be 171 px


# -- 3. caption text ----------------------------------------------------------------------------------


def test_font_macros_keep_their_text() -> None:
    assert latex_to_text(r"Produced by \texttt{src/plot\_it.py} in \textsf{Sans} \textsc{Caps} \textrm{roman}.") == \
        "Produced by src/plot_it.py in Sans Caps roman."
    assert latex_to_text(r"$\mathrm{d}x$, $\mathsf{A}\mathtt{B}$, $\operatorname{tr}M$") == "dx, AB, trM"
    assert "x" in latex_to_text(r"$A \xrightarrow{x} B$") and "\u2192" in latex_to_text(r"$A \xrightarrow{x} B$")
    assert latex_to_text(r"Generated by \verb|src/a_b.m|.") == "Generated by src/a_b.m."
    assert latex_to_text(r"at \SIlist{0.8;1.2}{\meter\per\second} and \qty{3}{\kilo\meter}") == "at 0.8 m s^-1 and 1.2 m s^-1 and 3 km"
    assert latex_to_text(r"see \url{https://example.org/a}") == "see https://example.org/a"


def test_references_to_figures_print_their_number() -> None:
    doc = _doc(r"""
\begin{figure}\includegraphics{a}\caption{First; compare \ref{fig:b}, \autoref{fig:b}, \cref{fig:b}, \Cref{fig:b}.}\label{fig:a}\end{figure}
\begin{figure}\includegraphics{b}\caption{Second, like Figure~\ref{fig:a}; see \Cref{sec:method}, \autoref{tab:x}, \ref{sec:y} and \eqref{eq:z}.\label{fig:b}}\end{figure}
""")
    caps = {g.name: g.caption for g in doc.graphics}
    assert caps["a"] == "First; compare 2, Figure 2, fig. 2, Figure 2."
    assert caps["b"] == "Second, like Figure 1; see ??, ??, ?? and (??)."
    assert resolve_refs(r"\Cref{fig:a,fig:b}", {"fig:a": "1", "fig:b": "2"}) == "Figures~1 and 2"


def test_braced_macro_names_and_math_operators_expand() -> None:
    doc = _doc(r"\begin{figure}\includegraphics{a}\caption{The \method{} fit of $\Merit$ by \tool.}\end{figure}",
               preamble=r"\newcommand{{\method}}{Euler} \providecommand{\tool}{gs} \DeclareMathOperator{\Merit}{\mathcal{M}}")
    assert doc.graphics[0].caption == "The Euler fit of \u2133 by gs."


def test_double_braced_graphic_names_resolve(tmp_path: Path) -> None:
    tex = r"""\documentclass{article}\usepackage{graphicx}\begin{document}
\begin{figure}\includegraphics[width=3cm]{{figures/a}}\caption{A.}\end{figure}
\includegraphics{{figures/b}}
\end{document}"""
    r = ingest_package(tar_package(tmp_path / "2101.00010.tar.gz", {"main.tex": tex, "figures/a.png": _png(), "figures/b.png": _png()}), tmp_path / "w")
    assert r["outcome"] == "ok", r["reasons"]
    got = {rec["referenced_as"]: rec["source_file"] for rec in r["images"]}
    assert got == {"figures/a": "figures/a.png", "figures/b": "figures/b.png"}


# -- 4. figure numbering follows LaTeX's counter ----------------------------------------------------


NUMBERING = r"""
\begin{figure}\includegraphics{one}\caption{One.}\label{fig:one}\end{figure}
\begin{figure}\centering\includegraphics{bare}\end{figure}
\begin{figure}\includegraphics{starred}\caption*{Not numbered.}\end{figure}
\begin{figure}
  \begin{minipage}{.48\linewidth}\includegraphics{left}\caption{Left.}\label{fig:left}\end{minipage}\hfill
  \begin{minipage}{.48\linewidth}\includegraphics{right}\caption{Right, after \ref{fig:left}.}\label{fig:right}\end{minipage}
\end{figure}
\begin{figure}
  \begin{subfigure}{.5\linewidth}\includegraphics{sa}\caption{a}\end{subfigure}
  \begin{subfigure}{.5\linewidth}\includegraphics{sb}\caption{b}\end{subfigure}
  \caption{Sub-figures share one number, see \ref{fig:right}.}
\end{figure}
\begin{figure}\includegraphics{p}\caption{P.}\includegraphics{q}\caption{Q.}\end{figure}
"""


def test_numbering_steps_per_counted_caption() -> None:
    doc = _doc(NUMBERING)
    got = [(g.name, g.figure, g.subfigure, g.caption) for g in doc.graphics]
    assert got == [
        ("one", 1, None, "One."),
        ("bare", None, None, None),  # no \caption: no number
        ("starred", None, None, "Not numbered."),  # \caption*: text, no number
        ("left", 2, None, "Left."),
        ("right", 3, None, "Right, after 2."),
        ("sa", 4, 1, "Sub-figures share one number, see 3."),
        ("sb", 4, 2, "Sub-figures share one number, see 3."),
        ("p", 5, None, "P."),
        ("q", 6, None, "Q."),
    ]
    assert doc.n_figures == 6
    assert [g.subcaption for g in doc.graphics if g.name in ("left", "right", "sa")] == [None, None, "a"]


def test_numbering_in_package_keys(tmp_path: Path) -> None:
    names = ["one", "bare", "starred", "left", "right", "sa", "sb", "p", "q"]
    tex = "\\documentclass{article}\\usepackage{graphicx,subcaption}\\begin{document}" + NUMBERING + "\\end{document}"
    r = ingest_package(tar_package(tmp_path / "2101.00011.tar.gz", {"main.tex": tex} | {f"{n}.png": _png() for n in names}), tmp_path / "w")
    keys = {rec["referenced_as"]: rec["key"] for rec in r["images"]}
    assert keys["left"] == "2101.00011/fig2" and keys["right"] == "2101.00011/fig3" and keys["q"] == "2101.00011/fig6"
    assert keys["bare"].startswith("2101.00011/inline") and r["n_figure_envs"] == 6


# -- 5. no "partial" for macro parameters and verbatim examples -------------------------------------


DOCUMENTATION = r"""\documentclass{cas-dc}
\usepackage{graphicx,listings}
\newcommand{\fig}[2]{\begin{figure}\includegraphics[width=\linewidth]{#1}\caption{#2}\end{figure}}
\def\img#1{\includegraphics{#1}}
\lstnewenvironment{latexcode}{}{}
\begin{document}
Use figures like this:
\begin{vquote}
\begin{figure}
  \includegraphics[scale=.75]{Fig1.pdf}
  \caption{The evanescent light.}
\end{figure}
\end{vquote}
\begin{verbatim}
\includegraphics{Fig2.pdf}
\end{verbatim}
\begin{lstlisting}
\includegraphics{Fig3.pdf}
\end{lstlisting}
\begin{latexcode}
\includegraphics{Fig4.pdf}
\end{latexcode}
\verb|\includegraphics{Fig5}| works too.
\fig{real}{A real figure.}
\begin{figure}\includegraphics{shown}\caption{Shown.}\end{figure}
\end{document}
"""


def test_macro_parameters_and_verbatim_graphics_are_no_references(tmp_path: Path) -> None:
    doc = parse_document(strip_comments(DOCUMENTATION))
    assert [(g.name, g.figure) for g in doc.graphics] == [("shown", 1)]
    r = ingest_package(tar_package(tmp_path / "2101.00012.tar.gz", {"doc.tex": DOCUMENTATION, "shown.png": _png()}), tmp_path / "w")
    assert r["outcome"] == "ok", r["reasons"]
    assert [rec["key"] for rec in r["images"]] == ["2101.00012/fig1"]


def test_hide_untypeset_keeps_what_latex_runs() -> None:
    kept = r"\newcommand{\logo}{\includegraphics{logo}} \renewcommand{\figurename}{Fig.} \verb|plain| text"
    assert hide_untypeset(kept) == kept
    both = r"\if@twocolumn\includegraphics[width=\linewidth]{a}\else\includegraphics{a}\fi"
    assert hide_untypeset(both) == r"\includegraphics[width=\linewidth]{a}"


def test_supplement_resets_the_figure_counter() -> None:
    """A supplement that resets the counter and prints "S1" (``\\setcounter{figure}{0}``,
    ``\\renewcommand{\\thefigure}{S\\arabic{figure}}``): its figures are numbered 1, 2, ... again
    and references to them print "S1" (found on a real replication paper of the corpus)."""
    from imagemesh.ingest.sources.arxiv_src.latex import parse_document

    tex = r"""\documentclass{article}\begin{document}
\begin{figure}\includegraphics{a}\caption{One, see Figure~\ref{fig:s1}.}\end{figure}
\begin{figure}\includegraphics{b}\caption{Two.}\end{figure}
\section*{Supplement}\setcounter{figure}{0}\renewcommand{\thefigure}{S\arabic{figure}}
\begin{figure}\includegraphics{c}\caption{Supp one.}\label{fig:s1}\end{figure}
\begin{figure}\includegraphics{d}\caption{Supp two, like \ref{fig:s1}.}\end{figure}
\end{document}"""
    got = {g.name: (g.figure, g.caption) for g in parse_document(tex).graphics}
    assert got == {"a": (1, "One, see Figure S1."), "b": (2, "Two."), "c": (1, "Supp one."), "d": (2, "Supp two, like S1.")}


def test_supplement_defined_in_the_preamble_counts_where_it_is_used() -> None:
    """The counter change may sit in a preamble macro or environment (``\\beginsupplement``,
    ``\\begin{supplement}``): it applies where used, not at the definition."""
    from imagemesh.ingest.sources.arxiv_src.latex import parse_document

    for define, use in [
        (r"\newenvironment{supplement}{\setcounter{figure}{0}\renewcommand{\thefigure}{S\arabic{figure}}}{}", (r"\begin{supplement}", r"\end{supplement}")),
        (r"\newcommand{\beginsupplement}{\setcounter{figure}{0}\renewcommand{\thefigure}{S\arabic{figure}}}", (r"\beginsupplement", "")),
    ]:
        tex = (r"\documentclass{article}" + define + r"\begin{document}"
               r"\begin{figure}\includegraphics{a}\caption{One, see \ref{fig:s1}.}\end{figure}"
               r"\begin{figure}\includegraphics{b}\caption{Two.}\end{figure}" + use[0]
               + r"\begin{figure}\includegraphics{c}\caption{Supp one.}\label{fig:s1}\end{figure}" + use[1] + r"\end{document}")
        got = {g.name: (g.figure, g.caption) for g in parse_document(tex).graphics}
        assert got == {"a": (1, "One, see S1."), "b": (2, "Two."), "c": (1, "Supp one.")}, (define, got)
