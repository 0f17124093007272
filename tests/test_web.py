"""The JSON API through httpx's ASGI transport, on the real collection."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import httpx
import pytest

from imagemesh.query.collection import Collection
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


# ---------------------------------------------------------------- issue 4: the explorer's API


def _png(size=(64, 48), color=(200, 30, 30)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


async def test_full_image_route_is_cached_jpeg(client, real_collection) -> None:
    d = (await client.get("/api/images/5")).json()
    r = await client.get(d["image_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content == real_collection.image(5)
    assert "immutable" in r.headers["cache-control"]
    assert (await client.get(d["image_url"], headers={"if-none-match": r.headers["etag"]})).status_code == 304
    assert r.headers["etag"] != (await client.get(d["thumbnail_url"])).headers["etag"]
    assert {"abstract", "authors", "title", "caption", "figure", "arxiv_url"} <= set(d)


async def test_random_pages_do_not_repeat(client, real_collection) -> None:
    a = (await client.get("/api/random?n=40&seed=7")).json()
    b = (await client.get("/api/random?n=40&seed=7&offset=40")).json()
    whole = (await client.get("/api/random?n=80&seed=7")).json()
    ids = [h["id"] for h in a["results"] + b["results"]]
    assert ids == [h["id"] for h in whole["results"]] and len(set(ids)) == 80
    assert a["next_offset"] == 40 and a["total"] == len(real_collection)


async def test_upload_query_finds_the_uploaded_figure(client, real_collection) -> None:
    """Uploading a collection image's own pixels gives that image first, far ahead of the rest."""
    for emb in real_collection.embeddings:
        data = real_collection.image(12)
        r = await client.post("/api/query", data={"embedding": emb, "k": "5"}, files={"positive_image": ("fig.jpg", data, "image/jpeg")})
        d = r.json()
        assert r.status_code == 200, d
        # the upload is re-encoded (JPEG) once more than the stored pixels, so not exactly 0
        assert d["results"][0]["id"] == 12 and d["results"][0]["distance"] < 0.5 * d["results"][1]["distance"]
        assert len(d["results"]) == 5 and d["combination"] == "mean(positives)"


async def test_multi_image_query_positives_minus_negatives(client, real_collection) -> None:
    import numpy as np

    emb = "imagenet"
    r = await client.post("/api/query", data={"embedding": emb, "k": "10", "positive": ["3", "8"], "negative": ["20"]})
    d = r.json()
    assert r.status_code == 200, d
    assert d["combination"] == "mean(positives) - mean(negatives)"
    ids = [h["id"] for h in d["results"]]
    assert 20 not in ids and len(ids) == 10
    v = np.asarray(real_collection.vectors(emb))
    q = v[[3, 8]].mean(0) - v[20]
    q /= np.linalg.norm(q)
    dist, ref, _ = real_collection.search_vectors(q[None].astype(np.float32), emb, 11)
    assert ids == [int(i) for i in ref[0] if i != 20][:10]
    # a filter applies to multi-image queries too
    f = json.dumps({"year": 2022})
    d = (await client.post("/api/query", data={"embedding": emb, "positive": "3", "filter": f, "k": "500"})).json()
    assert len(d["results"]) == real_collection.count({"year": 2022}) and all(h["year"] == 2022 for h in d["results"])


async def test_upload_is_never_written_to_disk(client, real_collection, monkeypatch) -> None:
    import tempfile

    def refuse(*a, **k):
        raise AssertionError("an upload touched a temporary file")

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    big = _png((1800, 1800))  # > 1 MiB would spool to disk with Starlette's own form parser
    import io

    from PIL import Image

    noisy = io.BytesIO()
    import numpy as np

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (900, 900, 3), dtype=np.uint8)).save(noisy, format="PNG")
    assert len(noisy.getvalue()) > 1024 * 1024
    r = await client.post("/api/query", data={"k": "3"}, files={"positive_image": ("n.png", noisy.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    r = await client.post("/api/query", data={"k": "3"}, files={"positive_image": ("b.png", big, "image/png")})
    assert r.status_code == 200, r.text


def _bomb_png(w: int, h: int) -> bytes:
    """A valid PNG header claiming w x h pixels (tiny file: the decompression-bomb shape)."""
    import struct
    import zlib

    def chunk(t: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (w * 3 + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "data,files,status",
    [
        ({}, {}, 400),  # no positive
        ({"positive": "99999"}, {}, 404),
        ({"positive": "1", "k": "0"}, {}, 400),
        ({"positive": "1", "k": "x"}, {}, 400),
        ({"positive": "1", "embedding": "nope"}, {}, 400),
        ({"positive": "1", "filter": "{bad"}, {}, 400),
        ({"positive": "1", "collapse": "maybe"}, {}, 400),
        ({"positive": "1", "nope": "1"}, {}, 400),
        ({"positive": "1", "negative": "1"}, {}, 400),  # cancels out
        ({}, {"positive_image": ("x.png", b"not an image at all", "image/png")}, 415),
        ({}, {"positive_image": ("x.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "image/png")}, 400),
        ({}, {"positive_image": ("x.png", b"", "image/png")}, 400),
        ({}, {"positive_image": ("b.png", _bomb_png(30000, 30000), "image/png")}, 413),
        ({}, {"positive_image": ("x.pdf", b"%PDF-1.4\n%%EOF", "application/pdf")}, 415),
        ({}, {"other_file": ("x.png", _png(), "image/png")}, 400),
    ],
)
async def test_bad_queries_get_json_4xx(client, data, files, status) -> None:
    r = await client.post("/api/query", data=data, files=files or None)
    assert r.status_code == status, r.text
    assert "error" in r.json()


async def test_query_body_limits(real_collection) -> None:
    from imagemesh.web.settings import WebSettings

    app = create_app(real_collection, WebSettings(max_upload_bytes=10_000, max_upload_images=2))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
        r = await c.post("/api/query", files={"positive_image": ("x.png", b"\x89PNG" + b"\x00" * 20_000, "image/png")})
        assert r.status_code == 413 and "error" in r.json()
        r = await c.post("/api/query", files=[("positive_image", ("a.png", _png(), "image/png"))] * 3)
        assert r.status_code == 400 and "at most 2" in r.json()["error"]
        r = await c.post("/api/query", content=b"k=3", headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400 and "positive" in r.json()["error"]
        r = await c.post("/api/query", content=b"k=3", headers={"content-type": "text/plain"})
        assert r.status_code == 415
        r = await c.post("/api/query", content=b"--xx\r\ngarbage", headers={"content-type": "multipart/form-data; boundary=xx"})
        assert r.status_code in (400, 200) and r.status_code != 500
        assert (await c.get("/api/query")).status_code == 405


async def test_collapse_near_duplicates(client, real_collection) -> None:
    import numpy as np

    d = (await client.get("/api/neighbors?id=4&embedding=imagenet&k=20&collapse=true")).json()
    ids = [h["id"] for h in d["results"]]
    assert ids[0] == 4 and len(ids) == 20 and len(set(ids)) == 20
    v = np.asarray(real_collection.vectors("imagenet"))
    thr = d["duplicate_threshold"]
    for a in range(len(ids)):
        for b in range(a):
            assert 1 - float(v[ids[a]] @ v[ids[b]]) > thr  # no two kept hits are near-duplicates
    folded = [x for h in d["results"] for x in h["duplicates"]]
    assert not set(folded) & set(ids)
    # identical content is always collapsed: a query with duplicated rows keeps one
    from imagemesh.query.collapse import collapse_duplicates

    kept, dups = collapse_duplicates([1, 2, 3], v, "cosine", 0.0, ["a", "a", "b"])
    assert kept == [1, 3] and dups == {1: [2]}


async def test_suggest_top_values(client, real_collection) -> None:
    d = (await client.get("/api/suggest?field=year")).json()
    years = real_collection.facets()["year"]
    assert d["values"][0] == {"value": str(years[0]["value"]), "count": years[0]["count"]}
    title = real_collection.get(0)["title"]
    d = (await client.get(f"/api/suggest?field=title&prefix={quote(title[:6].lower())}")).json()
    assert any(v["value"] == title for v in d["values"])
    assert all(v["value"].lower().startswith(title[:6].lower()) or title[:6].lower() in v["value"].lower() for v in d["values"])
    for url in ("/api/suggest", "/api/suggest?field=abstract_x", "/api/suggest?field=title&limit=0", f"/api/suggest?field=title&prefix={'x' * 300}"):
        r = await client.get(url)
        assert r.status_code == 400 and "error" in r.json()


async def test_map_coordinates(client, real_collection) -> None:
    for emb in real_collection.embeddings:
        d = (await client.get(f"/api/map?embedding={emb}")).json()
        assert d["ids"] == list(range(len(real_collection))) and len(d["x"]) == len(real_collection)
        assert 0 <= min(d["x"]) and max(d["y"]) <= 1
        # cluster labels sit at the median of their figures' map positions
        import numpy as np

        cl = real_collection.clustering(emb)
        assert [c["label"] for c in d["clusters"]] == [x.label for x in cl.clusters]
        xs = np.asarray(d["x"])
        assert d["clusters"][0]["x"] == pytest.approx(float(np.median(xs[cl.rows(0)])), abs=1e-4)
    d = (await client.get(f"/api/map?filter={_f({'year': 2022})}")).json()
    assert len(d["ids"]) == real_collection.count({"year": 2022})
    assert (await client.get("/api/map?embedding=nope")).status_code == 400


async def test_openapi_covers_every_api_route(client) -> None:
    from starlette.routing import Route

    app = client._transport.app
    d = (await client.get("/api/openapi.json")).json()
    api_routes = {r.path.replace("{id:int}", "{id}").replace(":path}", "}"): r.methods for r in app.routes if isinstance(r, Route) and r.path.startswith("/api/")}
    assert set(api_routes) == set(d["paths"])
    for path, methods in api_routes.items():
        assert {m.lower() for m in methods} - {"head"} == set(d["paths"][path])


@pytest.mark.parametrize(
    "url",
    [
        "/api/random?offset=-1",
        "/api/random?collapse=2x",
        "/api/random?embedding=zzz",
        "/api/neighbors?id=1&collapse=xyz",
        "/api/images/1/image/../../thumbnail",
        "/api/images/99999/image",
        "/api/images/-1/image",
    ],
)
async def test_new_bad_params_get_json_4xx(client, url) -> None:
    r = await client.get(url)
    assert 400 <= r.status_code < 500, r.text
    assert "error" in r.json()


async def test_uploads_are_decoded_in_the_isolated_worker(real_collection) -> None:
    """By default an upload is decoded in an IsolatedDecoder process: the result equals
    in-process decoding, and an upload that blows the worker's memory limit is a 400 for
    that request while the server (and the next upload) carry on."""
    import io

    from PIL import Image

    from imagemesh.web.settings import WebSettings

    data = real_collection.image(12)
    results = {}
    for isolate in (True, False):
        app = create_app(real_collection, WebSettings(isolate_uploads=isolate, upload_decode_memory_bytes=256 * 1024 * 1024))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            r = await c.post("/api/query", data={"embedding": "imagenet", "k": "5"}, files={"positive_image": ("f.jpg", data, "image/jpeg")})
            assert r.status_code == 200, r.text
            results[isolate] = [(h["id"], h["distance"]) for h in r.json()["results"]]
            decoders = app.state.upload_decoders
            assert len(decoders) == int(isolate)
            if isolate:
                big = io.BytesIO()
                Image.new("RGBA", (6300, 6300), (9, 9, 9, 255)).save(big, "PNG")  # 39.7 Mpx: under the pixel cap
                r = await c.post("/api/query", data={"k": "3"}, files={"positive_image": ("b.png", big.getvalue(), "image/png")})
                assert r.status_code == 400 and "could not be decoded" in r.json()["error"], r.text
                assert re.search("memory|MemoryError|killed", r.json()["error"]), r.text
                r = await c.post("/api/query", data={"embedding": "imagenet", "k": "5"}, files={"positive_image": ("f.jpg", data, "image/jpeg")})
                assert r.status_code == 200
                decoders[0].close()
    assert results[True] == results[False]
