"""Tests for imagemesh.media.images: real arXiv figures and hostile files."""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from imagemesh.media.images import ImageLimits, ImageLoadError, load_image, make_thumbnail

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FIGURES = SHARED / "arxiv-figures" / "images"
EPS_DIR = SHARED / "arxiv-eps"

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"shared data directory {SHARED} is absent"
)


def _figure_files() -> list[Path]:
    return sorted(FIGURES.iterdir()) if FIGURES.is_dir() else []


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose IHDR claims width x height RGB pixels, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _pdf(objects: list[str], trailer_extra: str = "") -> bytes:
    """A minimal PDF with a correct xref table; object 1 is the catalog."""
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R {trailer_extra}>>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return out


_ONE_PAGE = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>",
]


# --- real data -------------------------------------------------------------------------

@needs_shared
@pytest.mark.parametrize("path", _figure_files(), ids=lambda p: p.name)
def test_every_arxiv_figure_loads_as_rgb(path: Path) -> None:
    img = load_image(path)
    assert img.mode == "RGB"
    w, h = img.size
    assert min(w, h) >= 16 and max(w, h) <= 10_000
    if path.suffix.lower() == ".pdf":  # rasterised to ~raster_max_side on the long side
        assert abs(max(w, h) - ImageLimits().raster_max_side) <= 2


@needs_shared
def test_figure_count_matches_readme() -> None:
    assert len(_figure_files()) == 166


@needs_shared
def test_pdf_raster_side_follows_limits() -> None:
    pdf = next(p for p in _figure_files() if p.suffix == ".pdf")
    assert max(load_image(pdf, ImageLimits(raster_max_side=300)).size) in range(298, 303)


@needs_shared
@pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript (apt-get install ghostscript) not installed")
def test_eps_is_rasterised_with_ghostscript(tmp_path: Path) -> None:
    for name in ("dos_eps_1.eps", "P11_cmplx_plane.eps", "one.ps"):
        img = load_image(EPS_DIR / name, ImageLimits(raster_max_side=300))
        assert img.mode == "RGB" and max(img.size) in range(298, 303)
    with pytest.raises(ImageLoadError, match="unsupported format") as info:  # a tar header glued before the EPS
        load_image(EPS_DIR / "ps1_broken.eps")
    assert info.value.path == EPS_DIR / "ps1_broken.eps"


@needs_shared
def test_tiff_loads() -> None:
    img = load_image(EPS_DIR / "image.tif")
    assert img.mode == "RGB" and img.size == (88, 31)


@needs_shared
def test_upper_case_png_extension(tmp_path: Path) -> None:
    real = [p for p in _figure_files() if p.suffix == ".PNG"]
    assert real, "the corpus has one .PNG file"
    assert load_image(real[0]).mode == "RGB"
    copy = tmp_path / "FIGURE.PNG"
    Image.new("RGB", (40, 30), "navy").save(copy, format="PNG")
    assert load_image(copy).size == (40, 30)


# --- hostile input ---------------------------------------------------------------------

def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty") as info:
        load_image(path)
    assert info.value.path == path and str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="cannot read"):
        load_image(tmp_path / "nope.png")


def test_truncated_png(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.effect_noise((300, 200), 64).convert("RGB").save(buf, format="PNG")
    path = tmp_path / "truncated.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(path)


def test_header_only_png(tmp_path: Path) -> None:
    path = tmp_path / "header.png"
    path.write_bytes(_png_claiming(10, 10)[:30])
    with pytest.raises(ImageLoadError):
        load_image(path)


def test_random_bytes_with_png_extension(tmp_path: Path) -> None:
    path = tmp_path / "random.png"
    path.write_bytes(os.urandom(4096).replace(b"%PDF-", b"xxxxx"))
    with pytest.raises(ImageLoadError, match="unsupported format"):
        load_image(path)


def test_text_file_named_pdf(tmp_path: Path) -> None:
    path = tmp_path / "paper.pdf"
    path.write_text("This is not a PDF, just text.\n")
    with pytest.raises(ImageLoadError, match="unsupported format"):
        load_image(path)


def test_decompression_bomb_png(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(100_000, 100_000))
    assert path.stat().st_size < 200
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path)


def test_pixel_limit_is_per_call(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (200, 100), "white").save(path)
    assert load_image(path).size == (200, 100)
    with pytest.raises(ImageLoadError, match="exceeds limit"):
        load_image(path, ImageLimits(max_pixels=10_000))
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS > 10_000


def test_file_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.new("RGB", (20, 20)).save(path)
    with pytest.raises(ImageLoadError, match="limit"):
        load_image(path, ImageLimits(max_file_bytes=10))


def test_truncated_pdf(tmp_path: Path) -> None:
    path = tmp_path / "cut.pdf"
    path.write_bytes(_pdf(_ONE_PAGE)[:60])
    with pytest.raises(ImageLoadError, match="PDF"):
        load_image(path)


def test_pdf_with_zero_pages(tmp_path: Path) -> None:
    path = tmp_path / "zero.pdf"
    path.write_bytes(_pdf(["<< /Type /Catalog /Pages 2 0 R >>",
                           "<< /Type /Pages /Kids [] /Count 0 >>"]))
    with pytest.raises(ImageLoadError, match="PDF"):
        load_image(path)


def test_password_protected_pdf(tmp_path: Path) -> None:
    encrypt = f"<< /Filter /Standard /V 1 /R 2 /O <{'ab' * 32}> /U <{'cd' * 32}> /P -4 >>"
    path = tmp_path / "locked.pdf"
    path.write_bytes(_pdf([*_ONE_PAGE, encrypt],
                          f"/Encrypt 4 0 R /ID [<{'11' * 16}> <{'11' * 16}>] "))
    with pytest.raises(ImageLoadError, match="password"):
        load_image(path)


def test_minimal_pdf_rasterised_on_white(tmp_path: Path) -> None:
    path = tmp_path / "page.pdf"
    path.write_bytes(_pdf(_ONE_PAGE))  # 200 x 100 pt, blank
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (1024, 512)
    assert img.getextrema() == ((255, 255), (255, 255), (255, 255))


# --- conversions -----------------------------------------------------------------------

def test_rgba_png_becomes_rgb_on_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    img.putpixel((0, 0), (255, 0, 0, 255))
    img.putpixel((1, 0), (0, 0, 255, 128))
    path = tmp_path / "alpha.png"
    img.save(path)
    out = load_image(path)
    assert out.mode == "RGB"
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (255, 0, 0)
    r, g, b = out.getpixel((1, 0))  # type: ignore[misc]
    assert b == 255 and 120 <= r <= 135 and 120 <= g <= 135


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    path = tmp_path / "pal.png"
    Image.new("P", (8, 8), 0).save(path, transparency=0)
    assert load_image(path).getpixel((3, 3)) == (255, 255, 255)


def test_multiframe_gif_gives_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    first, second = Image.new("RGB", (12, 8), (0, 0, 255)), Image.new("RGB", (12, 8), (255, 0, 0))
    first.save(path, save_all=True, append_images=[second])
    out = load_image(path)
    assert out.size == (12, 8) and out.getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize("fmt,mode", [("JPEG", "CMYK"), ("BMP", "1"), ("WEBP", "RGB"),
                                      ("TIFF", "L"), ("PNG", "I;16")])
def test_other_formats_and_modes(tmp_path: Path, fmt: str, mode: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new(mode, (16, 9)).save(path, format=fmt)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (16, 9)


def test_format_sniffed_not_from_extension(tmp_path: Path) -> None:
    path = tmp_path / "actually_jpeg.png"
    Image.new("RGB", (16, 9), "green").save(path, format="JPEG")
    assert load_image(path).size == (16, 9)


# --- thumbnails ------------------------------------------------------------------------

@pytest.mark.parametrize("size,expected", [((1000, 500), (256, 128)), ((300, 900), (85, 256)),
                                           ((100, 50), (100, 50))])
def test_make_thumbnail(size: tuple[int, int], expected: tuple[int, int]) -> None:
    src = Image.new("RGBA", size, (0, 128, 0, 255))
    data = make_thumbnail(src)
    assert data[:3] == b"\xff\xd8\xff"
    with Image.open(io.BytesIO(data)) as thumb:
        assert thumb.format == "JPEG" and thumb.mode == "RGB"
        assert thumb.size == expected
    assert src.size == size and src.mode == "RGBA"  # input untouched


def test_make_thumbnail_rejects_bad_arguments() -> None:
    img = Image.new("RGB", (10, 10))
    with pytest.raises(ValueError):
        make_thumbnail(img, max_side=0)
    with pytest.raises(ValueError):
        make_thumbnail(img, quality=101)
