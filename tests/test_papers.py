"""Paper view (issue 16): every figure of a paper, and papers whose figures look like it,
checked against a brute-force reference of the documented score (fast lane)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from imagemesh.ingest.build import build_collection
from imagemesh.ingest.options import BuildOptions
from imagemesh.query.collection import open_collection
from imagemesh.query.papers import paper_rows, similar_papers
from imagemesh.store.reader import ImageNotFound
from imagemesh.testing import make_image_folder
from imagemesh.web.app import create_app
from imagemesh.web.settings import WebSettings

N = 36


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("papers")
    src = make_image_folder(root / "src", n=N)
    lines = [json.loads(x) for x in (src / "metadata.jsonl").read_text().splitlines()]
    for i, rec in enumerate(lines):  # papers of three figures: rows 3p, 3p+1, 3p+2
        rec["arxiv_id"] = f"2401.{i // 3:05d}"
        rec["figure"] = str(3 - i % 3)  # figure numbers in reverse row order
    (src / "metadata.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = root / "coll"
    build_collection(src, out, BuildOptions(embeddings=["raw"], backend="exact", pca_dim=8, progress=False, isolate_decoders=False, map_2d=False))
    return open_collection(out)


def _reference(c, aid: str) -> list[tuple[str, float]]:
    """The documented score, by brute force: mean over the paper's figures of the L2 distance
    to the other paper's nearest figure."""
    v = np.asarray(c.vectors("raw"), np.float64)
    papers = [c.get(i)["arxiv_id"] for i in range(len(c))]
    mine = [i for i, p in enumerate(papers) if p == aid]
    scores = {}
    for q in sorted(set(papers) - {aid}):
        theirs = [i for i, p in enumerate(papers) if p == q]
        scores[q] = float(np.mean([min(np.linalg.norm(v[a] - v[b]) for b in theirs) for a in mine]))
    return sorted(scores.items(), key=lambda kv: (kv[1], kv[0]))


def test_paper_rows_and_similar_papers_match_the_reference(coll) -> None:
    assert paper_rows(coll, "2401.00004") == [12, 13, 14]
    assert paper_rows(coll, "2401.00004v3") == [12, 13, 14]  # a version suffix is ignored
    with pytest.raises(ImageNotFound):
        paper_rows(coll, "2401.99999")
    got = similar_papers(coll, "2401.00000", "raw", k=5)
    ref = _reference(coll, "2401.00000")[:5]
    assert [m.arxiv_id for m in got] == [a for a, _ in ref]
    assert [m.score for m in got] == pytest.approx([s for _, s in ref], rel=1e-4, abs=1e-5)
    # papers with the same museums (colours) as paper 0 rank first
    assert {m.arxiv_id for m in got[:2]} == {"2401.00004", "2401.00008"}
    assert all(len(m.matched) == 3 and m.best_row in paper_rows(coll, m.arxiv_id) for m in got)
    # a filter restricts the candidate figures
    filtered = similar_papers(coll, "2401.00000", "raw", k=5, where=coll.select({"century": 15}))
    assert all(any(coll.get(r)["century"] == 15 for _, r, _ in m.matched if r >= 0) for m in filtered)


def test_paper_api(coll) -> None:
    app = create_app(coll, WebSettings(isolate_uploads=False, warm_uploads=False))

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1") as c:
            paths = ["/api/papers/2401.00004", "/api/papers/2401.00000/similar?k=3&embedding=raw",
                     "/api/papers/2401.99999", "/api/papers/2401.99999/similar", "/api/papers/2401.00000/similar?k=0",
                     "/api/papers/2401.00000?k=3", "/api/papers/2401.00000/similar?filter=%7B%22century%22%3A%2015%7D"]
            return [await c.get(p) for p in paths]

    paper, similar, missing, missing2, bad_k, unknown, filtered = asyncio.run(go())
    d = paper.json()
    assert paper.status_code == 200 and d["n_figures"] == 3
    assert [f["figure"] for f in d["figures"]] == ["1", "2", "3"] and [f["id"] for f in d["figures"]] == [14, 13, 12]
    s = similar.json()
    assert similar.status_code == 200 and [p["arxiv_id"] for p in s["papers"]] == [a for a, _ in _reference(coll, "2401.00000")[:3]]
    assert all(p["best"]["id"] in paper_rows(coll, p["arxiv_id"]) for p in s["papers"])
    assert missing.status_code == missing2.status_code == 404
    assert bad_k.status_code == 400 and unknown.status_code == 400
    assert filtered.status_code == 200
