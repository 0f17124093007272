"""The trained built-in embeddings ``ternary``, ``cats`` and ``deepcluster`` (ONNX, run by ONNX Runtime).

Each is a :class:`imagemesh.training.nets.SmallConvNet` (64 px input, 128-d penultimate
layer = the embedding) trained by this package and shipped as ``models/data/<name>.onnx``
with its model card ``<name>.json`` (training data, cross-validation accuracy or the
DeepCluster NMI curve, ONNX parity, file hash) and, for the classifiers, ``<name>.labels.txt``.

- ``ternary``: diagram / sensor / mixed, trained on **weak labels by source**
  (:mod:`imagemesh.training.ternary_data`); its class probabilities go into the
  ``predictions`` metadata.
- ``cats``: cat / dog, trained on 300 + 300 photographs (``shared/data/cats-dogs``) and run
  over arXiv figures, where, like the seed's, it "produces some unlikely associations".
- ``deepcluster``: unsupervised DeepCluster (Caron et al. 2018) on arXiv figures and
  documentation plots (:mod:`imagemesh.training.deepcluster`); no predictions.

Retrain with ``imagemesh train classifier`` / ``imagemesh train deepcluster`` (``train`` extra).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from imagemesh.models.onnx_embedding import OnnxEmbedding

__all__ = ["TernaryEmbedding", "CatsEmbedding", "DeepClusterEmbedding", "card_path"]


def card_path(stem: str) -> Path:
    return Path(str(resources.files("imagemesh.models") / "data" / f"{stem}.json"))


class _Shipped(OnnxEmbedding):
    STEM = ""
    NAME = ""

    def __init__(self, threads: int = 0) -> None:
        super().__init__(card_path(self.STEM), name=self.NAME, threads=threads, top_k=10)


class TernaryEmbedding(_Shipped):
    STEM = NAME = "ternary"
    description = "a small CNN trained to tell diagrams, sensor images and mixed figures apart (weak labels)"


class CatsEmbedding(_Shipped):
    STEM = NAME = "cats"
    description = "a small CNN trained on cat and dog photographs: odd, sometimes amusing associations"


class DeepClusterEmbedding(_Shipped):
    STEM = NAME = "deepcluster"
    description = "a small CNN trained without labels (DeepCluster) on arXiv figures and documentation plots"
