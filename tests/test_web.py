"""The JSON API through httpx's ASGI transport, on the real collection."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest

from imagemesh.collection import Collection
from imagemesh.web.app import create_app

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def client(real_collection: Collection):
    transport = httpx.ASGITransport(app=create_app(real_collection))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


def _f(obj) -> str:
    return quote(json.dumps(obj))


async def test_index_page_and_security_headers(client) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert (await client.get("/about")).status_code == 200


async def test_info_lists_embeddings(client, real_collection) -> None:
    d = (await client.get("/api/info")).json()
    assert d["n_images"] == len(real_collection)
    assert [e["name"] for e in d["embeddings"]] == real_collection.embeddings


async def test_random_with_filter_and_seed(client, real_collection) -> None:
    r1 = (await client.get(f"/api/random?n=12&seed=3&filter={_f({'year': 2023})}")).json()
    r2 = (await client.get(f"/api/random?n=12&seed=3&filter={_f({'year': 2023})}")).json()
    ids = [h["id"] for h in r1["results"]]
    assert ids == [h["id"] for h in r2["results"]] and len(set(ids)) == 12
    assert all(h["year"] == 2023 and h["distance"] is None for h in r1["results"])
    assert r1["total"] == real_collection.count({"year": 2023})


@pytest.mark.parametrize("embedding", ["imagenet", "raw"])
async def test_neighbors_self_first_and_filtered(client, real_collection, embedding) -> None:
    r = await client.get(f"/api/neighbors?id=10&embedding={embedding}&k=15")
    d = r.json()
    assert r.status_code == 200 and d["results"][0]["id"] == 10 and d["results"][0]["distance"] == 0
    assert len(d["results"]) == 15
    where = {"keyword": "translation"}
    d = (await client.get(f"/api/neighbors?id=10&embedding={embedding}&k=500&filter={_f(where)}")).json()
    assert len(d["results"]) == real_collection.count(where)
    assert all(real_collection.allowed(where)[h["id"]] for h in d["results"])
    assert d["plan"]["strategy"] == "exact-allowed"


async def test_image_and_thumbnail_caching(client) -> None:
    d = (await client.get("/api/images/3")).json()
    assert d["id"] == 3 and d["arxiv_url"].startswith("https://arxiv.org/abs/")
    assert len(d["predictions"]["imagenet"]) == 5
    r = await client.get(d["thumbnail_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    assert "immutable" in r.headers["cache-control"]
    r2 = await client.get(d["thumbnail_url"], headers={"if-none-match": r.headers["etag"]})
    assert r2.status_code == 304


async def test_facets(client, real_collection) -> None:
    d = (await client.get("/api/facets")).json()
    assert sum(x["count"] for x in d["year"]) == len(real_collection)
    d = (await client.get(f"/api/facets?filter={_f({'year': 2022})}")).json()
    assert sum(x["count"] for x in d["year"]) == real_collection.count({"year": 2022})


@pytest.mark.parametrize(
    "url,status",
    [
        ("/api/neighbors", 400),
        ("/api/neighbors?id=abc", 404),
        ("/api/neighbors?id=99999", 404),
        ("/api/neighbors?id=1&k=0", 400),
        ("/api/neighbors?id=1&k=abc", 400),
        ("/api/neighbors?id=1&k=100000", 400),
        ("/api/neighbors?id=1&embedding=nope", 400),
        ("/api/neighbors?id=1&filter=%7Bnot%20json", 400),
        (f"/api/neighbors?id=1&filter={_f({'nope': 1})}", 400),
        (f"/api/random?filter={_f({'year': {'gte': 'x'}})}", 400),
        ("/api/random?n=-1", 400),
        ("/api/random?seed=-5", 400),
        (f"/api/random?filter={quote('x' * 10000)}", 413),
        ("/api/images/99999", 404),
        ("/api/images/99999/thumbnail", 404),
        ("/api/images/..%2F..%2Fetc%2Fpasswd/thumbnail", 404),
        ("/static/..%2F..%2Fcollection.py", 404),
        ("/nope", 404),
    ],
)
async def test_bad_requests_get_json_4xx(client, url: str, status: int) -> None:
    r = await client.get(url)
    assert r.status_code == status, r.text
    if url.startswith("/api"):
        assert "error" in r.json()


@pytest.mark.parametrize("value", ["O'Brien", "'; DROP TABLE images; --", "%_\\", "\u00fcnic\u00f8de \u03a9"])
async def test_hostile_filter_values_are_literals(client, real_collection, value: str) -> None:
    r = await client.get(f"/api/random?n=5&filter={_f({'caption': {'contains': value}, 'keyword': value})}")
    assert r.status_code == 200 and r.json()["results"] == []
    assert len(real_collection) == (await client.get("/api/info")).json()["n_images"]


async def test_openapi_schema(client) -> None:
    d = (await client.get("/api/openapi.json")).json()
    assert d["openapi"].startswith("3.") and "/api/neighbors" in d["paths"]
