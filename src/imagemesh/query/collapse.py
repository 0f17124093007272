"""Near-duplicate collapse of ranked results (the explorer's "collapse near-duplicates")."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

__all__ = ["collapse_duplicates", "duplicate_threshold", "calibrated_threshold", "distance_to_nearest_other"]

#: Fraction of the 10th percentile of nearest-different-paper distances used as the threshold
#: (:func:`calibrated_threshold`).
CALIBRATION_FRACTION = 0.1
CALIBRATION_PERCENTILE = 10.0

#: Default near-duplicate distance per metric (in that metric's units; see :func:`duplicate_threshold`).
_COSINE_DUP = 0.02


def duplicate_threshold(vectors: np.ndarray, metric: str) -> float:
    """Distance under which two images count as near-duplicates.

    Cosine: a fixed 0.02 (cosine similarity >= 0.98). L2 has no natural scale, so it is
    5 % of the median distance between random pairs of images of the collection (a
    fixed sample of up to 2,000 pairs, so the threshold is reproducible).
    """
    if metric == "cosine":
        return _COSINE_DUP
    n = vectors.shape[0]
    if n < 2:
        return 0.0
    rng = np.random.default_rng(0)
    a = rng.integers(0, n, 2000)
    b = rng.integers(0, n, 2000)
    keep = a != b
    d = np.linalg.norm(np.asarray(vectors[a[keep]], np.float32) - np.asarray(vectors[b[keep]], np.float32), axis=1)
    return float(np.median(d) * 0.05) if d.size else 0.0


def _distances(vectors: np.ndarray, metric: str, a: int, b: np.ndarray) -> np.ndarray:
    va = np.asarray(vectors[a], np.float32)
    vb = np.asarray(vectors[b], np.float32)
    return 1.0 - vb @ va if metric == "cosine" else np.linalg.norm(vb - va, axis=1)


def distance_to_nearest_other(
    vectors: np.ndarray,
    metric: str,
    neighbours: Callable[[np.ndarray, int], np.ndarray],
    groups: Sequence[object] | None = None,
    sample: int = 1000,
    k: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """Distance from each of ``sample`` random rows (a fixed seed) to its nearest row of
    *another group* (another paper), among its ``k`` nearest neighbours.

    Args:
        vectors: ``float32[n, d]`` reduced vectors (unit rows for cosine).
        metric: ``"cosine"`` (distance ``1 - cos``) or ``"l2"``.
        neighbours: ``(queries float32[m, d], k) -> ids int64[m, k]`` (-1 padded), e.g.
            the collection's kNN index.
        groups: per row, the group it belongs to (an arXiv id), or ``None`` for "every row
            is its own group".

    Returns:
        ``float32[m']`` distances (rows without another group among their neighbours are left out).
    """
    n = int(vectors.shape[0])
    if n < 2:
        return np.zeros(0, np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, sample), replace=False))
    ids = neighbours(np.asarray(vectors[rows], np.float32), min(n, k + 1))
    out: list[float] = []
    for r, cand in zip(rows, ids):
        cand = np.asarray([j for j in cand if j >= 0 and j != r and (groups is None or groups[j] is None or groups[j] != groups[r])], np.int64)
        if cand.size:
            out.append(float(_distances(vectors, metric, int(r), cand).min()))
    return np.asarray(out, np.float32)


def calibrated_threshold(vectors: np.ndarray, metric: str, nearest_other: np.ndarray) -> float:
    """The near-duplicate threshold of one embedding, from its own distance distribution.

    ``min(duplicate_threshold(vectors, metric), 0.1 * p10)``, where ``p10`` is the 10th
    percentile of :func:`distance_to_nearest_other` (distances from figures to the nearest
    figure of another paper). A fixed cosine 0.02 suits an ImageNet CNN (on the demo its
    nearest different figures are >= 0.11 apart) but not networks trained on few classes:
    ``deepcluster`` and ``ternary`` put half of all figures within 0.008 of a figure of
    another paper, and the fixed value collapsed 73 of 80 hits into 14 different papers.
    The 10th percentile (not the 1st) keeps the threshold meaningful when up to ~10 % of
    figures are genuinely reused across papers; a tenth of it keeps distinct figures apart
    (on the 166 demo figures, 10 queries of k = 80 collapse nothing under any of the five
    embeddings, measured 2026-12-02; thresholds: imagenet 0.02, raw 0.165 (L2), cats 0.00055,
    deepcluster 0.00013, ternary 0.00007). With fewer than 20 samples the uncalibrated
    threshold is used.
    """
    base = duplicate_threshold(vectors, metric)
    if nearest_other.size < 20:
        return base
    return float(min(base, CALIBRATION_FRACTION * float(np.percentile(nearest_other, CALIBRATION_PERCENTILE))))


def collapse_duplicates(
    ids: Sequence[int], vectors: np.ndarray, metric: str, threshold: float, shas: Sequence[str | None]
) -> tuple[list[int], dict[int, list[int]]]:
    """Greedy near-duplicate collapse of a ranked list.

    Walks ``ids`` in order and keeps a hit unless an earlier *kept* hit has the same
    ``content_sha256`` or lies within ``threshold`` of it (cosine distance, or L2,
    between the collection's reduced vectors). The order of the kept hits is unchanged.

    Returns:
        ``(kept ids, {kept id: [ids collapsed into it]})``.
    """
    kept: list[int] = []
    kept_vecs: list[np.ndarray] = []
    dups: dict[int, list[int]] = {}
    sha_owner: dict[str, int] = {}
    for i, sha in zip(ids, shas):
        v = np.asarray(vectors[i], np.float32)
        owner: int | None = sha_owner.get(sha) if sha else None
        if owner is None and kept:
            m = np.stack(kept_vecs)
            if metric == "cosine":
                d = 1.0 - m @ v
            else:
                d = np.linalg.norm(m - v, axis=1)
            j = int(np.argmin(d))
            if d[j] <= threshold:
                owner = kept[j]
        if owner is None:
            kept.append(int(i))
            kept_vecs.append(v)
            if sha:
                sha_owner[sha] = int(i)
        else:
            dups.setdefault(owner, []).append(int(i))
    return kept, dups
