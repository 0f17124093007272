"""Uploads for query-by-image: read a size-limited multipart body and decode images,
all in memory.

Starlette's own form parser spools file parts larger than 1 MiB to a temporary file;
the data policy promises that nothing a user sends is written anywhere, so the body is
read here with a hard byte limit and parsed with python-multipart's streaming parser
into ``bytes``. Images are decoded from those bytes under
:class:`imagemesh.media.images.ImageLimits` (pixel count checked from the header before any
pixel is decoded: the decompression-bomb guard).
"""

from __future__ import annotations

import io
import warnings
from urllib.parse import parse_qsl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from imagemesh.media.images import ImageLimits, sniff_format
from imagemesh.models.preprocess import to_rgb

if TYPE_CHECKING:
    from imagemesh.media.isolate import IsolatedDecoder

__all__ = ["UploadError", "FormData", "read_form", "decode_image", "canonical_upload", "RASTER_FORMATS"]

#: Formats accepted for upload (PDF and PostScript are not: they would need a renderer).
RASTER_FORMATS = ("png", "jpeg", "gif", "webp", "bmp", "tiff")


class UploadError(Exception):
    """A bad upload; ``status`` is the HTTP status to answer with; ``upload`` names the file
    (``{"field", "index", "filename"}``) when one file of a query is at fault, so a client
    can tell which one and drop it."""

    def __init__(self, status: int, message: str, upload: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.upload = upload


@dataclass
class FormData:
    """Parsed multipart form: text ``fields``, ``files`` (name -> list of bytes) and their
    ``filenames`` as the client sent them (name -> list, same order)."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[bytes]] = field(default_factory=dict)
    filenames: dict[str, list[str]] = field(default_factory=dict)

    def values(self, name: str) -> list[str]:
        return self.fields.get(name, [])

    def first(self, name: str) -> str | None:
        v = self.fields.get(name)
        return v[0] if v else None


@dataclass
class _Part:
    """The form part being parsed: its header name/value so far, headers, and data."""

    hname: bytearray = field(default_factory=bytearray)
    hvalue: bytearray = field(default_factory=bytearray)
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)


async def read_form(request: Request, max_bytes: int, max_parts: int) -> FormData:
    """Read ``request``'s multipart (or URL-encoded) body, at most ``max_bytes``, into memory.

    Raises:
        UploadError: 415 not multipart, 413 body too large, 400 malformed body or too
            many parts.
    """
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    urlencoded = ctype == b"application/x-www-form-urlencoded"
    if not ctype and request.headers.get("content-length", "0") == "0" and "transfer-encoding" not in request.headers:
        return FormData()  # no body at all: an empty form
    if not urlencoded and (ctype != b"multipart/form-data" or not params.get(b"boundary")):
        raise UploadError(415, "send multipart/form-data (files and fields) or application/x-www-form-urlencoded (fields only)")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise UploadError(413, f"request body larger than {max_bytes} bytes")
        except ValueError:
            raise UploadError(400, "invalid Content-Length") from None

    if urlencoded:
        return await _read_urlencoded(request, max_bytes, max_parts)
    form = FormData()
    cur = _Part()
    n_parts = 0

    def on_part_begin() -> None:
        nonlocal n_parts, cur
        n_parts += 1
        if n_parts > max_parts:
            raise UploadError(400, f"more than {max_parts} parts in the form")
        cur = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        cur.hname += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        cur.hvalue += data[start:end]

    def on_header_end() -> None:
        cur.headers[bytes(cur.hname).lower()] = bytes(cur.hvalue)
        cur.hname, cur.hvalue = bytearray(), bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        cur.data += data[start:end]

    def on_part_end() -> None:
        disp, opts = parse_options_header(cur.headers.get(b"content-disposition", b""))
        name = opts.get(b"name")
        if disp != b"form-data" or name is None:
            raise UploadError(400, "a form part has no name")
        key = name.decode("utf-8", "replace")
        payload = bytes(cur.data)
        if b"filename" in opts:
            form.files.setdefault(key, []).append(payload)
            form.filenames.setdefault(key, []).append(opts[b"filename"].decode("utf-8", "replace")[:200])
        else:
            try:
                form.fields.setdefault(key, []).append(payload.decode("utf-8"))
            except UnicodeDecodeError:
                raise UploadError(400, f"field {key[:40]!r} is not UTF-8 text") from None

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes:
                raise UploadError(413, f"request body larger than {max_bytes} bytes")
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        raise
    except Exception as e:  # python-multipart raises its own errors on malformed bodies
        raise UploadError(400, f"malformed multipart body: {type(e).__name__}") from None
    return form


async def _read_urlencoded(request: Request, max_bytes: int, max_parts: int) -> FormData:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise UploadError(413, f"request body larger than {max_bytes} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=max_parts)
    except (UnicodeDecodeError, ValueError):
        raise UploadError(400, f"malformed form body (UTF-8, at most {max_parts} fields)") from None
    form = FormData()
    for k, v in pairs:
        form.fields.setdefault(k, []).append(v)
    return form


def _check_header(data: bytes, limits: ImageLimits) -> None:
    """Size, format and pixel count from the header only (no pixel is decoded).

    Raises:
        UploadError: 413 too many bytes or pixels, 415 not an accepted format, 400 corrupt.
    """
    if not data:
        raise UploadError(400, "empty file")
    if len(data) > limits.max_file_bytes:
        raise UploadError(413, f"image larger than {limits.max_file_bytes} bytes")
    kind = sniff_format(data[:1024])
    if kind not in RASTER_FORMATS:
        raise UploadError(415, f"unsupported image type ({kind or 'unknown'}); send PNG, JPEG, GIF, WebP, BMP or TIFF")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(413, "image has too many pixels (decompression bomb guard)") from None
    except Exception as e:  # Pillow raises many types on hostile input
        raise UploadError(400, f"corrupt or truncated image ({type(e).__name__})") from None
    if w <= 0 or h <= 0:
        raise UploadError(400, f"invalid image size {w}x{h}")
    if w * h > limits.max_pixels:
        raise UploadError(413, f"{w}x{h} pixels is more than the limit of {limits.max_pixels} (decompression bomb guard)")


def decode_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Decode an uploaded raster image from memory to RGB, in this process.

    Raises:
        UploadError: 413 too many bytes or pixels, 415 not an accepted format, 400
            corrupt data.
    """
    _check_header(data, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.seek(0)
                img.load()
                return to_rgb(img).copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(413, "image has too many pixels (decompression bomb guard)") from None
    except Exception as e:  # Pillow raises many types on hostile input
        raise UploadError(400, f"corrupt or truncated image ({type(e).__name__})") from None


def canonical_upload(data: bytes, limits: ImageLimits, decoder: "IsolatedDecoder | None" = None) -> Image.Image:
    """Check an upload and return its canonical RGB image: the decoded form of the
    <= 512 px JPEG that every embedding sees (:func:`imagemesh.media.canonical.canonical_image`).

    With ``decoder`` (the server's default), the header is checked here and the pixels
    are decoded in the :class:`~imagemesh.media.isolate.IsolatedDecoder` worker process, so a
    decoder crash, hang or memory blow-up on a hostile file is a 400 for that request,
    not a dead server. The bytes reach the worker through a pipe, never a file.

    Raises:
        UploadError: as :func:`decode_image`; 400 when the isolated decoder fails.
    """
    from imagemesh.media.canonical import canonical_image, decode_jpeg
    from imagemesh.media.images import ImageLoadError

    if decoder is None:
        return canonical_image(decode_image(data, limits))[1]
    _check_header(data, limits)
    try:
        _, jpeg = decoder.canonical_bytes(data)
    except ImageLoadError as e:
        raise UploadError(400, f"the image could not be decoded: {e.reason}") from None
    return decode_jpeg(jpeg)
