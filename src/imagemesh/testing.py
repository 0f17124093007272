"""Synthetic collections for tests and demos that need no real data and no network.

:func:`make_image_folder` writes a ``jsonl`` source folder (:mod:`imagemesh.ingest.sources.jsonl`):
``n`` small PNG images of coloured shapes (deterministic for a seed) and ``metadata.jsonl``
with non-arXiv fields (``museum``, ``artist``, ``century``, ``title``, ``tags``), so a test can
build a real collection (real LanceDB tables, real indices) in seconds with the ``raw``
embedding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["MUSEUMS", "ARTISTS", "make_image_folder", "build_tiny_collection"]

MUSEUMS = ("Rijksmuseum", "Louvre", "Prado", "Uffizi")
ARTISTS = ("Vermeer", "Rembrandt", "Hals", "Steen", "Leyster")


def make_image_folder(root: Path, n: int = 48, seed: int = 0) -> Path:
    """Write ``n`` images and ``metadata.jsonl`` under ``root`` (created); returns ``root``.

    Image ``i`` is 64x48 px: a background colour and 1-3 shapes whose colours depend on
    ``i % 4`` (the museum), so images of a museum look alike. Fields: ``title`` (text),
    ``museum`` (text, 4 values), ``artist`` (text, 5 values), ``century`` (int, 15-19),
    ``tags`` (list of text), ``score`` (float).
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = [(200, 40, 40), (40, 160, 60), (40, 60, 200), (220, 180, 30)]
    lines = []
    for i in range(n):
        g = i % 4
        bg = tuple(int(v) for v in np.clip(np.array(palette[g]) + rng.integers(-30, 30, 3), 0, 255))
        im = Image.new("RGB", (64, 48), bg)
        d = ImageDraw.Draw(im)
        for _ in range(1 + i % 3):
            x0, y0 = (int(v) for v in rng.integers(0, 40, 2))
            d.ellipse([x0, y0, x0 + 20, y0 + 16] if g % 2 else [x0, y0, x0 + 22, y0 + 12], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        name = f"images/img-{i:04d}.png"
        im.save(root / name)
        lines.append({
            "file": name,
            "title": f"Study {i} in {('red', 'green', 'blue', 'ochre')[g]}",
            "museum": MUSEUMS[g],
            "artist": ARTISTS[i % len(ARTISTS)],
            "century": 15 + i % 5,
            "tags": ["painting", ("red", "green", "blue", "ochre")[g]],
            "score": round(float(rng.random()), 3),
        })
    (root / "metadata.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return root


def build_tiny_collection(root: Path, n: int = 48, backend: str = "exact", seed: int = 0) -> Path:
    """A collection at ``root/coll`` from :func:`make_image_folder` (``raw`` embedding, 16-d
    PCA, in-process decoding, no 2-D map); returns its folder."""
    from imagemesh.ingest.build import build_collection
    from imagemesh.ingest.options import BuildOptions

    src = make_image_folder(Path(root) / "src", n, seed)
    out = Path(root) / "coll"
    build_collection(src, out, BuildOptions(embeddings=["raw"], backend=backend, pca_dim=16, progress=False, isolate_decoders=False, map_2d=False))
    return out
