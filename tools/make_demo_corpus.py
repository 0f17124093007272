#!/usr/bin/env python3
"""Build the bundled demo corpus ``src/imagemesh/demo_data/`` from the shared ACL 2023 figures.

Writes, under the output directory:

* ``figures.csv``  -- the source header (``paper_title,arxiv_id,fig1_file_path,fig1_caption,
  abstract,introduction``), ``introduction`` emptied, ``fig1_file_path`` = ``images/<id>.<ext>``;
* ``images/<arxiv_id>.png|.jpg`` -- each figure loaded with :func:`imagemesh.media.images.load_image`
  (PDFs rasterised), downsized to a longest side of 512 px (never upscaled), stored as a
  palette PNG when that looks as good as JPEG q85 and is smaller, else as JPEG q85;
* ``NOTICE.md`` -- CC BY 4.0 attribution for every figure and a statement of the changes.

Usage: ``python tools/make_demo_corpus.py [--source DIR] [--out DIR]``. Deterministic output.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imagemesh.media.images import ImageLoadError, load_image  # noqa: E402

HEADER = ["paper_title", "arxiv_id", "fig1_file_path", "fig1_caption", "abstract", "introduction"]
MAX_SIDE = 512  # px, longest side of a stored figure
JPEG_QUALITY = 85
PALETTE_SIZES = (256, 128, 64)  # colours tried for palette PNGs
MAX_PNG_RMSE = 3.0  # a palette PNG may differ from the original by at most this (0..255 scale)


def _rmse(a: Image.Image, b: Image.Image) -> float:
    """Root-mean-square difference of two same-size RGB images, on the 0..255 scale."""
    diff = np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)
    return float(np.sqrt(np.mean(diff * diff)))


def encode_figure(img: Image.Image) -> tuple[bytes, str]:
    """Downsize an RGB figure to MAX_SIDE and encode it compactly.

    JPEG q85 is the baseline. Palette PNGs (256/128/64 colours, no dithering) are
    accepted when their RMSE is no worse than the JPEG's and at most MAX_PNG_RMSE;
    the smallest accepted encoding wins.

    Returns:
        (encoded bytes, file extension without dot: ``"png"`` or ``"jpg"``).
    """
    small = img.convert("RGB")
    small.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)  # never upscales
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    best = (buf.getvalue(), "jpg")
    with Image.open(io.BytesIO(best[0])) as decoded:
        limit = min(_rmse(decoded.convert("RGB"), small), MAX_PNG_RMSE)
    for colours in PALETTE_SIZES:
        pal = small.quantize(colors=colours, method=Image.Quantize.MEDIANCUT,
                             dither=Image.Dither.NONE)
        if _rmse(pal.convert("RGB"), small) > limit:
            break  # fewer colours only get worse
        buf = io.BytesIO()
        pal.save(buf, format="PNG", optimize=True)
        if len(buf.getvalue()) < len(best[0]):
            best = (buf.getvalue(), "png")
    return best


def _notice(rows: list[dict[str, str]]) -> str:
    """The NOTICE.md text: licence, changes made, and one attribution line per figure."""
    lines = [
        "# Demo data: notice and attribution",
        "",
        "The figures, titles, captions and abstracts in this directory come from papers published",
        "at ACL 2023 (Annual Meeting of the Association for Computational Linguistics) and posted",
        "on arXiv. ACL Anthology papers are licensed under the Creative Commons Attribution 4.0",
        "International licence (CC BY 4.0, https://creativecommons.org/licenses/by/4.0/).",
        "The copyright of each figure remains with the authors of its paper.",
        "",
        "Changes made (as CC BY 4.0 requires us to indicate): each paper's first figure was",
        "rasterised from vector PDF where applicable, resized to at most 512 pixels on its",
        "longest side, and re-encoded as palette-quantised PNG or JPEG (quality 85); alpha was",
        "composited over white. In `figures.csv` the `introduction` column was emptied and",
        "`fig1_file_path` rewritten to point at the files here; titles, captions and abstracts",
        "are unchanged.",
        "",
        f"## Attribution ({len(rows)} figures)",
        "",
        "Each line: file, paper title, arXiv identifier (https://arxiv.org/abs/<id>).",
        "",
    ]
    for row in rows:
        title = " ".join(row["paper_title"].split())
        lines.append(f"- `{row['fig1_file_path']}`: first figure of \"{title}\", "
                     f"arXiv:{row['arxiv_id']} (https://arxiv.org/abs/{row['arxiv_id']})")
    return "\n".join(lines) + "\n"


def build(source: Path, out: Path) -> None:
    """Build the demo corpus from ``source`` (with figures.csv and images/) into ``out``."""
    csv.field_size_limit(sys.maxsize)
    with open(source / "figures.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != HEADER:
            raise SystemExit(f"unexpected header {reader.fieldnames}, want {HEADER}")
        rows = list(reader)

    images_out = out / "images"
    images_out.mkdir(parents=True, exist_ok=True)
    for stale in [*images_out.glob("*.png"), *images_out.glob("*.jpg")]:
        stale.unlink()  # figures from an earlier run

    kept: list[dict[str, str]] = []
    failed: list[str] = []
    counts = {"png": 0, "jpg": 0}
    for row in rows:
        arxiv_id = row["arxiv_id"]
        src = source / "images" / Path(row["fig1_file_path"]).name
        try:
            data, ext = encode_figure(load_image(src))
        except ImageLoadError as exc:
            failed.append(f"{arxiv_id}: {exc.reason}")
            continue
        rel = f"images/{arxiv_id}.{ext}"
        (out / rel).write_bytes(data)
        counts[ext] += 1
        kept.append({**row, "fig1_file_path": rel, "introduction": ""})

    with open(out / "figures.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
    (out / "NOTICE.md").write_text(_notice(kept), encoding="utf-8")

    image_bytes = sum(p.stat().st_size for p in images_out.iterdir())
    total = image_bytes + sum((out / n).stat().st_size for n in ("figures.csv", "NOTICE.md"))
    print(f"{len(kept)}/{len(rows)} figures: {counts['png']} PNG, {counts['jpg']} JPEG; "
          f"images {image_bytes / 1e6:.2f} MB, total {total / 1e6:.2f} MB")
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path,
                        default=ROOT.parent / "shared" / "data" / "arxiv-figures")
    parser.add_argument("--out", type=Path, default=ROOT / "src" / "imagemesh" / "demo_data")
    args = parser.parse_args()
    build(args.source, args.out)


if __name__ == "__main__":
    main()
