"""Keyword search: the LanceDB full-text index, the SQL scan fallback and the Python
reference select the same rows, on real metadata (the 166 ACL figures and a collection
joined with real arXiv snapshot records)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagemesh import Keyword, from_dict
from imagemesh.profiles.arxiv.records import Taxonomy
from imagemesh.query.collection import Collection
from imagemesh.profiles.arxiv import compose_search_text
from imagemesh.core.text_search import FTS_COLUMN, fts_query_text, keyword_predicate, matches_words, query_words, words


def _rows(c: Collection) -> list[dict]:
    return c.table.search().select(["row_id", FTS_COLUMN, "title", "category", "categories"]).limit(None).to_arrow().sort_by("row_id").to_pylist()


def _three_ways(c: Collection, text: str) -> tuple[set[int], set[int], set[int]]:
    """(FTS index, SQL scan, Python) row sets of {"keyword": text}."""
    c.filters._cache.clear()  # noqa: SLF001 -- each way computed afresh
    fts = set(np.flatnonzero(c.allowed({"keyword": text})).tolist())
    scan = set(c.table.search().where(keyword_predicate(text)).select(["row_id"]).limit(None).to_arrow()["row_id"].to_pylist())
    py = {r["row_id"] for r in _rows(c) if Keyword(text).matches(r)}
    return fts, scan, py


def test_words_follow_the_simple_tokenizer() -> None:
    assert words("Attention-Based O'Brien_2 model, 2306.01841v1!") == {"attention", "based", "o", "brien", "2", "model", "2306", "01841v1"}
    assert query_words("Vision  vision TRANSFORMER") == ("vision", "transformer")
    assert query_words("%_ '--") is None  # no word: matches nothing
    assert query_words("ok " + "x" * 40) is None  # a word the index drops: matches nothing
    assert query_words("x" * 39) == ("x" * 39,)
    assert query_words("é" * 19) == ("é" * 19,) and query_words("é" * 20) is None  # 40 UTF-8 bytes
    assert matches_words("élan", "Über die Élan") and not matches_words("elan", "Über die Élan")  # no accent folding
    assert not matches_words("transform", "transformers")  # whole words, no stemming
    assert not matches_words("anything", None)
    # found by hypothesis: the FTS index gets the words as typed, not lower-cased first
    # ("İ".lower() is "i" + U+0307, which the index would split into the word "i")
    assert fts_query_text("İ, Vision vision") == "İ Vision vision" and fts_query_text("%") is None


def test_search_text_joins_fields_and_official_category_names() -> None:
    tax = Taxonomy.load()
    text = compose_search_text({"title": "T", "authors": "A. B", "caption": "cap", "arxiv_id": "2301.1", "category": "cs.CV", "categories": ["cs.CV", "cs.LG"]}, tax.category_name)
    assert text is not None
    for w in ("t", "a", "cap", "2301", "cs", "cv", "lg", "computer", "vision", "pattern", "recognition", "machine", "learning"):
        assert w in words(text)
    assert compose_search_text({}) is None


def test_collections_carry_a_full_text_index(real_collection, categorized_collection) -> None:
    for c in (real_collection, categorized_collection):
        assert c.info()["keyword_index"] is True
        (ix,) = [ix for ix in c.table.list_indices() if ix.index_type == "FTS"]
        assert list(ix.columns) == [FTS_COLUMN]
        assert ix.num_indexed_rows == len(c) and ix.num_unindexed_rows == 0
        assert c.table.search().where(f"{FTS_COLUMN} IS NULL").limit(None).to_arrow().num_rows == 0


def _vocabulary(c: Collection, n: int, seed: int) -> list[str]:
    vocab = sorted(set().union(*(words(r[FTS_COLUMN]) for r in _rows(c))))
    rng = np.random.default_rng(seed)
    return [vocab[i] for i in rng.choice(len(vocab), size=min(n, len(vocab)), replace=False)]


def test_index_scan_and_python_agree_on_real_metadata(real_collection) -> None:
    c = real_collection
    rows = _rows(c)
    vocab = _vocabulary(c, 40, seed=0)
    # words of one row's title, upper-cased and joined by punctuation: that row must match
    titled = {", ".join(sorted(words(r["title"]))[:5]).upper(): r["row_id"] for r in rows[:10] if r["title"]}
    queries = list(vocab) + [f"{a} {b}" for a, b in zip(vocab[::2], vocab[1::2])] + list(titled)
    queries += ["2306.01841v1", "Translation", "machine-translation!", "zzz no such word", "%", "x" * 45]
    for q in queries:
        fts, scan, py = _three_ways(c, q)
        assert fts == scan == py, q
        if q in vocab:
            assert fts, q  # a word of the data finds something
        if q in titled:
            assert titled[q] in fts, q
    assert real_collection.resolve("2306.01841v1") in _three_ways(c, "2306.01841v1")[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_index_scan_and_python_agree_on_generated_queries(real_collection, data) -> None:
    vocab = _vocabulary(real_collection, 300, seed=1)
    word = st.one_of(st.sampled_from(vocab), st.sampled_from(vocab).map(str.upper), st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]), max_size=8))
    text = data.draw(st.lists(word, min_size=1, max_size=3).map(lambda ws: data.draw(st.sampled_from([" ", "-", ", ", "_", "'"])).join(ws)))
    fts, scan, py = _three_ways(real_collection, text)
    assert fts == scan == py, text


def test_dotted_capital_i_query_regression(real_collection) -> None:
    """Found by hypothesis: the query "İ" matched every row with the word "i", because it
    was lower-cased (to "i" + U+0307) before the index split it."""
    for q in ("İ", "İ i", "İstanbul"):
        fts, scan, py = _three_ways(real_collection, q)
        assert fts == scan == py == set(), q
    assert _three_ways(real_collection, "i")[0]  # the plain word "i" does occur


def test_keyword_combines_with_other_filters_by_mask_algebra(real_collection) -> None:
    c = real_collection
    rows = _rows(c)
    year_rows = c.table.search().select(["row_id", "year"]).limit(None).to_arrow().to_pylist()
    years = {r["row_id"]: r["year"] for r in year_rows}
    for spec in (
        {"keyword": "translation", "year": {"gte": 2023}},
        {"or": [{"keyword": "speech"}, {"year": 2021}]},
        {"not": {"keyword": "model"}},
        {"and": [{"not": {"keyword": "language"}}, {"or": [{"keyword": "attention"}, {"keyword": "graph"}]}]},
    ):
        f = from_dict(spec)
        want = {r["row_id"] for r in rows if f.matches(dict(r, year=years[r["row_id"]]))}
        got = set(np.flatnonzero(c.allowed(spec)).tolist())
        assert got == want, spec
    assert 0 < c.count({"not": {"keyword": "model"}}) < len(c)


def test_without_the_index_keyword_filters_scan_with_the_same_result(real_collection, monkeypatch) -> None:
    c = real_collection
    with_index = {q: c.count({"keyword": q}) for q in ("translation", "speech model", "graph")}
    monkeypatch.setattr(c, "has_fts", False)
    c.filters._cache.clear()  # noqa: SLF001
    assert {q: c.count({"keyword": q}) for q in with_index} == with_index
    c.filters._cache.clear()  # noqa: SLF001


def test_official_category_names_are_searchable(categorized_collection) -> None:
    c = categorized_collection
    tax = Taxonomy.load()
    rows = _rows(c)
    cats = sorted({r["category"] for r in rows if r["category"] and tax.category_name(r["category"])})
    assert len(cats) >= 5  # the snapshot records give varied categories
    for cat in cats:
        name = tax.category_name(cat)
        fts, scan, py = _three_ways(c, name)
        assert fts == scan == py
        assert {r["row_id"] for r in rows if r["category"] == cat} <= fts, (cat, name)


def test_append_keeps_every_row_indexed(categorized_collection, tmp_path) -> None:
    import shutil

    from imagemesh.ingest.build import BuildOptions, build_collection
    from imagemesh.query.collection import open_collection
    from tests.conftest import make_subset

    out = tmp_path / "coll"
    shutil.copytree(categorized_collection.root, out)
    more = make_subset(tmp_path / "more", 6, start=100)
    build_collection(more, out, BuildOptions(embeddings=["raw"], backend="exact", progress=False), append=True)
    c = open_collection(out)
    assert len(c) == len(categorized_collection) + 6
    (ix,) = [ix for ix in c.table.list_indices() if ix.index_type == "FTS"]
    assert ix.num_indexed_rows == len(c) and ix.num_unindexed_rows == 0
    new = _rows(c)[-1]
    q = " ".join(sorted(words(new["title"]))[:3])
    fts, scan, py = _three_ways(c, q)
    assert new["row_id"] in fts and fts == scan == py
