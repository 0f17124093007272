"""2-D maps of an embedding for the explorer's map view, computed at build time.

Up to :data:`TSNE_MAX` images: t-SNE (van der Maaten & Hinton 2008; scikit-learn
``TSNE`` with PCA initialisation, perplexity ``min(30, (n - 1) / 3)``, fixed seed).
Beyond that t-SNE's cost is out of reach on a small machine, so the map is the first two
principal components of the (already PCA-reduced) vectors -- coarser, but linear time.
Coordinates are scaled to ``[0, 1]`` on both axes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["project_2d", "TSNE_MAX"]

TSNE_MAX = 20_000


def project_2d(vectors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """Project ``float32[n, d]`` vectors to ``float32[n, 2]`` in ``[0, 1]``.

    Returns:
        ``(xy, method)`` with ``method`` ``"tsne"``, ``"pca"`` or ``"trivial"`` (n < 4: the
        points on a horizontal line through the centre; one point at the centre).
    """
    x = np.asarray(vectors, dtype=np.float32)
    n = x.shape[0]
    if n < 4 or x.shape[1] < 2:
        xy = np.full((n, 2), 0.5, np.float32)  # one image: the centre of the map
        if n > 1:
            xy[:, 0] = np.linspace(0, 1, n)
        return xy, "trivial"
    if n <= TSNE_MAX:
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, perplexity=float(min(30.0, (n - 1) / 3)), init="pca", random_state=seed, n_jobs=1).fit_transform(x)
        method = "tsne"
    else:
        xc = x - x.mean(0)
        _, _, vt = np.linalg.svd(xc[:: max(1, n // 100_000)], full_matrices=False)
        xy = xc @ vt[:2].T
        method = "pca"
    xy = xy.astype(np.float32)
    lo, hi = xy.min(0), xy.max(0)
    xy = (xy - lo) / np.maximum(hi - lo, 1e-12)
    return xy.astype(np.float32), method
