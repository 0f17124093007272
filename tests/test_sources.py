"""Sources with their own fields (jsonl), a third-party index backend, and the one sampler,
on synthetic collections (fast lane)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from imagemesh.cli import cli
from imagemesh.core.index import Index, exact_search, pad_results
from imagemesh.core.registry import Registries
from imagemesh.ingest.build import build_collection
from imagemesh.ingest.options import BuildOptions
from imagemesh.ingest.sources.jsonl import read
from imagemesh.plugins import default_registries
from imagemesh.query.collection import open_collection
from imagemesh.testing import MUSEUMS, build_tiny_collection, make_image_folder
from imagemesh.web.app import create_app
from imagemesh.web.settings import WebSettings


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_collection(tmp_path_factory.mktemp("tiny"), n=48)


def test_jsonl_fields_become_the_schema(tiny: Path) -> None:
    c = open_collection(tiny)
    s = c.schema
    assert s.profile == "jsonl"
    assert {k: v.value for k, v in s.fields.items()} == {"title": "text", "museum": "text", "artist": "text", "century": "int", "tags": "text_list", "score": "float"}
    assert set(s.facet_fields) == {"museum", "artist", "century"}
    assert s.title_field == "title"
    assert "museum" in c.info()["fields"]["fields"]
    assert len(c) == 48


def test_jsonl_fields_filter_in_python(tiny: Path) -> None:
    c = open_collection(tiny)
    rows = [c.get(i) for i in range(len(c))]
    assert c.count({"museum": "Louvre"}) == sum(r["museum"] == "Louvre" for r in rows) == 12
    assert c.count({"century": {"gte": 18}}) == sum(r["century"] >= 18 for r in rows)
    assert c.count({"keyword": "vermeer"}) == sum(r["artist"] == "Vermeer" for r in rows) > 0
    assert c.count({"tags": "ochre"}) == 12
    hits = c.neighbors(0, k=5, where={"museum": "Prado"})
    assert hits and all(h.metadata["museum"] == "Prado" for h in hits)
    facets = c.facets()
    assert [f["value"] for f in facets["museum"]] == sorted(MUSEUMS)  # 12 each: ties sorted by value
    assert sum(f["count"] for f in facets["century"]) == 48


def _api(app: object, *requests: tuple[str, dict]) -> list[httpx.Response]:
    """GET requests through httpx's ASGI transport (no server, no network)."""

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            return [await client.get(url, params=params) for url, params in requests]

    return asyncio.run(run())


def test_jsonl_fields_filter_in_cli_and_api(tiny: Path) -> None:
    res = CliRunner().invoke(cli, ["neighbors", str(tiny), "0", "-k", "30", "--where", '{"artist": "Hals"}', "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got and all(h["artist"] == "Hals" for h in got)
    app = create_app(open_collection(tiny), WebSettings(isolate_uploads=False))
    r, facets, sugg, bad = _api(app, ("/api/random", {"n": 50, "filter": json.dumps({"museum": "Uffizi"})}), ("/api/facets", {}),
                                ("/api/suggest", {"field": "artist", "prefix": "ve"}), ("/api/random", {"filter": json.dumps({"nope": 1})}))
    assert r.status_code == 200
    assert r.json()["total"] == 12 and {x["museum"] for x in r.json()["results"]} == {"Uffizi"}
    assert facets.json()["museum"][0]["count"] == 12
    assert sugg.json()["values"][0]["value"] == "Vermeer"
    assert bad.status_code == 400


def test_jsonl_bad_lines_are_problems_not_crashes(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", n=4)
    meta = src / "metadata.jsonl"
    meta.write_text(meta.read_text() + "\n".join([
        "not json",
        "[1, 2]",
        '{"title": "no file"}',
        '{"file": "../../etc/passwd"}',
        '{"file": "images/missing.png"}',
        '{"file": "images/img-0000.png"}',  # duplicate key
        '{"file": "images/img-0001.png", "key": "x", "Bad Name": 1, "row_id": 5, "nested": {"a": 1}}',
    ]) + "\n")
    data = read(src)
    assert len(data.items) == 5
    reasons = " | ".join(p.reason for p in data.problems)
    for word in ("not JSON", "not a JSON object", "no \"file\"", "outside the folder", "no image file", "duplicate image key", "'Bad Name' ignored", "'row_id' ignored", "'nested' ignored"):
        assert word in reasons
    assert "nested" not in data.schema.fields


class BruteIndex(Index):
    """A third-party backend: brute force, no capabilities declared, only the abstract methods."""

    backend = "brute"

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self._x = np.zeros((0, dim), np.float32)

    def add(self, row_ids: np.ndarray, vectors: np.ndarray) -> None:
        _, v = self._check_add(row_ids, vectors, len(self._x))
        self._x = np.concatenate([self._x, v])

    def build(self) -> None:
        pass

    @property
    def ntotal(self) -> int:
        return len(self._x)

    def _search_unfiltered(self, queries: np.ndarray, k: int, **params: object) -> tuple[np.ndarray, np.ndarray]:
        # deliberately short answers: at most 3 results, so over-fetch and the planner's fallback must fill
        d, i = exact_search(self._x, queries, min(k, 3))
        out_d, out_i = pad_results(len(queries), k)
        out_d[:, : d.shape[1]], out_i[:, : i.shape[1]] = d, i
        return out_d, out_i

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:
            np.save(f, self._x)

    @classmethod
    def load(cls, path: Path, dim: int, params: dict) -> "BruteIndex":
        idx = cls(dim)
        idx._x = np.load(path)
        return idx

    def params(self) -> dict:
        return {}


def test_third_party_backend_gets_full_fill_through_the_planner(tmp_path: Path) -> None:
    regs: Registries = default_registries()
    regs.backends.register("brute", BruteIndex)
    src = make_image_folder(tmp_path / "src", n=40)
    out = tmp_path / "coll"
    build_collection(src, out, BuildOptions(embeddings=["raw"], backend="brute", pca_dim=8, progress=False, isolate_decoders=False, map_2d=False), regs)
    for threshold in (0, 1_000):  # 0: index-filtered / ivf-allowed paths; 1000: exact-allowed
        c = open_collection(out, registries=regs, exact_threshold=threshold)
        x = np.asarray(c.vectors("raw"))
        for where in (None, {"museum": "Louvre"}, {"century": {"gte": 16}}, {"keyword": "nothing-matches"}):
            mask = c.allowed(where)
            rows = np.arange(len(c)) if mask is None else np.flatnonzero(mask)
            for k in (1, 5, 40):
                d, ids, plan = c.search_vectors(x[:4], "raw", k, where)
                want = min(k, rows.size)
                assert ((ids >= 0).sum(1) == want).all(), (where, k, plan)
                _, ref = exact_search(x[rows], x[:4], k, rows)
                assert np.array_equal(np.sort(ids[:, :want], 1), np.sort(ref[:, :want], 1)), (where, k, plan.strategy)


def test_random_is_the_same_in_python_cli_and_api(tiny: Path) -> None:
    c = open_collection(tiny)
    py = [h.id for h in c.random(10, seed=0)]
    res = CliRunner().invoke(cli, ["random", str(tiny), "-n", "10", "--seed", "0", "--json"])
    assert res.exit_code == 0, res.output
    assert [h["id"] for h in json.loads(res.output)] == py
    first, second = _api(create_app(c, WebSettings(isolate_uploads=False)), ("/api/random", {"n": 10, "seed": 0}), ("/api/random", {"n": 10, "seed": 0, "offset": 10}))
    assert [h["id"] for h in first.json()["results"]] == py
    page2 = second.json()["results"]
    assert [h.id for h in c.random(10, seed=0, offset=10)] == [h["id"] for h in page2]
    assert len(set(py) | {h["id"] for h in page2}) == 20


def test_metadata_outside_the_schema_is_reported_not_silently_dropped(tmp_path: Path) -> None:
    from imagemesh.ingest.sources.base import SourceItem

    src = make_image_folder(tmp_path / "src", n=3)
    items = [SourceItem(f"k{i}", p, {"title": f"t{i}", "museum": "x"}) for i, p in enumerate(sorted((src / "images").iterdir()))]
    report = build_collection(None, tmp_path / "coll", BuildOptions(embeddings=["raw"], backend="exact", pca_dim=2, progress=False, isolate_decoders=False, map_2d=False), items=items)
    assert any("museum" in p and "not stored" in p for p in report.metadata_problems), report.metadata_problems
    assert open_collection(tmp_path / "coll").get(0)["title"] == "t0"
