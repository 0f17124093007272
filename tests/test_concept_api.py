"""/api/concepts (issue 16): a concept trained from labelled figures ranks the collection,
statelessly (fast lane)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from imagemesh.query.collection import open_collection
from imagemesh.testing import build_tiny_collection
from imagemesh.web.app import create_app
from imagemesh.web.settings import WebSettings


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory):
    return open_collection(build_tiny_collection(tmp_path_factory.mktemp("concept-api"), n=48))


def _get(app, *queries: str) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1") as c:
            return [await c.get("/api/concepts?" + q) for q in queries]

    return asyncio.run(go())


def test_concept_ranks_the_collection(coll) -> None:
    app = create_app(coll, WebSettings(isolate_uploads=False, warm_uploads=False))
    blue = [i for i in range(len(coll)) if i % 4 == 2]  # "Study i in blue": images of one colour
    other = [i for i in range(len(coll)) if i % 4 != 2]
    q = "&".join([*(f"positive={i}" for i in blue[:5]), *(f"negative={i}" for i in other[:5])])
    ok, filtered, overlap, unknown, none = _get(
        app, q + "&k=12", q + "&k=48&filter=%7B%22century%22%3A%2016%7D", "positive=2&negative=2", "positive=2&negative=999", "negative=3",
    )
    d = ok.json()
    assert ok.status_code == 200 and d["concept"]["n_pos"] == 5 and d["concept"]["n_neg"] == 5 and d["total"] == len(coll)
    assert d["concept"]["cv_score"] is not None and "coef" not in d["concept"]
    got = [h["id"] for h in d["results"]]
    assert len(set(got) & set(blue)) >= 10, got  # from 5 + 5 labels, the highest scores are (almost all) the 12 blue figures
    assert [h["score"] for h in d["results"]] == sorted((h["score"] for h in d["results"]), reverse=True)
    f = filtered.json()
    assert filtered.status_code == 200 and all(coll.get(h["id"])["century"] == 16 for h in f["results"])
    assert f["total"] == coll.count({"century": 16})
    assert overlap.status_code == 400 and "both" in overlap.json()["error"]
    assert unknown.status_code == 404 and none.status_code == 400
