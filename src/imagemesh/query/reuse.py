"""Reused figures: the same figure in several papers, earliest paper first.

Two figures of *different* papers are the same figure when their source files have the same
content hash, or when they lie within the embedding's calibrated near-duplicate distance
(:func:`~imagemesh.query.collapse.calibrated_threshold`, the threshold "collapse
near-duplicates" uses). Such pairs are joined into groups (union-find), and a group's
papers are ordered by arXiv id, which orders submissions in time (``YYMM`` then the
sequence number; old-style ``archive/YYMMNNN`` ids likewise), so its first paper is where
the figure first appeared.

Cost: one kNN query per figure (``k`` neighbours) on the embedding's index, computed once
per collection version and kept; on the 166 demo figures milliseconds, on a million
figures minutes at the index's QPS -- a build-time step there.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from imagemesh.query.collapse import calibrated_threshold, distance_to_nearest_other

__all__ = ["ReuseGroup", "Reuse", "ReuseCache", "find_reuse", "submission_key"]

_NEW = re.compile(r"^(\d{4})\.(\d{4,5})")
_OLD = re.compile(r"/(\d{2})(\d{2})(\d{3})")


def submission_key(arxiv_id: str) -> tuple[int, int, str]:
    """A sort key that orders arXiv ids by submission: ``(months since 1991-01, number, id)``.

    Ids that are not arXiv ids sort last (by text).
    """
    m = _NEW.match(arxiv_id)
    if m:
        yymm, num = m.group(1), int(m.group(2))
    else:
        o = _OLD.search(arxiv_id)
        if not o:
            return (1 << 30, 0, arxiv_id)
        yymm, num = o.group(1) + o.group(2), int(o.group(3))
    yy = int(yymm[:2])
    year = 1900 + yy if yy >= 91 else 2000 + yy
    return ((year - 1991) * 12 + int(yymm[2:]) - 1, num, arxiv_id)


class _Coll(Protocol):
    def columns(self, names: Sequence[str]) -> Any: ...
    def vectors(self, embedding: str | None = None) -> np.ndarray: ...
    def search_vectors(self, queries: np.ndarray, embedding: str | None = None, k: int = 20, where: Any = None, **params: Any) -> tuple[np.ndarray, np.ndarray, Any]: ...
    def __len__(self) -> int: ...


@dataclass(frozen=True)
class ReuseGroup:
    """One figure used in several papers.

    Attributes:
        rows: its figures, earliest paper first (row ids).
        papers: the distinct papers, earliest first (``papers[0]``: where it first appeared).
    """

    rows: tuple[int, ...]
    papers: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Reuse:
    """Every reuse group of a collection under one embedding (``group_of[row]``: index into
    ``groups`` or -1)."""

    embedding: str
    threshold: float
    groups: tuple[ReuseGroup, ...]
    group_of: np.ndarray


def find_reuse(c: _Coll, embedding: str, metric: str, k: int = 10, batch: int = 4096) -> Reuse:
    """Find the reuse groups (see the module docstring).

    Args:
        metric: the embedding's metric (``"cosine"`` or ``"l2"``).
        k: neighbours looked at per figure.
    """
    n = len(c)
    t = c.columns(["arxiv_id", "content_sha256"]).sort_by("row_id")
    papers = t["arxiv_id"].to_pylist()
    shas = t["content_sha256"].to_pylist()
    vecs = c.vectors(embedding)
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    def knn(q: np.ndarray, kk: int) -> np.ndarray:
        return c.search_vectors(q, embedding, kk)[1]

    thr = calibrated_threshold(vecs, metric, distance_to_nearest_other(vecs, metric, knn, papers)) if n >= 2 else 0.0
    by_sha: dict[str, int] = {}
    for r, s in enumerate(shas):
        if s and papers[r]:
            if s in by_sha and papers[by_sha[s]] != papers[r]:
                union(by_sha[s], r)
            by_sha.setdefault(s, r)
    kk = min(n, k + 1)
    for start in range(0, n, batch):
        rows = np.arange(start, min(n, start + batch))
        dist, ids, _ = c.search_vectors(np.asarray(vecs[rows], np.float32), embedding, kk)
        for q, drow, irow in zip(rows.tolist(), dist, ids):
            if not papers[q]:
                continue
            for d, j in zip(drow.tolist(), irow.tolist()):
                if j < 0 or j == q or d > thr:
                    continue
                if papers[j] and papers[j] != papers[q]:
                    union(q, j)
    members: dict[int, list[int]] = {}
    for r in range(n):
        members.setdefault(find(r), []).append(r)
    groups = []
    for rs in members.values():
        distinct = sorted({papers[r] for r in rs if papers[r]}, key=submission_key)
        if len(distinct) < 2:
            continue
        order = {p: i for i, p in enumerate(distinct)}
        rs.sort(key=lambda r: (order.get(papers[r], 1 << 30), r))
        groups.append(ReuseGroup(tuple(rs), tuple(distinct)))
    groups.sort(key=lambda g: (-len(g.papers), submission_key(g.papers[0])))
    group_of = np.full(n, -1, dtype=np.int64)
    for gi, g in enumerate(groups):
        group_of[list(g.rows)] = gi
    group_of.setflags(write=False)
    return Reuse(embedding, float(thr), tuple(groups), group_of)


class ReuseCache:
    """:func:`find_reuse` once per embedding (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[str, Reuse] = {}

    def get(self, c: _Coll, embedding: str, metric: str) -> Reuse:
        with self._lock:
            if embedding not in self._done:
                self._done[embedding] = find_reuse(c, embedding, metric)
            return self._done[embedding]
