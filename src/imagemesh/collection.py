"""A built collection: metadata (LanceDB), reduced vectors and one index per embedding.

Open with :func:`imagemesh.open`; query with :meth:`Collection.neighbors`,
:meth:`Collection.random`, :meth:`Collection.facets`, :meth:`Collection.get`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import lancedb
import numpy as np

from .arxiv import Taxonomy
from .embedding import EmbeddingConfig
from .filters import And, FilterError, Keyword, MetadataFilter, Not, Or, from_dict, to_lance_predicate
from .text_search import FTS_COLUMN, fts_query_text, keyword_predicate
from .index import Index, IndexError_, exact_search
from .manifest import Manifest, ManifestError
from .planner import PlannerConfig, QueryPlanner, SearchPlan
from .registry import Registries, default_registries
from .schema import MetadataSchema

__all__ = ["Collection", "Hit", "open_collection", "CollectionError", "ImageNotFound", "SearchPlan"]

#: Metadata columns returned with every hit (the heavy ``abstract`` only via ``get``).
HIT_COLUMNS = [
    "row_id", "image_key", "arxiv_id", "version", "title", "authors", "caption", "figure",
    "archive", "category", "categories", "year", "width", "height", "predictions",
]


#: Which embedding a collection answers with when none is named.
DEFAULT_EMBEDDING_PREFERENCE = ("imagenet", "raw")


class CollectionError(ManifestError):
    """The collection cannot be opened or does not match its manifest."""


class ImageNotFound(KeyError):
    """No image with that row id or key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Hit:
    """One result: row ``id``, ``distance`` under the embedding (``None`` for random
    samples), and the image's metadata."""

    id: int
    distance: float | None
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "distance": self.distance}
        d.update({k: v for k, v in self.metadata.items() if k != "row_id"})
        return d


@dataclass
class _EmbeddingState:
    name: str
    config: EmbeddingConfig
    dim: int
    vectors: np.ndarray  # float32[N, dim], memory-mapped
    index: Index


def _distance(d2: np.ndarray, metric: str) -> np.ndarray:
    """Squared L2 from an index -> the metric's distance (L2, or cosine distance on unit vectors)."""
    d2 = np.maximum(d2, 0.0)
    if metric == "cosine":
        return d2 / 2.0
    return np.sqrt(d2)


class Collection:
    """A read-only view of one version of a collection folder.

    Args:
        root: the collection folder (holds ``manifest.json``).
        registries: where index backends are looked up (default: built-ins + plugins).
        exact_threshold: filtered queries whose filter keeps at most this many rows
            are answered by an exact scan of those rows; larger ones go through the
            index with the filter (see :meth:`neighbors`).
        verify_index_checksums: check each index file's sha256 against the manifest
            before a native loader maps it (once per file and process; see
            :mod:`imagemesh.integrity`).
        filter_cache_size: filter masks kept (LRU; one ``bool[N]`` each, 1 MB per 1M images).
        planner_cache_bytes: memory budget of each embedding's planner cache (gathered
            subsets of recent filters, LRU; :class:`~imagemesh.planner.PlannerConfig`),
            bytes. A server process holds at most this much per embedding.

    Raises:
        CollectionError: missing files, a file whose size or shape differs from the
            manifest, or a metadata table whose row count or version differs.
    """

    def __init__(
        self,
        root: Path,
        registries: Registries | None = None,
        exact_threshold: int = PlannerConfig.exact_max_rows,
        filter_cache_size: int = 64,
        verify_index_checksums: bool = True,
        planner_cache_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        self.root = Path(root).expanduser()
        self.registries = registries or default_registries()
        self.manifest = Manifest.read(self.root)
        self.data_dir = self.root / self.manifest.data_dir
        self.schema = MetadataSchema.default()
        self.taxonomy = Taxonomy.load()
        self.exact_threshold = int(exact_threshold)
        self.verify_index_checksums = bool(verify_index_checksums)
        self.planner_cache_bytes = int(planner_cache_bytes)
        self._filter_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._recent_filters: OrderedDict[str, MetadataFilter] = OrderedDict()  # same keys as the mask cache
        self._cache_lock = threading.Lock()  # the web server queries from a thread pool
        self._filter_cache_size = int(filter_cache_size)
        self._planners: dict[str, QueryPlanner] = {}  # per embedding, created on first query
        self._facet_cache: OrderedDict[tuple[str | None, int], str] = OrderedDict()  # JSON of facets() results
        self._facet_columns: Any = None  # archive/category/year of every row, read on first facets()
        self._open_table()
        self._embeddings: dict[str, _EmbeddingState] = {}
        for name, entry in self.manifest.embeddings.items():
            self._embeddings[name] = self._open_embedding(name, entry)
        self._key_to_row: dict[str, int] | None = None
        self._embedders: dict[str, QueryEmbedder] = {}

    # ------------------------------------------------------------------ opening

    def _check_file(self, entry: dict[str, Any], what: str) -> Path:
        path = self.data_dir / entry["file"]
        if not path.is_file():
            raise CollectionError(f"{what}: file {path} is missing")
        size = path.stat().st_size
        if "bytes" in entry and size != int(entry["bytes"]):
            raise CollectionError(f"{what}: {path.name} is {size} bytes, manifest says {entry['bytes']} (truncated or replaced)")
        return path

    def _open_table(self) -> None:
        t = self.manifest.table
        lance_dir = self.root / t.get("dir", "lance")
        if not lance_dir.is_dir():
            raise CollectionError(f"metadata table folder {lance_dir} is missing")
        try:
            db = lancedb.connect(str(lance_dir))
            self.table = db.open_table(t.get("name", "images"))
            self.table.checkout(int(t["version"]))
            self.media = db.open_table(t.get("media", "media"))
            self.media.checkout(int(t["media_version"]))
        except (ValueError, OSError, RuntimeError, KeyError) as e:
            raise CollectionError(f"cannot open metadata tables in {lance_dir} at the manifest's versions: {e}") from e
        if FTS_COLUMN not in self.table.schema.names:
            raise CollectionError(f"metadata table in {lance_dir} has no {FTS_COLUMN!r} column; rebuild the collection")
        # Without its full-text index (e.g. removed by hand) keyword filters still work, by scanning.
        self._has_fts = any(ix.index_type == "FTS" and list(ix.columns) == [FTS_COLUMN] for ix in self.table.list_indices())
        for name, tbl in (("metadata", self.table), ("media", self.media)):
            rows = tbl.count_rows()
            if rows != self.manifest.n_images:
                raise CollectionError(f"{name} table has {rows} rows, manifest says {self.manifest.n_images}")

    def _open_embedding(self, name: str, entry: dict[str, Any]) -> _EmbeddingState:
        what = f"embedding {name!r}"
        try:
            config = EmbeddingConfig.from_dict(entry["config"])
            dim = int(entry["dim"])
            vpath = self._check_file(entry["vectors"], what)
            ipath = self._check_file(entry["index"], what)
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, CollectionError):
                raise
            raise CollectionError(f"{what}: malformed manifest entry: {e}") from e
        try:
            vectors = np.load(vpath, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise CollectionError(f"{what}: cannot read vectors {vpath.name}: {e}") from e
        if vectors.shape != (self.manifest.n_images, dim) or vectors.dtype != np.float32:
            raise CollectionError(f"{what}: vectors are {vectors.dtype}{list(vectors.shape)}, manifest says float32[{self.manifest.n_images}, {dim}]")
        backend = entry["index"]["backend"]
        cls = self.registries.backends.get(backend)
        params = dict(entry["index"].get("params", {}))
        params["file_bytes"] = entry["index"].get("bytes")
        if self.verify_index_checksums:
            # Native loaders (Annoy, FAISS) follow offsets inside a memory-mapped file: a
            # same-size corrupted file could crash a later query, so check its sha256 first.
            from .integrity import IntegrityError, check_file

            try:
                check_file(ipath, entry["index"].get("sha256"), entry["index"].get("bytes"))
            except IntegrityError as e:
                raise CollectionError(f"{what}: index {e}") from None
        try:
            index = cls.load(ipath, dim, params)
        except IndexError_ as e:
            raise CollectionError(f"{what}: {e}") from e
        if index.ntotal != self.manifest.n_images:
            raise CollectionError(f"{what}: index holds {index.ntotal} vectors, manifest says {self.manifest.n_images}")
        return _EmbeddingState(name, config, dim, vectors, index)

    # ------------------------------------------------------------------ basics

    def __len__(self) -> int:
        return self.manifest.n_images

    @property
    def embeddings(self) -> list[str]:
        """Embedding names, the default first (``imagenet`` when present, as the seed
        ImageMesh defaulted to its ImageNet CNN; else ``raw``; else the first), then the
        others in manifest order. The default is what queries without ``embedding`` use."""
        names = list(self._embeddings)
        if not names:
            return names
        first = next((n for n in DEFAULT_EMBEDDING_PREFERENCE if n in names), names[0])
        return [first] + [n for n in names if n != first]

    def embedding_info(self) -> list[dict[str, Any]]:
        out = []
        for name in self.embeddings:
            st = self._embeddings[name]
            entry = self.manifest.embeddings[name]
            out.append({
                "name": name,
                "metric": st.config.metric,
                "dim": st.dim,
                "input_dim": st.config.dim,
                "backend": entry["index"]["backend"],
                "explained_variance": entry.get("pca", {}).get("explained_variance"),
            })
        return out

    def vectors(self, embedding: str) -> np.ndarray:
        """Reduced vectors ``float32[N, d]`` (memory-mapped, read-only)."""
        return self._state(embedding).vectors

    def _state(self, embedding: str | None) -> _EmbeddingState:
        if embedding is None:
            embedding = self.embeddings[0]
        try:
            return self._embeddings[embedding]
        except KeyError:
            raise KeyError(f"unknown embedding {embedding!r}; this collection has: {', '.join(self.embeddings)}") from None

    def resolve(self, image: int | str) -> int:
        """Row id of ``image``: a row id (int or digit string), an image key
        (``"2306.01841v1/fig1"``), or an arXiv id with exactly one image.

        Raises:
            ImageNotFound: no such image, or an arXiv id with several images.
        """
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            if 0 <= int(image) < len(self):
                return int(image)
            raise ImageNotFound(f"no image with row id {image}")
        text = str(image).strip()
        if text.isdigit():
            return self.resolve(int(text))
        if self._key_to_row is None:
            t = self.table.search().select(["row_id", "image_key", "arxiv_id", "version"]).limit(None).to_arrow()
            self._key_to_row = {}
            self._paper_rows: dict[str, list[int]] = {}
            for r in t.to_pylist():
                self._key_to_row[r["image_key"]] = r["row_id"]
                names = {r["arxiv_id"]} | ({f"{r['arxiv_id']}v{r['version']}"} if r["version"] else set())
                for name in names:
                    if name:
                        self._paper_rows.setdefault(name, []).append(r["row_id"])
        if text in self._key_to_row:
            return self._key_to_row[text]
        matches = sorted(self._paper_rows.get(text, []))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ImageNotFound(f"{text!r} names {len(matches)} images; use an image key such as {self._row_key(matches[0])!r}")
        raise ImageNotFound(f"no image {text!r}")

    def _row_key(self, row: int) -> str:
        return str(self.get(row)["image_key"])

    # ------------------------------------------------------------------ metadata

    def _take(self, rows: Sequence[int], columns: list[str]) -> list[dict[str, Any]]:
        if not len(rows):
            return []
        rows = [int(r) for r in rows]
        cols = columns if "row_id" in columns else ["row_id", *columns]
        t = self.table.take_offsets(sorted(set(rows))).select(cols).to_arrow()
        by_id = {r["row_id"]: r for r in t.to_pylist()}
        out = []
        for r in rows:
            rec = dict(by_id[r])
            if "predictions" in rec:
                rec["predictions"] = json.loads(rec["predictions"]) if rec["predictions"] else {}
            out.append(rec)
        return out

    def get(self, image: int | str) -> dict[str, Any]:
        """All metadata of one image (``dict``; ``predictions`` parsed from JSON)."""
        row = self.resolve(image)
        names = [f.name for f in self.table.schema]
        return self._take([row], names)[0]

    def _media(self, rows: Sequence[int], column: str) -> list[bytes]:
        rows = [self.resolve(int(r)) for r in rows]
        if not rows:
            return []
        t = self.media.take_offsets(sorted(set(rows))).select(["row_id", column]).to_arrow()
        by_id = dict(zip(t["row_id"].to_pylist(), t[column].to_pylist()))
        missing = [r for r in rows if by_id.get(r) is None]
        if missing:
            raise ImageNotFound(f"no {column} stored for rows {missing[:5]}")
        return [bytes(by_id[r]) for r in rows]

    def thumbnail(self, row_id: int) -> bytes:
        """JPEG bytes of the thumbnail (longest side 256 px) of ``row_id``.

        Raises:
            ImageNotFound: no such row.
        """
        return self._media([row_id], "thumb")[0]

    def image(self, row_id: int) -> bytes:
        """JPEG bytes of the canonical image (longest side <= 512 px) of ``row_id``: the
        pixels every embedding saw.

        Raises:
            ImageNotFound: no such row.
        """
        return self._media([row_id], "image")[0]

    def images(self, rows: Sequence[int]) -> list[bytes]:
        """Canonical JPEGs of several rows, in the given order."""
        return self._media(rows, "image")

    def image_keys(self) -> list[str]:
        """Image keys in row-id order."""
        t = self.table.search().select(["row_id", "image_key"]).limit(None).to_arrow().sort_by("row_id")
        return t["image_key"].to_pylist()

    def map_2d(self, embedding: str | None = None) -> tuple[np.ndarray, str] | None:
        """The build-time 2-D map of an embedding: ``(float32[N, 2] in [0, 1], method)``,
        or ``None`` if the collection has none."""
        st = self._state(embedding)
        entry = self.manifest.embeddings[st.name].get("map")
        if not entry:
            return None
        xy = np.load(self._check_file(entry, f"map of {st.name!r}"), mmap_mode="r")
        if xy.shape != (len(self), 2):
            raise CollectionError(f"map of {st.name!r} has shape {xy.shape}, expected ({len(self)}, 2)")
        return np.asarray(xy), str(entry.get("method"))

    def query_embedder(self, embedding: str | None = None, registries: Registries | None = None) -> "QueryEmbedder":
        """An object that embeds new images (e.g. an upload) into ``embedding``'s reduced
        space, with the same network, preprocessing and PCA as the collection.

        Raises:
            CollectionError: the network available now is not the one that built the
                collection (its config or file hash differs).
        """
        st = self._state(embedding)
        key = st.name
        if key not in self._embedders:
            regs = registries or self.registries
            from .build import _make_embedding

            emb = _make_embedding(regs.embeddings.get(st.name), 0)
            if emb.config().to_dict() != st.config.to_dict():
                raise CollectionError(f"embedding {st.name!r} available here differs from the one that built the collection (model file or preprocessing changed)")
            entry = self.manifest.embeddings[st.name]["pca"]
            from .pca import PcaReducer

            reducer = PcaReducer.load(self._check_file(entry, f"PCA of {st.name!r}"))
            self._embedders[key] = QueryEmbedder(emb, reducer, st.config.metric)
        return self._embedders[key]

    # ------------------------------------------------------------------ filters

    def _coerce_filter(self, where: MetadataFilter | dict[str, Any] | str | None) -> MetadataFilter | None:
        if where is None or isinstance(where, MetadataFilter):
            return where
        if isinstance(where, str):
            from .filters import parse_filter

            return parse_filter(where)
        return from_dict(where)

    def allowed(self, where: MetadataFilter | dict[str, Any] | str | None) -> np.ndarray | None:
        """Evaluate a filter to a read-only ``bool[N]`` mask of matching rows (``None`` = no filter).

        Filters are compiled to escaped LanceDB predicates and evaluated by LanceDB;
        ``keyword`` leaves are answered by the full-text index of ``search_text``
        (:mod:`imagemesh.text_search`) and combined with the rest by mask algebra
        (``&``, ``|``, ``~``). The masks of recent filters are cached (LRU).

        Raises:
            FilterError: invalid filter (unknown field, wrong value type, ...).
        """
        f = self._coerce_filter(where)
        pred = to_lance_predicate(f, self.schema)  # also validates; the cache key
        if f is None or pred is None:
            return None
        with self._cache_lock:
            hit = self._filter_cache.get(pred)
            if hit is not None:
                self._filter_cache.move_to_end(pred)
                self._recent_filters.move_to_end(pred)
                return hit
        mask = self._mask(f)
        mask.setflags(write=False)
        with self._cache_lock:
            self._filter_cache[pred] = mask
            self._recent_filters[pred] = f
            if len(self._filter_cache) > self._filter_cache_size:
                old, _ = self._filter_cache.popitem(last=False)
                self._recent_filters.pop(old, None)
        return mask

    def _mask(self, f: MetadataFilter) -> np.ndarray:
        if not _has_keyword(f):
            return self._rows_to_mask(self.table.search().where(to_lance_predicate(f, self.schema)))
        if isinstance(f, Keyword):
            return self._keyword_mask(f.text)
        if isinstance(f, Not):
            return ~self._mask(f.filter)
        if isinstance(f, (And, Or)):
            op = np.logical_and if isinstance(f, And) else np.logical_or
            out = np.full(len(self), isinstance(f, And))
            for sub in f.filters:
                out = op(out, self._mask(sub))
            return out
        raise FilterError(f"cannot evaluate filter node {type(f).__name__}")

    def _keyword_mask(self, text: str) -> np.ndarray:
        q = fts_query_text(text)
        if q is None:
            return np.zeros(len(self), dtype=bool)
        if not self._has_fts:
            return self._rows_to_mask(self.table.search().where(keyword_predicate(text)))
        from lancedb.query import FullTextOperator, MatchQuery

        query = MatchQuery(q, FTS_COLUMN, operator=FullTextOperator.AND)
        # the limit must cover every match: a filter is a set, not a top-k of BM25 scores
        return self._rows_to_mask(self.table.search(query, query_type="fts").select(["row_id", "_score"]), fts=True)

    def _rows_to_mask(self, query: Any, fts: bool = False) -> np.ndarray:
        try:
            q = query.limit(max(len(self), 1)) if fts else query.select(["row_id"]).limit(None)
            t = q.to_arrow()
        except (ValueError, RuntimeError, OSError) as e:  # LanceDB reports SQL errors as ValueError/RuntimeError
            raise FilterError(f"the filter could not be evaluated: {e}") from e
        mask = np.zeros(len(self), dtype=bool)
        mask[t["row_id"].to_numpy()] = True
        return mask

    def count(self, where: MetadataFilter | dict[str, Any] | str | None = None) -> int:
        mask = self.allowed(where)
        return len(self) if mask is None else int(mask.sum())

    # ------------------------------------------------------------------ queries

    def hits(self, ids: Sequence[int] | np.ndarray, dists: Sequence[float] | np.ndarray | None = None) -> list[Hit]:
        """:class:`Hit` records (row id, distance, display metadata) for row ids, in order.

        Negative ids (the ``-1`` padding of :meth:`search_vectors`) are skipped, together
        with their distances. ``dists`` is in the embedding metric's units, or ``None``.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if dists is not None:
            dists = np.asarray(dists)[ids >= 0]
        ids = [int(i) for i in ids if i >= 0]
        recs = self._take(ids, HIT_COLUMNS)
        return [Hit(i, None if dists is None else float(dists[n]), rec) for n, (i, rec) in enumerate(zip(ids, recs))]

    def search_vectors(
        self,
        queries: np.ndarray,
        embedding: str | None = None,
        k: int = 20,
        where: MetadataFilter | dict[str, Any] | str | None = None,
        **params: Any,
    ) -> tuple[np.ndarray, np.ndarray, SearchPlan]:
        """kNN of reduced query vectors ``float32[n, d]`` under ``embedding``.

        The :class:`~imagemesh.planner.QueryPlanner` of the embedding chooses how (see
        :mod:`imagemesh.planner`): no filter -> the index; a filter keeping at most
        ``exact_threshold`` rows -> exact scan of exactly those rows (gathered once per
        filter); a middle-sized one -> an IVF over the allowed rows; a filter keeping
        most rows -> the index restricted to them. Every query gets ``min(k, matches)``
        hits.

        Returns:
            ``(distances float32[n, k] in the metric's units, row_ids int64[n, k], plan)``,
            ascending, padded with ``(inf, -1)``.

        Raises:
            FilterError, KeyError (unknown embedding), ValueError (bad k or shape).
        """
        st = self._state(embedding)
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        mask = self.allowed(where)
        key = None if mask is None else to_lance_predicate(self._coerce_filter(where), self.schema)
        d2, ids, plan = self._planner(st).search(queries, int(k), mask, key=key, **params)
        return _distance(d2, st.config.metric).astype(np.float32), ids, plan

    def _planner(self, st: _EmbeddingState) -> QueryPlanner:
        with self._cache_lock:
            planners = self._planners
            if st.name not in planners:
                backend = self.manifest.embeddings[st.name]["index"]["backend"]
                planners[st.name] = QueryPlanner(st.index, st.vectors, backend, PlannerConfig(exact_max_rows=self.exact_threshold, cache_bytes=self.planner_cache_bytes))
            return planners[st.name]

    def recent_filters(self, n: int = 16) -> list[MetadataFilter]:
        """The ``n`` most recently used filters, newest first (what :meth:`warm` of the next
        version of this collection should prepare)."""
        with self._cache_lock:
            return list(reversed(self._recent_filters.values()))[: max(0, int(n))]

    def warm(
        self,
        filters: Sequence[MetadataFilter | dict[str, Any] | str] = (),
        embeddings: Sequence[str] | None = None,
        previous: "Collection | None" = None,
    ) -> dict[str, float]:
        """Do the one-time work of queries ahead of them, so the first users do not wait.

        Reads the facet columns; then per embedding runs one unfiltered query (loads the
        index pages) and, per filter, one filtered query, which evaluates the filter's
        mask and builds the planner's cached structure for it (gathered subset, IVF cells
        over the allowed rows, or selector bitmap). A server calls this on a new version
        with the old version's :meth:`recent_filters` before switching to it.

        ``previous``: the version this one replaces; where an embedding's vectors are
        unchanged (same sha256 in both manifests) its planner's k-means cells are reused
        instead of recomputed (seconds at 1M vectors).

        Returns:
            Seconds spent per step (``"facets"``, ``"<embedding>"``, ``"<embedding> <filter json>"``).

        Raises:
            FilterError, KeyError: as :meth:`search_vectors`.
        """
        out: dict[str, float] = {}
        t = time.perf_counter()
        self.facets()
        out["facets"] = time.perf_counter() - t
        for name in embeddings or self.embeddings:
            st = self._state(name)
            if previous is not None and name in previous.manifest.embeddings:
                old_sha = previous.manifest.embeddings[name]["vectors"].get("sha256")
                if old_sha and old_sha == self.manifest.embeddings[name]["vectors"].get("sha256") and name in previous._planners:
                    self._planner(st).share_cells(previous._planner(previous._state(name)))
            q = np.asarray(st.vectors[:1], dtype=np.float32)
            t = time.perf_counter()
            self.search_vectors(q, name, 1)
            out[name] = time.perf_counter() - t
            for f in filters:
                f = self._coerce_filter(f)
                t = time.perf_counter()
                self.search_vectors(q, name, 1, f)
                out[f"{name} {f.to_json() if f is not None else 'null'}"] = time.perf_counter() - t
        return out

    def neighbors(
        self,
        image: int | str,
        embedding: str | None = None,
        k: int = 20,
        where: MetadataFilter | dict[str, Any] | str | None = None,
        **params: Any,
    ) -> list[Hit]:
        """Nearest neighbours of a collection image.

        Args:
            image: row id, image key or arXiv id (see :meth:`resolve`).
            embedding: embedding name (default: the first one).
            k: number of results; ``min(k, matches)`` are returned.
            where: a :class:`MetadataFilter`, its JSON form, or JSON text.
            **params: query-time knobs of the backend (``search_k``, ``ef_search``, ``nprobe``).

        Returns:
            Hits in ascending distance. The query image itself comes first when it
            passes the filter (under ``exact`` it has distance 0; ties are resolved in
            its favour).

        Raises:
            ImageNotFound, FilterError, KeyError (unknown embedding), ValueError (bad k).
        """
        return self.neighbors_with_plan(image, embedding, k, where, **params)[0]

    def neighbors_with_plan(
        self,
        image: int | str,
        embedding: str | None = None,
        k: int = 20,
        where: MetadataFilter | dict[str, Any] | str | None = None,
        **params: Any,
    ) -> tuple[list[Hit], SearchPlan]:
        """:meth:`neighbors` plus the :class:`SearchPlan` that answered it."""
        row = self.resolve(image)
        st = self._state(embedding)
        q = np.asarray(st.vectors[row : row + 1])
        dist, ids, plan = self.search_vectors(q, st.name, k, where, **params)
        d, i = dist[0], ids[0]
        mask = self.allowed(where)
        if mask is None or mask[row]:
            # The query image is its own nearest neighbour; make ties and ANN misses not hide it.
            keep = i != row
            i = np.concatenate([[row], i[keep]])[: len(i)]
            d = np.concatenate([[0.0], d[keep]])[: len(d)].astype(np.float32)
        return self.hits(i, d), plan

    def random(self, n: int = 20, where: MetadataFilter | dict[str, Any] | str | None = None, seed: int | None = None) -> list[Hit]:
        """``min(n, matches)`` distinct images drawn uniformly from those matching ``where``.

        ``seed`` makes the sample reproducible (numpy ``default_rng``).

        Raises:
            FilterError, ValueError (``n < 0``).
        """
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        mask = self.allowed(where)
        rows = np.arange(len(self)) if mask is None else np.flatnonzero(mask)
        rng = np.random.default_rng(seed)
        pick = rng.choice(rows, size=min(int(n), rows.size), replace=False) if rows.size else np.zeros(0, np.int64)
        return self.hits(pick, None)

    def facets(self, where: MetadataFilter | dict[str, Any] | str | None = None, top: int = 200) -> dict[str, list[dict[str, Any]]]:
        """Value counts of ``archive``, ``category`` and ``year`` (with official names),
        over the rows matching ``where``. A ``None`` value counts images without one.

        The facet columns are read once per collection (a version never changes) and the
        counts of recent filters are cached, so a server does not rescan the table per request."""
        mask = self.allowed(where)
        key = (to_lance_predicate(self._coerce_filter(where), self.schema), int(top))
        with self._cache_lock:
            cached = self._facet_cache.get(key)
        if cached is not None:
            return json.loads(cached)
        t = self._facet_columns
        if t is None:
            t = self._facet_columns = self.table.search().select(["row_id", "archive", "category", "year"]).limit(None).to_arrow()
        if mask is not None:
            import pyarrow as pa

            t = t.filter(pa.array(mask[t["row_id"].to_numpy()]))
        out: dict[str, list[dict[str, Any]]] = {}
        for col in ("archive", "category", "year"):
            counts = t.group_by(col).aggregate([([], "count_all")]).to_pylist()
            items = []
            for c in counts:
                v = c[col]
                label = None
                if col == "archive" and v is not None:
                    label = self.taxonomy.archive_name(v)
                elif col == "category" and v is not None:
                    label = self.taxonomy.category_name(v)
                items.append({"value": v, "label": label or (str(v) if v is not None else "(unknown)"), "count": int(c["count_all"])})
            items.sort(key=lambda x: (-x["count"], str(x["value"])))
            out[col] = items[:top]
        with self._cache_lock:
            cache = self._facet_cache
            cache[key] = json.dumps(out)
            if len(cache) > self._filter_cache_size:
                cache.popitem(last=False)
        return out

    def info(self) -> dict[str, Any]:
        return {
            "n_images": len(self),
            "keyword_index": bool(self._has_fts),
            "build_id": self.manifest.build_id,
            "created": self.manifest.created,
            "embeddings": self.embedding_info(),
            "fields": self.schema.to_dict(),
        }


class QueryEmbedder:
    """Embeds new images into a collection's reduced space (network -> PCA -> normalise)."""

    def __init__(self, embedding: Any, reducer: Any, metric: str) -> None:
        self.embedding = embedding
        self.reducer = reducer
        self.metric = metric
        self._lock = threading.Lock()

    def __call__(self, images: Sequence[Any], canonical: bool = False) -> np.ndarray:
        """``n`` RGB PIL images -> ``float32[n, d]`` in the collection's reduced space.

        Images go through the same canonical form as at build time (JPEG at <= 512 px),
        unless ``canonical`` says they already are that form (e.g. from
        :func:`imagemesh.web.upload.canonical_upload`); encoding twice would change pixels."""
        from .build import canonical_image

        canon = list(images) if canonical else [canonical_image(img)[1] for img in images]
        with self._lock:  # ONNX Runtime sessions are thread-safe, numpy BLAS is too; keep memory bounded
            raw = self.embedding.embed_batch(canon)
        red = self.reducer.transform(raw)
        if self.metric == "cosine":
            red = red / np.maximum(np.linalg.norm(red, axis=1, keepdims=True), 1e-12)
        return red.astype(np.float32)


def _has_keyword(f: MetadataFilter) -> bool:
    if isinstance(f, Keyword):
        return True
    if isinstance(f, (And, Or)):
        return any(_has_keyword(x) for x in f.filters)
    if isinstance(f, Not):
        return _has_keyword(f.filter)
    return False


def open_collection(path: str | Path, registries: Registries | None = None, **kwargs: Any) -> Collection:
    """Open a collection folder (``~`` is expanded); see :class:`Collection`."""
    return Collection(Path(path).expanduser(), registries=registries, **kwargs)
