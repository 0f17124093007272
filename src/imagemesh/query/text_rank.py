"""Ranked text search: figures ordered by BM25 relevance, with matched words in a snippet.

The ``keyword`` filter (:mod:`imagemesh.core.text_search`) is a set: every query word must
occur. Here the same words (same tokenizer) are ranked by the LanceDB full-text index's
BM25 score (tantivy's BM25, k1 = 1.2, b = 0.75) over the ``search_text`` column, so a
caption that says "translation" three times ranks above an abstract that says it once.

The last query word is also a **prefix** while the user types: it is expanded to the
collection's indexed words that start with it (the most frequent first, at most
:data:`MAX_EXPANSIONS`), any of which may match, so "machine transl" finds "machine
translation". The vocabulary (word -> number of figures) is read from ``search_text`` on
first use and kept per collection version; on 166 figures that takes milliseconds, on a
million it is a scan of the column (seconds) that a build-time vocabulary file would avoid.

A filter restricts the ranked figures exactly: all matches are scored, then filtered.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from imagemesh.core.text_search import FTS_COLUMN, MAX_WORD_BYTES, query_words, words
from imagemesh.store.reader import CollectionReader

__all__ = ["TextRanker", "TextResults", "snippet", "MAX_EXPANSIONS"]

_WORD_RE = re.compile(r"[^\W_]+")  # a word, as imagemesh.core.text_search's tokenizer sees it

#: Most indexed words a prefix expands to.
MAX_EXPANSIONS = 24


@dataclass(frozen=True)
class TextResults:
    """One ranked page.

    Attributes:
        rows: row ids, best first (``int64[m]``).
        scores: their BM25 scores (``float32[m]``, larger = more relevant).
        total: figures that match (after the filter).
        words: the query's whole words.
        prefix: the last word, read as a prefix (``None`` when the query ends with a space).
        expansions: the indexed words the prefix stands for.
    """

    rows: np.ndarray
    scores: np.ndarray
    total: int
    words: tuple[str, ...]
    prefix: str | None
    expansions: tuple[str, ...]


class TextRanker:
    """BM25 ranking over one collection version's full-text index."""

    def __init__(self, reader: CollectionReader) -> None:
        self.reader = reader
        self._vocab: list[str] | None = None
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def vocabulary(self) -> list[str]:
        """Every indexed word of ``search_text``, sorted (built once, see module doc)."""
        with self._lock:
            if self._vocab is None:
                col = self.reader.columns([FTS_COLUMN])[FTS_COLUMN].to_pylist()
                counts: Counter[str] = Counter()
                for text in col:
                    counts.update(words(text))
                self._counts = dict(counts)
                self._vocab = sorted(counts)
            return self._vocab

    def expand(self, prefix: str, limit: int = MAX_EXPANSIONS) -> list[str]:
        """Indexed words starting with ``prefix`` (lower-cased), most frequent first."""
        p = prefix.lower()
        vocab = self.vocabulary()
        i = bisect.bisect_left(vocab, p)
        found = []
        while i < len(vocab) and vocab[i].startswith(p):
            found.append(vocab[i])
            i += 1
        found.sort(key=lambda w: (-self._counts.get(w, 0), w))
        return found[:limit]

    def search(self, text: str, k: int, allowed: np.ndarray | None = None, offset: int = 0, prefix: bool = True) -> TextResults:
        """The ``k`` most relevant figures for ``text`` from ``offset`` on.

        Args:
            allowed: ``bool[n]`` rows a filter keeps (``None``: all).
            prefix: read the last word as a prefix unless ``text`` ends with whitespace.

        A text with no word, or with a word too long to be indexed (40 bytes or more),
        matches nothing, as the ``keyword`` filter does (no word is silently dropped).

        Raises:
            ValueError: ``k`` or ``offset`` is negative.
        """
        if k < 0 or offset < 0:
            raise ValueError("k and offset must be >= 0")
        ws = query_words(text)
        if ws is None:
            empty = np.zeros(0, np.int64)
            return TextResults(empty, np.zeros(0, np.float32), 0, (), None, ())
        last: str | None = ws[-1] if prefix and text and not text[-1].isspace() else None
        exps: tuple[str, ...] = ()
        whole = ws[:-1] if last is not None else ws
        if last is not None:
            exps = tuple(self.expand(last)) if len(last.encode("utf-8")) < MAX_WORD_BYTES else ()
            if last not in exps:
                exps = (last, *exps[: MAX_EXPANSIONS - 1])
        rows, scores = self._fts(whole, exps)
        if allowed is not None and rows.size:
            keep = allowed[rows]
            rows, scores = rows[keep], scores[keep]
        order = np.lexsort((rows, -scores))  # best first, ties by row id (stable pages)
        rows, scores = rows[order], scores[order]
        return TextResults(rows[offset : offset + k], scores[offset : offset + k], int(rows.size), tuple(whole), last, exps)

    def _fts(self, whole: Sequence[str], any_of: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        from lancedb.query import BooleanQuery, MatchQuery, Occur

        clauses: list[tuple[Any, Any]] = [(Occur.MUST, MatchQuery(w, FTS_COLUMN)) for w in whole]
        if any_of:
            clauses.append((Occur.MUST, BooleanQuery([(Occur.SHOULD, MatchQuery(w, FTS_COLUMN)) for w in any_of])))
        query = clauses[0][1] if len(clauses) == 1 else BooleanQuery(clauses)
        n = max(len(self.reader), 1)
        t = self.reader.full_text(query, ["row_id", "_score"], n)
        return t["row_id"].to_numpy().astype(np.int64), t["_score"].to_numpy().astype(np.float32)


def snippet(record: dict[str, Any], fields: Sequence[str], terms: Sequence[str], width: int = 180) -> dict[str, Any] | None:
    """The passage of ``record`` that shows the matched words best.

    Picks the field among ``fields`` holding the most distinct ``terms`` (whole words,
    case-insensitive), cuts about ``width`` characters around the first match, and splits
    it into ``parts``: ``[text, matched]`` pairs in order, so a client can mark the matched
    words without parsing HTML or counting characters (JavaScript counts UTF-16 units,
    Python code points: offsets would drift after a math symbol such as U+1D465).

    Returns:
        ``{"field", "text", "parts"}``, or ``None`` when no field holds a term.
    """
    want = {t.lower() for t in terms}
    best: tuple[int, str, str, list[tuple[int, int]]] | None = None
    for f in fields:
        v = record.get(f)
        text = " · ".join(str(x) for x in v if x) if isinstance(v, (list, tuple)) else (str(v) if v else "")
        if not text:
            continue
        spans = [(m.start(), m.end()) for m in _WORD_RE.finditer(text) if m.group(0).lower() in want]
        hit = len({text[a:b].lower() for a, b in spans})
        if spans and (best is None or hit > best[0]):
            best = (hit, f, text, spans)
    if best is None:
        return None
    _, field, best_text, spans = best
    start = max(0, spans[0][0] - width // 3)
    if start:
        space = best_text.rfind(" ", 0, start)
        start = space + 1 if space >= 0 and start - space < 20 else start
    end = min(len(best_text), start + width)
    cut = best_text[start:end]
    lead = "…" if start else ""
    tail = "…" if end < len(best_text) else ""
    parts: list[list[Any]] = [[lead, False]] if lead else []
    at = start
    for a, b in spans:
        if a >= start and b <= end:
            parts += [[best_text[at:a], False], [best_text[a:b], True]]
            at = b
    parts.append([best_text[at:end] + tail, False])
    return {"field": field, "text": lead + cut + tail, "parts": [p for p in parts if p[0]]}

