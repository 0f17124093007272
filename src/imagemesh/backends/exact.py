"""Exact (brute-force) kNN: the reference that tests and benchmarks measure recall against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imagemesh.core.index import AllowedRows, Index, IndexCapabilities, IndexError_, as_allowed, exact_search

__all__ = ["ExactIndex"]


class ExactIndex(Index):
    """Brute-force squared-L2 search with a BLAS matrix product; ``allowed`` is applied
    before the scan (a true pre-filter), so results are exact in order and count.

    The saved file is a ``.npy`` of ``float32[N, d]``, loaded memory-mapped.
    """

    backend = "exact"
    file_ext = "npy"
    capabilities = IndexCapabilities(exact=True, native_filter=True)

    def __init__(self, dim: int, block_rows: int = 65_536) -> None:
        super().__init__(dim)
        self.block_rows = int(block_rows)
        self._chunks: list[np.ndarray] = []
        self._vectors: np.ndarray | None = None

    def add(self, row_ids: np.ndarray, vectors: np.ndarray) -> None:
        _, v = self._check_add(row_ids, vectors, self.ntotal_pending())
        self._chunks.append(v)

    def ntotal_pending(self) -> int:
        if self._vectors is not None:
            return int(self._vectors.shape[0])
        return int(sum(c.shape[0] for c in self._chunks))

    def build(self) -> None:
        if self._vectors is None:
            self._vectors = np.concatenate(self._chunks) if self._chunks else np.zeros((0, self.dim), np.float32)
            self._chunks = []

    @property
    def ntotal(self) -> int:
        return self.ntotal_pending()

    def _require(self) -> np.ndarray:
        if self._vectors is None:
            raise RuntimeError("call build() before search()")
        return self._vectors

    def _search_unfiltered(self, queries: np.ndarray, k: int, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        return exact_search(self._require(), queries, k)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | AllowedRows | None = None, vectors: np.ndarray | None = None, fallback: bool = True, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        q = self._check_queries(queries, k)
        x = self._require()
        if allowed is None:
            return exact_search(x, q, k)
        rows = np.flatnonzero(as_allowed(allowed, self.ntotal).mask)
        return exact_search(x[rows], q, k, rows)

    def vectors_for(self, row_ids: np.ndarray) -> np.ndarray | None:
        return self._require()[row_ids]

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:
            np.save(f, self._require())

    @classmethod
    def load(cls, path: Path, dim: int, params: dict[str, Any]) -> "ExactIndex":
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise IndexError_(f"cannot read exact index {path}: {e}") from e
        if arr.ndim != 2 or arr.shape[1] != dim or arr.dtype != np.float32:
            raise IndexError_(f"exact index {path} holds {arr.dtype}{list(arr.shape)}, expected float32[N, {dim}]")
        idx = cls(dim, **{k: v for k, v in params.items() if k == "block_rows"})
        idx._vectors = arr
        return idx

    def params(self) -> dict[str, Any]:
        return {}
