"""Collapse near-duplicates is calibrated per embedding (issue 16): on the real demo figures
(166 figures of 166 different papers) no query collapses distinct papers under the trained
embeddings, whose figures sit far closer together than an ImageNet CNN's; identical content
still collapses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest

from imagemesh.ingest.build import BuildOptions, build_collection
from imagemesh.query.collapse import calibrated_threshold, collapse_duplicates, distance_to_nearest_other, duplicate_threshold
from imagemesh.query.collection import open_collection
from imagemesh.web.app import create_app
from imagemesh.web.settings import WebSettings

from .conftest import FIGURES, require_shared


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    require_shared()
    out = tmp_path_factory.mktemp("collapse") / "coll"
    build_collection(FIGURES, out, BuildOptions(backend="exact", embeddings=["deepcluster", "ternary", "imagenet"], progress=False))
    return open_collection(out)


def test_distinct_papers_are_not_collapsed(trained) -> None:
    app = create_app(trained, WebSettings(isolate_uploads=False, warm_uploads=False))

    async def go() -> list[dict]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            return [(await c.get(f"/api/neighbors?id={i}&embedding={e}&k=80&collapse=true")).json()
                    for e in ("deepcluster", "ternary", "imagenet") for i in range(0, 160, 20)]

    papers = trained.columns(["arxiv_id"]).sort_by("row_id")["arxiv_id"].to_pylist()
    assert len(set(papers)) == len(papers)  # one figure per paper: any collapse would join two papers
    for d in asyncio.run(go()):
        assert d["collapsed"] == 0 and len(d["results"]) == 80, (d["embedding"], d["query"], d["collapsed"], d["duplicate_threshold"])
    # the fixed cosine 0.02 used before would have collapsed most of them
    v = np.asarray(trained.vectors("deepcluster"))
    kept, _ = collapse_duplicates([h.id for h in trained.neighbors(0, "deepcluster", k=80)], v, "cosine", 0.02, [None] * 80)
    assert len(kept) < 40


def test_calibration_rule(trained) -> None:
    v = np.asarray(trained.vectors("deepcluster"))
    knn = lambda q, k: trained.search_vectors(q, "deepcluster", k)[1]  # noqa: E731
    near = distance_to_nearest_other(v, "cosine", knn, None)
    assert near.size == len(v) and np.all(near >= 0)
    thr = calibrated_threshold(v, "cosine", near)
    assert thr == pytest.approx(min(duplicate_threshold(v, "cosine"), 0.1 * float(np.percentile(near, 10))))
    assert thr < 0.02
    # too few samples: the uncalibrated rule
    assert calibrated_threshold(v, "cosine", near[:5]) == duplicate_threshold(v, "cosine")
    # identical content still collapses whatever the threshold
    kept, dups = collapse_duplicates([3, 4, 5], v, "cosine", 0.0, ["a", "a", None])
    assert kept == [3, 5] and dups == {3: [4]}
