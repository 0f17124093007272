"""The files of an arXiv source package as LaTeX sees them: decoding, comments, main files,
``\\input``/``\\include``/``\\import``/``\\subfile`` inlining, and pdflatex's lookup of ``\\includegraphics`` names.

(The parsing of figures and captions is in :mod:`imagemesh.ingest.sources.arxiv_src.latex`.)
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Iterable

__all__ = ["GRAPHIC_EXTENSIONS", "TEX_EXTENSIONS", "MAX_TEXT_CHARS", "VERBATIM_ENVS", "decode_tex", "strip_comments", "find_main_files", "document_body",
           "expand_inputs", "hide_untypeset", "resolve_graphic", "brace_group"]


#: pdflatex's search order for ``\includegraphics{name}`` without extension (plus PS
#: formats, which arXiv converts), then the raster formats Pillow reads.
GRAPHIC_EXTENSIONS: tuple[str, ...] = (".pdf", ".png", ".jpg", ".jpeg", ".eps", ".ps", ".gif", ".tif", ".tiff", ".bmp", ".epsi", ".epsf")


TEX_EXTENSIONS = (".tex", ".ltx", ".latex")


MAX_TEXT_CHARS = 20_000_000


_INPUT = re.compile(r"\\(input|include|subfile)(?![A-Za-z@])\s*(?:\{([^{}]{1,300})\}|([^\s{}\\%]{1,300}))|\\(sub)?import\s*\{([^{}]{0,300})\}\s*\{([^{}]{1,300})\}")


_DOCCLASS = re.compile(r"\\document(class|style)\b")


def decode_tex(data: bytes) -> tuple[str, str]:
    """Decode LaTeX source bytes: UTF-8 if valid, else Latin-1 (old arXiv sources).

    NUL characters are dropped. Returns ``(text, encoding)``.
    """
    data = data.replace(b"\x00", b"")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


_COMMENT = re.compile(r"(?<!\\)((?:\\\\)*)%[^\n]*")


_COMMENT_ENV = re.compile(r"\\begin\s*\{comment\}.*?\\end\s*\{comment\}", re.S)


_IFFALSE = re.compile(r"\\iffalse\b.*?\\fi\b", re.S)


def strip_comments(text: str) -> str:
    """Remove ``%`` comments (keeping ``\\%``), ``comment`` environments and ``\\iffalse`` blocks."""
    text = _COMMENT.sub(lambda m: m.group(1), text)
    text = _COMMENT_ENV.sub("", text)
    return _IFFALSE.sub("", text)


#: environments whose content LaTeX prints (or writes) verbatim instead of running it: a graphic
#: inside is an example in a class's or package's documentation, not a figure (``vquote``: the
#: verbatim quotes of Elsevier's CAS documentation)
VERBATIM_ENVS = ("verbatim", "verbatim*", "Verbatim", "Verbatim*", "BVerbatim", "LVerbatim", "SaveVerbatim", "VerbatimOut",
                 "lstlisting", "minted", "vquote", "filecontents", "filecontents*", "comment")
_VERB_DEFS = re.compile(r"\\(?:lstnewenvironment|DefineVerbatimEnvironment|newminted|RecustomVerbatimEnvironment)\s*\{\s*([^{}\s]+)\s*\}"
                        r"|\\newenvironment\s*\{\s*([^{}\s]+)\s*\}(?:\s*\[[^\]]*\])*\s*\{[^{}]*\\(?:verbatim|Verbatim|lstlisting|begin\s*\{(?:verbatim|Verbatim|lstlisting)\})")
_VERB_INLINE = re.compile(r"\\(?:verb|lstinline)\*?([^A-Za-z\s{\[*])(.*?)\1")
_DEF_HEAD = re.compile(r"\\(?:(?:re)?newcommand|providecommand|DeclareRobustCommand|(?:re)?newenvironment)\*?\s*(?:\{\s*)?\\?[A-Za-z@]+\*?\s*\}?\s*(?:\[[^\]]*\]\s*)*(?=\{)"
                       r"|\\[gex]?def\s*\\[A-Za-z@]+[^{]*#[^{]*(?=\{)")


_IF_ELSE = re.compile(r"\\if[A-Za-z@]*(?![A-Za-z@])((?:(?!\\if[A-Za-z@]|\\fi(?![A-Za-z@])).){0,5000}?)\\else(?![A-Za-z@])"
                      r"((?:(?!\\if[A-Za-z@]|\\fi(?![A-Za-z@])).){0,5000}?)\\fi(?![A-Za-z@])", re.S)
_GRAPHIC_CMD = re.compile(r"\\(?:includegraphics|epsfig|psfig|epsfbox|plotone)(?![A-Za-z])")


def hide_untypeset(text: str) -> str:
    """``text`` without what LaTeX does not run as document content where it stands:
    verbatim-like environments (:data:`VERBATIM_ENVS`, and those a file defines with
    ``\\lstnewenvironment``, ``\\DefineVerbatimEnvironment`` or a ``\\newenvironment`` that starts
    ``verbatim``), ``\\verb|..|`` quoting graphics or environment commands, and the bodies of macro and environment definitions that take
    arguments (``\\newcommand{\\fig}[1]{\\includegraphics{#1}}``, ``\\def\\fig#1{..}``): their ``#1``
    is no file name, and a figure inside them is only a template until the macro is used;
    of an ``\\if..\\else..\\fi`` whose branches both include graphics (``\\if@twocolumn``
    layouts), the first branch only. Zero-argument definitions are kept (their graphics appear wherever the macro is used)."""
    names = set(VERBATIM_ENVS)
    for m in _VERB_DEFS.finditer(text):
        names.add(m.group(1) or m.group(2))
    env = re.compile(r"\\begin\s*\{(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")\}.*?\\end\s*\{\1\}", re.S)
    text = env.sub(" ", text)
    # \verb|..| only when it quotes commands that would be taken for graphics or floats (a caption's
    # \verb|src/plot.py| is caption text)
    text = _VERB_INLINE.sub(lambda m: " " if re.search(r"\\(?:includegraphics|epsfig|psfig|epsfbox|begin|end)\b", m.group(2)) else m.group(0), text)
    # \if@twocolumn \includegraphics{a} \else \includegraphics{a} \fi: LaTeX runs one branch
    text = _IF_ELSE.sub(lambda m: m.group(1) if _GRAPHIC_CMD.search(m.group(1)) and _GRAPHIC_CMD.search(m.group(2)) else m.group(0), text)
    out: list[str] = []
    pos = 0
    for m in _DEF_HEAD.finditer(text):
        if m.start() < pos:
            continue
        i = m.end()
        bodies: list[tuple[int, int]] = []
        for _ in range(2 if "environment" in m.group(0) else 1):  # \newenvironment{x}[n]{begin}{end}
            j = i
            while j < len(text) and text[j].isspace():
                j += 1
            g = brace_group(text, j)
            if g is None:
                break
            b = g[1]
            bodies.append((j, b))
            i = b
        if bodies and any("#" in text[a:b] for a, b in bodies):
            out.append(text[pos:m.start()])
            out.append(" ")
            pos = bodies[-1][1]
    out.append(text[pos:])
    return "".join(out)


def brace_group(text: str, i: int) -> tuple[str, int] | None:
    """Content of the brace group starting at ``text[i] == '{'`` and the index after it
    (``None`` if there is none; ``\\{`` and ``\\}`` do not count)."""
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


def find_main_files(sources: dict[str, str]) -> list[str]:
    """Main LaTeX files: those with ``\\documentclass``/``\\documentstyle`` that no other file
    inputs; else every ``.tex`` file that no other file inputs. ``sources`` maps a
    relative path to comment-stripped text."""
    included: set[str] = set()
    for path, text in sources.items():
        base = PurePosixPath(path).parent
        for m in _INPUT.finditer(text):
            name = (m.group(2) or m.group(3) or m.group(6) or "").strip()
            d = (m.group(5) or "").strip()
            for cand in _tex_candidates(name, base, d):
                included.add(cand)
    with_class = [p for p, t in sources.items() if _DOCCLASS.search(t) and p not in included]
    if with_class:
        return sorted(with_class)
    return sorted(p for p in sources if p not in included and p.lower().endswith(TEX_EXTENSIONS))


def _norm(path: PurePosixPath) -> str | None:
    parts: list[str] = []
    for p in path.parts:
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                return None  # outside the package
            parts.pop()
            continue
        parts.append(p)
    return "/".join(parts) if parts else None


def _tex_candidates(name: str, base: PurePosixPath, subdir: str = "") -> list[str]:
    name = name.strip().strip('"')
    if not name or name.startswith("/"):
        return []
    out = []
    for b in (base, PurePosixPath()):
        p = b / subdir / name if subdir else b / name
        for cand in (p, p.with_name(p.name + ".tex")):
            n = _norm(cand)
            if n and n not in out:
                out.append(n)
    return out


_PART_CLASS = re.compile(r"\\documentclass\s*(?:\[[^\]]*\])?\s*\{\s*(?:subfiles|standalone)\s*\}")


_BODY = re.compile(r"\\begin\s*\{document\}(.*)\\end\s*\{document\}", re.S)


def document_body(text: str) -> str:
    """What an included file contributes: for a ``subfiles``/``standalone`` part (a complete
    document of that class) only its ``document`` body, as those packages do when the part
    is included; any other file as it is."""
    if not _PART_CLASS.search(text):
        return text
    m = _BODY.search(text)
    return m.group(1) if m else text


def expand_inputs(main: str, sources: dict[str, str], max_depth: int = 20) -> tuple[str, list[str], list[str]]:
    """Inline ``\\input``/``\\include``/``\\import``/``\\subfile`` of package files into ``main``'s text.

    An included complete document (``\\subfile`` parts) contributes only its body
    (:func:`document_body`). Returns ``(text, files used, problems)``; cycles and missing
    files are problems (the command is left out). Paths never leave the package.
    """
    used: list[str] = [main]
    problems: list[str] = []
    lower = {k.lower(): k for k in sources}
    budget = [MAX_TEXT_CHARS]

    def expand(path: str, depth: int, stack: tuple[str, ...]) -> str:
        text = sources[path] if depth == 0 else document_body(sources[path])
        base = PurePosixPath(main).parent

        def repl(m: re.Match[str]) -> str:
            name = (m.group(2) or m.group(3) or m.group(6) or "").strip()
            d = (m.group(5) or "").strip()
            if m.group(4) is not None or m.group(5) is not None:  # \subimport is relative to the current file
                b = PurePosixPath(path).parent if m.group(4) else base
            else:
                b = base
            cands = _tex_candidates(name, b, d)
            if m.group(1) == "subfile":  # relative to the including part first
                cands = [c for c in _tex_candidates(name, PurePosixPath(path).parent) if c not in cands] + cands
            for cand in cands:
                real = sources.get(cand) is not None and cand or lower.get(cand.lower())
                if real:
                    if real in stack:
                        problems.append(f"{path}: \\input cycle through {real}")
                        return ""
                    if depth >= max_depth:
                        problems.append(f"{path}: \\input nested deeper than {max_depth}")
                        return ""
                    if real not in used:
                        used.append(real)
                    sub = expand(real, depth + 1, stack + (real,))
                    budget[0] -= len(sub)
                    if budget[0] < 0:
                        problems.append(f"inlined text exceeds {MAX_TEXT_CHARS} characters")
                        return ""
                    return "\n" + sub + "\n"
            if name and not name.lower().endswith((".sty", ".cls", ".bbl", ".bib")):
                problems.append(f"{path}: \\{m.group(1) or 'import'}{{{name}}}: file not in the package")
            return ""

        return _INPUT.sub(repl, text)

    return expand(main, 0, (main,)), used, problems


def resolve_graphic(name: str, base: str, graphicspath: list[str], files: Iterable[str]) -> tuple[str | None, str]:
    """Find the package file for ``\\includegraphics{name}`` the way pdflatex does.

    Looks in the main file's folder ``base`` and every ``\\graphicspath`` entry, tries
    the name as given, then with each of :data:`GRAPHIC_EXTENSIONS` (also when the
    name already has an extension, e.g. ``fig.eps`` shipped as ``fig.pdf``), then
    ignoring case; as a last resort a unique file with the same base name anywhere in
    the package. Returns ``(relative path or None, how)`` with ``how`` one of
    ``exact``, ``extension``, ``case``, ``basename``, or the reason it was not found.
    """
    files = list(files)
    fileset = set(files)
    lower: dict[str, str] = {}
    for f in files:
        lower.setdefault(f.lower(), f)
    name = name.strip().strip('"').strip()
    if not name:
        return None, "empty file name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None, "absolute path"
    dirs = [base] + [_norm(PurePosixPath(base) / g) or "" for g in graphicspath]
    p = PurePosixPath(name)
    stems = [name]
    if p.suffix.lower() in GRAPHIC_EXTENSIONS:
        stems.append(str(p.with_suffix("")))
    for how, look in (("exact", fileset), ("case", None)):
        for d in dirs:
            for i, stem in enumerate(stems):
                cands = [stem] if i == 0 else []
                cands += [stem + e for e in GRAPHIC_EXTENSIONS]
                for c in cands:
                    rel = _norm(PurePosixPath(d) / c) if d else _norm(PurePosixPath(c))
                    if rel is None:
                        continue
                    if how == "exact" and rel in fileset:
                        return rel, "exact" if c == name else "extension"
                    if how == "case" and rel.lower() in lower:
                        return lower[rel.lower()], "case"
    # basename anywhere (authors often flatten folders when uploading)
    want = {PurePosixPath(s).name.lower() for s in stems}
    hits = [f for f in files if PurePosixPath(f).name.lower() in want
            or (PurePosixPath(f).suffix.lower() in GRAPHIC_EXTENSIONS and PurePosixPath(f).stem.lower() in want)]
    hits = [h for h in hits if PurePosixPath(h).suffix.lower() in GRAPHIC_EXTENSIONS or PurePosixPath(h).name.lower() in want]
    if len(hits) == 1:
        return hits[0], "basename"
    if len(hits) > 1:
        order = {e: i for i, e in enumerate(GRAPHIC_EXTENSIONS)}
        hits.sort(key=lambda h: (order.get(PurePosixPath(h).suffix.lower(), 99), h))
        return hits[0], "basename"
    return None, "file not in the package"
