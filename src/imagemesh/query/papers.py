"""Papers as units: all figures of a paper, and papers whose figures look like a paper's.

A paper is the set of rows sharing an ``arxiv_id`` (any version). "Papers like this" ranks
the other papers by how closely their figures match this paper's figures under an
embedding: for each figure ``f`` of paper ``P``, the distance to the nearest figure of
paper ``Q`` (found among ``f``'s ``per_figure`` nearest neighbours; a paper not among them
counts the ``per_figure``-th distance, an upper bound); a paper's score is the mean of
those distances over ``P``'s figures (smaller = more alike), so a paper matching every
figure of ``P`` ranks above one that matches a single figure very well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from imagemesh.core.schema import MetadataSchema
from imagemesh.query.filtering import Selection
from imagemesh.store.reader import ImageNotFound

__all__ = ["PaperMatch", "paper_rows", "similar_papers"]


class _Papers(Protocol):  # the part of Collection used here
    schema: MetadataSchema

    def resolve(self, image: int | str) -> int: ...
    def vectors(self, embedding: str | None = None) -> np.ndarray: ...
    def columns(self, names: Sequence[str]) -> Any: ...
    def search_vectors(self, queries: np.ndarray, embedding: str | None = None, k: int = 20, where: Any = None, **params: Any) -> tuple[np.ndarray, np.ndarray, Any]: ...
    def __len__(self) -> int: ...


@dataclass(frozen=True)
class PaperMatch:
    """One similar paper.

    Attributes:
        arxiv_id: the paper.
        score: mean over the query paper's figures of the distance to this paper's nearest
            figure (the embedding's metric; smaller = more alike).
        matched: per query figure, ``(query row, this paper's nearest row or -1, distance)``.
        best_row: this paper's figure closest to any query figure (its thumbnail).
    """

    arxiv_id: str
    score: float
    matched: tuple[tuple[int, int, float], ...]
    best_row: int


def _paper_index(c: _Papers) -> tuple[np.ndarray, list[str]]:
    """``(paper number per row int32[n] (-1: no paper), paper ids)``."""
    t = c.columns(["arxiv_id"]).sort_by("row_id")
    ids = t["arxiv_id"].to_pylist()
    names: dict[str, int] = {}
    out = np.full(len(ids), -1, dtype=np.int32)
    for row, aid in enumerate(ids):
        if aid:
            out[row] = names.setdefault(aid, len(names))
    return out, list(names)


def paper_rows(c: _Papers, arxiv_id: str) -> list[int]:
    """Row ids of every figure of ``arxiv_id`` (a version suffix is ignored), in row order.

    Raises:
        ImageNotFound: no figure of that paper, or the collection has no ``arxiv_id``.
    """
    aid = arxiv_id.strip()
    base = aid.rsplit("v", 1)[0] if aid.rsplit("v", 1)[-1].isdigit() and "v" in aid else aid
    if "arxiv_id" not in c.schema.filterable():
        raise ImageNotFound("this collection has no arxiv_id field: it has no papers")
    papers, names = _paper_index(c)
    for name in (aid, base):
        if name in names:
            return [int(r) for r in np.flatnonzero(papers == names.index(name))]
    raise ImageNotFound(f"no figures of paper {arxiv_id[:60]!r} in this collection")


def similar_papers(c: _Papers, arxiv_id: str, embedding: str | None = None, k: int = 20, where: Selection | None = None, per_figure: int = 200) -> list[PaperMatch]:
    """The ``k`` papers whose figures best match ``arxiv_id``'s (see the module docstring).

    Args:
        where: a filter on the candidate figures (papers are ranked on their matching figures).
        per_figure: neighbours looked at per query figure (the candidate pool).

    Raises:
        ImageNotFound: no such paper.
    """
    rows = paper_rows(c, arxiv_id)
    papers, names = _paper_index(c)
    me = int(papers[rows[0]])
    vecs = np.asarray(c.vectors(embedding)[rows], np.float32)
    kk = int(min(len(c), per_figure + len(rows)))
    dist, ids, _ = c.search_vectors(vecs, embedding, kk, where)
    best: dict[int, dict[int, tuple[int, float]]] = {}  # paper -> query figure index -> (row, d)
    bound = np.zeros(len(rows), dtype=np.float64)
    for qi in range(len(rows)):
        valid = ids[qi] >= 0
        bound[qi] = float(dist[qi][valid].max()) if valid.any() else 0.0
        for r, d in zip(ids[qi][valid], dist[qi][valid]):
            p = int(papers[int(r)])
            if p < 0 or p == me:
                continue
            cur = best.setdefault(p, {})
            if qi not in cur or d < cur[qi][1]:
                cur[qi] = (int(r), float(d))
    out = []
    for p, per_q in best.items():
        matched = []
        for qi in range(len(rows)):
            r, d = per_q.get(qi, (-1, float(bound[qi])))
            matched.append((rows[qi], r, d))
        score = float(np.mean([m[2] for m in matched]))
        best_row = min(per_q.values(), key=lambda rd: rd[1])[0]
        out.append(PaperMatch(names[p], score, tuple(matched), best_row))
    out.sort(key=lambda m: (m.score, m.arxiv_id))
    return out[: max(0, int(k))]
