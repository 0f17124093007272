"""Clusters of a collection under one embedding: k-means, automatic labels, representatives.

:func:`cluster_collection` groups a collection's stored reduced vectors
(``float32[n, d]``, unit rows for cosine embeddings) with FAISS k-means (``faiss.Kmeans``,
spherical for cosine embeddings, fixed seed: the same collection version and seed give the
same clusters) and describes each cluster by

* **label words**: the most distinctive words of its figures' text (caption and title when
  the collection has them, see :func:`label_fields`), ranked by class-based TF-IDF
  (c-TF-IDF, :func:`class_tfidf`) as in BERTopic: M. Grootendorst, *BERTopic: Neural topic
  modeling with a class-based TF-IDF procedure*, 2022, arXiv:2203.05794. No network, no
  language model: words come from the collection's own metadata;
* **representatives**: the rows nearest its centroid.

Cluster ids are ``0 .. k-1`` by decreasing size (ties: the cluster holding the lowest row
id first); clusters k-means left empty are dropped, so ``k`` may be below the requested
number. A :class:`~imagemesh.query.collection.Collection` caches one clustering per
embedding (:meth:`~imagemesh.query.collection.Collection.clustering`), which the
``cluster`` filter (:class:`imagemesh.core.filters.Cluster`) selects rows from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imagemesh.core.schema import FieldKind, MetadataSchema
from imagemesh.store.reader import CollectionReader

__all__ = [
    "Cluster",
    "Clustering",
    "cluster_collection",
    "cluster_vectors",
    "class_tfidf",
    "cluster_label_words",
    "default_k",
    "label_fields",
    "tokenize",
    "NOISE_WORDS",
    "MIN_K",
    "MAX_K",
]

#: Bounds of the default number of clusters (:func:`default_k`).
MIN_K = 2
MAX_K = 200
#: Label words per cluster and representative rows per cluster (at most).
N_LABEL_WORDS = 3
N_REPRESENTATIVES = 6
#: Fields whose words label clusters, when the collection has them (in this order).
PREFERRED_LABEL_FIELDS = ("caption", "subcaption", "title")

#: Words of figure captions and LaTeX that say nothing about a cluster (added to
#: scikit-learn's English stop words).
NOISE_WORDS = frozenset(
    """
    fig figs figure figures subfigure subfigures subfig caption captions label ref refs cite eq eqs equation
    equations sec section sections table tables tab appendix panel panels inset insets left right top bottom
    middle center centre upper lower row rows column columns shows show shown showing illustrates illustrate
    illustrated illustration depicts depict depicted presents present presented displays displayed respectively
    corresponding correspond denote denotes denoted indicate indicates indicated represent represents
    represented given obtained using used use uses case cases different example examples various versus
    textbf textit texttt textrm textsf mathrm mathbf mathcal mathit mathsf mathbb boldsymbol emph frac dfrac
    tfrac text cdot times hline includegraphics width height linewidth textwidth columnwidth begin end centering
    small footnotesize scriptsize tiny large hspace vspace quad qquad sqrt left right mbox hbox vbox
    http https www com org html pdf png jpg eps etc
    """.split()
)

_LETTERS = re.compile(r"[^\W\d_]+")
_stop_words: frozenset[str] | None = None


def _stops() -> frozenset[str]:
    global _stop_words
    if _stop_words is None:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        _stop_words = frozenset(ENGLISH_STOP_WORDS) | NOISE_WORDS
    return _stop_words


def tokenize(text: str | None) -> list[str]:
    """The label words of ``text``: lower-case runs of letters (digits, ``_`` and
    punctuation split words) of 3 characters or more, without English stop words
    (scikit-learn's ``ENGLISH_STOP_WORDS``) and :data:`NOISE_WORDS`. ``None`` -> ``[]``."""
    if not text:
        return []
    stops = _stops()
    return [w for w in _LETTERS.findall(text.lower()) if len(w) >= 3 and w not in stops]


def default_k(n: int) -> int:
    """Default number of clusters for ``n`` rows: ``round(sqrt(n / 2))`` clamped to
    [:data:`MIN_K`, :data:`MAX_K`], and never more than ``n``."""
    return min(max(MIN_K, min(MAX_K, round(math.sqrt(max(n, 0) / 2)))), max(n, 0))


def label_fields(schema: MetadataSchema) -> tuple[str, ...]:
    """The text fields whose words label clusters: ``caption``, ``subcaption`` and
    ``title`` when the schema has any of them (arXiv figures); otherwise its ``text_fields``
    then its ``keyword_fields`` (text or list-of-text fields only). May be empty."""
    texty = (FieldKind.TEXT, FieldKind.TEXT_LIST)
    preferred = tuple(f for f in PREFERRED_LABEL_FIELDS if schema.fields.get(f) in texty)
    if preferred:
        return preferred
    out: list[str] = []
    for f in (*schema.text_fields, *schema.keyword_fields):
        if schema.fields.get(f) in texty and f not in out:
            out.append(f)
    return tuple(out)


def class_tfidf(counts: Any) -> Any:
    """Class-based TF-IDF (c-TF-IDF) of per-cluster word counts, as in BERTopic
    (Grootendorst 2022, arXiv:2203.05794, eq. 1)::

        W[c, x] = tf[c, x] * log(1 + A / f[x])

    where ``tf[c, x]`` is the frequency of word ``x`` in cluster ``c`` (its count divided
    by the cluster's word total, L1-normalised per cluster as BERTopic's
    ``ClassTfidfTransformer`` does; this does not change the ranking inside a cluster),
    ``f[x]`` the count of ``x`` over all clusters and ``A`` the average number of words per
    cluster. A word frequent in one cluster and rare elsewhere scores high.

    Args:
        counts: ``[k, V]`` non-negative word counts per cluster (dense array or scipy
            sparse matrix).

    Returns:
        ``scipy.sparse.csr_matrix`` ``float64[k, V]`` of scores (zero where a word does
        not occur in a cluster; positive elsewhere).
    """
    import scipy.sparse as sp

    x = sp.csr_matrix(counts, dtype=np.float64)
    if x.shape[0] == 0 or x.shape[1] == 0 or x.nnz == 0:
        return x
    f = np.asarray(x.sum(axis=0)).ravel()
    per_class = np.asarray(x.sum(axis=1)).ravel()
    avg = float(per_class.mean())
    idf = np.log1p(avg / np.where(f > 0, f, 1.0))
    tf = sp.diags(1.0 / np.where(per_class > 0, per_class, 1.0)) @ x
    return sp.csr_matrix(tf @ sp.diags(idf))


def cluster_label_words(texts: Sequence[str | None], assignment: np.ndarray, k: int, n_words: int = N_LABEL_WORDS) -> list[tuple[str, ...]]:
    """The ``n_words`` most distinctive words of each cluster by :func:`class_tfidf`.

    Args:
        texts: one text per row (``None`` or ``""``: no words).
        assignment: ``int[n]`` cluster id of each row, in ``0 .. k-1``.
        k: number of clusters.
        n_words: words per cluster.

    Returns:
        ``k`` tuples of at most ``n_words`` words (:func:`tokenize`), best first (ties: in
        alphabetical order); a cluster whose rows have no words gets ``()``.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    assignment = np.asarray(assignment)
    if len(texts) != len(assignment):
        raise ValueError(f"{len(texts)} texts for {len(assignment)} rows")
    docs: list[list[str]] = [[] for _ in range(k)]
    for text, c in zip(texts, assignment.tolist()):
        if text:
            docs[c].append(text)
    vec = CountVectorizer(analyzer=lambda doc: [w for t in doc for w in tokenize(t)])
    try:
        counts = vec.fit_transform(docs)
    except ValueError:  # no word at all
        return [() for _ in range(k)]
    vocab = vec.get_feature_names_out()  # sorted, so ties break alphabetically
    scores = class_tfidf(counts)
    out: list[tuple[str, ...]] = []
    for c in range(k):
        row = scores.getrow(c)
        order = np.lexsort((row.indices, -row.data))[: max(0, int(n_words))]
        out.append(tuple(str(vocab[row.indices[i]]) for i in order))
    return out


@dataclass(frozen=True)
class Cluster:
    """One cluster of a :class:`Clustering`.

    Attributes:
        id: cluster id, ``0 .. k-1`` (by decreasing size).
        size: rows in the cluster (``>= 1``).
        label_words: its most distinctive words, best first (at most 3; ``()`` when its
            rows have no text).
        representatives: up to 6 row ids nearest the cluster's centroid, nearest first.
    """

    id: int
    size: int
    label_words: tuple[str, ...]
    representatives: tuple[int, ...]

    @property
    def label(self) -> str:
        """The label words joined by ``", "`` (``"cluster {id}"`` without words)."""
        return ", ".join(self.label_words) if self.label_words else f"cluster {self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "size": self.size, "label": self.label, "label_words": list(self.label_words), "representatives": list(self.representatives)}


@dataclass(frozen=True, eq=False)
class Clustering:
    """The k-means clusters of a collection under one embedding.

    Attributes:
        embedding: the embedding's name.
        k: number of (non-empty) clusters.
        assignment: read-only ``int32[n]``: the cluster id of each row (indexed by row id).
        clusters: the ``k`` clusters, ``clusters[i].id == i``.
    """

    embedding: str
    k: int
    assignment: np.ndarray
    clusters: tuple[Cluster, ...]

    def rows(self, cluster_id: int) -> np.ndarray:
        """Row ids of cluster ``cluster_id``, ascending (``int64``)."""
        return np.flatnonzero(self.assignment == int(cluster_id)).astype(np.int64)

    def mask(self, ids: Sequence[int]) -> np.ndarray:
        """``bool[n]``: the rows in any of the clusters ``ids``."""
        return np.isin(self.assignment, np.asarray(list(ids), dtype=np.int64))

    def to_dict(self) -> dict[str, Any]:
        """JSON form without the assignment: ``{embedding, k, clusters: [...]}``."""
        return {"embedding": self.embedding, "k": self.k, "clusters": [c.to_dict() for c in self.clusters]}


def cluster_vectors(vectors: np.ndarray, k: int, seed: int = 0, spherical: bool = False, niter: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """FAISS k-means of ``vectors``, renumbered by decreasing cluster size.

    Args:
        vectors: ``float32[n, d]`` (``n >= 1``); unit rows when ``spherical``.
        k: clusters asked for, ``1 <= k <= n``.
        seed: seed of FAISS's initialisation and sampling (same seed, same result).
        spherical: normalised centroids and inner-product assignment (cosine embeddings).
        niter: k-means iterations.

    Returns:
        ``(assignment int32[n], centroids float32[k', d])``: ids ``0 .. k'-1`` by
        decreasing size (ties: lowest member row first), empty clusters dropped (``k' <= k``).
    """
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    params: dict[str, Any] = {"niter": int(niter), "seed": int(seed), "spherical": bool(spherical), "verbose": False, "min_points_per_centroid": 1}
    if hasattr(faiss, "ClusteringInitMethod_KMEANS_PLUS_PLUS"):
        params["init_method"] = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
    km = faiss.Kmeans(d, int(k), **params)
    km.train(x)
    _, idx = km.index.search(x, 1)
    raw = idx[:, 0].astype(np.int64)
    sizes = np.bincount(raw, minlength=int(k))
    first = np.full(int(k), n, dtype=np.int64)
    np.minimum.at(first, raw, np.arange(n))
    present = np.flatnonzero(sizes > 0)
    order = present[np.lexsort((first[present], -sizes[present]))]
    remap = np.full(int(k), -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    return remap[raw].astype(np.int32), np.asarray(km.centroids, dtype=np.float32)[order]


def _texts(collection: CollectionReader, fields: Sequence[str]) -> list[str | None]:
    """One text per row (row-id order): the non-empty values of ``fields`` joined."""
    n = len(collection)
    if not fields or n == 0:
        return [None] * n
    t = collection.columns(list(fields)).sort_by("row_id")
    row_ids = t["row_id"].to_numpy()
    if len(row_ids) != n or not np.array_equal(row_ids, np.arange(n)):
        raise ValueError(f"metadata rows are not row ids 0..{n - 1}")
    cols = [t[f].to_pylist() for f in fields]
    out: list[str | None] = []
    for values in zip(*cols):
        parts = [" ".join(x for x in v if x) if isinstance(v, list) else v for v in values if v]
        out.append(" \n ".join(p for p in parts if p) or None)
    return out


def cluster_collection(collection: CollectionReader, embedding: str | None = None, k: int | None = None, seed: int = 0) -> Clustering:
    """k-means clusters of ``collection``'s reduced vectors under ``embedding``, labelled.

    Args:
        collection: an open collection (:class:`~imagemesh.query.collection.Collection`
            or any :class:`~imagemesh.store.reader.CollectionReader`).
        embedding: embedding name (default: the collection's default embedding).
        k: clusters asked for (default :func:`default_k`; at most the number of rows).
        seed: k-means seed; the same collection version, ``k`` and seed give the same
            clustering.

    Returns:
        a :class:`Clustering` whose label words come from :func:`label_fields` of the
        collection's schema (c-TF-IDF, :func:`cluster_label_words`) and whose
        representatives are the up to 6 rows nearest each centroid. An empty collection
        gives ``k == 0``.

    Raises:
        KeyError: unknown embedding.
        ValueError: ``k < 1``.
    """
    st = collection.state(embedding)
    vectors = st.vectors
    n = int(vectors.shape[0])
    if k is not None and (isinstance(k, bool) or int(k) < 1):
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if n == 0:
        empty = np.zeros(0, dtype=np.int32)
        empty.setflags(write=False)
        return Clustering(st.name, 0, empty, ())
    want = default_k(n) if k is None else min(int(k), n)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    assignment, centroids = cluster_vectors(x, want, seed, spherical=st.config.metric == "cosine")
    n_clusters = len(centroids)
    words = cluster_label_words(_texts(collection, label_fields(collection.schema)), assignment, n_clusters)
    clusters = []
    for c in range(n_clusters):
        rows = np.flatnonzero(assignment == c)
        d2 = ((x[rows] - centroids[c]) ** 2).sum(axis=1)
        reps = rows[np.lexsort((rows, d2))][:N_REPRESENTATIVES]
        clusters.append(Cluster(c, int(len(rows)), words[c], tuple(int(r) for r in reps)))
    assignment.setflags(write=False)
    return Clustering(st.name, n_clusters, assignment, tuple(clusters))
