"""Model cards, the user's models folder, ``imagemesh models import`` and ``models list``.

A user-imported ONNX model lives in the models folder (``$IMAGEMESH_MODELS``, else
``$XDG_DATA_HOME/imagemesh/models``, else ``~/.local/share/imagemesh/models``) as
``<name>.onnx`` + ``<name>.json`` (its card). :func:`register_user_models` registers every
card of that folder into an embeddings :class:`~imagemesh.core.registry.Registry`
(``default_registries()`` calls it), lazily: nothing is loaded until the embedding is used.
A card whose name is already registered (a built-in or a plugin) is skipped with a logged
warning, never silently overwriting it.

This module imports neither onnxruntime nor torch at import time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from imagemesh.core.embedding import make_embedding

__all__ = [
    "models_dir",
    "CardEmbeddingFactory",
    "register_user_models",
    "import_onnx_model",
    "ImportErrorDetail",
    "ModelImportError",
    "list_models",
    "NAME_RE",
]

log = logging.getLogger(__name__)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class ModelImportError(ValueError):
    """An ONNX file cannot be imported as an embedding; the message says why and what to pass."""


ImportErrorDetail = ModelImportError  # readable alias for callers


def models_dir(env: dict[str, str] | None = None) -> Path:
    """``$IMAGEMESH_MODELS``, else ``$XDG_DATA_HOME/imagemesh/models``, else ``~/.local/share/imagemesh/models``."""
    env = dict(os.environ) if env is None else env
    if env.get("IMAGEMESH_MODELS"):
        return Path(env["IMAGEMESH_MODELS"]).expanduser()
    base = Path(env["XDG_DATA_HOME"]) if env.get("XDG_DATA_HOME") else Path.home() / ".local" / "share"
    return base / "imagemesh" / "models"


@dataclass(frozen=True)
class CardEmbeddingFactory:
    """A registry target for a model card: ``factory(threads=0) -> OnnxEmbedding``."""

    card_path: Path
    name: str

    def __call__(self, threads: int = 0) -> Any:
        from imagemesh.models.onnx_embedding import OnnxEmbedding

        return OnnxEmbedding(self.card_path, name=self.name, threads=threads, top_k=5)


def _read_card(path: Path) -> dict[str, Any] | None:
    try:
        card = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("imagemesh: skipping model card %s: %s", path, e)
        return None
    if not isinstance(card, dict) or not isinstance(card.get("name"), str) or "file" not in card:
        log.warning("imagemesh: skipping %s: not an imagemesh model card (needs 'name' and 'file')", path)
        return None
    return card


def register_user_models(registry: Any, folder: Path | None = None) -> list[str]:
    """Register every card ``*.json`` of ``folder`` (default :func:`models_dir`); returns the names."""
    folder = models_dir() if folder is None else Path(folder)
    if not folder.is_dir():
        return []
    names = []
    for path in sorted(folder.glob("*.json")):
        card = _read_card(path)
        if card is None:
            continue
        name = card["name"]
        if name in registry:
            log.warning("imagemesh: user model %s (%s) is not registered: the name is taken", name, path)
            continue
        registry.register(name, CardEmbeddingFactory(path, name))
        names.append(name)
    return names


def _three(values: Sequence[float], what: str) -> tuple[float, float, float]:
    vals = [float(v) for v in values]
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3:
        raise ModelImportError(f"{what} needs 1 or 3 values (R, G, B), got {len(vals)}")
    if any(v > 1.0 for v in vals):
        raise ModelImportError(f"{what} {vals} looks like the 0-255 scale; give it on the 0-1 scale (divide by 255), e.g. ImageNet mean 0.485,0.456,0.406")
    return vals[0], vals[1], vals[2]


def _expose_intermediate(model_path: Path, node: str, dst: Path, outputs: Sequence[str]) -> None:
    """Copy the model to ``dst`` with the intermediate tensor ``node`` added as a graph output."""
    try:
        import onnx
    except ImportError as e:
        raise ModelImportError(f"output {node!r} is not a graph output (outputs: {', '.join(outputs)}); to use an intermediate tensor install the 'onnx' package (pip install onnx)") from e
    model = onnx.load(str(model_path))
    produced = {o: n for n in model.graph.node for o in n.output}
    by_node_name = {n.name: n.output[0] for n in model.graph.node if n.name and n.output}
    tensor = node if node in produced else by_node_name.get(node)
    if tensor is None:
        outs = [o.name for o in model.graph.output]
        raise ModelImportError(f"output {node!r} is neither a graph output ({', '.join(outs)}) nor a tensor or node of the graph")
    inferred = onnx.shape_inference.infer_shapes(model)
    vi = next((v for v in inferred.graph.value_info if v.name == tensor), None)
    model.graph.output.append(vi if vi is not None else onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    onnx.save(model, str(dst))


def import_onnx_model(
    file: Path,
    name: str,
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    output: str,
    input_name: str | None = None,
    logits: str | None = None,
    labels: Path | None = None,
    resize: str = "letterbox",
    metric: str = "cosine",
    description: str | None = None,
    folder: Path | None = None,
    taken: Sequence[str] = (),
    replace: bool = False,
) -> Path:
    """Validate ``file`` and install it as embedding ``name``; returns the card path.

    Checks: the name (``[a-z0-9][a-z0-9_-]*``, not taken); the file loads in ONNX Runtime;
    the input is float ``[batch, 3, H, W]`` with ``H`` and ``W`` equal to ``input_size`` or
    symbolic; ``output`` is a graph output (or an intermediate tensor, exposed with the
    ``onnx`` package); a real run on a white test image gives ``[1, d]`` (or ``[1, d, 1, 1]``);
    ``logits`` and ``labels`` agree in size.

    Raises:
        ModelImportError: with a message that names the problem and the valid choices.
    """
    import numpy as np
    from imagemesh.models.ort import ort
    from PIL import Image

    from imagemesh.core.fileio import sha256_file
    from imagemesh.models.preprocess import ImagePreprocess

    file = Path(file)
    folder = models_dir() if folder is None else Path(folder)
    if not NAME_RE.match(name):
        raise ModelImportError(f"--name {name!r}: use lowercase letters, digits, '-' and '_' (at most 64 characters)")
    if name in taken:
        raise ModelImportError(f"--name {name!r} is already an embedding ({', '.join(sorted(taken))}); choose another name")
    card_path = folder / f"{name}.json"
    if card_path.exists() and not replace:
        raise ModelImportError(f"a user model {name!r} already exists ({card_path}); pass --replace to overwrite it")
    if not file.is_file():
        raise ModelImportError(f"{file}: no such file")
    if not 8 <= input_size <= 2048:
        raise ModelImportError(f"--input-size {input_size}: expected 8..2048 pixels")
    pre = ImagePreprocess(size=input_size, mean=_three(mean, "--mean"), std=_three(std, "--std"), resize=resize) if all(float(s) > 0 for s in std) else None
    if pre is None:
        raise ModelImportError("--std values must be > 0")
    try:
        sess = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types
        raise ModelImportError(f"{file} is not a valid ONNX model for ONNX Runtime: {str(e).splitlines()[0][:300]}") from e
    inputs = sess.get_inputs()
    if input_name is None:
        if len(inputs) != 1:
            raise ModelImportError(f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); choose one with --input")
        inp = inputs[0]
    else:
        found = [i for i in inputs if i.name == input_name]
        if not found:
            raise ModelImportError(f"--input {input_name!r} is not an input of the model; inputs: {', '.join(i.name for i in inputs)}")
        inp = found[0]
    shape = list(inp.shape)
    if inp.type != "tensor(float)":
        raise ModelImportError(f"input {inp.name!r} has type {inp.type}; imagemesh feeds float32 images")
    if len(shape) != 4:
        raise ModelImportError(f"input {inp.name!r} has shape {shape}; expected 4-D [batch, 3, height, width] (NCHW)")
    if isinstance(shape[1], int) and shape[1] != 3:
        raise ModelImportError(f"input {inp.name!r} has shape {shape}: {shape[1]} channels, expected 3 (RGB, NCHW)")
    for side in shape[2:]:
        if isinstance(side, int) and side != input_size:
            raise ModelImportError(f"input {inp.name!r} has shape {shape}, which does not match --input-size {input_size}")
    if isinstance(shape[0], int) and shape[0] != 1:
        raise ModelImportError(f"input {inp.name!r} has a fixed batch size {shape[0]}; only a dynamic batch or 1 is supported")

    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / f"{name}.onnx"
    tmp = folder / f".{name}.onnx.partial"
    out_names = [o.name for o in sess.get_outputs()]
    wanted = [output] + ([logits] if logits else [])
    missing = [w for w in wanted if w not in out_names]
    try:
        if missing:
            src = file
            for m in missing:
                _expose_intermediate(src, m, tmp, out_names)
                src = tmp
            sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        else:
            shutil.copyfile(file, tmp)
        white = Image.new("RGB", (input_size, input_size), (255, 255, 255))
        try:
            res = sess.run(wanted, {inp.name: pre([white])})
        except Exception as e:
            raise ModelImportError(f"a test run of {file.name} failed with input [1, 3, {input_size}, {input_size}]: {str(e).splitlines()[0][:300]}") from e
        feat = np.asarray(res[0])
        if feat.ndim not in (2, 4) or feat.shape[0] != 1 or (feat.ndim == 4 and feat.shape[2:] != (1, 1)):
            raise ModelImportError(f"output {output!r} has shape {list(feat.shape)} for one image; expected [1, d] or [1, d, 1, 1] (a pooled or flattened layer)")
        if not np.isfinite(feat).all():
            raise ModelImportError(f"output {output!r} gave non-finite values on a test image")
        dim = int(feat.reshape(1, -1).shape[1])
        label_list = None
        if logits:
            n_cls = int(np.asarray(res[1]).reshape(1, -1).shape[1])
            if labels is None:
                raise ModelImportError("--logits needs --labels (a text file, one class name per line)")
            label_list = [ln.strip() for ln in Path(labels).read_text(encoding="utf-8").splitlines() if ln.strip()]
            if len(label_list) != n_cls:
                raise ModelImportError(f"--labels has {len(label_list)} names but {logits!r} has {n_cls} classes")
        elif labels is not None:
            raise ModelImportError("--labels needs --logits (the output holding class scores)")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    card: dict[str, Any] = {
        "name": name,
        "kind": "imported",
        "file": dst.name,
        "sha256": sha256_file(dst),
        "size_bytes": dst.stat().st_size,
        "imported_from": str(file.resolve()),
        "input": inp.name,
        "input_shape": [s if isinstance(s, int) else str(s) for s in shape],
        "feature_output": output,
        "feature_dim": dim,
        "metric": metric,
        "preprocess": pre.to_dict(),
        "training_data": description or "unknown (imported model; no description given)",
    }
    if label_list is not None:
        lf = folder / f"{name}.labels.txt"
        lf.write_text("".join(f"{lab}\n" for lab in label_list), encoding="utf-8")
        card.update(logits_output=logits, labels_file=lf.name, labels=label_list if len(label_list) <= 100 else None, num_classes=len(label_list))
    tmp_card = card_path.with_suffix(".json.partial")
    tmp_card.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_card, card_path)
    return card_path


def _summary(name: str, emb: Any, source: str) -> dict[str, Any]:
    cfg = emb.config().to_dict()
    d: dict[str, Any] = {"name": name, "source": source, "kind": cfg["kind"], "dim": cfg["dim"], "metric": cfg["metric"], "model_sha256": cfg["model_sha256"], "preprocess": cfg["preprocess"]}
    card = getattr(emb, "card", None)
    if isinstance(card, dict):
        d["card"] = str(getattr(emb, "model_path", Path(".")).with_suffix(".json"))
        d["file"] = card.get("file")
        d["labels"] = card.get("labels")
        d["training_data"] = card.get("training_data") or (card.get("training") or {}).get("data")
        cv = card.get("cross_validation")
        if cv:
            d["cv_accuracy"] = cv.get("accuracy_mean")
            d["cv_folds"] = cv.get("folds")
        if card.get("onnx_parity_max_abs_diff"):
            d["onnx_parity_max_abs_diff"] = card["onnx_parity_max_abs_diff"]
        nmi = (card.get("training") or {}).get("nmi_successive")
        if nmi:
            d["nmi_successive_last"] = nmi[-1]
    return d


def list_models(regs: Any) -> list[dict[str, Any]]:
    """One summary per embedding of the registries ``regs`` (name, source, dim, metric,
    hash, card facts); see :func:`imagemesh.plugins.default_registries`.

    An embedding that fails to load is listed with its ``error``.
    """
    user = set()
    for name in regs.embeddings.names():
        try:
            target = regs.embeddings.get(name)
        except Exception:
            continue
        if isinstance(target, CardEmbeddingFactory):
            user.add(name)
    out = []
    for name in regs.embeddings.names():
        source = "user" if name in user else "built-in/plugin"
        try:
            emb = make_embedding(regs.embeddings.get(name), 1)
            out.append(_summary(name, emb, source))
        except Exception as e:
            out.append({"name": name, "source": source, "error": f"{type(e).__name__}: {e}"})
    return out
