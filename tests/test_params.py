"""Request parameters on the wire (fast lane): what JSON Schema cannot say about query
strings and forms, as ``imagemesh.web.params`` defines it, and the hostile values that
once gave a 500 or a silent answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from imagemesh.query.collection import open_collection
from imagemesh.testing import build_tiny_collection
from imagemesh.web.app import create_app
from imagemesh.web.settings import WebSettings


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    root = build_tiny_collection(tmp_path_factory.mktemp("params"), n=12)
    return create_app(open_collection(root), WebSettings(isolate_uploads=False, warm_uploads=False))


def _get(app, *paths: str, **kw) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1") as c:
            return [await c.get(p, **kw) for p in paths]

    return asyncio.run(go())


def _post(app, data: list[tuple[str, str]]) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1") as c:
            return await c.post("/api/query", content="&".join(f"{k}={v}" for k, v in data), headers={"content-type": "application/x-www-form-urlencoded"})

    return asyncio.run(go())


BAD = {
    "repeated": ("/api/random?seed=1&seed=2", "seed: given more than once"),
    "unknown": ("/api/random?fliter=%7B%7D", "unknown parameter 'fliter'"),
    "empty int": ("/api/random?offset=", "offset:"),
    "int over bound": ("/api/random?offset=1000000001", "offset:"),
    "huge int": ("/api/random?offset=" + "9" * 5000, "offset:"),
    "bool as 1": ("/api/random?collapse=1", "collapse: must be true or false"),
    "empty filter": ("/api/facets?filter=", "filter is empty"),
    "null filter": ("/api/facets?filter=null", "a filter is a JSON object"),
    "list filter": ("/api/facets?filter=%5B%5D", "a filter is a JSON object"),
    "empty id": ("/api/neighbors?id=", "id:"),
    "empty embedding": ("/api/neighbors?id=0&embedding=", "embedding:"),
    "unknown embedding": ("/api/map?embedding=nope", "embedding:"),
    "suggest field": ("/api/suggest?field=nope", "field:"),
    "k zero": ("/api/neighbors?id=0&k=0", "k:"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_parameter_is_a_400_naming_it(app, name: str) -> None:
    path, message = BAD[name]
    (r,) = _get(app, path)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert message in r.json()["error"], r.text[:300]


def test_unicode_digits_are_not_row_ids(app) -> None:
    # "¹" passes str.isdigit but not int(): this was a 500
    r1, r2 = _get(app, "/api/neighbors?id=%C2%B9", "/api/neighbors?id=%D9%A3")
    assert r1.status_code == r2.status_code == 404, (r1.text, r2.text)


def test_defaults_and_good_values(app) -> None:
    r, n, f = _get(app, "/api/random?n=3&seed=7&collapse=false", "/api/neighbors?id=0&k=2&collapse=true", '/api/facets?filter={"century": {"gte": 16}}')
    assert r.status_code == 200 and len(r.json()["results"]) == 3 and r.json()["seed"] == 7
    assert n.status_code == 200 and n.json()["results"][0]["id"] == 0
    assert f.status_code == 200


def test_query_form_is_validated_by_its_model(app) -> None:
    ok = _post(app, [("positive", "0"), ("positive", "1"), ("k", "3")])
    assert ok.status_code == 200 and len(ok.json()["results"]) == 3, ok.text[:300]
    for data, message in [
        ([("positive", "0"), ("k", "0")], "k:"),
        ([("positive", "0"), ("k", "2"), ("k", "3")], "k: given more than once"),
        ([("positive", " ")], "positive: each value"),
        ([("positive", "0"), ("bogus", "1")], "unknown parameter 'bogus'"),
        ([("k", "3")], "give at least one positive"),
    ]:
        r = _post(app, data)
        assert r.status_code == 400 and message in r.json()["error"], (data, r.text[:300])


def test_query_string_on_the_upload_query_is_refused(app) -> None:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1") as c:
            return await c.post("/api/query?k=5", data={"positive": "0"})

    r = asyncio.run(go())
    assert r.status_code == 400 and "form fields, not in the query string (k)" in r.json()["error"], r.text


def test_openapi_parameters_come_from_the_models(app) -> None:
    (r,) = _get(app, "/api/openapi.json")
    doc = r.json()
    params = {p["name"]: p for p in doc["paths"]["/api/neighbors"]["get"]["parameters"]}
    assert set(params) == {"id", "embedding", "k", "filter", "collapse"}
    assert params["id"]["required"] and params["id"]["schema"]["minLength"] == 1
    emb = params["embedding"]["schema"]
    assert params["k"]["schema"]["maximum"] == 500 and emb.get("enum", [emb.get("const")]) == ["raw"]
    fs = params["filter"]["content"]["application/json"]["schema"]
    assert "century" in fs["$defs"]["filter"]["properties"] and "keyword" in fs["$defs"]["filter"]["properties"]
    body = doc["paths"]["/api/query"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["additionalProperties"] is False and {"positive", "positive_image", "k"} <= set(body["properties"])
