"""Uploads under load (fast lane): a bounded admission gate (503 + Retry-After when full),
queries that never wait behind uploads, and a warmed upload path."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from imagemesh.query.collection import open_collection
from imagemesh.testing import build_tiny_collection
from imagemesh.web import handlers
from imagemesh.web.app import create_app
from imagemesh.web.settings import WebSettings


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_collection(tmp_path_factory.mktemp("uploads"), n=12)


def test_full_gate_is_503_with_retry_after_and_queries_do_not_wait(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = handlers.canonical_upload

    def slow(data, limits, decoder=None):  # a pixel-heavy upload, simulated: 1.5 s in the decoder
        time.sleep(1.5)
        return real(data, limits, decoder)

    monkeypatch.setattr(handlers, "canonical_upload", slow)
    png = next((tiny.parent / "src" / "images").iterdir()).read_bytes()
    app = create_app(open_collection(tiny), WebSettings(isolate_uploads=False, upload_workers=1, upload_queue=0, worker_threads=2))

    async def go() -> tuple[list[httpx.Response], list[float], httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1", timeout=30) as c:
            post = lambda: c.post("/api/query", data={"k": "3"}, files={"positive_image": ("u.png", png, "image/png")})  # noqa: E731
            first = asyncio.create_task(post())
            await asyncio.sleep(0.3)  # the first upload holds the only slot
            second = await post()
            times = []
            for i in range(5):
                t = time.perf_counter()
                r = await c.get(f"/api/neighbors?id={i}&k=3")
                assert r.status_code == 200
                times.append(time.perf_counter() - t)
            return [await first, second], times, await c.get("/api/info")

    (first, second), times, info = asyncio.run(go())
    assert first.status_code == 200, first.text
    assert second.status_code == 503 and second.headers.get("retry-after") == "2" and "uploads" in second.json()["error"]
    assert max(times) < 1.0, times  # answered while the upload was still decoding
    assert info.json()["uploads_ready"] is False  # no lifespan here: nothing warmed


def test_warm_uploads_starts_decoders_and_embedders(tiny: Path) -> None:
    app = create_app(open_collection(tiny), WebSettings(upload_workers=2))
    st = app.state.imagemesh
    try:
        st.warm_uploads()
        assert st.uploads_ready and len(st.decoders) == 2
    finally:
        st.close()
