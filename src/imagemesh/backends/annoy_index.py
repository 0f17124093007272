"""Annoy backend (Spotify's random-projection forests, https://github.com/spotify/annoy).

Build-time trade-off: ``n_trees`` (more trees, better recall, larger file). Query-time:
``search_k`` (nodes inspected; default ``n_trees * k``, per Annoy's README). Annoy cannot
restrict a search to a set of ids, so filtered search uses :class:`~imagemesh.core.index.Index`'s
adaptive over-fetch with an exact fallback.

Annoy allocates ``max(id) + 1`` slots, which is why indices only ever see dense row ids.
Annoy crashes on a truncated file if loaded unchecked, so :meth:`load` checks the file
size against the manifest entry before ``AnnoyIndex.load`` (which memory-maps it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from annoy import AnnoyIndex as _Annoy

from imagemesh.core.index import Index, IndexCapabilities, IndexError_, pad_results

__all__ = ["AnnoyIndex"]


class AnnoyIndex(Index):
    backend = "annoy"
    file_ext = "ann"
    capabilities = IndexCapabilities(exact=False, native_filter=False)

    def __init__(self, dim: int, n_trees: int = 50, seed: int = 42) -> None:
        super().__init__(dim)
        self.n_trees = int(n_trees)
        self.seed = int(seed)
        self._index = _Annoy(self.dim, "euclidean")
        self._index.set_seed(self.seed)
        self._n = 0
        self._built = False

    def add(self, row_ids: np.ndarray, vectors: np.ndarray) -> None:
        if self._built:
            raise RuntimeError("an Annoy index is immutable after build()")
        ids, v = self._check_add(row_ids, vectors, self._n)
        for i, vec in zip(ids.tolist(), v):
            self._index.add_item(i, vec.tolist())
        self._n += len(ids)

    def build(self) -> None:
        if not self._built:
            self._index.build(self.n_trees, n_jobs=1)
            self._built = True

    @property
    def ntotal(self) -> int:
        return self._n

    def _search_unfiltered(self, queries: np.ndarray, k: int, search_k: int = -1, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        n = queries.shape[0]
        dist, ids = pad_results(n, k)
        for i in range(n):
            got, d = self._index.get_nns_by_vector(queries[i].tolist(), k, search_k=int(search_k), include_distances=True)
            m = len(got)
            ids[i, :m] = got
            dist[i, :m] = np.square(np.asarray(d, dtype=np.float32))
        return dist, ids

    def vectors_for(self, row_ids: np.ndarray) -> np.ndarray | None:
        return np.asarray([self._index.get_item_vector(int(i)) for i in row_ids], dtype=np.float32).reshape(-1, self.dim)

    def save(self, path: Path) -> None:
        if not self._index.save(str(path)):
            raise IndexError_(f"Annoy could not save {path}")
        # Annoy's save() reloads the file memory-mapped; the object stays usable.

    @classmethod
    def load(cls, path: Path, dim: int, params: dict[str, Any]) -> "AnnoyIndex":
        path = Path(path)
        n = int(params.get("ntotal", -1))
        if not path.is_file():
            raise IndexError_(f"Annoy index file {path} is missing")
        size = path.stat().st_size
        expected = params.get("file_bytes")
        if expected is not None and size != int(expected):
            raise IndexError_(f"Annoy index {path} is {size} bytes, manifest says {expected}: truncated or replaced")
        # Annoy node size for float32/euclidean: 4*d + 12 bytes (k, norm, children...) at least
        if n > 0 and size < n * 4 * dim:
            raise IndexError_(f"Annoy index {path} is too small ({size} bytes) for {n} vectors of dim {dim}")
        idx = cls(dim, n_trees=int(params.get("n_trees", 50)), seed=int(params.get("seed", 42)))
        if not idx._index.load(str(path), prefault=False):
            raise IndexError_(f"Annoy could not load {path}")
        idx._n = idx._index.get_n_items()
        if n >= 0 and idx._n != n:
            raise IndexError_(f"Annoy index {path} holds {idx._n} items, manifest says {n}")
        idx._built = True
        return idx

    def params(self) -> dict[str, Any]:
        return {"n_trees": self.n_trees, "seed": self.seed, "ntotal": self._n}
