"""Hostile filter JSON (issue 15's catalogue): deep nesting, numbers over Python's digit limit
or outside int64 -> a 400 / a clear CLI error, never a 500 or a traceback (fast lane)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from imagemesh.cli import cli
from imagemesh.query.collection import open_collection
from imagemesh.testing import build_tiny_collection
from imagemesh.web.app import create_app
from imagemesh.web.settings import WebSettings

HOSTILE = {
    "deep array": "[" * 4000 + "]" * 4000,
    "deep object": '{"not": ' * 2000 + '{"century": 17}' + "}" * 2000,
    "4400 digits": '{"century": {"gte": ' + "9" * 4400 + "}}",
    "over int64": '{"century": {"lt": ' + "9" * 25 + "}}",
    "over int64 eq": '{"century": -' + "9" * 25 + "}",
    "huge float": '{"score": {"gt": 1e400}}',
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_collection(tmp_path_factory.mktemp("hostile"), n=12)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_api_answers_400(tiny: Path, name: str) -> None:
    app = create_app(open_collection(tiny), WebSettings(isolate_uploads=False, max_filter_chars=1_000_000))

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1") as c:
            routes = (("/api/random", {}), ("/api/neighbors", {"id": "0"}), ("/api/facets", {}), ("/api/map", {}))
            return [await c.get(path, params={"filter": HOSTILE[name], **extra}) for path, extra in routes]

    for r in asyncio.run(go()):
        assert r.status_code == 400, (name, r.status_code, r.text[:200])
        assert r.json()["error"].startswith("invalid filter"), r.text[:200]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_cli_prints_one_line_no_traceback(tiny: Path, name: str) -> None:
    r = CliRunner().invoke(cli, ["random", str(tiny), "--where", HOSTILE[name]])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and r.output.startswith("error: --where:"), r.output[:300]


def test_header_block_over_64_kib_gets_431(tiny: Path) -> None:
    from imagemesh.web.serve import RequestCaps

    app = RequestCaps(create_app(open_collection(tiny), WebSettings(isolate_uploads=False)))

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            return [await c.get("/api/info", headers={f"x-h{i}": "v" * 1000 for i in range(n)}) for n in (60, 70)]

    small, big = asyncio.run(go())
    assert small.status_code == 200 and big.status_code == 431
