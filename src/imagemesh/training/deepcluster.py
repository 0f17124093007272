"""DeepCluster: unsupervised training of the ``deepcluster`` embedding on the images themselves.

Caron, Bojanowski, Joulin, Douze, "Deep Clustering for Unsupervised Learning of Visual
Features", ECCV 2018, arXiv:1807.05520. Each epoch:

1. compute the penultimate features of every image (eval mode, no augmentation);
2. PCA-whiten them (to ``pca_dim``, default 64) and L2-normalise;
3. cluster with k-means (faiss, ``k`` = 100 by default); an empty cluster is re-seeded from
   a random non-empty one (its centroid plus a small perturbation, the larger part of the
   points split off to it), as in the paper;
4. re-initialise the classifier layer and train the network for one epoch on the cluster
   assignments as pseudo-labels, sampling images uniformly over clusters (weight
   ``1 / |cluster|`` per image), SGD momentum 0.9, lr 0.05, weight decay 1e-5 (the paper's);
5. report NMI between this epoch's and the previous epoch's assignments (the paper's
   Fig. 2(b) "stability" curve); with ``reference`` labels also NMI against them.

Choices against the paper, so that it trains on a few thousand images in minutes on 2 CPU
cores: the paper trains AlexNet (61 M parameters; VGG16 in some experiments) on 1.3 M
ImageNet images at 224 px for 500 epochs with k = 10,000 and PCA to 256 dims; here the
network is :class:`imagemesh.training.nets.SmallConvNet` (4 conv blocks 16-32-64-128, 0.11 M
parameters, 16 M multiply-adds) at 64 px, with the paper's fixed Sobel front end, a 128-d
embedding, PCA to 64 dims, k = 100 (the seed's setting) and tens of epochs. Augmentation is
a horizontal flip and a shift of up to 6 px (the paper: random resized crops + flips).
Needs the ``train`` extra; the trained network is exported to ONNX (``features`` only).
"""

from __future__ import annotations

import logging
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["assign_clusters", "train_deepcluster"]


def _pca_whiten(feats: np.ndarray, dim: int) -> np.ndarray:
    """PCA-whiten ``float32[n, d]`` to ``dim`` components and L2-normalise the rows."""
    x = feats.astype(np.float64) - feats.mean(axis=0, keepdims=True)
    dim = min(dim, x.shape[0], x.shape[1])
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[:dim].T
    proj /= (s[:dim] / np.sqrt(max(1, x.shape[0] - 1)) + 1e-5)
    proj /= np.maximum(np.linalg.norm(proj, axis=1, keepdims=True), 1e-12)
    return proj.astype(np.float32)


def assign_clusters(x: np.ndarray, k: int, seed: int = 0, niter: int = 20) -> tuple[np.ndarray, int]:
    """k-means (faiss) of ``float32[n, d]``; returns ``(labels int64[n], n_reseeded)``.

    Every cluster ends up non-empty (``k`` is capped at ``n``): an empty cluster takes the
    centroid of a random cluster with more than one point, plus a small perturbation, and
    the points of that cluster that are closer to the perturbed copy move to it.
    """
    import faiss

    n, d = x.shape
    k = min(k, n)
    km = faiss.Kmeans(d, k, niter=niter, seed=seed, verbose=False, spherical=False, min_points_per_centroid=1, max_points_per_centroid=100_000)
    km.train(x)
    _, lab = km.index.search(x, 1)
    labels = lab[:, 0].astype(np.int64)
    centroids = km.centroids.copy()
    rng = np.random.default_rng(seed)
    reseeded = 0
    for _ in range(10 * k):
        counts = np.bincount(labels, minlength=k)
        empty = np.flatnonzero(counts == 0)
        if not len(empty):
            break
        c = int(empty[0])
        donors = np.flatnonzero(counts > 1)
        src = int(rng.choice(donors, p=counts[donors] / counts[donors].sum()))
        eps = 1e-4 * rng.standard_normal(d).astype(np.float32)
        centroids[c] = centroids[src] + eps
        centroids[src] = centroids[src] - eps
        members = np.flatnonzero(labels == src)
        d_new = ((x[members] - centroids[c]) ** 2).sum(1)
        d_old = ((x[members] - centroids[src]) ** 2).sum(1)
        move = members[d_new < d_old]
        if len(move) == 0 or len(move) == len(members):  # identical points: split by halves
            move = members[: len(members) // 2]
        labels[move] = c
        reseeded += 1
    return labels, reseeded


def train_deepcluster(
    paths: Sequence[Path],
    out: Path,
    *,
    k: int = 100,
    epochs: int = 30,
    pca_dim: int = 64,
    lr: float = 0.05,
    batch_size: int = 64,
    seed: int = 0,
    reference: Sequence[str] | None = None,
    data_description: str = "",
    cache: Path | None = None,
    save_state: bool = False,
    threads: int | None = None,
    log: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """Train DeepCluster on ``paths``, export ``out`` (ONNX, ``features`` only) + card.

    Returns the card, whose ``training.nmi_successive`` is the NMI(t-1, t) curve.
    """
    import torch
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from imagemesh.training.nets import SmallConvNet
    from imagemesh.training.training import export_checked, fit, load_arrays, predict, write_card

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    x, ok = load_arrays(list(paths), cache=cache, log=log)
    ref = np.asarray(reference)[ok] if reference is not None else None
    k = min(k, len(x))
    net = SmallConvNet(k, sobel=True)
    curve: list[dict[str, Any]] = []
    prev: np.ndarray | None = None
    for ep in range(epochs):
        te = time.perf_counter()
        feats, _ = predict(net, x)
        labels, reseeded = assign_clusters(_pca_whiten(feats, pca_dim), k, seed=seed + ep)
        sizes = np.bincount(labels, minlength=k)
        point: dict[str, Any] = {"epoch": ep + 1, "reseeded_empty_clusters": reseeded, "largest_cluster": int(sizes.max())}
        if prev is not None:
            point["nmi_prev"] = round(float(nmi(prev, labels)), 4)
        if ref is not None:
            point["nmi_reference"] = round(float(nmi(ref, labels)), 4)
        prev = labels
        # re-initialise the classifier layer (the paper does so every epoch)
        net.head.reset_parameters()
        trunk_params = [p for n_, p in net.named_parameters() if not n_.startswith("head.")]
        opt = torch.optim.SGD([{"params": trunk_params, "weight_decay": 1e-5}, {"params": net.head.parameters(), "weight_decay": 1e-5}], lr=lr, momentum=0.9)
        weights = 1.0 / sizes[labels]
        fit(net, x, labels, 1, batch_size=batch_size, seed=seed + ep, sample_weights=weights, optimizer=opt)
        point["seconds"] = round(time.perf_counter() - te, 1)
        curve.append(point)
        log(f"epoch {ep + 1}/{epochs}: " + ", ".join(f"{a}={b}" for a, b in point.items() if a != "epoch"))
    # final assignments of the trained network (for the card)
    feats, _ = predict(net, x)
    final_labels, _ = assign_clusters(_pca_whiten(feats, pca_dim), k, seed=seed + epochs)
    final = {"nmi_prev": round(float(nmi(prev, final_labels)), 4)} if prev is not None else {}
    if ref is not None:
        final["nmi_reference"] = round(float(nmi(ref, final_labels)), 4)
    out = Path(out)
    parity = export_checked(net, out, x, with_logits=False, seed=seed, save_state=save_state, name="deepcluster", log=log)
    card = {
        "name": "deepcluster",
        "kind": "deepcluster",
        "paper": "Caron et al., Deep Clustering for Unsupervised Learning of Visual Features, ECCV 2018, arXiv:1807.05520",
        "training": {
            "data": data_description,
            "n_images": int(len(x)),
            "skipped_images": int((~ok).sum()),
            "k": k,
            "epochs": epochs,
            "pca_whiten_dim": pca_dim,
            "optimizer": f"SGD momentum 0.9, lr {lr}, weight decay 1e-5, batch {batch_size}, uniform sampling over clusters",
            "seed": seed,
            "seconds": round(time.perf_counter() - t0, 1),
            "curve": curve,
            "final": final,
            "nmi_successive": [p.get("nmi_prev") for p in curve[1:]],
        },
        "onnx_parity_max_abs_diff": parity,
        "metric": "cosine",
    }
    card_path = write_card(out, card, net, None)
    log(f"deepcluster: wrote {out} and {card_path}")
    return json.loads(card_path.read_text())
