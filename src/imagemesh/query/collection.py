"""A collection to query: :func:`open_collection` (``imagemesh.open``) returns a :class:`Collection`.

:class:`Collection` is a :class:`~imagemesh.store.reader.CollectionReader` (rows, metadata,
media, vectors) plus the query layer's state for that version: filter masks
(:mod:`~imagemesh.query.filtering`), one :class:`~imagemesh.query.planner.QueryPlanner` per
embedding, facet counts, upload embedders, one k-means clustering per embedding
(:mod:`~imagemesh.query.clusters`). Its query methods are thin: the work is in
:mod:`imagemesh.query.search`, :mod:`~imagemesh.query.sampling` and :mod:`~imagemesh.query.facets`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from imagemesh.core.filters import MetadataFilter
from imagemesh.core.registry import Registries
from imagemesh.query.clusters import Clustering, cluster_collection
from imagemesh.query.embedder import QueryEmbedder, make_query_embedder
from imagemesh.query.facets import FacetCounter
from imagemesh.query.filtering import FilterEvaluator, Selection, Where
from imagemesh.query.planner import PlannerConfig, QueryPlanner, SearchPlan
from imagemesh.query.sampling import sample_rows
from imagemesh.query.search import Hit, hits, neighbors, search_vectors, warm
from imagemesh.store.reader import CollectionError, CollectionReader, ImageNotFound

__all__ = ["Collection", "Hit", "open_collection", "CollectionError", "ImageNotFound", "SearchPlan"]


class Collection(CollectionReader):
    """One version of a collection, ready to query (read-only).

    Args:
        root: the collection folder (holds ``manifest.json``).
        registries: where index backends (and upload embedders) are looked up.
        exact_threshold: filters keeping at most this many rows are answered by an exact
            scan of those rows (see :mod:`imagemesh.query.planner`).
        filter_cache_size: filter masks (and facet results) kept, LRU.
        verify_checksums: check files' sha256 against the manifest before use.
        planner_cache_bytes: memory budget of each embedding's planner cache, bytes.

    Raises:
        CollectionError: missing files, or files that do not match the manifest.
    """

    def __init__(
        self,
        root: Path,
        registries: Registries | None = None,
        exact_threshold: int = PlannerConfig.exact_max_rows,
        filter_cache_size: int = 64,
        verify_checksums: bool = True,
        planner_cache_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        super().__init__(root, registries, verify_checksums)
        self.planner_config = PlannerConfig(exact_max_rows=int(exact_threshold), cache_bytes=int(planner_cache_bytes))
        self.filters = FilterEvaluator(self, filter_cache_size, clustering=self.clustering)
        self.facet_counter = FacetCounter(self, filter_cache_size)
        self._planners: dict[str, QueryPlanner] = {}
        self._embedders: dict[str, QueryEmbedder] = {}
        self._lock = threading.Lock()
        self._clusterings: dict[str, Clustering] = {}
        self._clusters_lock = threading.Lock()

    # ------------------------------------------------------------------ parts

    def planner(self, embedding: str | None = None) -> QueryPlanner:
        """The query planner of ``embedding`` (created on first use)."""
        st = self.state(embedding)
        with self._lock:
            if st.name not in self._planners:
                backend = self.manifest.embeddings[st.name]["index"]["backend"]
                self._planners[st.name] = QueryPlanner(st.index, st.vectors, backend, self.planner_config)
            return self._planners[st.name]

    def has_planner(self, embedding: str) -> bool:
        with self._lock:
            return embedding in self._planners

    def clustering(self, embedding: str | None = None) -> Clustering:
        """The k-means clusters of ``embedding`` (default k and seed 0; see
        :func:`~imagemesh.query.clusters.cluster_collection`), computed on first use and
        kept: what ``cluster`` filters select from.

        Raises:
            KeyError: unknown embedding.
        """
        name = self.state(embedding).name
        with self._clusters_lock:
            if name not in self._clusterings:
                self._clusterings[name] = cluster_collection(self, name)
            return self._clusterings[name]

    def query_embedder(self, embedding: str | None = None, registries: Registries | None = None) -> QueryEmbedder:
        """Embeds new images (uploads) into ``embedding``'s reduced space (see
        :func:`~imagemesh.query.embedder.make_query_embedder`)."""
        name = self.state(embedding).name
        if name not in self._embedders:
            self._embedders[name] = make_query_embedder(self, name, registries or self.registries)
        return self._embedders[name]

    # ------------------------------------------------------------------ filters

    def select(self, where: Where) -> Selection:
        """Parse, validate and evaluate a filter once (:class:`~imagemesh.query.filtering.Selection`).

        Raises:
            FilterError: invalid filter.
        """
        return self.filters.select(where)

    def allowed(self, where: Where) -> np.ndarray | None:
        """Read-only ``bool[N]`` mask of the rows ``where`` keeps (``None`` = no filter).

        Raises:
            FilterError: invalid filter (unknown field, wrong value type, ...).
        """
        return self.select(where).mask

    def count(self, where: Where = None) -> int:
        """Rows matching ``where``."""
        return self.select(where).n_allowed

    def recent_filters(self, n: int = 16) -> list[MetadataFilter]:
        """The ``n`` most recently used filters, newest first (what :meth:`warm` of the next
        version of this collection should prepare)."""
        return self.filters.recent(n)

    # ------------------------------------------------------------------ queries

    def hits(self, ids: Sequence[int] | np.ndarray, dists: Sequence[float] | np.ndarray | None = None) -> list[Hit]:
        """:class:`Hit` records for row ids, in order (``-1`` padding skipped with its distance)."""
        return hits(self, ids, dists)

    def search_vectors(self, queries: np.ndarray, embedding: str | None = None, k: int = 20, where: Where = None, **params: Any) -> tuple[np.ndarray, np.ndarray, SearchPlan]:
        """kNN of reduced query vectors ``float32[n, d]``; see :func:`imagemesh.query.search.search_vectors`."""
        return search_vectors(self, queries, embedding, k, self.select(where), **params)

    def neighbors(self, image: int | str, embedding: str | None = None, k: int = 20, where: Where = None, **params: Any) -> list[Hit]:
        """Nearest neighbours of a collection image, the image itself first when it passes
        the filter; see :func:`imagemesh.query.search.neighbors`.

        Raises:
            ImageNotFound, FilterError, KeyError (unknown embedding), ValueError (bad k).
        """
        return self.neighbors_with_plan(image, embedding, k, where, **params)[0]

    def neighbors_with_plan(self, image: int | str, embedding: str | None = None, k: int = 20, where: Where = None, **params: Any) -> tuple[list[Hit], SearchPlan]:
        """:meth:`neighbors` plus the :class:`SearchPlan` that answered it."""
        return neighbors(self, image, embedding, k, self.select(where), **params)

    def random(self, n: int = 20, where: Where = None, seed: int | None = None, offset: int = 0) -> list[Hit]:
        """``min(n, matches)`` distinct images drawn uniformly from those matching ``where``
        (see :mod:`imagemesh.query.sampling`: the same rows as the CLI and the API for a seed).

        Raises:
            FilterError, ValueError (``n``, ``seed`` or ``offset`` negative).
        """
        rows, _ = sample_rows(self.select(where), len(self), n, seed, offset)
        return self.hits(rows, None)

    def facets(self, where: Where = None, top: int = 200) -> dict[str, list[dict[str, Any]]]:
        """Value counts of the schema's facet fields (with display labels) over the rows
        matching ``where``; see :class:`~imagemesh.query.facets.FacetCounter`."""
        return self.facet_counter.counts(self.select(where), top)

    def warm(self, filters: Sequence[Where] = (), embeddings: Sequence[str] | None = None, previous: "Collection | None" = None) -> dict[str, float]:
        """Do the one-time work of queries ahead of them; see :func:`imagemesh.query.search.warm`."""
        return warm(self, filters, embeddings, previous)

    def info(self) -> dict[str, Any]:
        """Size, build, embeddings and the metadata schema (``fields``)."""
        return {
            "n_images": len(self),
            "keyword_index": bool(self.has_fts),
            "build_id": self.manifest.build_id,
            "created": self.manifest.created,
            "embeddings": self.embedding_info(),
            "fields": {**self.schema.to_dict(), "fields": {k: v.value for k, v in self.schema.filterable().items()}},
        }


def open_collection(path: str | Path, registries: Registries | None = None, **kwargs: Any) -> Collection:
    """Open a collection folder (``~`` is expanded); see :class:`Collection`."""
    return Collection(Path(path).expanduser(), registries=registries, **kwargs)
