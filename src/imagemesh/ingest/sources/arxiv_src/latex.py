"""LaTeX side of an arXiv source package: figures, graphics and captions (files, ``\\input`` and
graphic lookup: :mod:`imagemesh.ingest.sources.arxiv_src.texfiles`).

Parsing uses pylatexenc (a maintained LaTeX parser) for figure bodies and for turning
captions into plain text (math kept readable: ``$\\alpha_1$`` -> ``α_1``). Around it,
small text passes that pylatexenc does not do: comment stripping, ``\\input``/
``\\include``/``\\import`` inlining, ``\\graphicspath``, zero-argument ``\\newcommand``/
``\\def`` expansion in captions, and the "Figure captions:" lists of journal-style
submissions (used when a figure's own ``\\caption`` is empty).

Figures are numbered in document order of the float environments (``figure``,
``figure*``, ``wrapfigure``, ``SCfigure``, ``sidewaysfigure``, ...), which is LaTeX's own
numbering whenever every figure has a caption. Each graphic inside a figure with more
than one graphic gets a sub-figure index (1, 2, ...), and the caption of its
``\\subfigure``/``\\subfloat``/``subfigure`` environment/``minipage`` if it has one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from pylatexenc import latexwalker as lw
from pylatexenc import macrospec as ms
from pylatexenc.latex2text import LatexNodes2Text

__all__ = [
    "GraphicRef",
    "LatexDocument",
    "parse_document",
    "latex_to_text",
]

FIGURE_ENVS = ("figure", "figure*", "wrapfigure", "wrapfigure*", "SCfigure", "SCfigure*", "sidewaysfigure",
               "sidewaysfigure*", "floatingfigure", "figwindow", "subfigure*")
SUB_ENVS = ("subfigure", "minipage", "subfloat")

_GRAPHIC_MACROS = {"includegraphics", "epsfig", "psfig", "epsfbox", "epsffile", "plotone", "plottwo", "includegraphic"}
_FIG_BEGIN = re.compile(r"\\begin\s*\{(" + "|".join(re.escape(e) for e in FIGURE_ENVS if not e.startswith("sub")) + r")\}")
_GRAPHICSPATH = re.compile(r"\\graphicspath\s*\{((?:\s*\{[^{}]*\}\s*)+)\}")
_OUTSIDE_GRAPHIC = re.compile(
    r"\\(includegraphics\*?|epsfbox|epsffile|plotone)\s*(?:\[[^\]]*\]\s*)*\{([^{}]+)\}"
    r"|\\(epsfig|psfig)\s*\{[^{}]*?(?:figure|file)\s*=\s*([^,}\s]+)"
)


def _context_db() -> ms.LatexContextDb:
    db = lw.get_default_latex_context_db()
    db.add_context_category(
        "imagemesh-figures",
        prepend=True,
        macros=[
            ms.MacroSpec("caption", "*[{"),
            ms.MacroSpec("captionof", "*{[{"),
            ms.MacroSpec("subcaption", "*[{"),
            ms.MacroSpec("subcaptionbox", "*[{[[["),
            ms.MacroSpec("subfigure", "[[{"),
            ms.MacroSpec("subfloat", "[[{"),
            ms.MacroSpec("sidesubfloat", "[[{"),
            ms.MacroSpec("includegraphics", "*[[{"),
            ms.MacroSpec("epsfig", "{"),
            ms.MacroSpec("psfig", "{"),
            ms.MacroSpec("epsfbox", "[{"),
            ms.MacroSpec("epsffile", "[{"),
            ms.MacroSpec("plotone", "{"),
            ms.MacroSpec("plottwo", "{{"),
            ms.MacroSpec("label", "{"),
            ms.MacroSpec("resizebox", "*{{{"),
            ms.MacroSpec("scalebox", "{[{"),
            ms.MacroSpec("rotatebox", "[{{"),
        ],
        environments=[
            ms.EnvironmentSpec("subfigure", "[[{"),
            ms.EnvironmentSpec("minipage", "[[[{"),
            ms.EnvironmentSpec("wrapfigure", "[{[{"),
            ms.EnvironmentSpec("wrapfigure*", "[{[{"),
        ],
    )
    return db


_DB: ms.LatexContextDb | None = None
_L2T: LatexNodes2Text | None = None


def _db() -> ms.LatexContextDb:
    global _DB
    if _DB is None:
        _DB = _context_db()
    return _DB


def _balanced(text: str, i: int) -> tuple[str, int] | None:
    """Content of the brace group starting at ``text[i] == '{'`` and the index after it."""
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    j = i
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], j + 1
        j += 1
    return None


@dataclass
class GraphicRef:
    """One graphic referenced by the LaTeX source.

    ``figure``: ordinal of its float environment (None outside figures);
    ``subfigure``: 1-based index among the graphics of that figure (None if it is the only one).
    """

    name: str
    figure: int | None
    subfigure: int | None = None
    caption: str | None = None
    subcaption: str | None = None
    label: str | None = None
    command: str = "includegraphics"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class LatexDocument:
    """What :func:`parse_document` found."""

    graphics: list[GraphicRef] = field(default_factory=list)
    graphicspath: list[str] = field(default_factory=list)
    n_figures: int = 0
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    abstract: str | None = None
    problems: list[str] = field(default_factory=list)


def _macros(text: str) -> dict[str, str]:
    """Zero-argument ``\\newcommand``/``\\renewcommand``/``\\def`` definitions."""
    out: dict[str, str] = {}
    for m in re.finditer(r"\\(?:re)?newcommand\*?\s*\{?\\([A-Za-z]+)\}?\s*(?=\{)", text):
        g = _balanced(text, m.end())
        if g is not None and len(g[0]) < 500:
            out.setdefault(m.group(1), g[0])
    for m in re.finditer(r"\\def\s*\\([A-Za-z]+)\s*(?=\{)", text):
        g = _balanced(text, m.end())
        if g is not None and len(g[0]) < 500:
            out.setdefault(m.group(1), g[0])
    return out


def _expand_macros(s: str, macros: dict[str, str]) -> str:
    if not macros:
        return s
    pat = re.compile(r"\\(" + "|".join(sorted(map(re.escape, macros), key=len, reverse=True)) + r")(?![A-Za-z])")
    for _ in range(3):
        new = pat.sub(lambda m: macros[m.group(1)], s)
        if new == s:
            break
        s = new
    return s


def latex_to_text(s: str, macros: dict[str, str] | None = None) -> str:
    """LaTeX fragment -> one line of plain text (math converted to readable Unicode)."""
    global _L2T
    if _L2T is None:
        _L2T = LatexNodes2Text(math_mode="text", strict_latex_spaces=False)
    s = _expand_macros(s, macros or {})
    s = re.sub(r"\\label\s*\{[^{}]*\}", "", s)
    try:
        text = _L2T.latex_to_text(s, tolerant_parsing=True)
    except Exception:  # pylatexenc on hostile input: fall back to the source text
        text = re.sub(r"\\[A-Za-z]+\*?", " ", s).replace("{", "").replace("}", "")
    return " ".join(text.replace("\xa0", " ").split())


def _verbatim(node: Any) -> str:
    if node is None:
        return ""
    if isinstance(node, lw.LatexGroupNode):
        return "".join(n.latex_verbatim() for n in node.nodelist)
    return node.latex_verbatim()


def _args(node: Any) -> list[Any]:
    d = getattr(node, "nodeargd", None)
    return list(d.argnlist) if d is not None and d.argnlist else []


def _graphic_names(node: lw.LatexMacroNode) -> list[str]:
    name = node.macroname
    args = _args(node)
    if name in ("epsfig", "psfig"):
        spec = _verbatim(args[0]) if args else ""
        m = re.search(r"(?:figure|file)\s*=\s*([^,]+)", spec)
        return [m.group(1).strip()] if m else []
    if name == "plottwo":
        return [_verbatim(a).strip() for a in args[:2] if a is not None]
    if not args or args[-1] is None:
        return []
    return [_verbatim(args[-1]).strip()]


class _Fig:
    def __init__(self, number: int | None) -> None:
        self.number = number
        # (name, command, sub-figure slot: a one-element list holding its caption, or None)
        self.items: list[tuple[str, str, list[str | None] | None]] = []
        self.caption: str | None = None
        self.label: str | None = None


def _walk(nodes: Iterable[Any], fig: _Fig, sub: list[str | None] | None) -> None:
    for n in nodes:
        if n is None:
            continue
        if isinstance(n, lw.LatexMacroNode):
            name = n.macroname
            args = _args(n)
            if name in _GRAPHIC_MACROS:
                for g in _graphic_names(n):
                    if g:
                        fig.items.append((g, name, sub))
                continue
            if name in ("caption", "subcaption", "captionof"):
                cap = _verbatim(args[-1]) if args and args[-1] is not None else ""
                if sub is not None:
                    if sub[0] is None:
                        sub[0] = cap
                elif fig.caption is None:
                    fig.caption = cap
                continue
            if name == "label":
                if fig.label is None and sub is None and args and args[0] is not None:
                    fig.label = _verbatim(args[0]).strip()
                continue
            if name in ("subfigure", "subfloat", "sidesubfloat", "subcaptionbox"):
                if name == "subcaptionbox":
                    cap_arg = args[1] if len(args) > 1 else None
                    body = args[-1] if args else None
                else:
                    cap_arg = args[1] if len(args) > 1 and args[1] is not None else (args[0] if args else None)
                    body = args[-1] if args else None
                slot: list[str | None] = [_verbatim(cap_arg) if cap_arg is not None else None]
                if body is not None:
                    _walk(body.nodelist if isinstance(body, lw.LatexGroupNode) else [body], fig, slot)
                continue
            for a in args:  # \resizebox{..}{..}{\includegraphics{..}}, \centerline{...}
                if a is not None:
                    _walk(a.nodelist if isinstance(a, lw.LatexGroupNode) else [a], fig, sub)
            continue
        if isinstance(n, lw.LatexEnvironmentNode):
            if n.environmentname in SUB_ENVS:
                _walk(n.nodelist, fig, [None])
            else:
                _walk(n.nodelist, fig, sub)
            continue
        if isinstance(n, (lw.LatexGroupNode, lw.LatexMathNode)):
            _walk(n.nodelist, fig, sub)


def _env_end(text: str, name: str, start: int) -> int:
    """Index just after the ``\\end{name}`` matching a ``\\begin{name}`` before ``start``."""
    pat = re.compile(r"\\(begin|end)\s*\{" + re.escape(name) + r"\}")
    depth = 1
    for m in pat.finditer(text, start):
        depth += 1 if m.group(1) == "begin" else -1
        if depth == 0:
            return m.end()
    return len(text)


_CAPTION_LIST = re.compile(r"(?:^|\n)[ \t]*(?:\\noindent\s*)?(?:\\(?:textbf|bf|it)\s*\{?\s*)?(?:Fig\.|FIG\.|Figure|FIGURE)\s*~?(\d{1,3})\s*\}?\s*[:.]\s*(.+?)(?=\n[ \t]*\n|\\end\{document\}|$)", re.S)


def parse_document(text: str) -> LatexDocument:
    """Find graphics, their figures, captions and labels, and the front matter in
    (comment-stripped, input-expanded) LaTeX ``text``."""
    doc = LatexDocument()
    macros = _macros(text)
    body_start = text.find("\\begin{document}")
    for m in _GRAPHICSPATH.finditer(text):
        doc.graphicspath.extend(p.strip() for p in re.findall(r"\{([^{}]*)\}", m.group(1)) if p.strip())
    caption_list = {int(m.group(1)): m.group(2) for m in _CAPTION_LIST.finditer(text[max(body_start, 0):])}

    pos = 0
    figure_no = 0
    outside: list[str] = []
    while True:
        begin = _FIG_BEGIN.search(text, pos)
        chunk_end = begin.start() if begin else len(text)
        outside.append(text[pos:chunk_end])
        if not begin:
            break
        end = _env_end(text, begin.group(1), begin.end())
        figure_no += 1
        fig = _Fig(figure_no)
        try:
            w = lw.LatexWalker(text[begin.start():end], latex_context=_db(), tolerant_parsing=True)
            nodes, _, _ = w.get_latex_nodes()
            _walk(nodes, fig, None)
        except Exception as e:  # pragma: no cover - pylatexenc is tolerant; keep going
            doc.problems.append(f"figure {figure_no}: cannot parse: {type(e).__name__}: {e}")
        cap = latex_to_text(fig.caption, macros) if fig.caption is not None else ""
        if not cap and figure_no in caption_list:
            cap = latex_to_text(caption_list[figure_no], macros)
        k = len(fig.items)
        for i, (name, cmd, slot) in enumerate(fig.items, 1):
            sc = latex_to_text(slot[0], macros) if slot and slot[0] else None
            doc.graphics.append(GraphicRef(
                name=name, figure=figure_no, subfigure=i if k > 1 else None,
                caption=cap or sc or None, subcaption=sc or None, label=fig.label, command=cmd,
            ))
        pos = end
    doc.n_figures = figure_no
    # graphics outside float environments (title-page logos, inline plots): no figure, no caption
    for chunk in outside:
        for g in _OUTSIDE_GRAPHIC.finditer(chunk):
            name = (g.group(2) or g.group(4) or "").strip()
            if name:
                doc.graphics.append(GraphicRef(name=name, figure=None, command=(g.group(1) or g.group(3)).rstrip("*")))

    t = re.search(r"\\title\s*(?:\[[^\]]*\])?\s*(?=\{)", text)
    if t:
        body = _balanced(text, t.end())
        if body:
            doc.title = latex_to_text(re.sub(r"\\(thanks|footnote)\s*\{[^{}]*\}", "", body[0]), macros) or None
    for a in re.finditer(r"\\author\s*(?:\[[^\]]*\])?\s*(?=\{)", text):
        body = _balanced(text, a.end())
        if body:
            raw = re.sub(r"\\(thanks|footnote|email|affiliation|inst|IEEEauthorrefmark)\s*\{[^{}]*\}", "", body[0])
            for part in re.split(r"\\and\b|\\\\|,\s*and\s+|\s+and\s+|,", raw):
                name = latex_to_text(part, macros).strip(" ,;*")
                if name and len(name) < 100 and name not in doc.authors:
                    doc.authors.append(name)
    ab = re.search(r"\\begin\s*\{abstract\}(.*?)\\end\s*\{abstract\}", text, re.S)
    if ab:
        doc.abstract = latex_to_text(ab.group(1), macros) or None
    else:
        ab2 = re.search(r"\\abstract\s*(?=\{)", text)
        if ab2:
            body = _balanced(text, ab2.end())
            if body:
                doc.abstract = latex_to_text(body[0], macros) or None
    return doc


