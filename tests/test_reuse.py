"""Reused figures (issue 16): the same figure in several papers is grouped, earliest paper
first; distinct figures are not (fast lane, synthetic arXiv-like collection)."""

from __future__ import annotations

import asyncio
import json
import shutil

import httpx
import pytest

from imagemesh.ingest.build import build_collection
from imagemesh.ingest.options import BuildOptions
from imagemesh.query.collection import open_collection
from imagemesh.query.reuse import find_reuse, submission_key
from imagemesh.testing import make_image_folder
from imagemesh.web.app import create_app
from imagemesh.web.settings import WebSettings


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("reuse")
    src = make_image_folder(root / "src", n=24)
    lines = [json.loads(x) for x in (src / "metadata.jsonl").read_text().splitlines()]
    for i, rec in enumerate(lines):
        rec["arxiv_id"] = f"2{i // 2 + 101:03d}.{10000 + i:05d}"  # 2101.., 2102.., one month per two figures
    # figure 3 (paper 2102.10003) reappears in two later papers, one as an identical file, one re-saved as JPEG
    shutil.copy(src / lines[3]["file"], src / "images/copy-a.png")
    from PIL import Image

    Image.open(src / lines[3]["file"]).convert("RGB").save(src / "images/copy-b.jpg", quality=95)
    lines.append({**lines[20], "file": "images/copy-a.png", "arxiv_id": "2305.00001"})
    lines.append({**lines[21], "file": "images/copy-b.jpg", "arxiv_id": "hep-th/0001001"})  # old style: January 2000, the earliest
    (src / "metadata.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = root / "coll"
    build_collection(src, out, BuildOptions(embeddings=["raw"], backend="exact", pca_dim=8, progress=False, isolate_decoders=False, map_2d=False))
    return open_collection(out)


def test_submission_order() -> None:
    ids = ["2305.00001", "hep-th/0001001", "2102.10003", "0704.0001", "math.GT/0309136", "not-an-id"]
    assert sorted(ids, key=submission_key) == ["hep-th/0001001", "math.GT/0309136", "0704.0001", "2102.10003", "2305.00001", "not-an-id"]


def test_reused_figure_is_grouped_earliest_first(coll) -> None:
    r = find_reuse(coll, "raw", "l2")
    assert len(r.groups) == 1, [g.papers for g in r.groups]
    g = r.groups[0]
    orig, a, b = (coll.resolve(k) for k in ("images/img-0003", "images/copy-a", "images/copy-b"))
    assert g.papers == ("hep-th/0001001", "2102.10003", "2305.00001")
    assert sorted(g.rows) == sorted([orig, a, b]) and g.rows[0] == b  # the earliest paper's copy first
    assert r.group_of[orig] == 0 and r.group_of[coll.resolve("images/img-0000")] == -1


def test_reused_api(coll) -> None:
    app = create_app(coll, WebSettings(isolate_uploads=False, warm_uploads=False))

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1") as c:
            return [await c.get(u) for u in ("/api/reused", "/api/reused?id=images/img-0003", "/api/reused?id=images/img-0000", "/api/reused?id=nope")]

    all_, one, none, bad = asyncio.run(go())
    assert all_.status_code == 200 and all_.json()["n_groups"] == 1
    grp = one.json()["group"]
    assert grp["first"] == "hep-th/0001001" and grp["figures"][0]["id"] == coll.resolve("images/copy-b")
    assert none.json()["group"] is None and bad.status_code == 404
