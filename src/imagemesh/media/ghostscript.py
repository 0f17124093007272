"""Rasterise EPS and PostScript with Ghostscript (Debian ``ghostscript``), safely.

Ghostscript runs as a separate process with ``-dSAFER`` (no file access outside its
input and output), ``-dBATCH -dNOPAUSE``, the first page only, a wall-clock timeout,
CPU/memory/output-size rlimits and an empty environment, in a private temporary folder.

EPS files with a DOS binary header (``C5 D0 D3 C6``: PostScript + optional WMF/TIFF
preview) are split: the PostScript section is rendered; when Ghostscript fails on it,
the TIFF preview (if any) is decoded with Pillow instead.
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

__all__ = ["GhostscriptError", "GhostscriptLimits", "find_ghostscript", "rasterise_postscript", "split_dos_eps"]

_DOS_MAGIC = b"\xc5\xd0\xd3\xc6"
_BBOX = re.compile(rb"%%(HiRes)?BoundingBox:[ \t]*(-?[\d.]+)[ \t]+(-?[\d.]+)[ \t]+(-?[\d.]+)[ \t]+(-?[\d.]+)")


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


def split_dos_eps(data: bytes) -> tuple[bytes, bytes | None]:
    """Split a DOS EPS binary file into ``(postscript, tiff_preview or None)``.

    Raises:
        GhostscriptError: the header's offsets do not fit the file.
    """
    if len(data) < 30 or not data.startswith(_DOS_MAGIC):
        raise GhostscriptError("not a DOS EPS binary file")
    _, ps_off, ps_len, _wmf_off, _wmf_len, tiff_off, tiff_len = struct.unpack_from("<4s6I", data)
    if ps_len == 0 or ps_off + ps_len > len(data):
        raise GhostscriptError(f"DOS EPS header points outside the file (PostScript at {ps_off}+{ps_len}, size {len(data)})")
    tiff = None
    if tiff_len and tiff_off + tiff_len <= len(data):
        tiff = data[tiff_off : tiff_off + tiff_len]
    return data[ps_off : ps_off + ps_len], tiff


def _bounding_box(ps: bytes) -> tuple[float, float, float, float] | None:
    """The (HiRes)BoundingBox of the header or trailer, or ``None``."""
    best = None
    for m in _BBOX.finditer(ps[:65536] + b"\n" + ps[-65536:]):
        try:
            box = tuple(float(x) for x in m.groups()[1:])
        except ValueError:
            continue
        if box[2] > box[0] and box[3] > box[1]:
            if m.group(1):  # HiRes wins
                return box  # type: ignore[return-value]
            best = best or box
    return best  # type: ignore[return-value]


def _rlimit_prefix(max_memory: int, max_output: int) -> list[str]:
    """``prlimit`` (util-linux) sets the child's rlimits without a Python ``preexec_fn``
    (which would force a plain fork(), unsafe with threaded libraries such as LanceDB)."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        return []
    return [prlimit, f"--as={max_memory}", f"--fsize={max_output}", "--core=0", "--"]


def _run_gs(ps: bytes, limits: GhostscriptLimits, work: Path) -> Image.Image:
    gs = find_ghostscript()
    if gs is None:
        raise GhostscriptError("EPS/PostScript needs Ghostscript, and 'gs' is not installed (apt-get install ghostscript)")
    box = _bounding_box(ps)
    w_pt, h_pt = (box[2] - box[0], box[3] - box[1]) if box else (612.0, 792.0)
    dpi = min(limits.max_dpi, 72.0 * limits.max_side / max(w_pt, h_pt))
    dpi = max(dpi, 1.0)
    px = (w_pt * dpi / 72.0) * (h_pt * dpi / 72.0)
    if px > limits.max_pixels:
        raise GhostscriptError(f"raster of {px:.0f} pixels exceeds limit of {limits.max_pixels}")
    with tempfile.TemporaryDirectory(prefix="gs-", dir=work) as tmp:
        src = Path(tmp) / "in.ps"
        out = Path(tmp) / "out.png"
        src.write_bytes(ps)
        max_output = int(limits.max_pixels * 3 * 1.2) + 1_000_000
        args = _rlimit_prefix(limits.max_memory, max_output) + [gs, "-dSAFER", "-dBATCH", "-dNOPAUSE", "-dQUIET", "-dNOPROMPT", "-dFirstPage=1", "-dLastPage=1",
                "-sDEVICE=png16m", f"-r{dpi:.3f}", "-dTextAlphaBits=4", "-dGraphicsAlphaBits=4"]
        if box:
            args.append("-dEPSCrop")
        else:  # the page size the resolution was computed for
            args += ["-sPAPERSIZE=letter", "-dFIXEDMEDIA"]
        args += [f"-sOutputFile={out}", "-f", str(src)]
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
        return _open_rgb(out, limits, "raster", "Ghostscript wrote an unreadable image")


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
    return _open_rgb(io.BytesIO(tiff), limits, "TIFF preview", "TIFF preview unreadable")


def rasterise_postscript(data: bytes, limits: GhostscriptLimits = GhostscriptLimits(), work: Path | None = None) -> Image.Image:
    """Render the first page of EPS/PostScript ``data`` as an RGB image on white.

    Args:
        data: the file's bytes (text PostScript/EPS, or DOS EPS binary).
        limits: :class:`GhostscriptLimits`.
        work: folder for Ghostscript's temporary files (default: the system temp folder).

    Raises:
        GhostscriptError: Ghostscript is missing, fails, times out, or the raster would
            exceed the limits (and no TIFF preview could stand in).
    """
    tiff = None
    ps = data
    if data.startswith(_DOS_MAGIC):
        ps, tiff = split_dos_eps(data)
    if work is not None:
        Path(work).mkdir(parents=True, exist_ok=True)
    try:
        return _run_gs(ps, limits, Path(work) if work is not None else Path(tempfile.gettempdir()))
    except GhostscriptError as e:
        if tiff is None:
            raise
        try:
            return _decode_tiff(tiff, limits)
        except GhostscriptError as e2:
            raise GhostscriptError(f"{e.reason}; {e2.reason}") from e
