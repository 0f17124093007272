"""Property-based fuzzing of the JSON API (hypothesis, in process): no request gets a 500;
hostile filter values (quotes, SQL keywords, wildcards, backslashes, NUL, unicode, huge
lengths) are literals -- the count LanceDB returns equals a pure-Python evaluation of the
same filter -- or a 4xx."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import asyncio
import httpx

import imagemesh
from imagemesh.query.collection import Collection
from imagemesh.core.errors import FilterError
from imagemesh.core.filter_sql import to_lance_predicate
from imagemesh.web.app import create_app
from imagemesh.web.settings import WebSettings

HOSTILE = [
    "'", "''", '"', "\\", "\\'", "%", "_", "*", "?", "%_%", "a%", "_a", "[a-z]", ".*",
    "'; DROP TABLE images; --", "' OR '1'='1", "\" OR \"\"=\"", "1; SELECT * FROM images", "NULL", "null",
    ") OR (1=1", "`", "$1", "{}", "\x00", "\n", "\t", "é", "ü", "ß", "İ", "🙂", "语言", "\u202e", "\ufeff",
    "O'Brien", "translation", "speech", "a" * 5000,
]
TEXT_FIELDS = ["title", "caption", "abstract", "authors", "arxiv_id", "archive", "category", "image_key"]

hostile_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(list("'\"%_*\\;-() abcOR=\x00é🙂")), max_size=60),
    st.text(min_size=2000, max_size=9000),
)
leaf = st.one_of(
    st.builds(lambda f, s: {f: {"contains": s}}, st.sampled_from(TEXT_FIELDS), hostile_text),
    st.builds(lambda s: {"keyword": s}, hostile_text),
    st.builds(lambda f, s: {f: s}, st.sampled_from(TEXT_FIELDS), hostile_text),
    st.builds(lambda f, xs: {f: {"in": xs}}, st.sampled_from(["archive", "category", "arxiv_id"]), st.lists(hostile_text, max_size=4)),
    st.builds(lambda v: {"year": v}, st.one_of(st.integers(-10**12, 10**12), hostile_text, st.floats(allow_nan=True), st.none(), st.booleans())),
    st.builds(lambda op, v: {"year": {op: v}}, st.sampled_from(["gt", "gte", "lt", "lte", "eq", "like", "'"]), st.one_of(st.integers(-3000, 3000), hostile_text)),
    st.builds(lambda f, s: {f: s}, hostile_text, hostile_text),  # unknown field names
)
filters = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"or": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda xs: {"and": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
        st.builds(lambda a, b: {**a, **b}, inner, inner),
    ),
    max_leaves=6,
)
raw_filter = st.one_of(filters.map(json.dumps), hostile_text, st.just("{"), st.just("[]"), st.just("null"), st.just("{\"or\": 5}"))
param = st.one_of(st.none(), hostile_text, st.integers(-10**20, 10**20).map(str), st.sampled_from(["0", "1", "40", "500", "501", "-1", "1e3", "0x10", " 7", "imagenet", "raw"]))


class SyncClient:
    """httpx's ASGI transport (in process, no socket) driven from a private event loop, so
    that hypothesis can call it synchronously."""

    def __init__(self, app) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1")

    def get(self, path: str) -> httpx.Response:
        return self.loop.run_until_complete(self.client.get(path))

    def post(self, path: str, **kw) -> httpx.Response:
        return self.loop.run_until_complete(self.client.post(path, **kw))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def client(real_collection: Collection):
    c = SyncClient(create_app(real_collection))
    yield c
    c.close()


@pytest.fixture(scope="module")
def rows(real_collection: Collection) -> list[dict]:
    return [real_collection.get(r) for r in range(len(real_collection))]


def _q(**params: str | None) -> str:
    return "&".join(f"{k}={quote(v)}" for k, v in params.items() if v is not None)


def _fq(**params: str | None) -> str:
    """:func:`_q` inside a property test: httpx refuses to send a URL over 64 KiB (the
    server's own cap is far lower), so such examples are not run."""
    q = _q(**params)
    assume(len(q) < 60_000)
    return q


def _check(r, what: str) -> None:
    assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    if r.headers.get("content-type", "").startswith("application/json"):
        r.json()


FUZZ = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])


@FUZZ
@given(f=raw_filter, n=param, seed=param)
def test_random_and_facets_never_500(client: SyncClient, f: str, n: str | None, seed: str | None) -> None:
    _check(client.get(f"/api/random?{_fq(n=n, seed=seed, filter=f)}"), "random")
    _check(client.get(f"/api/facets?{_fq(filter=f)}"), "facets")


@FUZZ
@given(image=param, k=param, embedding=param, f=raw_filter, collapse=param)
def test_neighbors_never_500(client: SyncClient, image: str | None, k: str | None, embedding: str | None, f: str, collapse: str | None) -> None:
    _check(client.get(f"/api/neighbors?{_fq(id=image, k=k, embedding=embedding, filter=f, collapse=collapse)}"), "neighbors")


@FUZZ
@given(image=st.one_of(st.integers(-10**6, 10**6).map(str), hostile_text), field=param, prefix=param, embedding=param)
def test_paths_suggest_map_never_500(client: SyncClient, image: str, field: str | None, prefix: str | None, embedding: str | None) -> None:
    seg = quote(image, safe="")
    for path in (f"/api/images/{seg}", f"/api/images/{seg}/thumbnail", f"/api/images/{seg}/image"):
        _check(client.get(path), "images")
    _check(client.get(f"/api/suggest?{_fq(field=field, prefix=prefix)}"), "suggest")
    _check(client.get(f"/api/map?{_fq(embedding=embedding)}"), "map")


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    fields=st.lists(st.tuples(st.sampled_from(["positive", "negative", "k", "embedding", "filter", "collapse", "bogus"]), hostile_text), max_size=6),
    files=st.lists(st.tuples(st.sampled_from(["positive_image", "negative_image", "x"]), st.binary(max_size=3000)), max_size=3),
)
def test_query_post_never_500(client: SyncClient, fields: list, files: list) -> None:
    r = client.post("/api/query", data=dict(fields) if fields else None, files=[(n, ("f.png", b, "image/png")) for n, b in files] or None)
    _check(r, "query")


def _expected_status(f: dict, schema) -> int:
    """What the API must answer for filter ``f``, decided without the server: 413 for a
    filter text over the limit, 400 for a filter the Python parser or the schema rejects,
    else 200."""
    if len(json.dumps(f)) > WebSettings().max_filter_chars:
        return 413
    try:
        to_lance_predicate(imagemesh.from_dict(f), schema)
    except FilterError:
        return 400
    return 200


@FUZZ
@given(f=filters)
def test_hostile_filter_values_are_literals(client: SyncClient, real_collection: Collection, rows: list[dict], f: dict) -> None:
    r = client.get(f"/api/random?{_fq(n='0', filter=json.dumps(f))}")
    _check(r, "literal")
    assert r.status_code == _expected_status(f, real_collection.schema), (f, r.text[:300])
    if r.status_code == 200:
        parsed = imagemesh.from_dict(f)
        want = sum(bool(parsed.matches(row)) for row in rows) if parsed is not None else len(rows)
        assert r.json()["total"] == want, f


@pytest.mark.parametrize("f", [
    {"year": {"gte": 2023}},
    {"title": {"contains": "'; DROP TABLE images; --"}},
    {"keyword": "translation"},
    {"or": [{"caption": {"contains": "%"}}, {"not": {"year": 2022}}]},
    {"arxiv_id": {"in": ["2306.01841", "O'Brien"]}},
])
def test_valid_hostile_filters_are_answered_not_rejected(client: SyncClient, rows: list[dict], f: dict) -> None:
    """The fuzz test above could pass if every filter were a 400; these must be 200s with the
    Python reference count."""
    r = client.get(f"/api/random?{_q(n='0', filter=json.dumps(f))}")
    assert r.status_code == 200, r.text
    assert r.json()["total"] == sum(bool(imagemesh.from_dict(f).matches(row)) for row in rows)
