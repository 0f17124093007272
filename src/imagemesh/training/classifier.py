"""Train a classifier embedding from labelled images (``imagemesh train classifier``).

Labels come from a folder with one sub-folder per label (``cats-dogs/cat/*.jpg``,
``cats-dogs/dog/*.jpg``) or a labels file (CSV ``image_id,label``; ``image_id`` is a path
relative to the labels file, or to ``images_dir``, or a file stem such as an arXiv id
looked up in ``images_dir``). The network is :class:`imagemesh.training.nets.SmallConvNet`;
the embedding is its penultimate layer (128-d), the predicted class and probabilities of all
classes go into the collection's ``predictions`` metadata.

Accuracy is reported as stratified k-fold cross-validation (default 5 folds: train on 4/5,
test on the held-out 1/5, each image tested once), then the final network is trained on all
images, exported to ONNX, checked against torch (max |diff|), and described by a model card.
Needs the ``train`` extra.
"""

from __future__ import annotations

import logging
import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["LabelledImages", "collect_labelled", "train_classifier", "evaluate_onnx"]


@dataclass
class LabelledImages:
    """Image files and their labels; ``source`` describes where the labels came from."""

    paths: list[Path]
    labels: list[str]
    source: str
    problems: list[str] = field(default_factory=list)


#: Image file extensions looked for in label folders.
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp", ".webp", ".pdf"}


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def collect_labelled(source: Path, images_dir: Path | None = None) -> LabelledImages:
    """Read a folder-per-label tree or a ``image_id,label`` CSV.

    Raises:
        ValueError: no labels, fewer than two labels, or an image id that matches no file.
    """
    source = Path(source)
    if source.is_dir():
        labels_dirs = sorted(d for d in source.iterdir() if d.is_dir() and not d.name.startswith("."))
        paths, labels = [], []
        for d in labels_dirs:
            files = image_files(d)
            paths += files
            labels += [d.name] * len(files)
        out = LabelledImages(paths, labels, f"folder per label: {source}")
    elif source.is_file():
        base = Path(images_dir) if images_dir else source.parent
        stems: dict[str, Path] | None = None
        paths, labels, problems = [], [], []
        with open(source, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r and not r[0].lstrip().startswith("#")]
        if rows and [c.strip().lower() for c in rows[0][:2]] == ["image_id", "label"]:
            rows = rows[1:]
        for n, row in enumerate(rows, start=1):
            if not row or not "".join(row).strip() or row[0].startswith("#"):
                continue
            if len(row) < 2 or not row[1].strip():
                raise ValueError(f"{source}:{n}: expected 'image_id,label', got {row!r}")
            image_id, label = row[0].strip(), row[1].strip()
            p = base / image_id
            if not p.is_file():
                if stems is None:
                    stems = {q.stem: q for q in image_files(base)}
                q = stems.get(image_id)
                if q is None:
                    raise ValueError(f"{source}:{n}: no image {image_id!r} under {base}")
                p = q
            paths.append(p)
            labels.append(label)
        out = LabelledImages(paths, labels, f"labels file: {source}", problems)
    else:
        raise ValueError(f"{source} is neither a folder nor a labels file")
    if len(set(out.labels)) < 2:
        raise ValueError(f"{source}: need at least two labels with images, found {sorted(set(out.labels))}")
    return out


def train_classifier(
    data: LabelledImages,
    out: Path,
    name: str,
    *,
    folds: int = 5,
    epochs: int = 30,
    seed: int = 0,
    cache: Path | None = None,
    card_extra: dict[str, Any] | None = None,
    save_state: bool = False,
    threads: int | None = None,
    log: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """Cross-validate, train on everything, export ``out`` (ONNX) + card; returns the card.

    Args:
        data: labelled images (:func:`collect_labelled`).
        out: the ONNX file to write (card ``<stem>.json`` and labels ``<stem>.labels.txt`` beside it).
        name: embedding name in the card.
        folds: k of the stratified k-fold cross-validation (``0`` or ``1`` = none).
        epochs: training epochs per fold and for the final network.
        save_state: also write the torch state dict ``<stem>.pt`` (for parity tests).
        threads: torch intra-op threads (``None``: torch's default). On a loaded machine 1 is
            often faster than 2.
    """
    import torch
    from sklearn.model_selection import StratifiedKFold

    from imagemesh.training.nets import SmallConvNet
    from imagemesh.training.training import export_checked, fit, load_arrays, predict, write_card

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    x, ok = load_arrays(data.paths, cache=cache, log=log)
    classes = sorted(set(data.labels))
    y_all = np.array([classes.index(lab) for lab in data.labels])
    y = y_all[ok]
    counts = {c: int((y == i).sum()) for i, c in enumerate(classes)}
    log(f"{name}: {len(y)} images, classes {counts}")
    cv: dict[str, Any] | None = None
    if folds >= 2:
        skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        accs, confusion = [], np.zeros((len(classes), len(classes)), dtype=int)
        for k, (tr, te) in enumerate(skf.split(np.zeros(len(y)), y)):
            torch.manual_seed(seed + k)
            net = fit(SmallConvNet(len(classes)), x[tr], y[tr], epochs, seed=seed + k)
            pred = predict(net, x[te])[1].argmax(1)
            accs.append(float((pred == y[te]).mean()))
            np.add.at(confusion, (y[te], pred), 1)
            log(f"  fold {k + 1}/{folds}: accuracy {accs[-1]:.4f}")
        cv = {
            "folds": folds,
            "accuracy_mean": round(float(np.mean(accs)), 4),
            "accuracy_std": round(float(np.std(accs)), 4),
            "fold_accuracies": [round(a, 4) for a in accs],
            "confusion": {"rows_true_cols_predicted": classes, "matrix": confusion.tolist()},
        }
        log(f"{name}: {folds}-fold cross-validation accuracy {cv['accuracy_mean'] * 100:.2f}% (± {cv['accuracy_std'] * 100:.2f})")
    torch.manual_seed(seed)
    net = fit(SmallConvNet(len(classes)), x, y, epochs, seed=seed)
    out = Path(out)
    parity = export_checked(net, out, x, with_logits=True, seed=seed, save_state=save_state, name=name, log=log)
    card = {
        "name": name,
        "kind": "classifier",
        "training": {
            "data": data.source,
            "n_images": int(len(y)),
            "class_counts": counts,
            "skipped_images": int((~ok).sum()),
            "epochs": epochs,
            "optimizer": "AdamW, one-cycle lr 2e-3, weight decay 1e-4, batch 64, flip + shift augmentation",
            "seed": seed,
            "seconds": round(time.perf_counter() - t0, 1),
        },
        "cross_validation": cv,
        "onnx_parity_max_abs_diff": parity,
        **(card_extra or {}),
    }
    card_path = write_card(out, card, net, classes)
    log(f"{name}: wrote {out} and {card_path}")
    return json.loads(card_path.read_text())


def evaluate_onnx(card_path: Path, data: LabelledImages) -> dict[str, Any]:
    """Accuracy and confusion of a classifier card's ONNX network (ONNX Runtime, the
    inference path: canonical image -> preprocessing -> network) on labelled images.
    Labels that the network does not know count as errors."""
    from imagemesh.media.canonical import canonical_image
    from imagemesh.media.images import load_image
    from imagemesh.models.onnx_embedding import OnnxEmbedding

    emb = OnnxEmbedding(Path(card_path), top_k=1)
    assert emb.labels is not None
    names = sorted(set(data.labels) | set(emb.labels))
    confusion = np.zeros((len(names), len(names)), dtype=int)
    for i in range(0, len(data.paths), 32):
        imgs = [canonical_image(load_image(p))[1] for p in data.paths[i : i + 32]]
        _, preds = emb.embed_batch_with_predictions(imgs)
        for lab, pp in zip(data.labels[i : i + 32], preds or []):
            confusion[names.index(lab), names.index(pp[0].label)] += 1
    n = int(confusion.sum())
    return {"data": data.source, "n_images": n, "accuracy": round(float(np.trace(confusion)) / max(1, n), 4),
            "confusion": {"rows_true_cols_predicted": names, "matrix": confusion.tolist()}}
