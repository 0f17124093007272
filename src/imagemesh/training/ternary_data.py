"""Weakly labelled training data for the ``ternary`` embedding (diagram / sensor / mixed).

The seed trained ``ternary`` on 9,748 hand-labelled arXiv images. No human labels exist
here, so the labels are **weak labels by source** (the label follows from where an image
comes from, nobody looked at each image):

- ``diagram``: scientific plots from the SciPy and scikit-learn documentation galleries
  (``shared/tools/fetch-doc-plots.sh``);
- ``sensor``: photographs: the MATE desktop backgrounds (each also cut into random crops, since
  there are only 16) and photographs from ``shared/data/cats-dogs``;
- ``mixed``: synthetic composites made here: 2-4 panels on a white page, at least one
  plot and at least one photograph (the plots and photographs used in composites are
  disjoint from the pure ``diagram``/``sensor`` ones), with random layout, gaps and sizes;
- plus, optionally, arXiv figures labelled by eye (``--by-eye labels.csv``).

``imagemesh train ternary-data --plots DIR --photos DIR --cats-dogs DIR --out DIR``
writes the images and ``labels.csv`` (``image_id,label``) for ``imagemesh train classifier``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

__all__ = ["make_ternary_dataset", "compose"]


def _open(p: Path) -> Image.Image:
    with Image.open(p) as im:
        im.load()
        return im.convert("RGB")


def _fit(img: Image.Image, w: int, h: int) -> Image.Image:
    s = min(w / img.width, h / img.height)
    return img.resize((max(1, int(img.width * s)), max(1, int(img.height * s))), Image.Resampling.BICUBIC)


def compose(panels: Sequence[Image.Image], rng: np.random.Generator) -> Image.Image:
    """Paste ``panels`` into a row, a column or a 2x2 grid on a white page."""
    n = len(panels)
    cell = int(rng.integers(160, 320))
    gap = int(rng.integers(4, 30))
    if n == 4 or (n == 3 and rng.random() < 0.3):
        cols, rows = 2, 2
    elif rng.random() < 0.75:
        cols, rows = n, 1
    else:
        cols, rows = 1, n
    page = Image.new("RGB", (cols * cell + (cols + 1) * gap, rows * cell + (rows + 1) * gap), (255, 255, 255))
    for i, p in enumerate(panels):
        r, c = divmod(i, cols)
        q = _fit(p, cell, cell)
        page.paste(q, (gap + c * (cell + gap) + (cell - q.width) // 2, gap + r * (cell + gap) + (cell - q.height) // 2))
    return page


def make_ternary_dataset(plots: Sequence[Path], photos: Sequence[Path], cat_dog: Sequence[Path], out: Path, n_per_class: int = 300, seed: int = 0) -> Path:
    """Write ``out/{diagram,sensor,mixed}/*`` and ``out/labels.csv``; returns the labels file."""
    rng = np.random.default_rng(seed)
    plots = [plots[i] for i in rng.permutation(len(plots))]
    cat_dog = [cat_dog[i] for i in rng.permutation(len(cat_dog))]
    out = Path(out)
    for d in ("diagram", "sensor", "mixed"):
        (out / d).mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str]] = []
    pure_plots, comp_plots = plots[:n_per_class], plots[n_per_class:]
    for p in pure_plots:
        dst = out / "diagram" / f"{p.parent.name}-{p.name}"
        dst.write_bytes(p.read_bytes())
        rows.append((f"diagram/{dst.name}", "diagram"))
    # photographs: MATE backgrounds + 4 random crops each, then cats/dogs up to n_per_class
    n_sensor = 0
    for p in photos:
        img = _open(p)
        img.thumbnail((1024, 1024))
        crops = [img]
        for _ in range(4):
            w = int(img.width * rng.uniform(0.3, 0.6))
            h = int(img.height * rng.uniform(0.3, 0.6))
            x0, y0 = int(rng.integers(0, img.width - w)), int(rng.integers(0, img.height - h))
            crops.append(img.crop((x0, y0, x0 + w, y0 + h)))
        for j, c in enumerate(crops):
            name = f"mate-{p.stem}-{j}.jpg"
            c.save(out / "sensor" / name, quality=92)
            rows.append((f"sensor/{name}", "sensor"))
            n_sensor += 1
    n_cd = max(0, n_per_class - n_sensor)
    for p in cat_dog[:n_cd]:
        dst = out / "sensor" / p.name
        dst.write_bytes(p.read_bytes())
        rows.append((f"sensor/{dst.name}", "sensor"))
    comp_photos = cat_dog[n_cd:] + list(photos)
    for i in range(n_per_class):
        n = int(rng.integers(2, 5))
        n_photo = int(rng.integers(1, n))
        chosen = [comp_plots[int(j)] for j in rng.integers(0, len(comp_plots), n - n_photo)] + [comp_photos[int(j)] for j in rng.integers(0, len(comp_photos), n_photo)]
        order = rng.permutation(n)
        page = compose([_open(chosen[int(j)]) for j in order], rng)
        name = f"composite-{i:04d}.png"
        page.save(out / "mixed" / name, optimize=False)
        rows.append((f"mixed/{name}", "mixed"))
    labels = out / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "label"])
        w.writerows(rows)
    return labels
