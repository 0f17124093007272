"""Load figure files (raster images and PDF pages) as RGB Pillow images, safely.

Every failure on untrusted input is reported as :class:`ImageLoadError`; nothing
here mutates Pillow's global settings, and no file handle outlives a call.

Supported, detected by magic bytes (the file extension is ignored):

* PDF  -- the first page, rasterised with pypdfium2 on a white background;
* PNG, JPEG, GIF, TIFF, BMP, WebP -- via Pillow; multi-frame files give frame 0.

* EPS/PostScript -- the first page cropped to its ``%%BoundingBox``, rasterised by
  Ghostscript (``gs``, Debian ``ghostscript``) in a sandboxed subprocess; text junk
  before ``%!PS`` is skipped, DOS EPS binaries fall back to their TIFF preview (see
  :mod:`imagemesh.media.ghostscript`). Without ``gs`` installed they fail with a clear
  ImageLoadError.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
from PIL import Image

from imagemesh.media.ghostscript import JUNK_SEARCH_BYTES, postscript_start

__all__ = ["ImageLimits", "ImageLoadError", "load_image", "load_image_bytes", "make_thumbnail", "sniff_format", "to_rgb", "PILLOW_FORMATS"]

#: White, the background figures are drawn on (RGB).
WHITE = (255, 255, 255)

_MIB = 1024 * 1024
_MAX_PDF_SCALE = 16.0  # at most 16 px per PDF point (1152 dpi), for tiny pages
_EPS_REASON = "EPS/PostScript needs Ghostscript rasterisation (arXiv source ingest)"
PILLOW_FORMATS = {"png", "jpeg", "gif", "tiff", "bmp", "webp"}


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
    """Identify a file from its first bytes (at least 1 KiB recommended; PostScript after
    leading junk is recognised within the first 64 KiB given).

    Returns one of ``"pdf"``, ``"png"``, ``"jpeg"``, ``"gif"``, ``"tiff"``,
    ``"bmp"``, ``"webp"``, ``"eps"`` (also plain PostScript, and PostScript after text
    junk without NUL bytes, see :func:`imagemesh.media.ghostscript.postscript_start`),
    or ``None``.
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
    if postscript_start(head) is not None:  # junk before %!PS (arXiv strips it too)
        return "eps"
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

    return load_image_bytes(data, limits, path)


def load_image_bytes(data: bytes, limits: ImageLimits = ImageLimits(), path: Path = Path("<bytes>")) -> Image.Image:
    """Decode an in-memory file (an upload, or a file already read) like :func:`load_image`;
    ``path`` only names it in errors.

    Raises:
        ImageLoadError: empty, over ``limits.max_file_bytes``, an unsupported format, or
            any decoding failure listed under :func:`load_image`.
    """
    if not data:
        raise ImageLoadError(path, "empty file (0 bytes)")
    if len(data) > limits.max_file_bytes:
        raise ImageLoadError(path, f"file is {len(data)} bytes, limit is {limits.max_file_bytes}")
    kind = sniff_format(data[:JUNK_SEARCH_BYTES])
    if kind == "pdf":
        return _load_pdf(path, data, limits)
    if kind == "eps":
        return _load_eps(path, data, limits)
    if kind in PILLOW_FORMATS:
        return _load_raster(path, data, limits)
    raise ImageLoadError(path, f"unsupported format (extension {path.suffix or 'none'!r}, "
                               f"first bytes {data[:8]!r})")


def _load_eps(path: Path, data: bytes, limits: ImageLimits) -> Image.Image:
    """Rasterise EPS/PostScript with Ghostscript (sandboxed; see
    :mod:`imagemesh.media.ghostscript`); first page, cropped, on white."""
    from imagemesh.media.ghostscript import GhostscriptError, GhostscriptLimits, rasterise_postscript

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
            return to_rgb(img).copy()
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
                return to_rgb(img).copy()  # copy detaches from pdfium's buffer
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


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    """Turn a single-channel ``I;16*``, ``I`` or ``F`` image into 8-bit ``L``.

    16-bit data (any value > 255 in an integer image) is divided by 257 so that
    65535 becomes 255; float data in [0, 1] is scaled by 255; everything is then clipped.
    """
    arr = np.asarray(img)
    if arr.dtype.kind == "f":
        scaled = arr * 255.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else arr
        scaled = np.nan_to_num(scaled)
    elif int(arr.max(initial=0)) > 255 or img.mode.startswith("I;16"):
        scaled = arr.astype(np.float64) / 257.0
    else:
        scaled = arr
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_rgb(img: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Return ``img`` as an 8-bit ``RGB`` image, whatever its mode.

    Transparent images (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``, and ``P`` or ``L``/``RGB``
    with a ``transparency`` entry) are alpha-composited over ``background`` (white by
    default: figures are drawn on white paper). 16-bit/32-bit/float greyscale is scaled
    to 8 bits; ``1``, ``L``, ``CMYK``, ``YCbCr`` etc. go through Pillow's converters.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _high_bit_depth_to_l(img).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if mode == "1":
        return img.convert("L").convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError:  # e.g. LAB/HSV have no direct converter in some Pillow versions
        return Image.fromarray(np.asarray(img)[..., :3].astype(np.uint8), mode="RGB")



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
    thumb = to_rgb(img)
    if thumb is img:
        thumb = img.copy()
    thumb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()
