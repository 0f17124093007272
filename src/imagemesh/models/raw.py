"""The ``raw`` embedding: the image's own pixels at a small fixed size.

As in the original ImageMesh, this "generally produces associations based on overall
colour content". Recipe: the RGB image (alpha already composited over white by
:func:`imagemesh.media.images.load_image`) is letterboxed onto a white square (so wide figures
keep their layout), resized to ``size x size`` (default 32, BICUBIC), and flattened
to ``float32[3 * size * size]`` in ``[0, 1]`` (channel-last order R, G, B per pixel).
Compared with Euclidean distance (``metric = "l2"``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from imagemesh.core.embedding import BaseEmbedding, EmbeddingConfig
from imagemesh.models.preprocess import letterbox, to_rgb

__all__ = ["RawPixels"]


class RawPixels(BaseEmbedding):
    name = "raw"
    metric = "l2"
    #: one line for people choosing an embedding (the explorer's dropdown)
    description = "the pixels at 32×32: figures of similar overall colour and layout"

    def __init__(self, size: int = 32) -> None:
        if size < 2 or size > 256:
            raise ValueError("raw embedding size must be in [2, 256]")
        self.size = int(size)
        self.dim = 3 * self.size * self.size

    def embed_batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``n`` images -> ``float32[n, 3 * size * size]`` in ``[0, 1]``."""
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for i, img in enumerate(images):
            small = letterbox(to_rgb(img), self.size)
            out[i] = np.asarray(small, dtype=np.float32).reshape(-1) / 255.0
        return out

    def config(self) -> EmbeddingConfig:
        return EmbeddingConfig(
            name=self.name,
            kind="raw",
            dim=self.dim,
            metric="l2",
            preprocess={"resize": "letterbox", "size": self.size, "fill": "white", "scale": "1/255", "layout": "HWC"},
        )
