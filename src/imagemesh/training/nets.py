"""Small convnets for the trained embeddings (``ternary``, ``cats``, ``deepcluster``); torch only.

Needs the ``train`` extra. Inference never uses this module: the trained networks are
exported to ONNX and run by ONNX Runtime (:class:`imagemesh.models.onnx_embedding.OnnxEmbedding`).

:class:`SmallConvNet` is a VGG-style stack sized for a 2-core CPU: four blocks of
``conv3x3 -> BatchNorm -> ReLU -> maxpool2`` (widths 16, 32, 64, 128) on a 64x64 input,
global average pooling, a ``Linear(128, 128) + ReLU`` layer whose output is the
**embedding** (the penultimate layer), and a linear classifier on top. About 0.11 M
parameters and 16 M multiply-adds per image (AlexNet at 224 px: 61 M parameters, 0.7 G
multiply-adds; VGG16: 138 M, 15.5 G). DeepCluster (Caron et al. 2018) put a fixed Sobel
filter on the greyscale image in front of the network so that colour cannot be the
clustering cue; ``sobel=True`` does the same.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["SmallConvNet", "Sobel", "FeaturesAndLogits"]


class Sobel(nn.Module):
    """Fixed greyscale + Sobel filter: ``float32[n, 3, h, w] -> float32[n, 2, h, w]`` (dx, dy)."""

    def __init__(self) -> None:
        super().__init__()
        grey = torch.full((1, 3, 1, 1), 1.0 / 3.0)
        kx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        k = torch.stack([kx, kx.t()]).unsqueeze(1)  # [2, 1, 3, 3]
        self.register_buffer("grey", grey)
        self.register_buffer("kernel", k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = nn.functional.conv2d(x, self.grey)
        return nn.functional.conv2d(g, self.kernel, padding=1)


class SmallConvNet(nn.Module):
    """``forward(x: float32[n, 3, s, s]) -> (features float32[n, feature_dim], logits float32[n, num_classes])``.

    Args:
        num_classes: size of the classifier layer (number of labels, or k for DeepCluster).
        widths: channels of the four conv blocks.
        feature_dim: embedding dimension (the penultimate layer).
        sobel: put a fixed greyscale + Sobel filter in front (DeepCluster).
    """

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (16, 32, 64, 128), feature_dim: int = 128, sobel: bool = False) -> None:
        super().__init__()
        self.params: dict[str, Any] = {"num_classes": num_classes, "widths": list(widths), "feature_dim": feature_dim, "sobel": sobel}
        self.sobel = Sobel() if sobel else None
        layers: list[nn.Module] = []
        c_in = 2 if sobel else 3
        for w in widths:
            layers += [nn.Conv2d(c_in, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = w
        self.trunk = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(c_in, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.sobel is not None:
            x = self.sobel(x)
        return self.fc(self.trunk(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return f, self.head(f)


class FeaturesAndLogits(nn.Module):
    """Export wrapper: returns ``(features, logits)``; for DeepCluster ``logits`` is omitted
    (``with_logits=False``) because its cluster head has no meaning outside training."""

    def __init__(self, net: SmallConvNet, with_logits: bool = True) -> None:
        super().__init__()
        self.net = net
        self.with_logits = with_logits

    def forward(self, x: torch.Tensor) -> Any:
        f, logits = self.net(x)
        return (f, logits) if self.with_logits else f
