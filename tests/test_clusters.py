"""Clusters (issue 16): k-means per embedding, c-TF-IDF labels, representatives, and the
``cluster`` filter. Synthetic collections here are fast; tests on the 166 real arXiv
figures use the ``real_collection`` fixture, which marks them slow (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from imagemesh.core.errors import FilterError
from imagemesh.core.filter_schema import filter_json_schema
from imagemesh.core.filter_sql import to_lance_predicate
from imagemesh.core.filters import And, Eq, InCluster, Not, from_dict, parse_filter
from imagemesh.ingest.build import BuildOptions, build_collection
from imagemesh.query.clusters import (
    NOISE_WORDS,
    Clustering,
    class_tfidf,
    cluster_collection,
    cluster_label_words,
    default_k,
    label_fields,
    tokenize,
)
from imagemesh.query.collection import Collection, open_collection
from imagemesh.testing import build_tiny_collection, make_image_folder

N = 48


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Collection:
    return open_collection(build_tiny_collection(tmp_path_factory.mktemp("clusters"), n=N))


@pytest.fixture(scope="module")
def textless(tmp_path_factory: pytest.TempPathFactory) -> Collection:
    """A jsonl collection whose only metadata is a number: no text to label clusters with."""
    root = tmp_path_factory.mktemp("textless")
    src = make_image_folder(root / "src", 20)
    lines = [json.loads(x) for x in (src / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    (src / "metadata.jsonl").write_text("".join(json.dumps({"file": x["file"], "century": x["century"]}) + "\n" for x in lines), encoding="utf-8")
    out = root / "coll"
    build_collection(src, out, BuildOptions(embeddings=["raw"], backend="exact", pca_dim=8, progress=False, isolate_decoders=False, map_2d=False))
    return open_collection(out)


def _titles(c: Collection) -> list[str]:
    t = c.columns(["title"]).sort_by("row_id")
    return t["title"].to_pylist()


def _check_partition(cl: Clustering, n: int) -> None:
    a = cl.assignment
    assert a.dtype == np.int32 and a.shape == (n,) and not a.flags.writeable
    assert a.min() >= 0 and a.max() == cl.k - 1  # every row in exactly one cluster, no empty cluster
    sizes = np.bincount(a, minlength=cl.k)
    assert [c.id for c in cl.clusters] == list(range(cl.k))
    assert [c.size for c in cl.clusters] == sizes.tolist() and sum(c.size for c in cl.clusters) == n
    assert sizes.tolist() == sorted(sizes.tolist(), reverse=True)  # ids by decreasing size
    for c in cl.clusters:
        assert 1 <= len(c.representatives) == min(c.size, 6) and len(set(c.representatives)) == len(c.representatives)
        assert all(a[r] == c.id for r in c.representatives)


# ------------------------------------------------------------------ pure functions


def test_default_k() -> None:
    assert [default_k(n) for n in (0, 1, 2, 3, 8, 48, 166, 20_000, 10**7)] == [0, 1, 2, 2, 2, 5, 9, 100, 200]


def test_tokenize_keeps_lower_case_letter_words_of_three_or_more() -> None:
    text = r"Fig. 3: The ResNet50 shows \textbf{Attention} maps (left) of x_t, 2D CNN-based Ω-Øresund"
    assert tokenize(text) == ["resnet", "attention", "maps", "cnn", "based", "øresund"]
    assert tokenize(None) == [] and tokenize("") == []
    assert {"figure", "shows", "fig", "textbf"} <= NOISE_WORDS and not tokenize("the and figure shows which")


def test_class_tfidf_is_bertopic_formula() -> None:
    counts = np.array([[4, 0, 1], [1, 2, 0]], dtype=float)
    got = class_tfidf(counts)
    assert sp.issparse(got)
    f = counts.sum(axis=0)  # frequency of each word over all clusters
    avg = counts.sum(axis=1).mean()  # average words per cluster
    want = counts / counts.sum(axis=1, keepdims=True) * np.log(1 + avg / f)
    np.testing.assert_allclose(got.toarray(), want)
    assert class_tfidf(np.zeros((2, 3))).nnz == 0


def test_ctfidf_labels_are_the_distinctive_words_of_a_hand_made_corpus() -> None:
    texts = [
        "Spiral galaxy rotation curve model",
        "Spiral galaxy rotation luminosity model",
        "Spiral galaxy redshift model",
        "Neuron spike cortex model",
        "Neuron spike cortex firing model",
        "Neuron raster model",
        None,
        "",
    ]
    assignment = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    labels = cluster_label_words(texts, assignment, 3)
    # ties (galaxy/spiral, cortex/spike) in alphabetical order
    assert labels == [("galaxy", "spiral", "rotation"), ("neuron", "cortex", "spike"), ()]
    # "model" is as frequent in each cluster as "galaxy" or "neuron" but occurs in both: below
    # every word used twice or more in one cluster only
    for c in (0, 1):
        words = Counter(w for t, a in zip(texts, assignment) if a == c for w in tokenize(t))
        rest = Counter(w for t, a in zip(texts, assignment) if a != c for w in tokenize(t))
        assert words["model"] == 3 and "model" not in labels[c]
        for w in labels[c]:
            assert words[w] / sum(words.values()) > rest[w] / max(1, sum(rest.values()))
    assert cluster_label_words(["the of", None], np.array([0, 1]), 2) == [(), ()]  # only stop words


# ------------------------------------------------------------------ clustering a collection


def test_clustering_is_a_deterministic_partition(tiny: Collection) -> None:
    a = cluster_collection(tiny, "raw", seed=0)
    b = cluster_collection(tiny, "raw", seed=0)
    _check_partition(a, N)
    assert a.k == default_k(N) and a.embedding == "raw"
    assert np.array_equal(a.assignment, b.assignment) and a.clusters == b.clusters
    assert tiny.clustering("raw") is tiny.clustering() is tiny.clustering("raw")  # cached per embedding
    assert np.array_equal(tiny.clustering("raw").assignment, a.assignment)
    json.dumps(a.to_dict())  # JSON-able for the API


def test_k_can_be_set(tiny: Collection) -> None:
    cl = cluster_collection(tiny, "raw", k=3)
    _check_partition(cl, N)
    assert cl.k <= 3
    assert cluster_collection(tiny, "raw", k=10_000).k <= N
    with pytest.raises(ValueError):
        cluster_collection(tiny, "raw", k=0)
    with pytest.raises(KeyError):
        cluster_collection(tiny, "nope")


def test_labels_come_from_the_cluster_titles(tiny: Collection) -> None:
    assert label_fields(tiny.schema) == ("title",)
    cl = tiny.clustering("raw")
    titles = _titles(tiny)
    for c in cl.clusters:
        rows = cl.rows(c.id)
        inside = Counter(w for r in rows for w in tokenize(titles[r]))
        outside = Counter(w for r in range(N) if cl.assignment[r] != c.id for w in tokenize(titles[r]))
        assert 1 <= len(c.label_words) <= 3 and set(c.label_words) <= set(inside)
        top = c.label_words[0]  # the best word is relatively more frequent here than elsewhere
        assert inside[top] / len(rows) > outside[top] / max(1, N - len(rows))
        assert top in {"red", "green", "blue", "ochre"}  # the colour words, not "study" (in every title)


def test_collection_without_text_gets_empty_labels(textless: Collection) -> None:
    assert label_fields(textless.schema) == ()
    cl = textless.clustering("raw")
    _check_partition(cl, len(textless))
    assert all(c.label_words == () for c in cl.clusters) and cl.clusters[0].label == "cluster 0"
    assert textless.count({"cluster": {"embedding": "raw", "id": 0}}) == cl.clusters[0].size


# ------------------------------------------------------------------ the cluster filter


def test_filter_gives_exactly_the_assigned_rows(tiny: Collection) -> None:
    cl = tiny.clustering("raw")
    for c in cl.clusters:
        where = {"cluster": {"embedding": "raw", "id": c.id}}
        assert tiny.count(where) == c.size
        assert np.array_equal(np.flatnonzero(tiny.allowed(where)), cl.rows(c.id))
        hits = tiny.neighbors(int(cl.rows(c.id)[0]), embedding="raw", k=10, where=where)
        assert len(hits) == min(10, c.size) and all(cl.assignment[h.id] == c.id for h in hits)
        sample = tiny.random(n=100, where=where, seed=3)
        assert sorted(h.id for h in sample) == cl.rows(c.id).tolist()
    both = {"cluster": {"embedding": "raw", "id": [1, 0]}}
    assert tiny.count(both) == cl.clusters[0].size + cl.clusters[1].size
    assert set(h.id for h in tiny.neighbors(0, embedding="raw", k=N, where=both)) == set(cl.rows(0)) | set(cl.rows(1))
    assert tiny.count({"not": {"cluster": {"embedding": "raw", "id": 0}}}) == N - cl.clusters[0].size
    # combined with metadata (SQL) and keyword (full-text) leaves by mask algebra
    mixed = {"cluster": {"embedding": "raw", "id": 0}, "century": {"gte": 17}, "keyword": "study"}
    want = np.flatnonzero((cl.assignment == 0) & (tiny.allowed({"century": {"gte": 17}})))
    assert np.array_equal(np.flatnonzero(tiny.allowed(mixed)), want)
    # distinct filters, distinct cache keys
    keys = {tiny.select(w).key for w in ({"cluster": {"embedding": "raw", "id": 0}}, {"cluster": {"embedding": "raw", "id": 1}}, both, {"or": [{"cluster": {"embedding": "raw", "id": 0}}]})}
    assert len(keys) == 4


def test_filter_json_round_trip() -> None:
    f = parse_filter('{"cluster": {"embedding": "imagenet", "id": 12}}')
    assert f == InCluster("imagenet", (12,)) and f.to_dict() == {"op": "cluster", "embedding": "imagenet", "id": 12}
    g = from_dict({"cluster": {"embedding": "imagenet", "id": [7, 2, 7]}})
    assert g == InCluster("imagenet", (2, 7)) and g.to_dict()["id"] == [2, 7]
    for node in (f, g, And((g, Eq("year", 2023))), Not(f)):
        assert from_dict(node.to_dict()) == node and from_dict(json.loads(node.to_json())) == node
    assert f.matches({"cluster:imagenet": 12}) and not f.matches({"cluster:imagenet": 3}) and not f.matches({"title": "x"})
    with pytest.raises(FilterError, match="no SQL form"):
        from imagemesh.core.schema import FieldKind, MetadataSchema

        to_lance_predicate(f, MetadataSchema({"year": FieldKind.INT}))


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ({"cluster": {"embedding": "imagenet", "id": 0}}, "unknown embedding 'imagenet'"),
        ({"cluster": {"embedding": "raw", "id": 999}}, "no cluster 999"),
        ({"or": [{"century": 16}, {"cluster": {"embedding": "raw", "id": [0, 999]}}]}, "no cluster 999"),
        ({"not": {"cluster": {"embedding": "raw", "id": [0, 999]}}}, "no cluster 999"),
        ({"cluster": {"embedding": "raw", "id": -1}}, "non-negative"),
        ({"cluster": {"embedding": "raw", "id": 1.5}}, "non-negative"),
        ({"cluster": {"embedding": "raw", "id": True}}, "non-negative"),
        ({"cluster": {"embedding": "raw", "id": "3"}}, "non-negative"),
        ({"cluster": {"embedding": "raw", "id": []}}, "non-empty"),
        ({"cluster": {"embedding": "raw"}}, "missing 'id'"),
        ({"cluster": {"id": 1}}, "missing 'embedding'"),
        ({"cluster": {"embedding": "", "id": 1}}, "embedding"),
        ({"cluster": {"embedding": 5, "id": 1}}, "expected a string"),
        ({"cluster": {"embedding": "raw", "id": 1, "k": 3}}, r"unknown keys \[.k.\]"),
        ({"cluster": 3}, "unknown field 'cluster'"),
        ({"op": "cluster", "embedding": "raw"}, "missing 'id'"),
    ],
)
def test_bad_cluster_filters_raise_filter_error(tiny: Collection, where: dict, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        tiny.count(where)


def test_filter_json_schema_describes_cluster(tiny: Collection) -> None:
    import jsonschema

    doc = filter_json_schema(tiny.schema, embeddings=tiny.embeddings)
    prop = doc["$defs"]["filter"]["properties"]["cluster"]
    assert prop["properties"]["embedding"]["enum"] == ["raw"] and prop["required"] == ["embedding", "id"]
    ok = [{"cluster": {"embedding": "raw", "id": 3}}, {"cluster": {"embedding": "raw", "id": [1, 2]}}, {"not": {"cluster": {"embedding": "raw", "id": 0}}, "century": 16}]
    bad = [{"cluster": {"embedding": "imagenet", "id": 3}}, {"cluster": {"embedding": "raw", "id": -1}}, {"cluster": {"embedding": "raw", "id": []}}, {"cluster": {"embedding": "raw"}}, {"cluster": 3}]
    for x in ok:
        jsonschema.validate(x, doc)
        from_dict(x)
    for x in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(x, doc)
    assert filter_json_schema(tiny.schema)["$defs"]["filter"]["properties"]["cluster"]["properties"]["embedding"]["type"] == "string"


def test_api_and_cli_accept_the_filter(tiny: Collection) -> None:
    import httpx

    from imagemesh.cli import cli
    from imagemesh.web.app import create_app
    from imagemesh.web.settings import WebSettings

    cl = tiny.clustering("raw")
    app = create_app(open_collection(tiny.root), WebSettings(isolate_uploads=False))

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1") as c:
            return [
                await c.get("/api/random", params={"filter": json.dumps({"cluster": {"embedding": "raw", "id": 1}}), "n": 100}),
                await c.get("/api/random", params={"filter": json.dumps({"cluster": {"embedding": "raw", "id": 99}})}),
                await c.get("/api/neighbors", params={"id": "0", "filter": json.dumps({"cluster": {"embedding": "nope", "id": 0}})}),
            ]

    good, out_of_range, unknown = asyncio.run(go())
    assert good.status_code == 200 and sorted(h["id"] for h in good.json()["results"]) == cl.rows(1).tolist()
    assert out_of_range.status_code == 400 and "no cluster 99" in out_of_range.json()["error"]
    assert unknown.status_code == 400 and "unknown embedding 'nope'" in unknown.json()["error"]
    r = CliRunner().invoke(cli, ["random", str(tiny.root), "--where", '{"cluster": {"embedding": "raw", "id": 99}}'])
    assert r.exit_code != 0 and "no cluster 99" in r.output and "Traceback" not in r.output


# ------------------------------------------------------------------ the real arXiv figures (slow)


@pytest.mark.parametrize("embedding", ["imagenet", "raw"])
def test_real_figures(real_collection: Collection, embedding: str) -> None:
    c = real_collection
    n = len(c)
    t0 = time.perf_counter()
    cl = cluster_collection(c, embedding)
    elapsed = time.perf_counter() - t0
    print(f"cluster_collection({embedding!r}) on {n} figures: k={cl.k}, {elapsed * 1000:.0f} ms")
    assert elapsed < 10
    _check_partition(cl, n)
    assert cl.k == default_k(n)
    again = cluster_collection(c, embedding)
    assert np.array_equal(cl.assignment, again.assignment) and cl.clusters == again.clusters
    assert label_fields(c.schema) == tuple(f for f in ("caption", "subcaption", "title") if f in c.schema.fields)
    t = c.columns(list(label_fields(c.schema))).sort_by("row_id")
    words = [[w for f in label_fields(c.schema) for w in tokenize(t[f][r].as_py())] for r in range(n)]
    labelled = 0
    for k in cl.clusters:
        rows = cl.rows(k.id)
        inside = Counter(w for r in rows for w in words[r])
        assert set(k.label_words) <= set(inside) and not set(k.label_words) & NOISE_WORDS
        labelled += bool(k.label_words)
        where = {"cluster": {"embedding": embedding, "id": k.id}}
        assert c.count(where) == k.size
        hits = c.neighbors(int(k.representatives[0]), embedding=embedding, k=20, where=where)
        assert hits[0].id == k.representatives[0] and all(cl.assignment[h.id] == k.id for h in hits)
    assert labelled == cl.k
    assert np.array_equal(c.clustering(embedding).assignment, cl.assignment)
