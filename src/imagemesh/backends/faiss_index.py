"""FAISS backend: any index-factory string (``"HNSW32"``, ``"IVF256,Flat"``, ``"IVF1024,PQ16"``,
``"Flat"``), per FAISS's ``index_factory`` (https://github.com/facebookresearch/faiss/wiki/The-index-factory).

Filtered search restricts the ANN search to the allowed ids with an ``IDSelectorBitmap``
passed in per-call search parameters (``SearchParametersHNSW(efSearch=…)``,
``SearchParametersIVF(nprobe=…)``); when that finds fewer than ``min(k, matches)``
results (graph indices lose recall under very selective filters) the missing queries
fall back to an exact scan of the allowed vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..index import Index, IndexError_, exact_search, pad_results

__all__ = ["FaissIndex"]


def _bitmap(allowed: np.ndarray) -> np.ndarray:
    # FAISS IDSelectorBitmap: bit i of byte i//8 (little-endian bit order).
    return np.packbits(allowed.astype(np.uint8), bitorder="little")


class FaissIndex(Index):
    backend = "faiss"

    def __init__(self, dim: int, recipe: str = "HNSW32", ef_search: int = 64, nprobe: int = 16, ef_construction: int = 80) -> None:
        super().__init__(dim)
        self.recipe = recipe
        self.ef_search = int(ef_search)
        self.nprobe = int(nprobe)
        self.ef_construction = int(ef_construction)
        try:
            self._index = faiss.index_factory(self.dim, recipe, faiss.METRIC_L2)
        except RuntimeError as e:
            raise ValueError(f"invalid FAISS factory string {recipe!r}: {str(e).splitlines()[-1]}") from None
        hnsw = self._hnsw()
        if hnsw is not None:
            hnsw.efConstruction = self.ef_construction
        self._pending: list[np.ndarray] = []
        self._n = 0
        self._built = False

    def _hnsw(self) -> Any:
        idx = self._index
        return idx.hnsw if hasattr(idx, "hnsw") else None

    def _ivf(self) -> Any:
        try:
            return faiss.extract_index_ivf(self._index)
        except RuntimeError:
            return None

    def add(self, row_ids: np.ndarray, vectors: np.ndarray) -> None:
        if self._built:
            raise RuntimeError("add() after build() is not supported; rebuild the index")
        ids, v = self._check_add(row_ids, vectors, self._n)
        self._pending.append(np.ascontiguousarray(v))
        self._n += len(ids)

    def build(self) -> None:
        if self._built:
            return
        x = np.concatenate(self._pending) if self._pending else np.zeros((0, self.dim), np.float32)
        if not self._index.is_trained:
            ivf = self._ivf()
            if ivf is not None and x.shape[0] < ivf.nlist:
                raise ValueError(
                    f"{self.recipe!r} needs at least nlist={ivf.nlist} training vectors, got {x.shape[0]}; "
                    "use a smaller IVF, HNSW32 or Flat"
                )
            self._index.train(x)
        if x.shape[0]:
            self._index.add(x)
        self._pending = []
        self._built = True

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal) if self._built else self._n

    def _search_params(self, sel: Any = None, ef_search: int | None = None, nprobe: int | None = None) -> Any:
        if self._hnsw() is not None:
            return faiss.SearchParametersHNSW(efSearch=int(ef_search or self.ef_search), sel=sel)
        if self._ivf() is not None:
            return faiss.SearchParametersIVF(nprobe=int(nprobe or self.nprobe), sel=sel)
        return faiss.SearchParameters(sel=sel) if sel is not None else None

    def _search_unfiltered(self, queries: np.ndarray, k: int, ef_search: int | None = None, nprobe: int | None = None, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        if self.ntotal == 0:
            return pad_results(queries.shape[0], k)
        ef = max(int(ef_search or self.ef_search), k)
        d, i = self._index.search(queries, k, params=self._search_params(None, ef, nprobe))
        d = d.astype(np.float32)
        d[i < 0] = np.inf
        return d, i.astype(np.int64)

    def search(self, queries, k, allowed=None, vectors=None, ef_search=None, nprobe=None, **params):  # type: ignore[override]
        q = self._check_queries(queries, k)
        if allowed is None:
            return self._search_unfiltered(q, k, ef_search=ef_search, nprobe=nprobe)
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != (self.ntotal,):
            raise ValueError(f"allowed must be bool[{self.ntotal}], got shape {allowed.shape}")
        n_allowed = int(allowed.sum())
        want = min(k, n_allowed)
        if want == 0:
            return pad_results(q.shape[0], k)
        bitmap = _bitmap(allowed)
        sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        selectivity = n_allowed / self.ntotal
        ef = max(int(ef_search or self.ef_search), k, int(np.ceil(k / max(selectivity, 1e-6))) if selectivity < 0.5 else k)
        ef = min(ef, max(self.ntotal, k))
        d, i = self._index.search(q, k, params=self._search_params(sel, ef, nprobe))
        d = d.astype(np.float32)
        i = i.astype(np.int64)
        d[i < 0] = np.inf
        short = np.flatnonzero((i >= 0).sum(1) < want)
        if short.size:
            source = vectors if vectors is not None else self.vectors_for(np.arange(self.ntotal))
            if source is not None:
                rows = np.flatnonzero(allowed)
                d_ex, i_ex = exact_search(np.asarray(source[rows]), q[short], k, rows)
                d[short] = d_ex
                i[short] = i_ex
        return d, i

    def vectors_for(self, row_ids: np.ndarray) -> np.ndarray | None:
        try:
            return np.vstack([self._index.reconstruct(int(r)) for r in row_ids]).astype(np.float32) if len(row_ids) else np.zeros((0, self.dim), np.float32)
        except RuntimeError:
            return None

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path, dim: int, params: dict[str, Any]) -> "FaissIndex":
        path = Path(path)
        if not path.is_file():
            raise IndexError_(f"FAISS index file {path} is missing")
        expected = params.get("file_bytes")
        if expected is not None and path.stat().st_size != int(expected):
            raise IndexError_(f"FAISS index {path} is {path.stat().st_size} bytes, manifest says {expected}: truncated or replaced")
        idx = cls.__new__(cls)
        Index.__init__(idx, dim)
        idx.recipe = params.get("recipe", "HNSW32")
        idx.ef_search = int(params.get("ef_search", 64))
        idx.nprobe = int(params.get("nprobe", 16))
        idx.ef_construction = int(params.get("ef_construction", 80))
        try:
            try:
                idx._index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError:
                idx._index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise IndexError_(f"cannot read FAISS index {path}: {str(e).splitlines()[-1]}") from None
        if idx._index.d != dim:
            raise IndexError_(f"FAISS index {path} has dim {idx._index.d}, expected {dim}")
        idx._pending = []
        idx._n = int(idx._index.ntotal)
        idx._built = True
        return idx

    def params(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "ef_search": self.ef_search, "nprobe": self.nprobe, "ef_construction": self.ef_construction, "ntotal": self.ntotal}
