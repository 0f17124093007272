"""Near-duplicate collapse of ranked results (the explorer's "collapse near-duplicates")."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["collapse_duplicates", "duplicate_threshold"]

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
