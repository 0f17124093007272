"""Load figure files (raster images and PDF pages) as RGB Pillow images, safely.

Every failure on untrusted input is reported as :class:`ImageLoadError`; nothing
here mutates Pillow's global settings, and no file handle outlives a call.

Supported, detected by magic bytes (the file extension is ignored):

* PDF  -- the first page, rasterised with pypdfium2 on a white background;
* PNG, JPEG, GIF, TIFF, BMP, WebP -- via Pillow; multi-frame files give frame 0.

* EPS/PostScript -- the first page, rasterised by Ghostscript (``gs``, Debian
  ``ghostscript``) in a sandboxed subprocess; DOS EPS binaries fall back to their
  TIFF preview. Without ``gs`` installed they fail with a clear ImageLoadError.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
from PIL import Image

from imagemesh.models.preprocess import to_rgb as _to_rgb

__all__ = ["ImageLimits", "ImageLoadError", "load_image", "make_thumbnail", "sniff_format"]

_MIB = 1024 * 1024
_MAX_PDF_SCALE = 16.0  # at most 16 px per PDF point (1152 dpi), for tiny pages
_EPS_REASON = "EPS/PostScript needs Ghostscript rasterisation (arXiv source ingest)"
_PILLOW_FORMATS = {"png", "jpeg", "gif", "tiff", "bmp", "webp"}


class ImageLoadError(ValueError):
    """A file could not be turned into an image.

    Attributes:
        path: the file that failed.
        reason: a short human-readable explanation.
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot load image {self.path}: {reason}")


@dataclass(frozen=True)
class ImageLimits:
    """Resource limits for :func:`load_image`.

    Attributes:
        max_file_bytes: largest accepted file, in bytes (default 64 MiB).
        max_pixels: largest accepted raster, width * height in pixels, checked
            from the header before any pixel is decoded (decompression-bomb guard).
            Pillow's own global ``Image.MAX_IMAGE_PIXELS`` check still applies
            on top (it rejects above twice its value, ~179 Mpx by default).
        raster_max_side: target longest side, in pixels, when rasterising a
            PDF page (vector graphics).
    """

    max_file_bytes: int = 64 * _MIB
    max_pixels: int = 64_000_000
    raster_max_side: int = 1024


def sniff_format(head: bytes) -> str | None:
    """Identify a file from its first bytes (at least 1 KiB recommended).

    Returns one of ``"pdf"``, ``"png"``, ``"jpeg"``, ``"gif"``, ``"tiff"``,
    ``"bmp"``, ``"webp"``, ``"eps"`` (also plain PostScript), or ``None``.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):  # text PS/EPS, DOS EPS binary header
        return "eps"
    if b"%PDF-" in head[:1024]:  # PDF readers accept junk before the header
        return "pdf"
    return None


def load_image(path: Path, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Load ``path`` as a fully decoded RGB image.

    PDFs give their first page rasterised so that the longest side is about
    ``limits.raster_max_side`` pixels, on white. Raster images keep their size;
    animated/multi-page files give their first frame. Alpha is composited over
    white.

    Raises:
        ImageLoadError: the file is missing, empty, larger than
            ``limits.max_file_bytes``, of an unsupported format, EPS/PostScript
            that Ghostscript cannot render (or no ``gs``), truncated or corrupt, above ``limits.max_pixels``,
            or a PDF with no pages or a password.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            raise ImageLoadError(path, "empty file (0 bytes)")
        if size > limits.max_file_bytes:
            raise ImageLoadError(path, f"file is {size} bytes, limit is {limits.max_file_bytes}")
        data = path.read_bytes()
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read file: {exc.strerror or exc}") from exc
    if len(data) > limits.max_file_bytes:  # the file grew between stat and read
        raise ImageLoadError(path, f"file exceeds {limits.max_file_bytes} bytes")

    kind = sniff_format(data[:1024])
    if kind == "pdf":
        return _load_pdf(path, data, limits)
    if kind == "eps":
        return _load_eps(path, data, limits)
    if kind in _PILLOW_FORMATS:
        return _load_raster(path, data, limits)
    raise ImageLoadError(path, f"unsupported format (extension {path.suffix or 'none'!r}, "
                               f"first bytes {data[:8]!r})")


def _load_eps(path: Path, data: bytes, limits: ImageLimits) -> Image.Image:
    """Rasterise EPS/PostScript with Ghostscript (sandboxed; see
    :mod:`imagemesh.sources.arxiv_src.ghostscript`); first page, on white."""
    from imagemesh.sources.arxiv_src.ghostscript import GhostscriptError, GhostscriptLimits, rasterise_postscript

    try:
        return rasterise_postscript(data, GhostscriptLimits(max_side=limits.raster_max_side, max_pixels=limits.max_pixels))
    except GhostscriptError as exc:
        raise ImageLoadError(path, f"{_EPS_REASON} failed: {exc.reason}") from exc


def _load_raster(path: Path, data: bytes, limits: ImageLimits) -> Image.Image:
    """Decode a Pillow-supported raster held in ``data``; see :func:`load_image`."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w <= 0 or h <= 0:
                raise ImageLoadError(path, f"invalid image size {w}x{h}")
            if w * h > limits.max_pixels:
                raise ImageLoadError(
                    path, f"{w}x{h} = {w * h} pixels exceeds limit of {limits.max_pixels} "
                          "(possible decompression bomb)")
            img.seek(0)
            img.load()
            return _to_rgb(img).copy()
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(path, f"decompression bomb: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageLoadError(path, "corrupt image: Pillow cannot identify the data") from exc
    except Exception as exc:  # Pillow raises many types on hostile input
        raise ImageLoadError(path, f"corrupt or truncated image: {type(exc).__name__}: {exc}") from exc


def _load_pdf(path: Path, data: bytes, limits: ImageLimits) -> Image.Image:
    """Rasterise the first page of the PDF held in ``data``; see :func:`load_image`."""
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        reason = str(exc)
        if "password" in reason.lower():
            reason = f"PDF is password-protected ({reason})"
        raise ImageLoadError(path, f"cannot open PDF: {reason}") from exc
    try:
        if len(pdf) == 0:
            raise ImageLoadError(path, "PDF has no pages")
        page = pdf[0]
        try:
            width_pt, height_pt = page.get_size()
            if not (width_pt > 0 and height_pt > 0):
                raise ImageLoadError(path, f"PDF page has invalid size {width_pt}x{height_pt} pt")
            scale = min(limits.raster_max_side / max(width_pt, height_pt), _MAX_PDF_SCALE)
            bitmap = page.render(scale=scale, fill_color=(255, 255, 255, 255))
            try:
                img = bitmap.to_pil()
                return _to_rgb(img).copy()  # copy detaches from pdfium's buffer
            finally:
                bitmap.close()
        finally:
            page.close()
    except ImageLoadError:
        raise
    except Exception as exc:  # pdfium errors on malformed content
        raise ImageLoadError(path, f"cannot rasterise PDF: {type(exc).__name__}: {exc}") from exc
    finally:
        pdf.close()


def make_thumbnail(img: Image.Image, max_side: int = 256, quality: int = 85) -> bytes:
    """Encode a JPEG thumbnail of ``img``.

    Args:
        img: any Pillow image (not modified).
        max_side: longest side of the result, in pixels; smaller images are
            not upscaled. Aspect ratio is kept.
        quality: JPEG quality, 1..95.

    Returns:
        Baseline RGB JPEG bytes.

    Raises:
        ValueError: ``max_side`` < 1 or ``quality`` outside 1..95.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    if not 1 <= quality <= 95:
        raise ValueError(f"quality must be in 1..95, got {quality}")
    thumb = _to_rgb(img)
    if thumb is img:
        thumb = img.copy()
    thumb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()
