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

import faiss as _faiss
import numpy as np

#: faiss's bundled type stubs lack the SWIG keyword arguments used here
#: (``SearchParametersIVF(nprobe=, sel=)``, ``SearchParametersHNSW``), so it is typed as Any.
faiss: Any = _faiss

from imagemesh.core.index import AllowedRows, Index, IndexCapabilities, IndexError_, as_allowed, pad_results

__all__ = ["FaissIndex"]


def _bitmap(allowed: np.ndarray) -> np.ndarray:
    # FAISS IDSelectorBitmap: bit i of byte i//8 (little-endian bit order).
    return np.packbits(allowed.astype(np.uint8), bitorder="little")


class FaissIndex(Index):
    """A FAISS index built from a factory string (``recipe``).

    Args:
        dim: vector dimension.
        recipe: FAISS ``index_factory`` string.
        ef_search: HNSW ``efSearch`` of unfiltered queries (filtered ones scale it up).
        nprobe: IVF lists probed by unfiltered queries (filtered ones scale it up).
        ef_construction: HNSW ``efConstruction``.

    Raises:
        ValueError: an invalid factory string.
    """

    backend = "faiss"
    file_ext = "faiss"

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

    @property
    def capabilities(self) -> IndexCapabilities:  # type: ignore[override]
        """Flat indices are exact; every FAISS index restricts natively (``IDSelectorBitmap``)."""
        return IndexCapabilities(exact=self._hnsw() is None and self._ivf() is None, native_filter=True)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | AllowedRows | None = None, vectors: np.ndarray | None = None, fallback: bool = True,
               ef_search: int | None = None, nprobe: int | None = None, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`Index.search`. Filtered queries pass an ``IDSelectorBitmap`` (built once
        per :class:`AllowedRows`) and widen the search as the filter thins out: HNSW
        ``efSearch = max(ef, k) / selectivity``, IVF ``nprobe / selectivity`` (capped by the
        index size), so that about as many allowed candidates are seen as unfiltered."""
        q = self._check_queries(queries, k)
        if allowed is None:
            return self._search_unfiltered(q, k, ef_search=ef_search, nprobe=nprobe)
        a = as_allowed(allowed, self.ntotal)
        if min(k, a.count) == 0:
            return pad_results(q.shape[0], k)
        bitmap = a.derived("faiss-bitmap", _bitmap)
        sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        selectivity = a.count / max(self.ntotal, 1)
        if self._hnsw() is not None:
            ef = int(min(max(k, np.ceil(max(int(ef_search or self.ef_search), k) / selectivity)), max(self.ntotal, k)))
            sp = faiss.SearchParametersHNSW(efSearch=ef, sel=sel)
        elif (ivf := self._ivf()) is not None:
            sp = faiss.SearchParametersIVF(nprobe=int(min(ivf.nlist, np.ceil(int(nprobe or self.nprobe) / selectivity))), sel=sel)
        else:
            sp = faiss.SearchParameters(sel=sel)
        d, i = self._index.search(q, k, params=sp)
        i = i.astype(np.int64)
        d = d.astype(np.float32)
        d[i < 0] = np.inf
        return self._fill_short(q, k, a, d, i, vectors) if fallback else (d, i)

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
