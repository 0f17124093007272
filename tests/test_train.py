"""Training (needs the ``train`` extra): a short classifier run from a labels CSV through the
CLI, with k-fold cross-validation, ONNX export, parity and registration; a short DeepCluster
run; k-means re-seeding of empty clusters. Small data and 1-2 epochs: this checks the
machinery, not the accuracy (the shipped models' cards hold the real figures)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imagemesh.cli import cli
from imagemesh.plugins import default_registries

from .conftest import FIGURES, SHARED, require_shared

pytest.importorskip("torch")
pytest.importorskip("onnxscript")


def test_assign_clusters_never_leaves_empty_clusters() -> None:
    from imagemesh.training.deepcluster import assign_clusters

    rng = np.random.default_rng(0)
    x = np.concatenate([np.zeros((30, 4)), rng.normal(size=(10, 4)) + 10]).astype(np.float32)  # many duplicates
    labels, _ = assign_clusters(x, 12, seed=0)
    assert np.bincount(labels, minlength=12).min() >= 1


def test_train_classifier_cli_from_labels_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_shared()
    monkeypatch.setenv("IMAGEMESH_MODELS", str(tmp_path / "models"))
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "label"])
        for lab in ("cat", "dog"):
            for p in sorted((SHARED / "cats-dogs" / lab).iterdir())[:8]:
                w.writerow([f"{lab}/{p.name}", lab])
    r = CliRunner().invoke(cli, ["train", "classifier", str(labels), "--images", str(SHARED / "cats-dogs"), "--name", "pets", "--folds", "2", "--epochs", "1", "--threads", "2"])
    assert r.exit_code == 0, r.output
    assert "2-fold cross-validation accuracy" in r.output
    card = json.loads((tmp_path / "models" / "pets.json").read_text())
    assert card["cross_validation"]["folds"] == 2 and len(card["cross_validation"]["fold_accuracies"]) == 2
    assert card["labels"] == ["cat", "dog"] and card["training"]["n_images"] == 16
    assert max(card["onnx_parity_max_abs_diff"].values()) <= 1e-4
    regs = default_registries()
    emb = regs.embeddings.get("pets")(threads=1)
    assert emb.dim == 128 and emb.labels == ["cat", "dog"]


def test_labels_errors(tmp_path: Path) -> None:
    from imagemesh.training.classifier import collect_labelled

    bad = tmp_path / "l.csv"
    bad.write_text("image_id,label\nmissing-image,cat\nx,dog\n")
    with pytest.raises(ValueError, match="no image 'missing-image'"):
        collect_labelled(bad)
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a").mkdir()
    with pytest.raises(ValueError, match="at least two labels"):
        collect_labelled(tmp_path / "only")


def test_deepcluster_short_run(tmp_path: Path) -> None:
    require_shared()
    from imagemesh.training.deepcluster import train_deepcluster

    paths = sorted((FIGURES / "images").glob("*.png"))[:24]
    card = train_deepcluster(paths, tmp_path / "dc.onnx", k=6, epochs=3, threads=2)
    t = card["training"]
    assert t["k"] == 6 and len(t["curve"]) == 3 and len(t["nmi_successive"]) == 2
    assert all(0 <= v <= 1 for v in t["nmi_successive"])
    assert all(p["largest_cluster"] < 24 for p in t["curve"])
    assert card["feature_dim"] == 128 and "logits_output" not in card
    assert max(card["onnx_parity_max_abs_diff"].values()) <= 1e-4
