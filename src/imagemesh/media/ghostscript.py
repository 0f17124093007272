"""Rasterise EPS and PostScript with Ghostscript (Debian ``ghostscript``), safely.

Ghostscript runs as a separate process with ``-dSAFER`` (no file access outside its
input and output), ``-dBATCH -dNOPAUSE``, the first page only, a wall-clock timeout,
CPU/memory/output-size rlimits and an empty environment, in a private temporary folder.

What real uploads need on top of that:

* Cropping: the raster is the file's ``%%BoundingBox`` (DSC, Adobe TN 5001; ``(atend)``
  read from the trailer, ``%%HiResBoundingBox`` preferred) whatever the header says.
  Ghostscript's ``-dEPSCrop`` only applies to ``%!PS-Adobe-x.y EPSF-x.y`` headers, so a
  ``.ps`` figure with a BoundingBox would come out as a whole page; instead the page is
  sized to the box and an ``/Install`` procedure translates its lower-left corner to the
  origin (Ghostscript re-runs ``/Install`` after every ``initgraphics``; its png devices
  ignore ``/PageOffset``).
* Leading junk: bytes before the first ``%!PS`` (a stray control byte, mail headers)
  are dropped -- arXiv's submission file manager strips them too (issue 13) -- when
  ``%!PS`` starts within the first 64 KiB and the junk holds no NUL byte (our rule: a
  NUL means a binary container, e.g. a tar header glued on, not junk).
* DOS EPS binaries (``C5 D0 D3 C6``: PostScript + optional WMF/TIFF preview, Adobe
  TN 5002): the PostScript section is rendered; when Ghostscript fails on it, or when
  the file ends inside it (truncated upload), the TIFF preview (if any) is decoded with
  Pillow instead; with no usable preview the truncated PostScript is rendered as far as
  it goes (errors caught, the page shown) and accepted if it drew anything.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

__all__ = ["GhostscriptError", "GhostscriptLimits", "find_ghostscript", "postscript_start", "rasterise_postscript", "split_dos_eps"]

_DOS_MAGIC = b"\xc5\xd0\xd3\xc6"
_PS_MAGIC = b"%!PS"
#: How far into a file ``%!PS`` is looked for (bytes).
JUNK_SEARCH_BYTES = 65536
_NUM = rb"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_BBOX = re.compile(rb"%%(HiRes)?BoundingBox:[ \t]*(?:\(atend\)|" + rb"[ \t]+".join([_NUM] * 4) + rb")")
_END_COMMENTS = re.compile(rb"%%EndComments")
# Run the rest of the file inside `stopped`, skip whatever an error left unread, then show
# the page: for PostScript cut off mid-file (the error at the cut is caught).
_TOLERANT_PROLOGUE = (b"/imagemesh_run { { currentfile cvx exec } stopped pop clear currentfile flushfile "
                      b"systemdict /showpage get exec } bind def imagemesh_run\n")
# Run after the file: show the page if the file never did. EPS figures need not call
# ``showpage`` (Adobe TN 5002 lets the including document do it; dvips wraps them that way, and
# REVTeX's sample figures rely on it), so Ghostscript alone would output nothing. ``systemdict``'s
# operator, in case the file redefined ``showpage`` as a no-op (as EPS-including code often does).
_SHOW_IF_UNSHOWN = "currentpagedevice /PageCount get 0 eq { systemdict /showpage get exec } if"


class GhostscriptError(ValueError):
    """PostScript could not be rasterised; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class GhostscriptLimits:
    """Limits of one Ghostscript run.

    Attributes:
        max_side: target longest side of the raster, px (the resolution follows from
            the bounding box).
        max_pixels: largest raster accepted (checked before rendering from the
            bounding box, and again on the output).
        timeout: wall-clock seconds before the process group is killed.
        max_memory: address-space limit of the process, bytes.
        max_dpi: highest resolution used for tiny bounding boxes.
    """

    max_side: int = 1024
    max_pixels: int = 64_000_000
    timeout: float = 60.0
    max_memory: int = 2 * 1024**3
    max_dpi: float = 600.0


def find_ghostscript() -> str | None:
    """Path of the ``gs`` executable, or ``None``."""
    return shutil.which("gs")


def postscript_start(head: bytes) -> int | None:
    """Offset of the PostScript header ``%!PS`` in ``head``, or ``None``.

    ``0`` for a clean file. Leading junk is accepted when ``%!PS`` starts within the first
    :data:`JUNK_SEARCH_BYTES` bytes and the junk holds no NUL byte (text lines, mail
    headers, a stray control byte); a NUL means a binary container (a tar header, an
    archive) whose member should be unpacked, not salvaged.
    """
    at = head.find(_PS_MAGIC, 0, JUNK_SEARCH_BYTES)
    if at < 0 or b"\x00" in head[:at]:
        return None
    return at


def _dos_eps_sections(data: bytes) -> tuple[bytes, bytes | None, bool]:
    """``(postscript, tiff or None, postscript_truncated)``; see :func:`split_dos_eps`."""
    if len(data) < 30 or not data.startswith(_DOS_MAGIC):
        raise GhostscriptError("not a DOS EPS binary file")
    _, ps_off, ps_len, _wmf_off, _wmf_len, tiff_off, tiff_len = struct.unpack_from("<4s6I", data)
    tiff = None
    if tiff_len and tiff_off >= 30 and tiff_off + tiff_len <= len(data):
        tiff = data[tiff_off : tiff_off + tiff_len]
    ps = data[ps_off : ps_off + ps_len] if ps_off >= 30 else b""
    # cut off inside the PostScript (a header that overstates its length by a little is not)
    truncated = ps_off + ps_len > len(data) and b"%%EOF" not in ps[-1024:]
    if ps_len == 0 or (truncated and tiff is None and postscript_start(ps) is None):
        raise GhostscriptError(f"DOS EPS header points outside the file (PostScript at {ps_off}+{ps_len}, size {len(data)})")
    return ps, tiff, truncated


def split_dos_eps(data: bytes) -> tuple[bytes, bytes | None]:
    """Split a DOS EPS binary file (Adobe TN 5002) into ``(postscript, tiff_preview or None)``.

    A file that ends inside the PostScript section (a truncated upload) gives the part
    present; a preview that does not fit in the file is ``None``.

    Raises:
        GhostscriptError: not a DOS EPS file, or neither the PostScript section's start
            nor the TIFF preview lies inside the file ("points outside the file").
    """
    ps, tiff, _ = _dos_eps_sections(data)
    return ps, tiff


def _valid_box(m: re.Match[bytes]) -> tuple[float, float, float, float] | None:
    if m.group(2) is None:  # (atend)
        return None
    try:
        llx, lly, urx, ury = (float(x) for x in m.groups()[1:])
    except ValueError:
        return None
    if not (urx > llx and ury > lly) or max(abs(llx), abs(lly), abs(urx), abs(ury)) > 1e6:
        return None
    return llx, lly, urx, ury


def _bounding_box(ps: bytes) -> tuple[float, float, float, float] | None:
    """The figure's bounding box in PostScript points ``(llx, lly, urx, ury)``, or ``None``.

    DSC (Adobe TN 5001): the first ``%%BoundingBox`` of the header comments (up to
    ``%%EndComments``, within the first 64 KiB) -- the ``%%HiResBoundingBox`` there if
    given; when the header says ``(atend)`` or has none, the last one of the trailer
    (the last 64 KiB). Boxes of EPS files embedded further on are not looked at.
    """
    head = ps[:JUNK_SEARCH_BYTES]
    end = _END_COMMENTS.search(head)
    head = head[: end.start()] if end else head
    found: dict[bool, tuple[float, float, float, float] | None] = {}
    for m in _BBOX.finditer(head):
        found.setdefault(bool(m.group(1)), _valid_box(m))
    box = found.get(True) or found.get(False)
    if box is not None:
        return box
    tail: dict[bool, tuple[float, float, float, float]] = {}
    for m in _BBOX.finditer(ps[-JUNK_SEARCH_BYTES:]):
        b = _valid_box(m)
        if b is not None:
            tail[bool(m.group(1))] = b
    return tail.get(True) or tail.get(False)


def _rlimit_prefix(max_memory: int, max_output: int) -> list[str]:
    """``prlimit`` (util-linux) sets the child's rlimits without a Python ``preexec_fn``
    (which would force a plain fork(), unsafe with threaded libraries such as LanceDB)."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        return []
    return [prlimit, f"--as={max_memory}", f"--fsize={max_output}", "--core=0", "--"]


def _page_args(ps: bytes, limits: GhostscriptLimits) -> list[str]:
    """Resolution, page size and crop prologue: the bounding box (points) mapped onto a
    raster whose longest side is ``limits.max_side`` px (at most ``limits.max_dpi``);
    without a box, a US-letter page.

    Raises:
        GhostscriptError: the raster would exceed ``limits.max_pixels``.
    """
    box = _bounding_box(ps)
    llx, lly, urx, ury = box if box else (0.0, 0.0, 612.0, 792.0)
    w_pt, h_pt = urx - llx, ury - lly
    dpi = max(1.0, min(limits.max_dpi, 72.0 * limits.max_side / max(w_pt, h_pt)))
    w_px, h_px = (max(1, min(limits.max_side, round(v * dpi / 72.0))) for v in (w_pt, h_pt))
    if w_px * h_px > limits.max_pixels:
        raise GhostscriptError(f"raster of {w_px * h_px} pixels exceeds limit of {limits.max_pixels}")
    args = [f"-r{dpi:.4f}", f"-g{w_px}x{h_px}", "-dFIXEDMEDIA"]
    if box and (llx, lly) != (0.0, 0.0):  # composes with the device's own /Install
        args += ["-c", f"<< /Install [ currentpagedevice /Install get /exec load {-llx:.4f} {-lly:.4f} /translate load ] cvx >> setpagedevice"]
    return args


def _run_gs(ps: bytes, limits: GhostscriptLimits, work: Path, tolerant: bool = False) -> Image.Image:
    """One sandboxed Ghostscript run on ``ps``; ``tolerant`` runs it inside ``stopped``
    and shows the page whatever happened (for truncated PostScript).

    Raises:
        GhostscriptError: as :func:`rasterise_postscript`.
    """
    gs = find_ghostscript()
    if gs is None:
        raise GhostscriptError("EPS/PostScript needs Ghostscript, and 'gs' is not installed (apt-get install ghostscript)")
    page = _page_args(ps, limits)
    with tempfile.TemporaryDirectory(prefix="gs-", dir=work) as tmp:
        src = Path(tmp) / "in.ps"
        out = Path(tmp) / "out.png"
        src.write_bytes(_TOLERANT_PROLOGUE + ps if tolerant else ps)
        max_output = int(limits.max_pixels * 3 * 1.2) + 1_000_000
        args = _rlimit_prefix(limits.max_memory, max_output) + [gs, "-dSAFER", "-dBATCH", "-dNOPAUSE", "-dQUIET", "-dNOPROMPT", "-dFirstPage=1", "-dLastPage=1",
                "-sDEVICE=png16m", "-dTextAlphaBits=4", "-dGraphicsAlphaBits=4", f"-sOutputFile={out}"]
        args += page + ["-f", str(src), "-c", _SHOW_IF_UNSHOWN]
        try:
            proc = subprocess.Popen(
                args, cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env={"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LC_ALL": "C"},
                start_new_session=True,
            )
        except OSError as e:
            raise GhostscriptError(f"cannot run Ghostscript: {e}") from e
        try:
            output, _ = proc.communicate(timeout=limits.timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            raise GhostscriptError(f"Ghostscript timed out after {limits.timeout:g} s") from None
        text = output.decode("utf-8", "replace").strip()
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            first = next((ln for ln in text.splitlines() if ln.strip()), "no output")
            raise GhostscriptError(f"Ghostscript failed (exit {proc.returncode}): {first[:200]}")
        img = _open_rgb(out, limits, "raster", "Ghostscript wrote an unreadable image")
    if max(img.size) > limits.max_side:  # a PostScript file that set its own page size
        img.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    if tolerant and img.getextrema() == ((255, 255), (255, 255), (255, 255)):
        raise GhostscriptError("truncated PostScript drew nothing")
    return img


def _open_rgb(source: Path | io.BytesIO, limits: GhostscriptLimits, what: str, unreadable: str) -> Image.Image:
    """Decode ``source`` to RGB after checking its pixel count from the header."""
    try:
        with Image.open(source) as img:
            if img.width * img.height > limits.max_pixels:
                raise GhostscriptError(f"{what} {img.width}x{img.height} exceeds limit of {limits.max_pixels} pixels")
            img.load()
            return img.convert("RGB")
    except GhostscriptError:
        raise
    except Exception as e:
        raise GhostscriptError(f"{unreadable}: {type(e).__name__}: {e}") from e


def _decode_tiff(tiff: bytes, limits: GhostscriptLimits) -> Image.Image:
    """The TIFF preview as RGB, longest side at most ``limits.max_side`` px."""
    img = _open_rgb(io.BytesIO(tiff), limits, "TIFF preview", "TIFF preview unreadable")
    if max(img.size) > limits.max_side:
        img.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    return img


def rasterise_postscript(data: bytes, limits: GhostscriptLimits = GhostscriptLimits(), work: Path | None = None) -> Image.Image:
    """Render the first page of EPS/PostScript ``data`` as an RGB image on white, cropped
    to its bounding box, longest side at most ``limits.max_side`` px.

    Args:
        data: the file's bytes (text PostScript/EPS, possibly after leading junk -- see
            :func:`postscript_start` -- or a DOS EPS binary, possibly truncated).
        limits: :class:`GhostscriptLimits`.
        work: folder for Ghostscript's temporary files (default: the system temp folder).

    Raises:
        GhostscriptError: no ``%!PS`` header, Ghostscript is missing, fails, times out, or
            the raster would exceed the limits (and no TIFF preview could stand in).
    """
    where = Path(work) if work is not None else Path(tempfile.gettempdir())
    if work is not None:
        where.mkdir(parents=True, exist_ok=True)
    if not data.startswith(_DOS_MAGIC):
        at = postscript_start(data)
        if at is None:
            raise GhostscriptError(f"no PostScript header '%!PS' in the first {JUNK_SEARCH_BYTES} bytes (first bytes {data[:8]!r})")
        return _run_gs(data[at:], limits, where)
    ps, tiff, truncated = _dos_eps_sections(data)
    ps = ps[postscript_start(ps) or 0 :]
    errors: list[str] = []
    if truncated:
        errors.append(f"DOS EPS truncated ({len(ps)} bytes of PostScript present)")
    else:
        try:
            return _run_gs(ps, limits, where)
        except GhostscriptError as e:
            errors.append(e.reason)
    if tiff is not None:
        try:
            return _decode_tiff(tiff, limits)
        except GhostscriptError as e:
            errors.append(e.reason)
    if truncated and postscript_start(ps) is not None:
        try:
            return _run_gs(ps, limits, where, tolerant=True)
        except GhostscriptError as e:
            errors.append(e.reason)
    raise GhostscriptError("; ".join(errors))
