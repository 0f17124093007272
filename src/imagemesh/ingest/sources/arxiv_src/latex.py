"""LaTeX side of an arXiv source package: figures, graphics and captions (files, ``\\input`` and
graphic lookup: :mod:`imagemesh.ingest.sources.arxiv_src.texfiles`).

Parsing uses pylatexenc (a maintained LaTeX parser) for figure bodies, for the arguments
of front-matter macros and for turning captions, titles and names into plain text (math
kept readable: ``$\\alpha_1$`` -> ``α_1``; ``\\href{url}{text}`` -> ``text``; ``changes``
markup resolved to the new text; ``\\thanks``, ``\\corref``, ... dropped). Around it,
small text passes that pylatexenc does not do: ``\\graphicspath``, zero-argument
``\\newcommand``/``\\def`` expansion in captions, and the "Figure captions:" lists of
journal-style submissions (used when a figure's own ``\\caption`` is empty).

Figures are numbered the way LaTeX's figure counter runs: it steps at every ``\\caption`` of a
float environment (``figure``, ``figure*``, ``wrapfigure``, ``SCfigure``, ``sidewaysfigure``,
acmart's ``teaserfigure``, ...) and of a ``minipage`` in it (not at ``\\caption*``, not at a
``subfigure``'s caption), so a float without a caption has no number and one with two captioned
minipages is two figures (an uncaptioned wrapfigure, and the floats of submissions with a
"Figure captions:" list, still take one). A float carrying ``\\ContinuedFloat`` (caption
package; also ``\\contcaption``, ``\\captcont``) continues the previous figure: its graphics
share that number and the group's caption. In captions, ``\\ref``/``\\autoref``/``\\cref``/``\\Cref``
to a figure label print that figure's number ("Figure 3"; other labels ``??``, as LaTeX prints an
undefined reference without ``.aux``). Verbatim examples and the bodies of macros with parameters are
not searched for graphics (:func:`imagemesh.ingest.sources.arxiv_src.texfiles.hide_untypeset`). Each graphic inside a figure with more than one graphic
gets a sub-figure index (1, 2, ... across a continued group), and the caption of its
``\\subfigure``/``\\subfloat``/``\\subcaptionbox``/``subfigure`` environment/``minipage``
if it has one. Rotations (``angle=``, ``\\rotatebox``, ``sideways``) are recorded so the
rasterised figure can be turned the way LaTeX turns it on the page.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from pylatexenc import latex2text as l2t
from pylatexenc import latexwalker as lw
from pylatexenc import macrospec as ms

from imagemesh.ingest.sources.arxiv_src.texfiles import brace_group, hide_untypeset

__all__ = [
    "GraphicRef",
    "LatexDocument",
    "parse_document",
    "latex_to_text",
    "resolve_refs",
    "split_author_names",
]

FIGURE_ENVS = ("figure", "figure*", "wrapfigure", "wrapfigure*", "SCfigure", "SCfigure*", "sidewaysfigure",
               "sidewaysfigure*", "floatingfigure", "figwindow", "subfigure*", "teaserfigure")  # teaserfigure: acmart
SUB_ENVS = ("subfigure", "minipage", "subfloat")
#: figures set in the text by wrapfig, floatflt, ... (uncaptioned ones keep a number here, see parse_document)
_WRAP_ENVS = ("wrapfigure", "wrapfigure*", "floatingfigure", "figwindow")
#: floats that LaTeX turns by 90° as a whole, caption included (rotating package)
SIDEWAYS_FLOATS = ("sidewaysfigure", "sidewaysfigure*")

_GRAPHIC_MACROS = {"includegraphics", "epsfig", "psfig", "epsfbox", "epsffile", "plotone", "plottwo", "includegraphic", "special"}
_CONTINUED = ("ContinuedFloat", "continuedfloat")  # caption package (lower case since 2019)
_CONT_CAPTIONS = ("contcaption", "captcont")  # ccaption, captcont: a continued float's caption
_FIG_BEGIN = re.compile(r"\\begin\s*\{(" + "|".join(re.escape(e) for e in FIGURE_ENVS if not e.startswith("sub")) + r")\}")
_OUTSIDE_GRAPHIC = re.compile(
    r"\\(?P<cmd>includegraphics\*?|epsfbox|epsffile|plotone)\s*(?P<opts>(?:\[[^\]]*\]\s*)*)\{\s*\{?(?P<name>[^{}]+)\}?\s*\}"
    r"|\\(?P<cmd2>epsfig|psfig)\s*\{(?P<spec>[^{}]*)\}"
)
_FLOAT = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_ANGLE = re.compile(r"(?:^|[\[,\s])angle\s*=\s*\{?\s*(" + _FLOAT + ")")
_NUMBER = re.compile(r"^\s*(" + _FLOAT + r")\s*$")

# sentinels for ``\and`` and line breaks in plain text (private-use code points)
_AND = "\ue000"
_BR = "\ue001"

# argument specs (pylatexenc notation) of the macros that figures, markup and front matter use
_MACRO_ARGS = {
    # figures
    "caption": "*[{", "captionof": "*{[{", "subcaption": "*[{", "subcaptionbox": "*[{[[{", "contcaption": "{",
    "captcont": "*[{", "ContinuedFloat": "*", "continuedfloat": "*", "subfigure": "[[{", "subfloat": "[[{",
    "sidesubfloat": "[[{", "includegraphics": "*[[{", "epsfig": "{", "psfig": "{", "epsfbox": "[{", "epsffile": "[{",
    "plotone": "{", "plottwo": "{{", "special": "{", "label": "{", "resizebox": "*{{{", "scalebox": "{[{",
    "rotatebox": "[{{", "turnbox": "{{",
    # text markup: hyperref, changes
    "href": "[{{", "added": "[{", "replaced": "[{{", "deleted": "[{", "highlight": "[{", "comment": "[{",
    # front matter of article, revtex, elsarticle, authblk, IEEEtran, llncs, acmart, ICML, NeurIPS/ACL
    "title": "[{", "author": "[{", "icmltitle": "{", "icmlauthor": "{{", "IEEEauthorblockN": "{",
    "IEEEauthorblockA": "{", "IEEEauthorrefmark": "{", "thanks": "{", "corref": "{", "fnref": "{", "tnoteref": "{",
    "thanksref": "{", "orcidlink": "{", "orcid": "{", "orcidID": "{", "email": "[{", "ead": "[{", "inst": "{",
    "affiliation": "[{", "affil": "[{", "address": "[{", "institute": "{", "authornote": "{", "authornotemark": "[",
    "and": "", "And": "", "AND": "",
    # font switches whose text pylatexenc's defaults drop (\texttt, \textsf) or turn into math
    # alphabets (\mathsf, \mathtt), arrows with a label, links
    **{name: "{" for name in ("texttt", "textsf", "textsc", "textrm", "textup", "textmd", "textsl", "textnormal",
                              "mathrm", "mathsf", "mathtt", "mathit", "mathnormal", "operatorname", "url", "nolinkurl")},
    "xrightarrow": "[{", "xleftarrow": "[{", "xRightarrow": "[{", "xLeftarrow": "[{", "xleftrightarrow": "[{",
}
_ENV_ARGS = {"subfigure": "[[{", "minipage": "[[[{", "wrapfigure": "[{[{", "wrapfigure*": "[{[{", "turn": "{", "rotate": "{"}

# their plain text: link text, the new text of revision markup, the TeX logos, author separators
_MACRO_TEXT = {
    "href": "%(3)s", "added": "%(2)s", "replaced": "%(2)s", "highlight": "%(2)s", "TeX": "TeX", "LaTeX": "LaTeX",
    "LaTeXe": "LaTeX2e", "BibTeX": "BibTeX", "icmlauthor": "%(1)s", "IEEEauthorblockN": "%(1)s",
    "and": _AND, "And": _AND, "AND": _AND,  # \And, \AND: NeurIPS, ACL, JMLR
    "addr": _BR, "\\": _BR, "newline": _BR,  # \addr: JMLR's address follows the name
    **{name: "%(1)s" for name in ("texttt", "textsf", "textsc", "textrm", "textup", "textmd", "textsl", "textnormal",
                                  "mathrm", "mathsf", "mathtt", "mathit", "mathnormal", "operatorname", "url", "nolinkurl")},
    # \xrightarrow[below]{above}: the label written on the arrow
    "xrightarrow": "-%(2)s\u2192", "xRightarrow": "=%(2)s\u21d2", "xleftarrow": "\u2190%(2)s-",
    "xLeftarrow": "\u21d0%(2)s=", "xleftrightarrow": "\u2190%(2)s\u2192",
}
# ... and nothing for notes, references to notes, affiliations, addresses, e-mail, ORCID, deleted text
_DISCARD = ("thanks", "footnote", "footnotemark", "corref", "fnref", "tnoteref", "thanksref", "orcidlink", "orcid", "orcidID",
            "email", "ead", "inst", "IEEEauthorrefmark", "IEEEauthorblockA", "affiliation", "affil", "address",
            "institute", "authornote", "authornotemark", "deleted", "comment")


def _context_db() -> ms.LatexContextDb:
    """pylatexenc's default macro table plus :data:`_MACRO_ARGS` (so that the arguments of
    the figure, markup and front-matter macros real papers use parse as arguments)."""
    db = lw.get_default_latex_context_db()
    db.add_context_category(
        "imagemesh-figures", prepend=True,
        macros=[ms.MacroSpec(name, args) for name, args in _MACRO_ARGS.items()],
        environments=[ms.EnvironmentSpec(name, args) for name, args in _ENV_ARGS.items()],
    )
    return db


def _text_context_db() -> ms.LatexContextDb:
    """latex2text's default replacements plus :data:`_MACRO_TEXT` and :data:`_DISCARD`."""
    db = l2t.get_default_latex_context_db()
    db.add_context_category(
        "imagemesh-text", prepend=True,
        macros=[l2t.MacroTextSpec(name, text) for name, text in _MACRO_TEXT.items()]
        + [l2t.MacroTextSpec(name, discard=True) for name in _DISCARD],
    )
    return db


@functools.cache
def _db() -> ms.LatexContextDb:
    return _context_db()


@functools.cache
def _l2t() -> l2t.LatexNodes2Text:
    return l2t.LatexNodes2Text(latex_context=_text_context_db(), math_mode="text", strict_latex_spaces=False)


@dataclass
class GraphicRef:
    """One graphic referenced by the LaTeX source.

    ``figure``: the figure number LaTeX gives its float (None outside figures);
    ``subfigure``: 1-based index among the graphics of that figure (None if it is the only one);
    ``rotate``: degrees counterclockwise (0-359) that LaTeX turns the graphic relative to its
    caption (``angle=``, ``\\rotatebox``, ``sideways``/``turn`` inside the float): the raster
    must be turned the same way to look as it does in the paper;
    ``float_rotate``: degrees the whole float is turned on the page (``sidewaysfigure``): the
    caption turns with it, so the graphic is already upright relative to its caption and
    this is page layout only.
    """

    name: str
    figure: int | None
    subfigure: int | None = None
    caption: str | None = None
    subcaption: str | None = None
    label: str | None = None
    command: str = "includegraphics"
    rotate: int = 0
    float_rotate: int = 0

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
    """Zero-argument ``\\newcommand``/``\\renewcommand``/``\\providecommand``/``\\DeclareMathOperator``/``\\def`` definitions."""
    out: dict[str, str] = {}
    # \newcommand{\foo}{..}, \newcommand\foo{..}, \newcommand{{\foo}}{..} (extra braces: same macro)
    for m in re.finditer(r"\\(?:renewcommand|newcommand|providecommand|DeclareRobustCommand|DeclareMathOperator)\*?\s*(?:\{\s*)*\\([A-Za-z]+)\s*(?:\}\s*)*(?=\{)", text):
        g = brace_group(text, m.end())
        if g is not None and len(g[0]) < 500:
            out.setdefault(m.group(1), g[0])
    for m in re.finditer(r"\\def\s*\\([A-Za-z]+)\s*(?=\{)", text):
        g = brace_group(text, m.end())
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


_VERB = re.compile(r"\\(?:verb|lstinline)\*?([^A-Za-z\s{\[*])(.*?)\1")
_TEXT_SPECIALS = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "$": r"\$", "&": r"\&", "#": r"\#",
                  "%": r"\%", "^": r"\^{}", "~": r"\~{}"}


_SI_UNITS = {
    "meter": "m", "metre": "m", "second": "s", "kilogram": "kg", "gram": "g", "hertz": "Hz", "newton": "N", "pascal": "Pa",
    "joule": "J", "watt": "W", "volt": "V", "ampere": "A", "kelvin": "K", "mole": "mol", "candela": "cd", "tesla": "T",
    "ohm": "\u03a9", "degree": "\u00b0", "celsius": "\u00b0C", "degreeCelsius": "\u00b0C", "radian": "rad", "percent": "%",
    "liter": "L", "litre": "L", "minute": "min", "hour": "h", "day": "d", "electronvolt": "eV", "gauss": "G", "bit": "bit",
    "byte": "B", "decibel": "dB", "coulomb": "C", "farad": "F", "henry": "H", "siemens": "S", "weber": "Wb", "becquerel": "Bq",
    "gray": "Gy", "sievert": "Sv", "lumen": "lm", "lux": "lx", "arcminute": "\u2032", "arcsecond": "\u2033", "angstrom": "\u00c5",
    "astronomicalunit": "au", "parsec": "pc", "m": "m", "s": "s", "g": "g", "kg": "kg", "Hz": "Hz", "N": "N", "Pa": "Pa",
    "J": "J", "W": "W", "V": "V", "A": "A", "K": "K", "T": "T", "mol": "mol", "eV": "eV", "L": "L", "l": "l", "h": "h",
    "nm": "nm", "um": "\u03bcm", "mm": "mm", "cm": "cm", "km": "km", "ms": "ms", "us": "\u03bcs", "ns": "ns", "ps": "ps",
    "nT": "nT", "mT": "mT", "kHz": "kHz", "MHz": "MHz", "GHz": "GHz", "mW": "mW", "kW": "kW", "MW": "MW", "mV": "mV",
    "kV": "kV", "mA": "mA", "uA": "\u03bcA", "keV": "keV", "MeV": "MeV", "GeV": "GeV", "TeV": "TeV", "mg": "mg", "ug": "\u03bcg",
    "kPa": "kPa", "MPa": "MPa", "GPa": "GPa", "kJ": "kJ", "kN": "kN", "dB": "dB", "mL": "mL", "ml": "ml", "uL": "\u03bcL",
}
_SI_PREFIXES = {"yocto": "y", "zepto": "z", "atto": "a", "femto": "f", "pico": "p", "nano": "n", "micro": "\u03bc", "milli": "m",
                "centi": "c", "deci": "d", "deca": "da", "deka": "da", "hecto": "h", "kilo": "k", "mega": "M", "giga": "G",
                "tera": "T", "peta": "P", "exa": "E", "zetta": "Z", "yotta": "Y"}
_SI_MACRO = re.compile(r"\\(SI|qty|si|unit|num|SIlist|qtylist|numlist|SIrange|qtyrange|numrange)(?![A-Za-z])\s*(?:\[[^\]]*\]\s*)?(?=\{)")


def _si_unit(u: str) -> str:
    """A siunitx unit (``\\meter\\per\\second\\squared``, ``\\kilo\\gram``, or literal ``km/s``)
    as siunitx prints it by default (``m s^-2``)."""
    out: list[str] = []
    prefix, power, per = "", "", False
    for m in re.finditer(r"\\([A-Za-z]+)|\{\s*\}|([^\\\s{}]+)", u):
        name, lit = m.group(1), m.group(2)
        if lit is not None:
            out.append(lit)
        elif name is None:
            continue
        elif name in _SI_PREFIXES:
            prefix += _SI_PREFIXES[name]
        elif name == "per":
            per = True
        elif name in ("square", "cubic"):
            power = "2" if name == "square" else "3"
        elif name in ("squared", "cubed") and out:
            n = "2" if name == "squared" else "3"
            out[-1] = out[-1][:-3] + "^-" + n if out[-1].endswith("^-1") else out[-1] + "^" + n
        elif name in _SI_UNITS:
            exp = ("-" if per else "") + (power or ("1" if per else ""))
            out.append(prefix + _SI_UNITS[name] + (f"^{exp}" if exp else ""))
            prefix, power, per = "", "", False
        else:
            out.append("\\" + name)
    return " ".join(out)


def _siunitx(s: str) -> str:
    """siunitx's ``\\SI{3}{\\meter}``/``\\qty``, ``\\si``/``\\unit``, ``\\num``, ``\\SIlist``,
    ``\\SIrange`` (and the ``qty``/``num`` forms) as the text they print."""
    for _ in range(50):
        m = _SI_MACRO.search(s)
        if m is None:
            break
        args: list[str] = []
        i = m.end()
        want = {"SI": 2, "qty": 2, "si": 1, "unit": 1, "num": 1, "SIlist": 2, "qtylist": 2, "numlist": 1,
                "SIrange": 3, "qtyrange": 3, "numrange": 2}[m.group(1)]
        while len(args) < want:
            while i < len(s) and s[i].isspace():
                i += 1
            g = brace_group(s, i)
            if g is None:
                break
            args.append(g[0].strip())
            i = g[1]
        if len(args) < want and not (m.group(1) == "SIrange" and len(args) == 2):
            s = s[:m.start()] + s[m.end():]
            continue
        cmd = m.group(1)
        unit = _si_unit(args[-1]) if cmd not in ("num", "numlist", "numrange") else ""
        tail = f"~{unit}" if unit else ""
        if cmd in ("si", "unit"):
            text = unit
        elif cmd in ("SI", "qty", "num"):
            text = args[0] + tail
        elif cmd in ("SIlist", "qtylist", "numlist"):
            items = [x.strip() + tail for x in args[0].split(";") if x.strip()]
            text = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""
        else:  # ranges
            if len(args) == 2 and cmd == "SIrange":  # \SIrange{0}{3.6} with its unit missing
                tail = ""
            text = f"{args[0]}{tail} to {args[1]}{tail}"
        s = s[:m.start()] + "{" + text + "}" + s[i:]
    return s


def _escape_verbatim(s: str) -> str:
    """Verbatim text as LaTeX source that prints it (for pylatexenc)."""
    return "".join(_TEXT_SPECIALS.get(c, c) for c in s)


def _plain(s: str, macros: dict[str, str] | None = None) -> str:
    """LaTeX fragment -> text, keeping ``\\and`` and line breaks as the sentinels ``_AND``/``_BR``."""
    s = _VERB.sub(lambda m: _escape_verbatim(m.group(2)), s)  # \verb|src/a_b.py|: printed as it is
    s = _expand_macros(s, macros or {})
    s = _siunitx(s)
    s = re.sub(r"\\label\s*\{[^{}]*\}", "", s)
    try:
        text: str = _l2t().latex_to_text(s, latex_context=_db(), tolerant_parsing=True)
    except Exception:  # pylatexenc on hostile input: fall back to the source text
        text = re.sub(r"\\[A-Za-z]+\*?", " ", s).replace("{", "").replace("}", "")
    return text.replace("\xa0", " ")


def latex_to_text(s: str, macros: dict[str, str] | None = None) -> str:
    """LaTeX fragment -> one line of plain text (math converted to readable Unicode,
    links to their text, revision markup to the revised text, notes dropped)."""
    text = _plain(s, macros).replace(_AND, " and ").replace(_BR, " ")
    return " ".join(text.split())


def _verbatim(node: Any) -> str:
    if node is None:
        return ""
    if isinstance(node, lw.LatexGroupNode):
        return "".join(n.latex_verbatim() for n in node.nodelist)
    return str(node.latex_verbatim())


def _args(node: Any) -> list[Any]:
    d = getattr(node, "nodeargd", None)
    return list(d.argnlist) if d is not None and d.argnlist else []


def _children(node: Any) -> list[Any]:
    return list(node.nodelist) if isinstance(node, lw.LatexGroupNode) else [node]


def _degrees(number: str) -> float:
    """An angle in degrees reduced to [0, 360) (0 for what is no finite number, e.g. ``1e999``)."""
    value = float(number)
    return value % 360 if math.isfinite(value) else 0.0


def _number(node: Any) -> float:
    """The angle in a macro argument such as ``\\rotatebox{-90}`` (0 when it is not a literal)."""
    m = _NUMBER.match(_verbatim(node))
    return _degrees(m.group(1)) if m else 0.0


def _angle(options: str) -> float:
    """The ``angle=`` of a graphicx/epsfig key list (0 if none)."""
    m = _ANGLE.search(options)
    return _degrees(m.group(1)) if m else 0.0


def _strip_subfix(s: str) -> str:
    """``\\subfix{path}`` (subfiles package) -> ``path``; extra braces around a file name
    (``\\includegraphics{{figures/a}}``, which LaTeX reads as ``figures/a``) removed."""
    s = re.sub(r"\\subfix\s*\{([^{}]*)\}", r"\1", s).strip()
    while len(s) > 2 and s[0] == "{" and s[-1] == "}" and brace_group(s, 0) == (s[1:-1], len(s)):
        s = s[1:-1].strip()
    return s


def _graphic_names(node: lw.LatexMacroNode) -> tuple[list[str], float]:
    """File names a graphics macro includes, and the ``angle=`` it turns them by."""
    name = node.macroname
    args = _args(node)
    if name in ("epsfig", "psfig"):
        spec = _verbatim(args[0]) if args else ""
        m = re.search(r"(?:figure|file)\s*=\s*([^,]+)", spec)
        return ([m.group(1).strip()] if m else []), _angle(spec)
    if name == "special":  # dvips: \special{psfile=fig.ps hscale=50 vscale=50 angle=-90}
        spec = _verbatim(args[0]) if args else ""
        m = re.match(r"\s*psfile\s*=\s*\"?([^\s\"{}]+)", spec)
        return ([m.group(1)] if m else []), _angle(spec)
    if name == "plottwo":
        return [_verbatim(a).strip() for a in args[:2] if a is not None], 0.0
    if not args or args[-1] is None:
        return [], 0.0
    angle = 0.0
    if name == "includegraphics" and len(args) >= 3 and args[1] is not None and args[2] is None:
        angle = _angle(_verbatim(args[1]))  # [keys]; two optional arguments are a bounding box
    return [_strip_subfix(_verbatim(args[-1])).strip()], angle


@dataclass
class _Item:
    name: str
    command: str
    slot: list[str | None] | None  # the sub-figure's caption holder (shared by its graphics), or None
    rotate: float


@dataclass
class _Float:
    """One float environment as found: its graphics, caption, label and continuation mark."""

    env: str
    items: list[_Item] = field(default_factory=list)
    caption: str | None = None
    label: str | None = None
    continued: bool = False
    loose_subcaptions: list[str] = field(default_factory=list)
    #: the captions that step LaTeX's figure counter (``\\caption`` unstarred, in the float or
    #: in a ``minipage``; ``\\captionof{figure}``): (graphics before it, its minipage slot or
    #: None, its text, its ``\\label``)
    counted: list[tuple[int, list[str | None] | None, str, list[str | None]]] = field(default_factory=list)


def _walk(nodes: Iterable[Any], fig: _Float, sub: list[str | None] | None, rot: float) -> None:
    for n in nodes:
        if n is None:
            continue
        if isinstance(n, lw.LatexMacroNode):
            _walk_macro(n, fig, sub, rot)
        elif isinstance(n, lw.LatexEnvironmentNode):
            env = n.environmentname
            if env in SUB_ENVS:  # a minipage's \\caption steps the figure counter; a subfigure's does not
                _walk(n.nodelist, fig, [None, "minipage" if env == "minipage" else "sub"], rot)
            elif env == "sideways":
                _walk(n.nodelist, fig, sub, rot + 90)
            elif env in ("turn", "rotate"):
                args = _args(n)
                _walk(n.nodelist, fig, sub, rot + (_number(args[0]) if args else 0.0))
            else:
                _walk(n.nodelist, fig, sub, rot)
        elif isinstance(n, (lw.LatexGroupNode, lw.LatexMathNode)):
            _walk(n.nodelist, fig, sub, rot)


def _walk_macro(n: lw.LatexMacroNode, fig: _Float, sub: list[str | None] | None, rot: float) -> None:
    name = n.macroname
    args = _args(n)
    if name in _GRAPHIC_MACROS:
        names, angle = _graphic_names(n)
        fig.items.extend(_Item(g, name, sub, rot + angle) for g in names if g and "#" not in g)  # #1: a macro's parameter
        return
    if name in _CONTINUED:
        if not (args and args[0] is not None):  # \ContinuedFloat* marks the first part of a sequence
            fig.continued = True
        return
    if name in ("caption", "captionof", "subcaption") + _CONT_CAPTIONS:
        cap = _verbatim(args[-1]) if args and args[-1] is not None else ""
        if name in _CONT_CAPTIONS:
            fig.continued = True
        kind = _verbatim(args[1]).strip() if name == "captionof" and len(args) > 1 and args[1] is not None else "figure"
        if name == "captionof" and kind in ("subfigure", "subfloat"):
            name = "subcaption"  # \captionof{subfigure}{..}
        starred = name in ("caption", "captionof") and bool(args) and args[0] is not None
        if name in ("caption", "captionof") and not starred and kind == "figure" and (sub is None or sub[1:] == ["minipage"]):
            inner = re.search(r"\\label\s*\{([^{}]*)\}", cap)  # \caption{... \label{fig:x}}
            fig.counted.append((len(fig.items), sub, cap, [inner.group(1).strip() if inner else None]))
            if inner and fig.label is None and sub is None:
                fig.label = inner.group(1).strip()
        if sub is not None:
            if sub[0] is None:
                sub[0] = cap
        elif name == "subcaption":  # e.g. in a tabular cell below its graphic
            fig.loose_subcaptions.append(cap)
        elif fig.caption is None:
            fig.caption = cap
        return
    if name == "label":
        if args and args[0] is not None:
            lbl = _verbatim(args[0]).strip()
            if fig.label is None and sub is None:
                fig.label = lbl
            # LaTeX's \label names the last counted caption of its scope (float or minipage)
            last = next((c for c in reversed(fig.counted) if c[1] is sub), None)
            if last is not None and last[3][0] is None:
                last[3][0] = lbl
        return
    if name in ("subfigure", "subfloat", "sidesubfloat", "subcaptionbox"):
        if name == "subcaptionbox":  # \subcaptionbox[list entry]{caption}[width][pos]{body}
            cap_arg = args[2] if len(args) > 2 else None
        else:  # \subfloat[list entry][caption]{body}
            cap_arg = args[1] if len(args) > 1 and args[1] is not None else (args[0] if args else None)
        body = args[-1] if args else None
        slot: list[str | None] = [_verbatim(cap_arg) if cap_arg is not None else None, "sub"]
        if body is not None:
            _walk(_children(body), fig, slot, rot)
        return
    if name in ("rotatebox", "turnbox") and len(args) >= 2:
        angle_arg, body = (args[1], args[2] if len(args) > 2 else None) if name == "rotatebox" else (args[0], args[1])
        if body is not None:
            _walk(_children(body), fig, sub, rot + _number(angle_arg))
        return
    for a in args:  # \resizebox{..}{..}{\includegraphics{..}}, \centerline{...}
        if a is not None:
            _walk(_children(a), fig, sub, rot)


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
_CONTINUED_STUB = re.compile(r"^\W*(?:\w+\W+){0,2}(?:cont(?:inued|\.|'d)?|contd\.?)\W*$", re.I)


def _graphicspath(text: str) -> list[str]:
    """Every folder of every ``\\graphicspath{{a/}{b/}}`` (``\\subfix{..}`` unwrapped)."""
    out: list[str] = []
    for m in re.finditer(r"\\graphicspath\s*(?=\{)", text):
        g = brace_group(text, m.end())
        if g is None:
            continue
        inner, i = g[0], 0
        while i < len(inner):
            entry = brace_group(inner, i) if inner[i] == "{" else None
            if entry is None:
                i += 1
                continue
            p = _strip_subfix(entry[0]).strip()
            if p:
                out.append(p)
            i = entry[1]
    return out


def _parse_float(text: str, env: str, problems: list[str], index: int) -> _Float:
    fig = _Float(env)
    try:
        w = lw.LatexWalker(text, latex_context=_db(), tolerant_parsing=True)
        nodes, _, _ = w.get_latex_nodes()
        _walk(nodes, fig, None, 0.0)
    except Exception as e:  # pragma: no cover - pylatexenc is tolerant; keep going
        problems.append(f"figure environment {index}: cannot parse: {type(e).__name__}: {e}")
    unslotted = [it for it in fig.items if it.slot is None]
    if fig.loose_subcaptions and len(fig.loose_subcaptions) == len(unslotted):
        for it, cap in zip(unslotted, fig.loose_subcaptions):
            it.slot = [cap, "sub"]
    return fig


def _split_float(fig: _Float) -> list[_Float]:
    """One float as the figures LaTeX numbers in it: the counter steps at every counted
    ``\\caption`` (:attr:`_Float.counted`), so a float with two captioned minipages (or two
    captions) is two figures. A graphic belongs to the caption of its minipage, else to the
    first caption after it (the last one when captions stand above their graphics)."""
    if len(fig.counted) < 2:
        return [fig]
    parts = [_Float(fig.env, caption=cap, label=lbl[0], continued=fig.continued and i == 0)
             for i, (_n, _slot, cap, lbl) in enumerate(fig.counted)]
    above = fig.counted[0][0] == 0  # a caption before any graphic: captions above
    for i, it in enumerate(fig.items):
        own = next((k for k, c in enumerate(fig.counted) if c[1] is not None and c[1] is it.slot), None)
        if own is not None:
            it = dataclasses.replace(it, slot=None)  # its minipage's caption is the figure's, not a sub-caption
        elif above:
            own = max(k for k, c in enumerate(fig.counted) if c[0] <= i) if any(c[0] <= i for c in fig.counted) else 0
        else:
            own = next((k for k, c in enumerate(fig.counted) if c[0] > i), len(fig.counted) - 1)
        parts[own].items.append(it)
    return parts


@dataclass(frozen=True)
class _CounterChange:
    """``\\setcounter{figure}{N}`` (``value``) or ``\\renewcommand{\\thefigure}{S\\arabic{figure}}``
    (``shown``: text printed before and after the number) between floats."""

    value: int | None = None
    shown: tuple[str, str] | None = None


_SETCOUNTER = re.compile(r"\\setcounter\s*\{figure\}\s*\{\s*(\d{1,4})\s*\}|\\renewcommand\s*\{?\s*\\thefigure\s*\}?\s*\{([^{}]*)\\arabic\s*\{figure\}([^{}]*)\}")


def _counter_macros(text: str) -> dict[str, str]:
    """Zero-argument macros and environments (``\\begin{supplement}``, keyed
    ``begin{supplement}``) whose definition changes the figure counter."""
    out = {k: v for k, v in _macros(text).items() if _SETCOUNTER.search(v)}
    for m in re.finditer(r"\\(?:re)?newenvironment\*?\s*\{([A-Za-z*]+)\}\s*(?=\{)", text):
        g = brace_group(text, m.end())
        if g is not None and len(g[0]) < 2000 and _SETCOUNTER.search(g[0]):
            out.setdefault("begin{" + m.group(1) + "}", g[0])
    return out


def _counter_changes(chunk: str, macros: dict[str, str]) -> list[_CounterChange]:
    """The figure-counter changes in a stretch of the document body between floats, in order;
    zero-argument macros (``\\beginsupplement``) are expanded first, so a change defined in
    the preamble counts where the macro is used, not where it is defined."""
    chunk = _expand_macros(chunk, macros)
    out = []
    for m in _SETCOUNTER.finditer(chunk):
        if m.group(1) is not None:
            out.append(_CounterChange(value=int(m.group(1))))
        else:
            out.append(_CounterChange(shown=(m.group(2).strip(), m.group(3).strip())))
    return out


def _group_caption(captions: list[str]) -> str:
    """The caption of a continued group: the fullest of its floats' captions."""
    real = [c for c in captions if c and not _CONTINUED_STUB.match(c)]
    return max(real, key=len) if real else next((c for c in captions if c), "")


def parse_document(text: str) -> LatexDocument:
    """Find graphics, their figures, captions and labels, and the front matter in
    (comment-stripped, input-expanded) LaTeX ``text``."""
    doc = LatexDocument()
    macros = _macros(text)
    body_start = text.find("\\begin{document}")
    doc.graphicspath = _graphicspath(text)
    caption_list = {int(m.group(1)): m.group(2) for m in _CAPTION_LIST.finditer(text[max(body_start, 0):])}
    front = text
    text = hide_untypeset(text)  # verbatim examples and macro templates are no figures
    body = max(text.find("\\begin{document}"), 0)
    counter_macros = _counter_macros(front)

    pos = 0
    outside: list[str] = []
    groups: list[list[_Float]] = []
    order: list[list[_Float] | _Float | _CounterChange] = []  # numbered groups, unnumbered floats, counter changes
    while True:
        begin = _FIG_BEGIN.search(text, pos)
        outside.append(text[pos:begin.start() if begin else len(text)])
        # \setcounter{figure}, \thefigure (supplements): in the body only, not in preamble definitions
        order.extend(_counter_changes(text[max(pos, body):begin.start() if begin else len(text)], counter_macros))
        if not begin:
            break
        end = _env_end(text, begin.group(1), begin.end())
        whole = _parse_float(text[begin.start():end], begin.group(1), doc.problems, len(outside))
        for fig in _split_float(whole):
            if fig.continued and groups:
                groups[-1].append(fig)
            elif fig.counted or len(whole.counted) > 1 or (fig.env in _WRAP_ENVS and fig.caption is None) \
                    or (caption_list and fig.caption is None):
                # LaTeX's counter steps per counted \caption; a float without one (or with only
                # \caption*) takes no number -- except in journal-style submissions whose
                # captions are in a "Figure captions:" list, and (as before, pinned by
                # tests/test_arxiv_src.py) the in-text boxes of wrapfig and its kin
                groups.append([fig])
                order.append(groups[-1])
            else:
                order.append(fig)
        pos = end
    # number the groups as LaTeX's counter runs (a supplement may reset it and print "S1")
    numbers: dict[int, tuple[int, str]] = {}
    figure_no, shown = 0, ("", "")
    for entry in order:
        if isinstance(entry, _CounterChange):
            figure_no = entry.value if entry.value is not None else figure_no
            shown = entry.shown if entry.shown is not None else shown
        elif isinstance(entry, list):
            figure_no += 1
            numbers[id(entry)] = (figure_no, f"{shown[0]}{figure_no}{shown[1]}")
    labels: dict[str, str] = {}
    for group in groups:
        printed = numbers[id(group)][1]
        for f in group:
            for c in f.counted:
                if c[3][0]:
                    labels.setdefault(c[3][0], printed)
            if f.label:
                labels.setdefault(f.label, printed)
    for entry in order:
        if isinstance(entry, list):
            _add_group(doc, numbers[id(entry)][0], entry, macros, caption_list, labels)
        elif isinstance(entry, _Float):
            _add_unnumbered(doc, entry, macros, labels)
    doc.n_figures = len(groups)
    # graphics outside float environments (title-page logos, inline plots): no figure, no caption
    for chunk in outside:
        for g in _OUTSIDE_GRAPHIC.finditer(chunk):
            if g.group("cmd"):
                name, cmd, angle = _strip_subfix(g.group("name")).strip(), g.group("cmd").rstrip("*"), _angle(g.group("opts"))
            else:
                spec = g.group("spec")
                m = re.search(r"(?:figure|file)\s*=\s*([^,}\s]+)", spec)
                name, cmd, angle = (m.group(1).strip() if m else ""), g.group("cmd2"), _angle(spec)
            if name and "#" not in name:
                doc.graphics.append(GraphicRef(name=name, figure=None, command=cmd, rotate=round(angle) % 360))
    doc.title = _title(front, macros)
    doc.authors = _authors(front, macros)
    doc.abstract = _abstract(front, macros)
    return doc


_REF = re.compile(r"\\(ref|autoref|cref|Cref|crefrange|Crefrange|eqref|pageref|vref|Vref|nameref|subref)\*?\s*\{([^{}]*)\}")


def _plural(word: str) -> str:
    return word[:-1] + "s." if word.endswith(".") else word + "s"


def resolve_refs(s: str, labels: dict[str, str]) -> str:
    """Cross-references in a LaTeX fragment as LaTeX prints them: ``\\ref{fig:x}`` -> the number
    of that figure when ``labels`` (label -> number) knows it, else ``??`` (a run without
    ``.aux``); ``\\autoref``/``\\cref``/``\\Cref`` to a figure with the name they print
    ("Figure", "fig.", hyperref's and cleveref's defaults), to anything else ``??`` alone as
    LaTeX prints an undefined reference; ``\\eqref`` in parentheses."""

    def one(label: str) -> str:
        return labels.get(label.strip(), "??")

    def repl(m: re.Match[str]) -> str:
        cmd, names = m.group(1), [n.strip() for n in m.group(2).split(",") if n.strip()]
        if not names:
            return "??"
        if cmd == "eqref":
            return "(" + one(names[0]) + ")"
        if cmd in ("ref", "pageref", "nameref", "subref") or cmd == "vref":
            return one(names[0]) if cmd != "pageref" else "??"
        nums = [one(n) for n in names]
        if cmd in ("crefrange", "Crefrange"):
            nums = [f"{nums[0]} to {nums[-1]}"]
        text = nums[0] if len(nums) == 1 else ", ".join(nums[:-1]) + " and " + nums[-1]
        if names[0] not in labels:  # undefined without .aux: hyperref and cleveref print "??" alone
            return text
        entry = ("Figure", "fig.", "Figure")
        word = entry[0] if cmd == "autoref" else entry[1] if cmd in ("cref", "crefrange") else entry[2]
        if len(nums) > 1 and cmd != "autoref":
            word = _plural(word)
        return f"{word}~{text}"

    return _REF.sub(repl, s)


def _add_unnumbered(doc: LatexDocument, fig: _Float, macros: dict[str, str], labels: dict[str, str]) -> None:
    """The graphics of a float that LaTeX does not number (no ``\\caption``, or ``\\caption*``):
    no figure number; the starred caption's text, if any."""
    cap = latex_to_text(resolve_refs(fig.caption, labels), macros) if fig.caption else None
    for it in fig.items:
        sc = latex_to_text(resolve_refs(it.slot[0], labels), macros) if it.slot and it.slot[0] else None
        doc.graphics.append(GraphicRef(
            name=it.name, figure=None, caption=cap or sc or None, subcaption=sc or None, label=fig.label,
            command=it.command, rotate=round(it.rotate) % 360, float_rotate=90 if fig.env in SIDEWAYS_FLOATS else 0,
        ))


def _add_group(doc: LatexDocument, figure_no: int, group: list[_Float], macros: dict[str, str],
               caption_list: dict[int, str], labels: dict[str, str] | None = None) -> None:
    """The graphics of one figure number (one float, or a ``\\ContinuedFloat`` group)."""
    labels = labels or {}
    caps = [latex_to_text(resolve_refs(f.caption, labels), macros) if f.caption is not None else "" for f in group]
    group_cap = _group_caption(caps)
    if not group_cap and figure_no in caption_list:
        group_cap = latex_to_text(resolve_refs(caption_list[figure_no], labels), macros)
    group_label = next((f.label for f in group if f.label), None)
    k = sum(len(f.items) for f in group)
    i = 0
    for f, own in zip(group, caps):
        cap = own if own and not _CONTINUED_STUB.match(own) else group_cap
        float_rotate = 90 if f.env in SIDEWAYS_FLOATS else 0
        for it in f.items:
            i += 1
            sc = latex_to_text(resolve_refs(it.slot[0], labels), macros) if it.slot and it.slot[0] else None
            doc.graphics.append(GraphicRef(
                name=it.name, figure=figure_no, subfigure=i if k > 1 else None,
                caption=cap or sc or None, subcaption=sc or None, label=f.label or group_label, command=it.command,
                rotate=round(it.rotate) % 360, float_rotate=float_rotate,
            ))


# -- front matter -----------------------------------------------------------------------------

_TITLE = re.compile(r"\\(?:title|icmltitle)\s*(?=[\[{])")
_AUTHOR = re.compile(r"\\(author|icmlauthor)\s*(?=[\[{])")
_FRONT_MATTER_CHARS = 20_000
_NAME_SUFFIX = re.compile(r"^(?:Jr|Sr|Jnr|Snr)\.?$|^(?:II|III|IV|V)$")
_NAME_SEP = re.compile(r"[()\[\]]|,|;|&|\band\b|" + _AND)


def _macro_at(text: str, pos: int) -> Any:
    """The macro node (with its arguments, per :func:`_db`) that starts at ``text[pos]``;
    arguments are read from at most :data:`_FRONT_MATTER_CHARS` characters (an unclosed
    ``\\title{`` must not make the rest of the paper a title)."""
    try:
        w = lw.LatexWalker(text[pos:pos + _FRONT_MATTER_CHARS], latex_context=_db(), tolerant_parsing=True)
        nodes, _, _ = w.get_latex_nodes(pos=0, read_max_nodes=1)
    except Exception:  # pragma: no cover - tolerant parsing
        return None
    return nodes[0] if nodes and isinstance(nodes[0], lw.LatexMacroNode) else None


def _title(text: str, macros: dict[str, str]) -> str | None:
    """The (long) title: ``\\title[short]{long}`` or ICML's ``\\icmltitle{..}``."""
    for m in _TITLE.finditer(text):
        node = _macro_at(text, m.start())
        args = _args(node)
        if args and args[-1] is not None:
            title = latex_to_text(_verbatim(args[-1]), macros)
            if title and "#" not in title and len(title) <= 1000:  # longer: an unclosed brace
                return title
    return None


def split_author_names(text: str) -> list[str]:
    """A plain-text author list -> names: split on commas, semicolons, ``&`` and "and",
    but not inside parentheses or brackets (affiliations), and keep ``, Jr.``/``, III``
    with the name before it."""
    parts: list[str] = []
    depth = 0
    start = 0
    for m in _NAME_SEP.finditer(text):
        tok = m.group(0)
        if tok in "([":
            depth += 1
        elif tok in ")]":
            depth = max(0, depth - 1)
        elif depth == 0:
            parts.append(text[start:m.start()])
            start = m.end()
    parts.append(text[start:])
    names: list[str] = []
    for p in parts:
        p = " ".join(p.split()).strip(" ,;*†‡")
        if not p:
            continue
        if names and _NAME_SUFFIX.match(p):
            names[-1] += ", " + p
        else:
            names.append(p)
    return names


def _block_names(raw: str, macros: dict[str, str]) -> list[str]:
    """Names in one ``\\author{..}`` argument: the first line of each ``\\and`` block (later
    lines are affiliations and addresses), or the ``\\IEEEauthorblockN`` blocks."""
    raw = re.sub(r"\$[^$]*\$|\\textsuperscript\s*\{[^{}]*\}", "", raw)  # affiliation marks
    raw = re.sub(r"\\email\s+(?=[^\s{\[])[^\s{}\\]+", "", raw)  # JMLR's \email a@b.org, without braces
    if "IEEEauthorblockN" in raw:
        blocks = [_verbatim(_args(n)[0]) for n in _find_macros(raw, "IEEEauthorblockN") if _args(n)]
        text = _AND.join(_plain(b, macros) for b in blocks)
    else:
        text = _plain(raw, macros)
    names: list[str] = []
    for block in text.split(_AND):
        lines = [ln for ln in block.split(_BR) if ln.strip()]
        if lines:
            names.extend(split_author_names(lines[0]))
    return names


def _find_macros(raw: str, name: str) -> list[Any]:
    try:
        nodes, _, _ = lw.LatexWalker(raw, latex_context=_db(), tolerant_parsing=True).get_latex_nodes()
    except Exception:  # pragma: no cover - tolerant parsing
        return []
    out: list[Any] = []
    stack = list(nodes)
    while stack:
        n = stack.pop(0)
        if isinstance(n, lw.LatexMacroNode) and n.macroname == name:
            out.append(n)
        elif isinstance(n, (lw.LatexGroupNode, lw.LatexEnvironmentNode)):
            stack[:0] = list(n.nodelist)
    return out


def _authors(text: str, macros: dict[str, str]) -> list[str]:
    """Author names from ``\\author`` (article, revtex, elsarticle, authblk's ``\\author[1]``,
    IEEEtran's ``\\IEEEauthorblockN``) and ICML's ``\\icmlauthor{name}{affiliation}``."""
    authors: list[str] = []
    for m in _AUTHOR.finditer(text):
        args = _args(_macro_at(text, m.start()))
        if m.group(1) == "icmlauthor":
            names = split_author_names(latex_to_text(_verbatim(args[0]), macros)) if args and args[0] is not None else []
        else:
            names = _block_names(_verbatim(args[-1]), macros) if args and args[-1] is not None else []
        for name in names:
            if name and len(name) < 100 and "#" not in name and name not in authors:
                authors.append(name)
    return authors


def _abstract(text: str, macros: dict[str, str]) -> str | None:
    ab = re.search(r"\\begin\s*\{abstract\}(.*?)\\end\s*\{abstract\}", text, re.S)
    if ab:
        return latex_to_text(ab.group(1), macros) or None
    ab2 = re.search(r"\\abstract\s*(?=\{)", text)
    if ab2:
        body = brace_group(text, ab2.end())
        if body:
            return latex_to_text(body[0], macros) or None
    return None
