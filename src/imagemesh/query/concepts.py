"""Concepts: a linear classifier trained from a few labelled images, over one embedding.

A user marks images as positive or negative for a named concept ("diagram", "blue"); a
class-balanced logistic regression (scikit-learn) over the embedding's stored reduced vectors
of those rows separates them, and :meth:`Concept.scores` gives every image of the collection
the probability of the positive class. Training is stateless (the labels are the input) and
takes milliseconds for up to :data:`MAX_LABELS` labels; scoring is one matrix-vector product.

:func:`save_concept` (``imagemesh concept save``) writes a concept as two metadata columns in a
new collection version: ``NAME`` (``"yes"``/``"no"`` by a threshold, a facet, so ``{"NAME":
"yes"}`` is a filter and a dropdown) and ``NAME_score`` (the probability, a range field).
"""

from __future__ import annotations

import csv
import io
import operator
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from imagemesh.core.errors import ImagemeshError
from imagemesh.core.schema import SYSTEM_FIELDS, MetadataSchema
from imagemesh.store.reader import CollectionReader, ImageNotFound

__all__ = [
    "Concept",
    "ConceptError",
    "ConceptNameError",
    "SavedConcept",
    "MAX_LABELS",
    "CV_METRIC",
    "train_concept",
    "parse_labels",
    "read_labels",
    "check_concept_name",
    "save_concept",
]

#: Most labelled images one concept is trained from (positives + negatives).
MAX_LABELS = 2000
#: The cross-validated score of a concept: balanced accuracy (mean of the recall of each
#: class), so a concept with 5 positives and 50 negatives is not rewarded for saying "no".
CV_METRIC = "balanced_accuracy"
_MAX_FOLDS = 5
#: Words accepted in the label column of a labels file.
_POSITIVE = frozenset({"1", "pos", "positive", "yes", "y", "true", "+"})
_NEGATIVE = frozenset({"0", "neg", "negative", "no", "n", "false", "-"})
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,57}")
#: Words a filter reads as operators rather than field names.
_FILTER_WORDS = frozenset({"keyword", "and", "or", "not", "cluster"})
SCORE_SUFFIX = "_score"
_FIT_LOCK = threading.Lock()
_NEWTON_MAX_DIM = 256


class ConceptError(ImagemeshError, ValueError):
    """Labels a concept cannot be trained or saved from (too few, unknown ids, both classes, a bad labels file)."""


class ConceptNameError(ConceptError):
    """A concept name that is not a valid field name or clashes with a field of the collection."""


@dataclass(frozen=True)
class Concept:
    """A trained concept: a logistic regression over one embedding's reduced vectors.

    Attributes:
        embedding: the embedding whose stored vectors it was trained on (and scores).
        coef: ``float32[d]`` weights over the raw reduced vectors (standardisation folded in).
        intercept: the bias; ``score = sigmoid(vectors @ coef + intercept)``.
        n_pos: distinct positive rows it was trained on.
        n_neg: distinct negative rows.
        cv_score: stratified k-fold cross-validated balanced accuracy (:data:`CV_METRIC`) in
            ``[0, 1]``; ``None`` when a class has fewer than 2 examples.
        cv_folds: ``k`` = min(5, smallest class size); ``0`` when ``cv_score`` is ``None``.
    """

    embedding: str
    coef: np.ndarray
    intercept: float
    n_pos: int
    n_neg: int
    cv_score: float | None
    cv_folds: int

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Probability of the positive class of every row.

        Args:
            vectors: ``float32[n, d]`` reduced vectors of this concept's embedding (e.g.
                ``collection.vectors(concept.embedding)``, memory-mapped is fine).

        Returns:
            ``float32[n]`` in ``[0, 1]``.

        Raises:
            ValueError: ``vectors`` is not 2-D with ``d`` columns.
        """
        v = np.asarray(vectors)
        if v.ndim != 2 or v.shape[1] != self.coef.shape[0]:
            raise ValueError(f"vectors of shape {v.shape}; this concept scores {self.coef.shape[0]}-d vectors of {self.embedding!r}")
        z = v.astype(np.float32, copy=False) @ self.coef.astype(np.float32, copy=False) + np.float32(self.intercept)
        # sigmoid without overflow: 0.5 * (1 + tanh(z / 2))
        return (np.float32(0.5) * (np.float32(1.0) + np.tanh(np.float32(0.5) * z))).astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``embedding``, ``coef`` (list), ``intercept``, ``n_pos``, ``n_neg``,
        ``cv_score``, ``cv_metric``, ``cv_folds``."""
        return {
            "embedding": self.embedding,
            "coef": [float(x) for x in self.coef],
            "intercept": float(self.intercept),
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
            "cv_score": self.cv_score,
            "cv_metric": CV_METRIC,
            "cv_folds": self.cv_folds,
        }


def _ids(values: Sequence[int], what: str, n: int) -> list[int]:
    """Distinct row ids, each an integer in ``[0, n)``."""
    out: dict[int, None] = {}
    for v in values:
        if isinstance(v, bool):
            raise ConceptError(f"{what}: row ids are integers, got {v!r}")
        try:
            i = operator.index(v)
        except TypeError:
            raise ConceptError(f"{what}: row ids are integers, got {v!r}") from None
        if not 0 <= i < n:
            raise ConceptError(f"{what}: row id {i} is out of range (the collection has {n} images, ids 0..{n - 1})")
        out[i] = None
    return list(out)


def _pipeline(seed: int, dim: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # newton-cholesky: exact Newton steps, a few ms for up to MAX_LABELS rows of a reduced
    # embedding (64-d by default), where lbfgs takes ~80 ms whatever the size; its cost grows
    # with dim**3, so wide embeddings use lbfgs.
    solver = "newton-cholesky" if dim <= _NEWTON_MAX_DIM else "lbfgs"
    return make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", C=1.0, solver=solver, max_iter=1000, random_state=seed))


def train_concept(collection: CollectionReader, embedding: str | None, positives: Sequence[int], negatives: Sequence[int], seed: int = 0) -> Concept:
    """Train a concept from labelled rows of ``collection``.

    A scikit-learn ``LogisticRegression(class_weight="balanced")`` (``newton-cholesky``
    solver up to 256 dimensions, else ``lbfgs``; L2, ``C=1``) on the standardised
    stored reduced vectors (``collection.vectors(embedding)``, ``float32[n, d]``) of the
    labelled rows; the standardisation is folded into :attr:`Concept.coef`. The score is
    the stratified k-fold (k = min(5, smallest class size), shuffled with ``seed``)
    cross-validated balanced accuracy. Deterministic for the same label sets (order and
    duplicates do not matter) and seed.

    Args:
        collection: an open collection (a :class:`~imagemesh.query.collection.Collection`).
        embedding: embedding name (``None``: the collection's default).
        positives: row ids of positive examples (duplicates are ignored).
        negatives: row ids of negative examples.
        seed: seed of the cross-validation split.

    Returns:
        The :class:`Concept`.

    Raises:
        ConceptError (a ``ValueError``): no positive or no negative, an id out of range or
            not an integer, an id in both lists, more than :data:`MAX_LABELS` labels.
        KeyError: no such embedding.
    """
    st = collection.state(embedding)
    n = len(collection)
    pos = sorted(_ids(positives, "positives", n))  # sorted: the result depends on the label sets only
    neg = sorted(_ids(negatives, "negatives", n))
    if not pos or not neg:
        raise ConceptError(f"a concept needs at least one positive and one negative example (got {len(pos)} positive, {len(neg)} negative)")
    both = sorted(set(pos) & set(neg))
    if both:
        raise ConceptError(f"rows labelled both positive and negative: {', '.join(map(str, both[:10]))}{' …' if len(both) > 10 else ''}")
    if len(pos) + len(neg) > MAX_LABELS:
        raise ConceptError(f"{len(pos) + len(neg)} labels; a concept is trained from at most {MAX_LABELS}")
    rows = np.array(pos + neg, dtype=np.int64)
    order = np.argsort(rows, kind="stable")  # read the memory map in row order
    x = np.empty((len(rows), st.dim), dtype=np.float64)
    x[order] = np.asarray(st.vectors[rows[order]], dtype=np.float64)
    y = np.concatenate([np.ones(len(pos), dtype=np.int64), np.zeros(len(neg), dtype=np.int64)])

    folds = min(_MAX_FOLDS, len(pos), len(neg))
    cv_score: float | None = None
    from threadpoolctl import threadpool_limits

    # One BLAS thread: these matrices are tiny, and threaded BLAS on busy cores made training
    # 5-8x slower (measured). The limit is process-wide, hence the lock (no interleaved restore).
    with _FIT_LOCK, threadpool_limits(limits=1, user_api="blas"):
        if folds >= 2:
            from sklearn.model_selection import StratifiedKFold, cross_val_score

            cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            cv_score = float(np.mean(cross_val_score(_pipeline(seed, st.dim), x, y, cv=cv, scoring=CV_METRIC)))
        else:
            folds = 0
        model = _pipeline(seed, st.dim).fit(x, y)
    scaler, lr = model[0], model[-1]
    w = lr.coef_[0] / scaler.scale_
    b = float(lr.intercept_[0] - np.dot(w, scaler.mean_))
    return Concept(st.name, w.astype(np.float32), b, len(pos), len(neg), cv_score, folds)


# ---------------------------------------------------------------- labels files


def parse_labels(text: str, what: str = "labels") -> list[tuple[str, bool]]:
    """Parse ``id,label`` lines (CSV; an ``id,label`` header is optional, blank lines and
    ``#`` comments are skipped, further columns ignored). ``label`` is ``1``/``0``,
    ``pos``/``neg``, ``positive``/``negative``, ``yes``/``no`` or ``true``/``false``; ``id``
    is a row id, an image key or an arXiv id with one image (see
    :meth:`~imagemesh.store.reader.CollectionReader.resolve`).

    Returns:
        ``[(id, is_positive), ...]`` in file order.

    Raises:
        ConceptError: a line without two columns or with an unknown label (named by its
            line number), or no label at all.
    """
    out: list[tuple[str, bool]] = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if len(cells) < 2 or not cells[0]:
            raise ConceptError(f"{what} line {lineno}: expected 'id,label', got {','.join(row)[:80]!r}")
        ident, label = cells[0], cells[1].lower()
        if not out and ident.lower() == "id" and label == "label":
            continue
        if label in _POSITIVE:
            out.append((ident, True))
        elif label in _NEGATIVE:
            out.append((ident, False))
        else:
            raise ConceptError(f"{what} line {lineno}: label {cells[1][:40]!r} is not one of 1/0, pos/neg, yes/no, true/false")
    if not out:
        raise ConceptError(f"{what}: no labels (expected 'id,label' lines)")
    return out


def read_labels(path: Path) -> list[tuple[str, bool]]:
    """:func:`parse_labels` of a UTF-8 file.

    Raises:
        ConceptError: not UTF-8 text, or see :func:`parse_labels`. OSError: unreadable.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConceptError(f"{path.name}: not a UTF-8 text file (expected 'id,label' lines)") from None
    return parse_labels(text, path.name)


def _resolve_labels(reader: CollectionReader, labels: Sequence[tuple[int | str, bool]], what: str) -> tuple[list[int], list[int]]:
    pos: list[int] = []
    neg: list[int] = []
    for i, (ident, positive) in enumerate(labels, start=1):
        try:
            row = reader.resolve(ident)
        except ImageNotFound as e:
            raise ConceptError(f"{what}: label {i} ({str(ident)[:60]!r}): {e}") from None
        (pos if positive else neg).append(row)
    return pos, neg


# ---------------------------------------------------------------- saving


def check_concept_name(reader: CollectionReader, name: str) -> None:
    """Check that ``name`` and ``name + "_score"`` can become new fields of the collection:
    an identifier (letters, digits, ``_``, not starting with a digit, at most 58 characters)
    that is no field of its schema, no column of its table, no system column and no filter
    operator.

    Raises:
        ConceptNameError: why not.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConceptNameError(f"concept name {name!r}: use letters, digits and '_', not starting with a digit, at most 58 characters")
    taken = set(reader.schema.filterable()) | set(SYSTEM_FIELDS) | set(reader.table.schema.names) | _FILTER_WORDS
    for field in (name, name + SCORE_SUFFIX):
        if field in taken or field.lower() in _FILTER_WORDS:
            raise ConceptNameError(f"concept name {name!r}: the collection already has a field {field!r}; choose another name")


@dataclass(frozen=True)
class SavedConcept:
    """What :func:`save_concept` published.

    Attributes:
        name: the facet field (``"yes"``/``"no"``); ``score_field`` holds the probability.
        concept: the trained :class:`Concept`.
        threshold: rows with a score ``>= threshold`` are ``"yes"``.
        n_yes: rows that are ``"yes"``.
        n_images: rows of the collection.
        build_id: the new version; ``previous_build_id`` the one it replaced.
    """

    name: str
    score_field: str
    concept: Concept
    threshold: float
    n_yes: int
    n_images: int
    build_id: str
    previous_build_id: str

    def to_dict(self) -> dict[str, Any]:
        c = self.concept.to_dict()
        c.pop("coef")
        return {
            "name": self.name, "score_field": self.score_field, "threshold": self.threshold,
            "n_yes": self.n_yes, "n_images": self.n_images,
            "build_id": self.build_id, "previous_build_id": self.previous_build_id, **c,
        }


def save_concept(
    root: Path,
    name: str,
    labels: Sequence[tuple[int | str, bool]],
    embedding: str | None = None,
    threshold: float = 0.5,
    seed: int = 0,
    what: str = "labels",
) -> SavedConcept:
    """Train a concept from ``labels`` and publish it as a new version of collection ``root``.

    The new version's ``images`` table gains ``name`` (text, ``"yes"`` where the score is
    ``>= threshold``, else ``"no"``; a facet and hit field) and ``name_score`` (float, the
    probability of the positive class; a range and hit field); the manifest's schema and its
    ``source["concepts"][name]`` record (embedding, labels count, CV score, threshold) are
    updated. Written through :func:`~imagemesh.store.writer.publish_columns`: atomic, the old
    version keeps opening until the manifest switches, a failure leaves the collection as it was.

    Args:
        labels: ``[(id, is_positive), ...]``; ids as :meth:`~imagemesh.store.reader.CollectionReader.resolve` takes them.
        threshold: in ``[0, 1]``.
        what: how errors name the labels (e.g. the file name).

    Raises:
        ConceptNameError: ``name`` is invalid or clashes with a field.
        ConceptError: unknown ids, too few labels, an id labelled both ways, ... (see
            :func:`train_concept`), a threshold outside ``[0, 1]``.
        KeyError: no such embedding.
        CollectionError, ManifestError: ``root`` cannot be opened. OSError.
    """
    from imagemesh.store.writer import publish_columns

    import pyarrow as pa

    if not 0.0 <= float(threshold) <= 1.0:
        raise ConceptError(f"threshold {threshold} is outside [0, 1]")
    reader = CollectionReader(Path(root))
    check_concept_name(reader, name)
    pos, neg = _resolve_labels(reader, labels, what)
    concept = train_concept(reader, embedding, pos, neg, seed=seed)
    scores = concept.scores(reader.vectors(concept.embedding))
    yes = scores >= np.float32(threshold)
    score_field = name + SCORE_SUFFIX
    d = reader.schema.to_dict()
    d["fields"] = {**d["fields"], name: "text", score_field: "float"}
    d["facet_fields"] = [*d["facet_fields"], name]
    d["range_fields"] = [*d["range_fields"], score_field]
    d["hit_fields"] = [*d["hit_fields"], name, score_field]
    schema = MetadataSchema.from_dict(d).to_dict()  # validates
    m = reader.manifest
    source = dict(m.source)
    record = {**concept.to_dict(), "threshold": float(threshold), "score_field": score_field,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    record.pop("coef")
    source["concepts"] = {**dict(source.get("concepts") or {}), name: record}
    columns = {
        name: pa.array(np.where(yes, "yes", "no").tolist(), pa.string()),
        score_field: pa.array(scores.astype(np.float64), pa.float64()),
    }
    previous = m.build_id
    del reader  # the new version is written beside it; nothing of the old one stays open here
    published = publish_columns(Path(root), columns, schema, source, expect_build_id=previous)
    return SavedConcept(name, score_field, concept, float(threshold), int(yes.sum()), int(len(scores)), published.build_id, previous)
