"""Dimensionality reduction with scikit-learn's ``IncrementalPCA``, fitted batch by batch.

``IncrementalPCA.partial_fit`` needs each batch to hold at least ``n_components`` rows
(scikit-learn docs), so small trailing batches are merged into the previous one, and the
number of components is capped at ``min(requested, n_samples, n_features)`` -- a
collection with fewer images than components still builds. A single image has no
variance to analyse: its "PCA" is the one direction of its own vector (mean 0, one
component, explained variance 1), so a one-image collection still has a non-zero vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from sklearn.decomposition import IncrementalPCA

__all__ = ["PcaReducer", "fit_pca"]


@dataclass
class PcaReducer:
    """A fitted PCA: ``transform(x float32[n, d_in]) -> float32[n, d_out]``.

    Attributes:
        mean_: ``float32[d_in]``; components_: ``float32[d_out, d_in]``;
        explained_variance_ratio_: ``float32[d_out]``.
    """

    mean_: np.ndarray
    components_: np.ndarray
    explained_variance_ratio_: np.ndarray

    @property
    def n_components(self) -> int:
        return int(self.components_.shape[0])

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float32) - self.mean_) @ self.components_.T).astype(np.float32)

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, mean=self.mean_, components=self.components_, evr=self.explained_variance_ratio_)

    @classmethod
    def load(cls, path: Path) -> "PcaReducer":
        with np.load(path) as z:
            return cls(z["mean"].astype(np.float32), z["components"].astype(np.float32), z["evr"].astype(np.float32))

    def describe(self) -> dict[str, Any]:
        return {
            "n_components": self.n_components,
            "input_dim": int(self.components_.shape[1]),
            "explained_variance": min(1.0, float(self.explained_variance_ratio_.sum(dtype=np.float64))),  # float32 sums can round above 1
            "method": "sklearn.decomposition.IncrementalPCA",
        }


def fit_pca(batches: Iterable[np.ndarray], n_samples: int, n_features: int, n_components: int) -> PcaReducer:
    """Fit ``IncrementalPCA`` over ``batches`` of ``float32[b, n_features]`` rows.

    Args:
        batches: the data, in any batch sizes (re-chunked internally).
        n_samples: total rows (to cap the number of components).
        n_features: input dimension.
        n_components: requested output dimension.

    Raises:
        ValueError: ``n_samples < 1``.
    """
    if n_samples < 1:
        raise ValueError(f"PCA needs at least 1 image, got {n_samples}")
    if n_samples == 1:
        return _single(batches, n_features)
    k = max(1, min(int(n_components), n_samples - 1 if n_samples <= n_features else n_features, n_features))
    k = min(k, n_samples)
    ipca = IncrementalPCA(n_components=k)
    step = max(4 * k, 1024)
    buf: list[np.ndarray] = []
    buffered = 0
    seen = 0
    for b in batches:
        b = np.asarray(b, dtype=np.float32)
        buf.append(b)
        buffered += len(b)
        seen += len(b)
        if buffered >= step and n_samples - seen >= k:
            ipca.partial_fit(np.concatenate(buf))
            buf, buffered = [], 0
    if buf:
        ipca.partial_fit(np.concatenate(buf))
    return PcaReducer(
        ipca.mean_.astype(np.float32), ipca.components_.astype(np.float32), ipca.explained_variance_ratio_.astype(np.float32)
    )


def _single(batches: Iterable[np.ndarray], n_features: int) -> PcaReducer:
    """The reducer of one sample: project onto its own (unit) direction."""
    rows = [np.asarray(b, dtype=np.float32).reshape(-1, n_features) for b in batches]
    x = np.concatenate(rows)[0] if rows else np.zeros(n_features, np.float32)
    norm = float(np.linalg.norm(x))
    direction = x / norm if norm > 0 else np.eye(1, n_features, dtype=np.float32)[0]
    return PcaReducer(np.zeros(n_features, np.float32), direction.reshape(1, -1).astype(np.float32), np.ones(1, np.float32))
