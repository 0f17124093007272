"""/api/clusters (issue 16): clusters with labels and representatives, filter counts, and the
cluster filter on other routes (fast lane)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from imagemesh.query.collection import open_collection
from imagemesh.testing import build_tiny_collection
from imagemesh.web.app import create_app
from imagemesh.web.settings import WebSettings


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory):
    return open_collection(build_tiny_collection(tmp_path_factory.mktemp("clusters-api"), n=48))


def test_clusters_api(coll) -> None:
    app = create_app(coll, WebSettings(isolate_uploads=False, warm_uploads=False))
    cf = json.dumps({"cluster": {"embedding": "raw", "id": 0}})

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1") as c:
            return [
                await c.get("/api/clusters"),
                await c.get("/api/clusters", params={"filter": '{"century": 15}'}),
                await c.get("/api/random", params={"n": "48", "filter": cf}),
                await c.get("/api/clusters", params={"embedding": "nope"}),
                await c.get("/api/openapi.json"),
            ]

    plain, filtered, members, bad, doc = asyncio.run(go())
    d = plain.json()
    cl = coll.clustering("raw")
    assert plain.status_code == 200 and d["k"] == cl.k and sum(x["size"] for x in d["clusters"]) == len(coll)
    for x in d["clusters"]:
        assert [h["id"] for h in x["representatives"]] == list(cl.clusters[x["id"]].representatives)
        assert x["label"] and "matching" not in x
    f = filtered.json()
    assert [x["matching"] for x in f["clusters"]] == [int(((cl.assignment == x["id"]) & coll.allowed({"century": 15})).sum()) for x in f["clusters"]]
    assert sorted(h["id"] for h in members.json()["results"]) == sorted(int(r) for r in cl.rows(0))
    assert bad.status_code == 400
    fs = doc.json()["paths"]["/api/random"]["get"]["parameters"]
    schema = next(p for p in fs if p["name"] == "filter")["content"]["application/json"]["schema"]
    assert "cluster" in schema["$defs"]["filter"]["properties"]
