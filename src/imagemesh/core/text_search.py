"""Keyword search over all metadata: words, the ``search_text`` column and its FTS index.

A ``keyword`` filter (:class:`imagemesh.core.filters.Keyword`) keeps an image when **every word
of the query is a word of the image's** ``search_text``. That column is composed at build
time (:func:`compose_search_text`) from the collection schema's ``keyword_fields`` plus words a
profile adds (the arXiv profile: the arXiv id with its version and the official names of the
categories, so "computer vision" finds ``cs.CV`` figures). It carries a LanceDB full-text (inverted) index, built with
:func:`fts_config`; :class:`imagemesh.query.filtering.FilterEvaluator` answers keyword leaves from that
index instead of scanning the table.

What a word is follows the index's tokenizer exactly, so that the index, the SQL fallback
(:func:`keyword_predicate`) and Python (:func:`matches_words`) select the same rows
(tested on real metadata and with hypothesis in ``tests/test_text_search.py``):

- tantivy's ``simple`` tokenizer (LanceDB FTS ``base_tokenizer="simple"``): a word is a
  maximal run of Unicode letters and digits (Rust ``char::is_alphanumeric``); everything
  else, including ``_``, ``.``, ``-`` and ``'``, separates words. ``2306.01841v1`` is the
  two words ``2306`` and ``01841v1``, and the query ``2306.01841v1`` finds it.
- lower-cased; **no stemming, no stop-word removal, no accent folding** (``élan`` does not
  match ``elan``), because those would need Python twins of tantivy's filters.
- words of 40 UTF-8 bytes or more are not indexed (tantivy ``RemoveLongFilter``, LanceDB
  ``max_token_length=40``). A query containing such a word, or no word at all (``"%"``),
  matches nothing, rather than silently dropping the word and widening the result.

Known differences, found by hypothesis: Python's ``str.isalnum`` and Rust's
``is_alphanumeric`` differ on a few combining marks (Unicode ``Other_Alphabetic``, e.g.
Devanagari vowel signs), so text in those scripts may split differently in :func:`words`
than in the index. ``İ`` (U+0130) lower-cases to ``i`` plus a combining dot: the index and
Python treat that as one word, the SQL fallback (which lower-cases the whole text first)
sees a word boundary after the ``i``.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

__all__ = [
    "FTS_COLUMN",
    "MAX_WORD_BYTES",
    "compose_search_text",
    "fts_config",
    "keyword_predicate",
    "matches_words",
    "query_words",
    "words",
]

#: The column that holds the composed text and carries the FTS index.
FTS_COLUMN = "search_text"
#: Words of this many UTF-8 bytes or more are not indexed (LanceDB ``max_token_length``).
MAX_WORD_BYTES = 40

_WORD = re.compile(r"[^\W_]+")


def fts_config() -> Any:
    """The LanceDB ``FTS`` index configuration of :data:`FTS_COLUMN` (see module doc)."""
    from lancedb.index import FTS

    return FTS(
        with_position=False,
        base_tokenizer="simple",
        max_token_length=MAX_WORD_BYTES,
        lower_case=True,
        stem=False,
        remove_stop_words=False,
        ascii_folding=False,
    )


def words(text: str | None) -> set[str]:
    """The indexed words of ``text``: letter/digit runs, lower-cased, shorter than 40 bytes."""
    if not text:
        return set()
    return {w.lower() for w in _WORD.findall(text) if len(w.encode("utf-8")) < MAX_WORD_BYTES}


def query_words(text: str) -> tuple[str, ...] | None:
    """The words a keyword query must all find, in first-seen order, or ``None`` when the
    query can match nothing (no word, or a word too long to be indexed)."""
    out: list[str] = []
    for w in _WORD.findall(text):
        if len(w.encode("utf-8")) >= MAX_WORD_BYTES:
            return None
        w = w.lower()
        if w not in out:
            out.append(w)
    return tuple(out) or None


def fts_query_text(query: str) -> str | None:
    """The text to hand the FTS index for ``query``: its words *as typed* (the index
    lower-cases each word after splitting, like the documents; lower-casing first would
    split ``İ``, whose lower case ``i̇`` holds a combining mark), or ``None`` when
    :func:`query_words` says the query matches nothing."""
    if query_words(query) is None:
        return None
    return " ".join(dict.fromkeys(_WORD.findall(query)))


def matches_words(query: str, search_text: str | None) -> bool:
    """Python reference of a keyword match: every query word is a word of ``search_text``."""
    q = query_words(query)
    return q is not None and set(q) <= words(search_text)


def keyword_predicate(query: str, column: str = FTS_COLUMN) -> str:
    """A LanceDB/DataFusion predicate equal to the FTS match, evaluated by scanning.

    Used where one SQL predicate is needed (the LanceDB prefilter baseline of the
    benchmark, a table without the index). Query words are letters and digits only, so
    they need no regex escaping; word boundaries are ``[^\\p{Alphabetic}\\p{N}]`` as in
    Rust's ``char::is_alphanumeric``.
    """
    q = query_words(query)
    if q is None:
        return "false"
    edge = r"[^\p{Alphabetic}\p{N}]"
    parts = [f"coalesce(regexp_like(lower({column}), '(^|{edge}){w}({edge}|$)'), false)" for w in q]
    return "(" + " AND ".join(parts) + ")"


def compose_search_text(row: Mapping[str, Any], fields: Sequence[str], extra: Sequence[str] = ()) -> str | None:
    """Join the row's ``fields`` (list fields element by element) and the ``extra`` words
    (e.g. official category names) into one newline-separated text, or ``None`` if empty."""
    parts: list[str] = []
    for f in fields:
        v = row.get(f)
        if v is None:
            continue
        parts.extend(str(x) for x in v if x is not None) if isinstance(v, (list, tuple)) else parts.append(str(v))
    parts.extend(extra)
    text = "\n".join(p for p in parts if p)
    return text or None
