"""PostScript/EPS figures as real authors upload them (issue 13): ``.ps`` files with a
BoundingBox cropped like EPS (also ``(atend)``), junk before ``%!PS``, truncated DOS EPS
binaries -- and the sandbox still holding on each new path.

Files: tests/data/postscript/ (see its README); the shared arXiv EPS files when present.
"""

from __future__ import annotations

import io
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imagemesh.media.ghostscript import (
    JUNK_SEARCH_BYTES,
    GhostscriptError,
    GhostscriptLimits,
    _bounding_box,
    postscript_start,
    rasterise_postscript,
    split_dos_eps,
)
from imagemesh.media.images import ImageLimits, ImageLoadError, load_image, load_image_bytes, sniff_format

pytestmark = pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript not installed (apt-get install ghostscript)")

DATA = Path(__file__).parent / "data" / "postscript"
SHARED_EPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "arxiv-eps"
MPL_PS = DATA / "matplotlib_letter.ps"  # %!PS-Adobe-3.0, BoundingBox 198 324 414 468 on a letter page


def _ink_box(img: Image.Image, threshold: int = 250) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the non-white pixels, px."""
    a = np.asarray(img.convert("L"))
    ys, xs = np.nonzero(a < threshold)
    assert len(xs), "blank image"
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _covers_most(img: Image.Image, frac: float = 0.8) -> bool:
    x0, y0, x1, y1 = _ink_box(img)
    return (x1 - x0) >= frac * img.width and (y1 - y0) >= frac * img.height


# A figure drawn away from the page origin: a filled square with a frame, 120 x 120 pt at (290, 390).
_SQUARE = (b"initgraphics\n0 0 1 setrgbcolor 292 392 116 116 rectfill\n"
           b"0 setgray 2 setlinewidth 291 391 118 118 rectstroke\n")


def _ps(header: bytes, body: bytes = _SQUARE, trailer: bytes = b"") -> bytes:
    return header + b"%%EndComments\n%%Page: 1 1\n" + body + b"showpage\n%%Trailer\n" + trailer + b"%%EOF\n"


# -- 1. %!PS-Adobe-3.0 (not EPSF) with a BoundingBox: cropped, <= max_side -------------------


def test_ps_adobe_header_with_bounding_box_is_cropped(tmp_path: Path) -> None:
    data = MPL_PS.read_bytes()
    assert data.startswith(b"%!PS-Adobe-3.0\n") and b"EPSF" not in data[:100]
    img = rasterise_postscript(data, work=tmp_path)
    # 216 x 144 pt figure -> 1024 x 683 px, not a 2821 x 3992 A4 page with the figure in a corner
    assert max(img.size) == 1024 and abs(img.width / img.height - 216 / 144) < 0.01
    assert _covers_most(img, 0.7)
    via_loader = load_image(MPL_PS)
    assert via_loader.size == img.size
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("setup", [b"", b"<< /PageSize [595 842] >> setpagedevice\n", b"<< /PageSize [20000 20000] >> setpagedevice\n"],
                         ids=["plain", "sets-A4", "sets-huge-page"])
def test_bounding_box_atend_is_read_from_the_trailer(setup: bytes) -> None:
    data = _ps(b"%!PS-Adobe-3.0\n%%BoundingBox: (atend)\n%%Pages: 1\n", setup + _SQUARE, b"%%BoundingBox: 290 390 410 510\n")
    img = rasterise_postscript(data, GhostscriptLimits(max_side=300))
    assert img.size == (300, 300)  # the 120 pt box, not the page the file asked for
    x0, y0, x1, y1 = _ink_box(img)
    assert x0 <= 3 and y0 <= 3 and x1 >= 297 and y1 >= 297  # the frame touches every edge


def test_bounding_box_rules() -> None:
    # DSC header wins; HiRes preferred; (atend) -> trailer; embedded EPS and PageBoundingBox ignored
    assert _bounding_box(b"%!PS-Adobe-3.0\n%%BoundingBox: 1 2 30 40\n%%HiResBoundingBox: 1.5 2.5 29.5 39.5\n%%EndComments\n") == (1.5, 2.5, 29.5, 39.5)
    atend = b"%!PS-Adobe-3.0\n%%BoundingBox: (atend)\n%%EndComments\n%%BeginDocument: inner.eps\n%%BoundingBox: 0 0 5 5\n%%EndDocument\n%%PageBoundingBox: 0 0 612 792\n%%Trailer\n%%BoundingBox: 10 20 110 220\n%%EOF\n"
    assert _bounding_box(atend) == (10.0, 20.0, 110.0, 220.0)
    nested = b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 100 50\n%%EndComments\n%%BeginDocument: a.eps\n%%HiResBoundingBox: 0 0 1 1\n"
    assert _bounding_box(nested) == (0.0, 0.0, 100.0, 50.0)
    assert _bounding_box(b"%!PS\n%%BoundingBox: 10 10 10 10\n") is None  # empty box: a letter page is used
    assert _bounding_box(b"%!PS\n%%BoundingBox: -1e300 0 5 5\n") is None


def test_page_without_bounding_box_stays_within_limits() -> None:
    img = rasterise_postscript(b"%!PS\n" + _SQUARE + b"showpage\n")
    assert max(img.size) <= 1024 and img.size == (791, 1024)  # US letter, 612 x 792 pt


def test_shared_ps_file_keeps_its_size() -> None:
    one = SHARED_EPS / "one.ps"  # cairo, %!PS-Adobe-3.0, BoundingBox 0 0 1024 768
    if not one.is_file():
        pytest.skip("../shared/data not present")
    assert load_image(one).size == (1024, 768)


# -- 2. junk before %!PS ------------------------------------------------------------------------

_MAIL = (b"From author@example.org Mon Mar  3 10:00:00 1997\nSubject: figure 2\n"
         b"Content-Type: text/plain\n\n")


@pytest.mark.parametrize("junk", [b"%\x04", b"\x04", b"\r\n\r\n", _MAIL], ids=["ctrl-d-after-percent", "ctrl-d", "blank-lines", "mail-headers"])
def test_leading_junk_is_stripped(junk: bytes) -> None:
    eps = _ps(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 290 390 410 510\n")
    data = junk + eps
    assert sniff_format(data[:1024]) == "eps" and postscript_start(data) == len(junk)
    img = load_image_bytes(data, ImageLimits(raster_max_side=200), Path("fig.eps"))
    assert img.size == (200, 200) and _covers_most(img, 0.95)
    # the real matplotlib .ps behind a stray byte: still cropped
    assert rasterise_postscript(b"%\x04" + MPL_PS.read_bytes()).size == (1024, 683)


def test_binary_or_distant_junk_is_not_stripped() -> None:
    eps = _ps(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 290 390 410 510\n")
    tar_header = b"fig.eps".ljust(100, b"\x00") + b"0000644\x00" + b"\x00" * 400  # a NUL: a container, not junk
    for data in (tar_header + eps, b"x" * JUNK_SEARCH_BYTES + eps, b"no postscript here\n"):
        assert sniff_format(data[:JUNK_SEARCH_BYTES]) is None
        with pytest.raises(ImageLoadError, match="unsupported format"):
            load_image_bytes(data)
        with pytest.raises(GhostscriptError, match="no PostScript header"):
            rasterise_postscript(data)


def test_shared_tar_glued_eps_still_refused() -> None:
    broken = SHARED_EPS / "ps1_broken.eps"
    if not broken.is_file():
        pytest.skip("../shared/data not present")
    with pytest.raises(ImageLoadError, match="unsupported format"):
        load_image(broken)


# -- 3. truncated DOS EPS binaries --------------------------------------------------------------


def _tiff(size: tuple[int, int] = (90, 60)) -> bytes:
    img = Image.new("L", size, 255)
    ImageDraw.Draw(img).rectangle((10, 10, size[0] - 10, size[1] - 10), fill=0)
    buf = io.BytesIO()
    img.save(buf, format="TIFF")
    return buf.getvalue()


def _dos_eps(ps: bytes, tiff: bytes | None, tiff_first: bool) -> bytes:
    """A DOS EPS binary (Adobe TN 5002): 30-byte header, then the sections."""
    t = tiff or b""
    if tiff_first:
        tiff_off, ps_off = 30, 30 + len(t)
    else:
        ps_off, tiff_off = 30, 30 + len(ps)
    header = struct.pack("<4s6IH", b"\xc5\xd0\xd3\xc6", ps_off, len(ps), 0, 0, tiff_off if tiff else 0, len(t), 0xFFFF)
    body = (t + ps) if tiff_first else (ps + t)
    return header + body


# a long figure: a square drawn first, then enough further drawing that a cut lands after it
_LONG_PS = _ps(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 290 390 410 510\n",
               _SQUARE + b"".join(b"1 0 0 setrgbcolor %d 400 moveto 0 100 rlineto stroke\n" % (300 + i % 100) for i in range(400)))


def test_truncated_dos_eps_falls_back_to_intact_tiff_preview() -> None:
    tiff = _tiff()
    whole = _dos_eps(_LONG_PS, tiff, tiff_first=True)
    assert rasterise_postscript(whole).size == (1000, 1000)  # intact: the PostScript is rendered (120 pt at 600 dpi)
    cut = whole[: len(whole) - len(_LONG_PS) // 2]
    ps, preview = split_dos_eps(cut)
    assert preview == tiff and len(ps) < len(_LONG_PS)
    img = rasterise_postscript(cut)
    assert img.size == (90, 60)  # the preview, not half a drawing
    assert load_image_bytes(cut, path=Path("fig.eps")).size == (90, 60)


def test_truncated_dos_eps_without_preview_renders_what_is_there(tmp_path: Path) -> None:
    whole = _dos_eps(_LONG_PS, None, tiff_first=False)
    cut = whole[: len(whole) - len(_LONG_PS) // 2]
    img = rasterise_postscript(cut, GhostscriptLimits(max_side=240), work=tmp_path)
    assert img.size == (240, 240) and _covers_most(img, 0.95)  # cropped to the header's box, square drawn
    assert list(tmp_path.iterdir()) == []
    # cut inside the prologue: nothing drawn -> refused, with the reasons
    head_only = whole[: 30 + 80]
    with pytest.raises(GhostscriptError, match="truncated"):
        rasterise_postscript(head_only)
    # nothing of either section inside the file
    with pytest.raises(GhostscriptError, match="outside the file"):
        split_dos_eps(whole[:30])


def test_shared_dos_eps_truncated_uses_its_preview() -> None:
    src = SHARED_EPS / "dos_eps_1.eps"  # TIFF preview first, then the PostScript
    if not src.is_file():
        pytest.skip("../shared/data not present")
    data = src.read_bytes()
    ps_off, ps_len = struct.unpack_from("<II", data, 4)
    tiff = split_dos_eps(data)[1]
    assert tiff is not None
    cut = data[: ps_off + ps_len // 3]
    assert rasterise_postscript(cut).size == Image.open(io.BytesIO(tiff)).size
    # PostScript first and cut before its preview: what was drawn, cropped to the header's box
    vasili = (SHARED_EPS / "cond-mat.vasili.1890.fig3.eps").read_bytes()
    img = rasterise_postscript(vasili[: len(vasili) * 9 // 10])
    assert img.size == rasterise_postscript(vasili).size and _ink_box(img)


# -- 4. the sandbox on the new paths ------------------------------------------------------------


def test_tolerant_rendering_keeps_the_sandbox(tmp_path: Path) -> None:
    # reading a file outside: -dSAFER refuses it, the error is caught, nothing drawn -> refused
    steal = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n(/etc/passwd) (r) file pop 0 0 100 100 rectfill\n" + b"%" * 4000
    cut = _dos_eps(steal, None, tiff_first=False)[:2000]
    with pytest.raises(GhostscriptError, match="drew nothing"):
        rasterise_postscript(cut, work=tmp_path)
    # an endless loop in truncated PostScript: still killed at the timeout
    loop = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n{ 1 pop } loop\n" + b"%" * 4000
    t = time.perf_counter()
    with pytest.raises(GhostscriptError, match="timed out"):
        rasterise_postscript(_dos_eps(loop, None, tiff_first=False)[:2000], GhostscriptLimits(timeout=1.5), work=tmp_path)
    assert time.perf_counter() - t < 10
    # the crop prologue does not open file access: a cropped .ps reading a file fails
    with pytest.raises(GhostscriptError, match="Ghostscript failed"):
        rasterise_postscript(b"%!PS-Adobe-3.0\n%%BoundingBox: 10 10 100 100\n(/etc/passwd) (r) file pop showpage\n", work=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_junk_stripped_file_still_times_out() -> None:
    with pytest.raises(GhostscriptError, match="timed out"):
        rasterise_postscript(_MAIL + b"%!PS\n%%BoundingBox: 0 0 10 10\n{ 1 pop } loop\n", GhostscriptLimits(timeout=1.5))
