"""Ranked text search (issue 16): BM25 order, prefix expansion of the last word, exact
filtering, paging, snippets; the /api/search route (fast lane, synthetic collection)."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from imagemesh.query.collection import open_collection
from imagemesh.query.text_rank import TextRanker, snippet
from imagemesh.testing import build_tiny_collection
from imagemesh.web.app import create_app
from imagemesh.web.settings import WebSettings


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory):
    return open_collection(build_tiny_collection(tmp_path_factory.mktemp("text"), n=48))


def test_words_prefix_filter_and_paging(coll) -> None:
    r = TextRanker(coll)
    blue = r.search("blue ", 100)  # whole word
    assert blue.prefix is None and blue.total == coll.count({"keyword": "blue"}) == 12
    assert set(blue.rows.tolist()) == set(np.flatnonzero(coll.allowed({"keyword": "blue"})).tolist())
    assert np.all(np.diff(blue.scores) <= 1e-6)  # best first
    # the last word is a prefix while typing: "stud" expands to "study"
    st = r.search("stud", 100)
    assert st.prefix == "stud" and "study" in st.expansions and st.total == len(coll)
    assert r.search("stud ", 100).total == 0  # as a whole word it is not indexed
    # a filter restricts exactly
    allowed = coll.allowed({"century": 15})
    f = r.search("blue ", 100, allowed)
    assert f.total == coll.count({"keyword": "blue", "century": 15}) and all(allowed[i] for i in f.rows)
    # pages continue the same ranking
    first, second = r.search("study ", 10), r.search("study ", 10, offset=10)
    assert np.array_equal(np.concatenate([first.rows, second.rows]), r.search("study ", 20).rows)
    # no indexable word: nothing matches (as with the keyword filter), not an error
    assert r.search("%% --", 10).total == 0 and r.search("x" * 40, 10).total == 0
    with pytest.raises(ValueError):
        r.search("blue", -1)


def test_snippet_parts() -> None:
    rec = {"title": "A study of 𝑥-ray translation", "caption": "Translations and more translation. " * 10}
    s = snippet(rec, ["title", "caption"], ["translation", "translations"])
    assert s is not None and s["field"] == "caption"  # more distinct words matched
    assert "".join(p[0] for p in s["parts"]) == s["text"]
    assert {p[0].lower() for p in s["parts"] if p[1]} == {"translation", "translations"}
    t = snippet(rec, ["title"], ["translation"])
    assert t is not None and [p[0] for p in t["parts"] if p[1]] == ["translation"]  # astral 𝑥 before it
    assert snippet(rec, ["title"], ["absent"]) is None


def test_search_api(coll) -> None:
    app = create_app(coll, WebSettings(isolate_uploads=False, warm_uploads=False))

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1") as c:
            return [await c.get("/api/search", params=p) for p in (
                {"q": "blue", "k": "5"}, {"q": "blue ", "k": "5", "filter": '{"century": 15}'}, {"q": "%%"}, {"q": ""}, {"k": "5"},
            )]

    ok, filtered, noword, empty, missing = asyncio.run(go())
    d = ok.json()
    assert ok.status_code == 200 and d["prefix"] == "blue" and len(d["results"]) == 5 and d["total"] == 12
    assert all(h["snippet"] and any(p[1] for p in h["snippet"]["parts"]) for h in d["results"])
    assert [h["score"] for h in d["results"]] == sorted((h["score"] for h in d["results"]), reverse=True)
    assert filtered.status_code == 200 and filtered.json()["total"] == coll.count({"keyword": "blue", "century": 15})
    assert noword.status_code == 200 and noword.json()["total"] == 0 and noword.json()["results"] == []
    assert empty.status_code == missing.status_code == 400
