"""Collections built from the real arXiv figures: kNN semantics, filters, random sampling,
deterministic row ids, resumable builds, refusal of mismatched files, bad images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import imagemesh
from imagemesh import Collection, CollectionError, FilterError, ImageNotFound, Keyword, Range
from imagemesh.ingest.build import BuildOptions, build_collection
from imagemesh.core.embedding import BaseEmbedding, EmbeddingConfig
from imagemesh.models.raw import RawPixels
from imagemesh.plugins import default_registries

from .conftest import SNAPSHOT, make_subset

FILTERS = [
    None,
    {"year": 2023},
    {"year": {"lt": 2023}},
    {"keyword": "translation"},
    {"title": {"contains": "language"}},
    {"caption": {"contains": "O'Brien'; DROP TABLE images; --"}},
    {"or": [{"year": 2021}, {"keyword": "speech"}]},
    {"not": {"keyword": "model"}},
]


def _matching_rows(c: Collection, where) -> set[int]:
    m = c.allowed(where)
    return set(range(len(c))) if m is None else set(np.flatnonzero(m).tolist())


def _reference_rows(c: Collection, where) -> set[int]:
    f = imagemesh.from_dict(where)
    if f is None:
        return set(range(len(c)))
    return {r for r in range(len(c)) if f.matches(c.get(r))}


@pytest.mark.parametrize("where", FILTERS)
def test_lance_filter_matches_python_reference_on_real_metadata(real_collection: Collection, where) -> None:
    assert _matching_rows(real_collection, where) == _reference_rows(real_collection, where)


@pytest.mark.parametrize("embedding", ["imagenet", "raw"])
@pytest.mark.parametrize("where", FILTERS)
@pytest.mark.parametrize("k", [1, 10, 200])
def test_neighbors_self_first_no_leak_and_count(real_collection: Collection, embedding: str, where, k: int) -> None:
    allowed = _matching_rows(real_collection, where)
    for row in (0, 57, 135):
        hits = real_collection.neighbors(row, embedding=embedding, k=k, where=where)
        ids = [h.id for h in hits]
        assert len(ids) == min(k, len(allowed))
        assert set(ids) <= allowed
        assert len(set(ids)) == len(ids)
        if row in allowed:
            assert ids[0] == row and hits[0].distance == 0.0
        d = [h.distance for h in hits]
        assert d == sorted(d)


def test_neighbors_equal_exact_ranking(real_collection: Collection) -> None:
    v = np.asarray(real_collection.vectors("imagenet"))
    truth = imagemesh.exact_search(v, v[135:136], 10)[1][0]
    got = [h.id for h in real_collection.neighbors(135, embedding="imagenet", k=10)]
    assert got == truth.tolist()


def test_resolve_by_key_and_arxiv_id(real_collection: Collection) -> None:
    key = real_collection.get(5)["image_key"]
    aid = real_collection.get(5)["arxiv_id"]
    assert real_collection.resolve(key) == 5
    assert real_collection.resolve(aid) == 5
    assert real_collection.resolve("5") == 5
    with pytest.raises(ImageNotFound):
        real_collection.resolve("9999.99999")
    with pytest.raises(ImageNotFound):
        real_collection.resolve(len(real_collection))


def test_random_is_distinct_matching_and_seeded(real_collection: Collection) -> None:
    where = {"year": 2023}
    allowed = _matching_rows(real_collection, where)
    a = [h.id for h in real_collection.random(30, where=where, seed=7)]
    b = [h.id for h in real_collection.random(30, where=where, seed=7)]
    c = [h.id for h in real_collection.random(30, where=where, seed=8)]
    assert a == b and a != c
    assert len(set(a)) == 30 and set(a) <= allowed
    everything = real_collection.random(10_000, where=where, seed=1)
    assert sorted(h.id for h in everything) == sorted(allowed)
    assert real_collection.random(5, where={"keyword": "no such words anywhere zzz"}) == []


def test_bad_queries_raise_clear_errors(real_collection: Collection) -> None:
    with pytest.raises(FilterError):
        real_collection.neighbors(0, where={"nope": 1})
    with pytest.raises(KeyError, match="unknown embedding"):
        real_collection.neighbors(0, embedding="vgg99")
    with pytest.raises(ValueError):
        real_collection.neighbors(0, k=0)
    with pytest.raises(ValueError):
        real_collection.random(-1)


def test_metadata_thumbnails_and_top5(real_collection: Collection) -> None:
    rec = real_collection.get(0)
    assert rec["arxiv_id"] and rec["year"] and rec["title"] and rec["image_key"].endswith("/fig1")
    top5 = rec["predictions"]["imagenet"]
    assert len(top5) == 5 and all(0 <= p["p"] <= 1 for p in top5)
    assert top5 == sorted(top5, key=lambda p: -p["p"])
    jpeg = real_collection.thumbnail(0)
    assert jpeg[:3] == b"\xff\xd8\xff"
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(jpeg)) as im:
        assert max(im.size) == 256 or max(im.size) == max(rec["width"], rec["height"])


def test_facets_count_every_image(real_collection: Collection) -> None:
    f = real_collection.facets()
    assert sum(x["count"] for x in f["year"]) == len(real_collection)
    # the figures CSV carries no category: the facet says unknown rather than inventing one
    assert f["category"] == [{"value": None, "label": "(unknown)", "count": len(real_collection)}]
    years = {x["value"] for x in f["year"]}
    assert years <= set(range(2020, 2024))


# ------------------------------------------------------------------ builds


def _arrays(c: Collection) -> tuple[list[dict], dict[str, np.ndarray]]:
    rows = [c.get(r) for r in range(len(c))]
    return rows, {e: np.asarray(c.vectors(e)).copy() for e in c.embeddings}


def test_row_ids_are_deterministic_and_aligned(tmp_path: Path, small_source: Path) -> None:
    opts = BuildOptions(backend="annoy", progress=False)
    build_collection(small_source, tmp_path / "a", opts)
    build_collection(small_source, tmp_path / "b", BuildOptions(backend="faiss", progress=False, chunk_size=5))
    a, b = imagemesh.open(tmp_path / "a"), imagemesh.open(tmp_path / "b")
    ra, va = _arrays(a)
    rb, vb = _arrays(b)
    assert [r["image_key"] for r in ra] == [r["image_key"] for r in rb] == sorted(r["image_key"] for r in ra)
    assert [r["content_sha256"] for r in ra] == [r["content_sha256"] for r in rb]
    for e in va:
        np.testing.assert_allclose(va[e], vb[e], atol=1e-4)
    # alignment: the raw embedding of a row's own image file equals its stored vector
    from imagemesh.media.canonical import canonical_image
    from imagemesh.media.images import load_image
    from imagemesh.store.pca import PcaReducer

    reducer = PcaReducer.load(a.data_dir / a.manifest.embeddings["raw"]["pca"]["file"])
    for r in (0, 7, 23):
        path = next((small_source / "images").glob(ra[r]["arxiv_id"] + "v*"))
        raw = RawPixels().embed_batch([canonical_image(load_image(path))[1]])
        np.testing.assert_allclose(reducer.transform(raw)[0], va["raw"][r], atol=1e-4)


def test_bad_images_are_reported_and_skipped(tmp_path: Path) -> None:
    src = make_subset(tmp_path / "src", 6)
    imgs = sorted((src / "images").iterdir())
    imgs[0].write_bytes(b"%PDF-1.4 truncated nonsense")
    imgs[1].write_bytes(b"")
    report = build_collection(src, tmp_path / "out", BuildOptions(embeddings=["raw"], backend="exact", progress=False))
    assert report.n_images == 4 and len(report.failures) == 2
    assert {Path(f["path"]).name for f in report.failures} == {imgs[0].name, imgs[1].name}
    assert "skipped" in report.summary()
    c = imagemesh.open(tmp_path / "out")
    assert len(c) == 4 and list(range(4)) == [c.resolve(c.get(r)["image_key"]) for r in range(4)]
    saved = json.loads((tmp_path / "out" / "build-report.json").read_text())
    assert len(saved["failures"]) == 2


def test_fewer_images_than_pca_components(tmp_path: Path) -> None:
    src = make_subset(tmp_path / "src", 3)
    build_collection(src, tmp_path / "out", BuildOptions(embeddings=["raw"], backend="annoy", pca_dim=64, progress=False))
    c = imagemesh.open(tmp_path / "out")
    assert c.vectors("raw").shape[0] == 3 and c.vectors("raw").shape[1] <= 3
    assert [h.id for h in c.neighbors(1, embedding="raw", k=10)][0] == 1


def test_metadata_snapshot_join(tmp_path: Path) -> None:
    """A figure whose arXiv id has a snapshot record gets its authors and categories."""
    src = make_subset(tmp_path / "src", 4)
    snap = tmp_path / "snap.jsonl"
    line = json.loads(SNAPSHOT.read_text(encoding="utf-8").splitlines()[0])
    from imagemesh.ingest.sources.figures_csv import read_figures_csv

    items, _ = read_figures_csv(src / "figures.csv")
    line["id"] = items[0].metadata["arxiv_id"]
    line["categories"] = "math.IT cmp-lg"
    snap.write_text(json.dumps(line) + "\n{broken json\n", encoding="utf-8")
    report = build_collection(src, tmp_path / "out", BuildOptions(embeddings=["raw"], backend="exact", metadata_files=[snap], progress=False))
    assert report.n_with_metadata_record == 1 and len(report.metadata_problems) == 1
    c = imagemesh.open(tmp_path / "out")
    rec = c.get(items[0].key)
    assert rec["category"] == "cs.IT" and rec["archive"] == "cs"  # alias math.IT -> cs.IT
    assert rec["categories"] == ["cs.IT", "cs.CL"]  # subsumed cmp-lg -> cs.CL
    assert rec["authors"].startswith("C. Bal")
    assert c.count({"category": "cs.IT"}) == 1 and c.count({"categories": "cs.CL"}) == 1
    facets = c.facets()
    assert {"value": "cs.IT", "label": "Information Theory", "count": 1} in facets["category"]


class _Flaky(BaseEmbedding):
    """Raw pixels that fail on the chunk holding ``fail_key`` while the marker file exists."""

    name = "raw"
    metric = "l2"

    def __init__(self, marker: Path, fail_on_call: int) -> None:
        self.inner = RawPixels()
        self.dim = self.inner.dim
        self.marker = marker
        self.calls = 0
        self.fail_on_call = fail_on_call

    def embed_batch(self, images):
        self.calls += 1
        if self.marker.exists() and self.calls == self.fail_on_call:
            raise KeyboardInterrupt("simulated crash")
        return self.inner.embed_batch(images)

    def config(self) -> EmbeddingConfig:
        return self.inner.config()


def test_killed_build_resumes_and_matches_uninterrupted(tmp_path: Path, small_source: Path) -> None:
    marker = tmp_path / "crash"
    marker.touch()
    regs = default_registries()
    regs.embeddings.register("raw", lambda: _Flaky(marker, fail_on_call=3), replace=True)
    opts = BuildOptions(embeddings=["raw"], backend="exact", chunk_size=5, progress=False)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        build_collection(small_source, out, opts, registries=regs)
    assert not (out / "manifest.json").exists()
    assert len(list((out / ".work").glob("*/chunk-*.npz"))) == 2
    marker.unlink()
    report = build_collection(small_source, out, opts, registries=regs)
    assert report.chunks_reused == 2
    ref = tmp_path / "ref"
    build_collection(small_source, ref, BuildOptions(embeddings=["raw"], backend="exact", chunk_size=5, progress=False))
    a, b = imagemesh.open(out), imagemesh.open(ref)
    assert [a.get(r)["image_key"] for r in range(len(a))] == [b.get(r)["image_key"] for r in range(len(b))]
    np.testing.assert_array_equal(np.asarray(a.vectors("raw")), np.asarray(b.vectors("raw")))
    assert not (out / ".work").exists()


def test_failed_rebuild_leaves_the_old_collection_intact(tmp_path: Path, small_source: Path) -> None:
    out = tmp_path / "out"
    build_collection(small_source, out, BuildOptions(embeddings=["raw"], backend="exact", progress=False))
    before = imagemesh.open(out)
    expect = [h.id for h in before.neighbors(3, k=5)]
    manifest = (out / "manifest.json").read_bytes()
    with pytest.raises(ValueError):
        build_collection(small_source, out, BuildOptions(embeddings=["raw"], backend="faiss", index_params={"recipe": "IVF4096,Flat"}, progress=False))
    assert (out / "manifest.json").read_bytes() == manifest
    assert [h.id for h in imagemesh.open(out).neighbors(3, k=5)] == expect
    assert [h.id for h in before.neighbors(3, k=5)] == expect


def _built(tmp_path: Path, small_source: Path, backend: str = "annoy") -> Path:
    out = tmp_path / "c"
    build_collection(small_source, out, BuildOptions(embeddings=["raw"], backend=backend, progress=False))
    return out


@pytest.mark.parametrize("backend", ["annoy", "faiss", "exact"])
def test_open_refuses_truncated_index(tmp_path: Path, small_source: Path, backend: str) -> None:
    out = _built(tmp_path, small_source, backend)
    m = json.loads((out / "manifest.json").read_text())
    path = out / m["data_dir"] / m["embeddings"]["raw"]["index"]["file"]
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 3)
    with pytest.raises(CollectionError, match="truncated"):
        imagemesh.open(out)


def test_open_refuses_mismatched_manifest(tmp_path: Path, small_source: Path) -> None:
    out = _built(tmp_path, small_source)
    m = json.loads((out / "manifest.json").read_text())
    m["n_images"] += 1
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CollectionError, match="rows"):
        imagemesh.open(out)


def test_open_refuses_missing_vectors_and_other_versions(tmp_path: Path, small_source: Path) -> None:
    out = _built(tmp_path, small_source)
    good = (out / "manifest.json").read_text()
    m = json.loads(good)
    m["format_version"] = 99
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(imagemesh.store.manifest.ManifestError, match="version"):
        imagemesh.open(out)
    (out / "manifest.json").write_text(good)
    (out / m["data_dir"] / m["embeddings"]["raw"]["vectors"]["file"]).unlink()
    with pytest.raises(CollectionError, match="missing"):
        imagemesh.open(out)
    shutil.rmtree(out / m["data_dir"])
    with pytest.raises(CollectionError):
        imagemesh.open(out)
    with pytest.raises(imagemesh.store.manifest.ManifestError):
        imagemesh.open(tmp_path)


def test_filter_objects_and_json_text_are_accepted(real_collection: Collection) -> None:
    a = real_collection.count(Range("year", gte=2023) & Keyword("language"))
    b = real_collection.count('{"year": {"gte": 2023}, "keyword": "language"}')
    assert a == b > 0


# ------------------------------------------------------------------ incremental builds, added embeddings, queries


def test_append_keeps_row_ids_and_adds_new_images(tmp_path: Path) -> None:
    src_a = make_subset(tmp_path / "a", 10)
    src_all = make_subset(tmp_path / "all", 16)
    out = tmp_path / "c"
    opts = BuildOptions(embeddings=["raw"], backend="faiss", progress=False)
    build_collection(src_a, out, opts)
    before = imagemesh.open(out)
    keys_before = before.image_keys()
    vec_before = np.asarray(before.vectors("raw")).copy()
    expect = [h.id for h in before.neighbors(2, k=5)]
    report = build_collection(src_all, out, opts, append=True)
    assert report.n_new == 6 and report.n_images == 16
    after = imagemesh.open(out)
    assert after.image_keys()[:10] == keys_before
    assert sorted(after.image_keys()[10:]) == after.image_keys()[10:]
    np.testing.assert_array_equal(np.asarray(after.vectors("raw"))[:10], vec_before)
    # the reader that opened the old version still answers as before
    assert [h.id for h in before.neighbors(2, k=5)] == expect
    assert len(before) == 10 and before.get(9)["image_key"] == keys_before[9]
    # appending the same items again adds nothing
    assert build_collection(src_all, out, opts, append=True).n_new == 0


def test_add_embedding_without_reingesting(tmp_path: Path, small_source: Path) -> None:
    from imagemesh.ingest.embed import add_embedding

    out = tmp_path / "c"
    build_collection(small_source, out, BuildOptions(embeddings=["raw"], backend="annoy", progress=False))
    before = imagemesh.open(out)
    entry = add_embedding(out, "imagenet", BuildOptions(progress=False))
    c = imagemesh.open(out)
    assert set(c.embeddings) == {"raw", "imagenet"} and entry["index"]["backend"] == "annoy"
    np.testing.assert_array_equal(np.asarray(c.vectors("raw")), np.asarray(before.vectors("raw")))
    assert len(c.get(0)["predictions"]["imagenet"]) == 5
    assert c.neighbors(4, embedding="imagenet", k=3)[0].id == 4
    # same vectors as a build that had imagenet from the start (both embed the canonical images)
    ref = tmp_path / "ref"
    build_collection(small_source, ref, BuildOptions(embeddings=["imagenet"], backend="exact", progress=False))
    np.testing.assert_allclose(np.abs(np.asarray(c.vectors("imagenet"))), np.abs(np.asarray(imagemesh.open(ref).vectors("imagenet"))), atol=2e-3)


def test_query_embedder_maps_a_collection_image_onto_itself(real_collection: Collection) -> None:
    from imagemesh.media.canonical import decode_jpeg

    img = decode_jpeg(real_collection.image(42))
    for emb in real_collection.embeddings:
        q = real_collection.query_embedder(emb)([img])
        # the query goes through the canonical JPEG once more (generation loss), hence not bit-equal
        v = np.asarray(real_collection.vectors(emb))[42]
        assert np.linalg.norm(q[0] - v) <= 0.05 * np.linalg.norm(v)
        _, ids, _ = real_collection.search_vectors(q, emb, k=1)
        assert ids[0, 0] == 42


def test_map_2d_is_stored_per_embedding(real_collection: Collection) -> None:
    for emb in real_collection.embeddings:
        m = real_collection.map_2d(emb)
        assert m is not None
        xy, method = m
        assert xy.shape == (len(real_collection), 2) and method == "tsne"
        assert xy.min() >= 0 and xy.max() <= 1


def test_warm_prepares_filters_and_reload_warms_the_new_version(tmp_path: Path, small_source: Path) -> None:
    """warm() builds each filter's mask and planner structure ahead of the first query;
    ReloadingApp warms a new version with the old one's recent filters before switching."""
    from imagemesh.web.app import create_app
    from imagemesh.web.serve import ReloadingApp

    out = tmp_path / "c"
    build_collection(small_source, out, BuildOptions(embeddings=["raw"], backend="exact", map_2d=False, progress=False))
    old = imagemesh.open(out)
    filters = [{"year": 2023}, {"keyword": "language"}]
    for f in filters:
        old.neighbors(0, k=3, where=f)
    assert [f.to_dict() for f in old.recent_filters()] == [imagemesh.from_dict(f).to_dict() for f in reversed(filters)]

    app = ReloadingApp(out, create_app, collection=old, check_interval=0)
    from imagemesh.store.writer import republish

    build_id = republish(out)  # a new version of the same content
    assert app.reload_now() and app.build_id == build_id
    new = app.collection
    assert new is not old
    for f in filters:  # warmed: the first query on the new version hits the caches
        _, plan = new.neighbors_with_plan(0, k=3, where=f)
        assert plan.cached, f
    fresh = imagemesh.open(out)
    _, plan = fresh.neighbors_with_plan(0, k=3, where=filters[0])
    assert not plan.cached  # what an unwarmed version does
    timings = fresh.warm(filters)
    assert set(timings) == {"facets", "raw", *(f"raw {imagemesh.from_dict(f).to_json()}" for f in filters)}
