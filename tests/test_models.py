"""Trained embeddings (ternary, cats, deepcluster), ONNX import, model cards, `models list`, `embed`.

Parity tests need torch (the ``train`` extra) and are skipped without it; everything else
needs only the runtime dependencies.
"""

from __future__ import annotations

import csv
import hashlib
import json
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from imagemesh.ingest.build import BuildOptions, build_collection
from imagemesh.ingest.embed import add_embedding
from imagemesh.media.canonical import canonical_image, decode_jpeg
from imagemesh.cli import cli
from imagemesh.query.collection import open_collection
from imagemesh.media.images import load_image
from imagemesh.models.cards import ModelImportError, import_onnx_model, list_models, register_user_models
from imagemesh.ingest.prefetch import prefetched
from imagemesh.core.registry import Registry
from imagemesh.plugins import default_registries

from .conftest import FIGURES, SHARED, make_subset, require_shared

DATA = Path(__file__).resolve().parents[1] / "src" / "imagemesh" / "models" / "data"
SHIPPED = ["ternary", "cats", "deepcluster"]


def _real_images(n_fig: int = 12, n_cat: int = 4) -> list[Image.Image]:
    require_shared()
    figs = sorted((FIGURES / "images").iterdir())[:n_fig]
    cats = sorted((SHARED / "cats-dogs" / "cat").iterdir())[:n_cat] + sorted((SHARED / "cats-dogs" / "dog").iterdir())[:n_cat]
    return [canonical_image(load_image(p))[1] for p in figs + cats]


# ------------------------------------------------------------------ shipped trained models


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_matches_file(name: str) -> None:
    card = json.loads((DATA / f"{name}.json").read_text())
    onnx = DATA / card["file"]
    assert hashlib.sha256(onnx.read_bytes()).hexdigest() == card["sha256"]
    assert onnx.stat().st_size < 5_000_000
    assert card["name"] == name and card["feature_dim"] == 128
    assert card["preprocess"]["size"] == 64
    assert max(card["onnx_parity_max_abs_diff"].values()) <= 1e-4
    if name == "deepcluster":
        nmi = card["training"]["nmi_successive"]
        assert len(nmi) >= 5 and all(0 <= v <= 1 for v in nmi)
        assert card["training"]["k"] == 100
    else:
        cv = card["cross_validation"]
        assert cv["folds"] == 5 and 0.5 < cv["accuracy_mean"] <= 1.0
        assert (DATA / card["labels_file"]).read_text().split() == card["labels"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_embedding_runs_with_predictions(name: str) -> None:
    regs = default_registries()
    emb = regs.embeddings.get(name)(threads=1)
    images = _real_images(4, 2)
    vecs, preds = emb.embed_batch_with_predictions(images)
    assert vecs.shape == (len(images), 128) and vecs.dtype == np.float32 and np.isfinite(vecs).all()
    assert np.allclose(vecs, emb.embed_batch(images), atol=1e-6)
    if name == "deepcluster":
        assert preds is None
    else:
        labels = json.loads((DATA / f"{name}.json").read_text())["labels"]
        for pp in preds:
            assert sorted(p.label for p in pp) == sorted(labels)  # all classes with probabilities
            assert abs(sum(p.p for p in pp) - 1) < 1e-5 and pp[0].p >= pp[-1].p


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_onnx_parity_with_torch(name: str) -> None:
    """torch (the shipped state dict) vs ONNX Runtime on real arXiv figures and photos."""
    torch = pytest.importorskip("torch")
    from imagemesh.training.nets import SmallConvNet
    from imagemesh.models.onnx_embedding import OnnxEmbedding

    card_path = DATA / f"{name}.json"
    card = json.loads(card_path.read_text())
    p = card["architecture_params"]
    net = SmallConvNet(p["num_classes"], widths=tuple(p["widths"]), feature_dim=p["feature_dim"], sobel=p["sobel"])
    net.load_state_dict(torch.load(DATA / f"{name}.pt", map_location="cpu", weights_only=True))
    net.eval()
    emb = OnnxEmbedding(card_path, threads=1)
    images = _real_images(12, 4)
    x = emb.prepare(images)
    feats, preds = emb.embed_prepared_with_predictions(x)
    with torch.no_grad():
        f_t, logits_t = net(torch.from_numpy(x))
    assert float(np.abs(feats - f_t.numpy()).max()) <= 1e-4
    if name != "deepcluster":
        p_t = torch.softmax(logits_t, 1).numpy()
        labels = card["labels"]
        for i, pp in enumerate(preds):
            for pr in pp:
                assert abs(pr.p - p_t[i, labels.index(pr.label)]) <= 1e-4


def test_cats_knows_cats_from_dogs() -> None:
    require_shared()
    emb = default_registries().embeddings.get("cats")(threads=1)
    cats = [load_image(p) for p in sorted((SHARED / "cats-dogs" / "cat").iterdir())[-20:]]
    dogs = [load_image(p) for p in sorted((SHARED / "cats-dogs" / "dog").iterdir())[-20:]]
    _, pc = emb.embed_batch_with_predictions([canonical_image(i)[1] for i in cats])
    _, pd = emb.embed_batch_with_predictions([canonical_image(i)[1] for i in dogs])
    right = sum(p[0].label == "cat" for p in pc) + sum(p[0].label == "dog" for p in pd)
    assert right >= 24  # training images, so well above chance


# ------------------------------------------------------------------ ONNX import


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ONNX network exported from torch in the test: input [batch, 3, 32, 32],
    outputs ``emb`` [batch, 8], ``scores`` [batch, 3], ``fmap`` [batch, 4, 16, 16]."""
    torch = pytest.importorskip("torch")
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.fc = nn.Linear(4, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor):  # noqa: ANN201
            fmap = torch.relu(self.conv(x))
            e = self.fc(fmap.mean(dim=(2, 3)))
            return e, self.head(e), fmap

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    with warnings.catch_warnings():  # the exporter's own deprecation warnings
        warnings.simplefilter("ignore")
        torch.onnx.export(Tiny().eval(), (torch.zeros(2, 3, 32, 32),), str(out), input_names=["image"], output_names=["emb", "scores", "fmap"],
                          dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}}, opset_version=18, dynamo=True, external_data=False, verbose=False)
    return out


def test_import_onnx_model_and_use_it(tiny_onnx: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    models = tmp_path / "models"
    card_path = import_onnx_model(tiny_onnx, "tiny", input_size=32, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], output="emb",
                                  logits="scores", labels=labels, folder=models, description="random weights, test only")
    card = json.loads(card_path.read_text())
    assert card["feature_dim"] == 8 and card["input"] == "image" and card["labels"] == ["a", "b", "c"]
    assert card["sha256"] == hashlib.sha256((models / "tiny.onnx").read_bytes()).hexdigest()
    assert card["preprocess"] == {"size": 32, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "resize": "letterbox"}
    regs = default_registries(models_folder=models)
    assert "tiny" in regs.embeddings.names() and "imagenet" in regs.embeddings.names()
    emb = regs.embeddings.get("tiny")(threads=1)
    vecs, preds = emb.embed_batch_with_predictions([Image.new("RGB", (50, 20), (200, 10, 10)), Image.new("RGB", (20, 50), (0, 0, 0))])
    assert vecs.shape == (2, 8) and len(preds) == 2 and len(preds[0]) == 3
    listed = {r["name"]: r for r in list_models(regs)}
    assert listed["tiny"]["source"] == "user" and listed["tiny"]["dim"] == 8
    # the same folder never overwrites a registered name
    reg: Registry = Registry("embedding")
    reg.register("tiny", "x:y")
    assert register_user_models(reg, models) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"output": "nope"}, "'nope'"),
        ({"output": "fmap"}, "[1, 4, 16, 16]"),
        ({"input_size": 64}, "does not match --input-size 64"),
        ({"input_name": "pixels"}, "--input 'pixels' is not an input"),
        ({"name": "Bad Name"}, "lowercase"),
        ({"name": "imagenet"}, "already an embedding"),
        ({"mean": [123.7, 116.3, 103.5]}, "0-255 scale"),
        ({"std": [0.2, 0.2]}, "1 or 3 values"),
        ({"logits": "scores"}, "--logits needs --labels"),
    ],
)
def test_import_errors_are_clear(tiny_onnx: Path, tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"name": "t", "input_size": 32, "mean": [0.5], "std": [0.25], "output": "emb", "folder": tmp_path / "m", "taken": ["raw", "imagenet"]}
    args.update(kwargs)
    name = args.pop("name")
    with pytest.raises(ModelImportError) as e:
        import_onnx_model(tiny_onnx, name, **args)
    assert message in str(e.value)
    assert not (tmp_path / "m" / f"{name}.json").exists()


def test_import_rejects_non_onnx_and_label_mismatch(tiny_onnx: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelImportError, match="not a valid ONNX model"):
        import_onnx_model(junk, "j", input_size=32, mean=[0.5], std=[0.5], output="emb", folder=tmp_path)
    labels = tmp_path / "two.txt"
    labels.write_text("a\nb\n")
    with pytest.raises(ModelImportError, match="2 names but 'scores' has 3 classes"):
        import_onnx_model(tiny_onnx, "j", input_size=32, mean=[0.5], std=[0.5], output="emb", logits="scores", labels=labels, folder=tmp_path)


def test_import_intermediate_tensor(tiny_onnx: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(tiny_onnx))
    mean_node = next(n for n in model.graph.node if n.op_type == "ReduceMean")
    card = json.loads(import_onnx_model(tiny_onnx, "mid", input_size=32, mean=[0.5], std=[0.5], output=mean_node.output[0], folder=tmp_path).read_text())
    assert card["feature_dim"] == 4


def test_cli_models_import_and_list(tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEMESH_MODELS", str(tmp_path / "models"))
    r = CliRunner().invoke(cli, ["models", "import", str(tiny_onnx), "--name", "tiny", "--input-size", "32", "--output", "emb"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["models", "import", str(tiny_onnx), "--name", "tiny2", "--input-size", "32", "--output", "wrong"])
    assert r.exit_code == 2 and "error:" in r.output and "'wrong'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["models", "list", "--json"])
    assert r.exit_code == 0, r.output
    rows = {d["name"]: d for d in json.loads(r.output)}
    assert {"raw", "imagenet", "ternary", "cats", "deepcluster", "tiny"} <= set(rows)
    assert rows["cats"]["labels"] == ["cat", "dog"] and rows["ternary"]["cv_folds"] == 5
    assert rows["tiny"]["source"] == "user"


# ------------------------------------------------------------------ embed pipeline


def test_prefetched_keeps_order_overlaps_and_raises() -> None:
    seen_threads = set()

    def produce(i: int) -> int:
        seen_threads.add(threading.current_thread().name)
        time.sleep(0.01)
        return i * i

    assert list(prefetched(list(range(6)), produce)) == [(i, i * i) for i in range(6)]
    assert all(t.startswith("imagemesh-decode") for t in seen_threads)

    def bad(i: int) -> int:
        if i == 2:
            raise ValueError("boom")
        return i

    with pytest.raises(ValueError, match="boom"):
        list(prefetched([0, 1, 2, 3], bad))


@pytest.fixture(scope="module")
def small_collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = make_subset(tmp_path_factory.mktemp("src"), 14)
    out = tmp_path_factory.mktemp("embed") / "coll"
    build_collection(src, out, BuildOptions(embeddings=["raw"], backend="exact", chunk_size=5, progress=False, map_2d=False))
    return out


def test_cli_embed_adds_trained_embedding(small_collection: Path) -> None:
    r = CliRunner().invoke(cli, ["embed", str(small_collection), "--embedding", "cats", "--chunk-size", "4", "--quiet"])
    assert r.exit_code == 0, r.output
    c = open_collection(small_collection)
    assert set(c.embeddings) == {"raw", "cats"}
    md = c.get(0)
    assert [p["label"] for p in md["predictions"]["cats"]] and {p["label"] for p in md["predictions"]["cats"]} == {"cat", "dog"}
    hits = c.neighbors(0, embedding="cats", k=5)
    assert hits[0].id == 0 and len(hits) == 5
    # pipeline vectors == embedding the stored canonical images directly
    emb = default_registries().embeddings.get("cats")(threads=1)
    direct = emb.embed_batch([decode_jpeg(b) for b in c.images(list(range(len(c))))])
    from imagemesh.store.pca import PcaReducer

    red = PcaReducer.load(c.data_dir / c.manifest.embeddings["cats"]["pca"]["file"]).transform(direct)
    red = red / np.linalg.norm(red, axis=1, keepdims=True)
    assert np.allclose(red, np.asarray(c.vectors("cats")), atol=1e-4)
    r = CliRunner().invoke(cli, ["embed", str(small_collection), "--embedding", "nope", "--quiet"])
    assert r.exit_code == 2 and "unknown embedding" in r.output
