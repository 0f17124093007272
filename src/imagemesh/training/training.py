"""Shared training helpers: image loading, augmentation, the training loop, ONNX export,
parity check and model cards. Needs the ``train`` extra (torch, onnx, onnxscript).

Every training image goes through the same path as a collection image at build time:
:func:`imagemesh.media.images.load_image` -> :func:`imagemesh.media.canonical.canonical_image` (JPEG, longest
side 512) -> :class:`ImagePreprocess` (letterbox on white to ``size``), so the network sees
at training time exactly the kind of pixels it sees in ``imagemesh build`` / ``embed``.
"""

from __future__ import annotations

import logging
import hashlib
import json
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from imagemesh.media.images import ImageLimits, load_image
from imagemesh.training.nets import FeaturesAndLogits, SmallConvNet
from imagemesh.core.fileio import sha256_file
from imagemesh.models.preprocess import ImagePreprocess

logger = logging.getLogger(__name__)

__all__ = [
    "TRAIN_PREPROCESS",
    "load_arrays",
    "normalise",
    "augment",
    "fit",
    "predict",
    "export_onnx",
    "onnx_parity",
    "write_card",
]

#: Preprocessing of the trained nets: letterbox on white to 64x64, ``(x - 0.5) / 0.25`` on [0, 1].
TRAIN_PREPROCESS = ImagePreprocess(size=64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), resize="letterbox")
OPSET = 18


def _load_one(path: Path, pre: ImagePreprocess) -> np.ndarray | str:
    from imagemesh.media.canonical import canonical_image

    try:
        img = load_image(path, ImageLimits())
        _, canon = canonical_image(img)
        return pre.image_to_array(canon)
    except Exception as e:  # a bad training image is reported and skipped
        return f"{type(e).__name__}: {e}"


def load_arrays(paths: Sequence[Path], pre: ImagePreprocess = TRAIN_PREPROCESS, cache: Path | None = None, workers: int = 2, log: Callable[[str], None] = logger.info) -> tuple[np.ndarray, np.ndarray]:
    """Load images as ``uint8[n_ok, size, size, 3]`` (canonical image, letterboxed).

    Returns ``(arrays, ok)`` where ``ok`` is a bool mask over ``paths``. With ``cache`` the
    result is kept in an ``.npz`` keyed by the paths, their sizes and the preprocessing.
    """
    h = hashlib.sha256(json.dumps(pre.to_dict(), sort_keys=True).encode())
    for p in paths:
        st = Path(p).stat()
        h.update(f"{p}\0{st.st_size}\n".encode())
    key = h.hexdigest()[:16]
    if cache is not None:
        f = Path(cache) / f"arrays-{key}.npz"
        if f.exists():
            with np.load(f) as z:
                return z["x"], z["ok"]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as ex:
        res = list(ex.map(lambda p: _load_one(Path(p), pre), paths))
    ok = np.array([not isinstance(r, str) for r in res], dtype=bool)
    for p, r in zip(paths, res):
        if isinstance(r, str):
            log(f"skipped {p}: {r}")
    x = np.stack([r for r in res if not isinstance(r, str)]) if ok.any() else np.zeros((0, pre.size, pre.size, 3), np.uint8)
    log(f"loaded {int(ok.sum())}/{len(paths)} images in {time.perf_counter() - t0:.1f}s")
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)
        np.savez(Path(cache) / f"arrays-{key}.npz", x=x, ok=ok)
    return x, ok


def normalise(x: np.ndarray | torch.Tensor, pre: ImagePreprocess = TRAIN_PREPROCESS) -> torch.Tensor:
    """``uint8[n, s, s, 3]`` -> ``float32[n, 3, s, s]``, exactly as :meth:`ImagePreprocess.__call__`."""
    t = torch.as_tensor(x).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (t - mean) / std


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 6) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to ``pad`` px (white fill) on a
    ``uint8[n, s, s, 3]`` batch."""
    n, s = x.shape[0], x.shape[1]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(2), x)
    padded = torch.full((n, s + 2 * pad, s + 2 * pad, 3), 255, dtype=x.dtype)
    padded[:, pad : pad + s, pad : pad + s] = x
    offs = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen)
    ar = torch.arange(s)
    rows = (offs[:, 0:1] + ar).view(n, s, 1)
    cols = (offs[:, 1:2] + ar).view(n, 1, s)
    out = padded[torch.arange(n).view(n, 1, 1), rows, cols]
    return out


def fit(
    net: SmallConvNet,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    *,
    lr: float = 2e-3,
    batch_size: int = 64,
    seed: int = 0,
    sample_weights: np.ndarray | None = None,
    steps_per_epoch: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    log: Callable[[str], None] | None = None,
) -> SmallConvNet:
    """Train ``net`` on ``uint8`` images ``x`` and integer labels ``y`` (cross-entropy, augmentation).

    ``sample_weights`` draws batches with these probabilities (with replacement) instead of
    shuffling (DeepCluster samples uniformly over clusters this way). Without ``optimizer``:
    AdamW with a cosine schedule over all steps.
    """
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    n = len(x)
    steps = steps_per_epoch or max(1, int(np.ceil(n / batch_size)))
    own_opt = optimizer is None
    opt = optimizer or torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps, pct_start=0.15) if own_opt else None
    loss_fn = nn.CrossEntropyLoss()
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y.astype(np.int64))
    net.train()
    for ep in range(epochs):
        if sample_weights is None:
            order = rng.permutation(n)
            batches = [order[i : i + batch_size] for i in range(0, n, batch_size)][:steps]
        else:
            p = sample_weights / sample_weights.sum()
            batches = [rng.choice(n, size=batch_size, p=p) for _ in range(steps)]
        total = 0.0
        for b in batches:
            bi = torch.from_numpy(np.asarray(b))
            inp = normalise(augment(xt[bi], gen))
            _, logits = net(inp)
            loss = loss_fn(logits, yt[bi])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item() * len(b)
        if log:
            log(f"  epoch {ep + 1}/{epochs} loss {total / sum(len(b) for b in batches):.4f}")
    net.eval()
    return net


@torch.no_grad()
def predict(net: SmallConvNet, x: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(features float32[n, d], logits float32[n, c])`` of ``uint8`` images, eval mode."""
    net.eval()
    fs, ls = [], []
    for i in range(0, len(x), batch_size):
        f, lg = net(normalise(x[i : i + batch_size]))
        fs.append(f.numpy())
        ls.append(lg.numpy())
    return np.concatenate(fs), np.concatenate(ls)


def export_onnx(net: SmallConvNet, out: Path, with_logits: bool = True) -> None:
    """Write ``net`` (eval mode) as one ONNX file: input ``pixels`` float32[batch, 3, s, s];
    outputs ``features`` [batch, d] and (classifiers) ``logits`` [batch, c]."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    s = TRAIN_PREPROCESS.size
    model = FeaturesAndLogits(net.eval(), with_logits=with_logits).eval()
    example = torch.zeros(2, 3, s, s)
    # torch's exporter emits deprecation/future warnings of its own internals; they are not ours
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(out),
            input_names=["pixels"],
            output_names=["features", "logits"] if with_logits else ["features"],
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}},
            opset_version=OPSET,
            external_data=False,
            dynamo=True,
            optimize=True,
            verbose=False,
        )


def onnx_parity(net: SmallConvNet, onnx_path: Path, x: np.ndarray) -> dict[str, float]:
    """Max |torch - ONNX Runtime| per output on ``uint8`` images ``x`` (preprocessed by
    :data:`TRAIN_PREPROCESS` through numpy, as at inference)."""
    from imagemesh.models.ort import ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inp = normalise(x).numpy()
    names = [o.name for o in sess.get_outputs()]
    got = sess.run(names, {"pixels": inp})
    with torch.no_grad():
        f, lg = net.eval()(torch.from_numpy(inp))
    ref = {"features": f.numpy(), "logits": lg.numpy()}
    return {name: float(np.abs(g - ref[name]).max()) for name, g in zip(names, got)}


def export_checked(net: SmallConvNet, out: Path, x: np.ndarray, *, with_logits: bool, seed: int, save_state: bool, name: str, log: Callable[[str], None] = logger.info) -> dict[str, float]:
    """Export ``net`` to ONNX at ``out`` (:func:`export_onnx`), measure torch/ONNX Runtime
    parity on up to 32 of the uint8 training images ``x`` (:func:`onnx_parity`), and
    optionally save the state dict beside it (``out.with_suffix(".pt")``).
    Returns the parity (max abs difference per output)."""
    out = Path(out)
    export_onnx(net, out, with_logits=with_logits)
    rng = np.random.default_rng(seed)
    probe = x[rng.choice(len(x), size=min(32, len(x)), replace=False)]
    parity = onnx_parity(net, out, probe)
    log(f"{name}: ONNX parity on {len(probe)} training images, max |torch - ORT|: {parity}")
    if save_state:
        torch.save(net.state_dict(), out.with_suffix(".pt"))
    return parity


def write_card(onnx_path: Path, card: dict[str, Any], net: SmallConvNet, labels: Sequence[str] | None) -> Path:
    """Write ``<stem>.json`` (and ``<stem>.labels.txt``) next to the ONNX file; returns the card path."""
    onnx_path = Path(onnx_path)
    full: dict[str, Any] = {
        **card,
        "file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "size_bytes": onnx_path.stat().st_size,
        "input": "pixels",
        "input_dtype": "float32",
        "input_shape": ["batch", 3, TRAIN_PREPROCESS.size, TRAIN_PREPROCESS.size],
        "feature_output": "features",
        "feature_dim": int(net.params["feature_dim"]),
        "metric": card.get("metric", "cosine"),
        "preprocess": TRAIN_PREPROCESS.to_dict(),
        "architecture": "SmallConvNet",
        "architecture_params": dict(net.params),
        "exported_with": {"torch": torch.__version__, "onnx_opset": OPSET},
    }
    if labels:
        lf = onnx_path.with_suffix(".labels.txt")
        lf.write_text("".join(f"{lab}\n" for lab in labels), encoding="utf-8")
        full.update(logits_output="logits", labels_file=lf.name, labels=list(labels), num_classes=len(labels))
    card_path = onnx_path.with_suffix(".json")
    card_path.write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    return card_path
