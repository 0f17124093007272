"""Concepts: training a class-balanced logistic regression from labelled rows, and
``imagemesh concept save`` publishing it as facet + score columns in a new version."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

import imagemesh.query.concepts as concepts
from imagemesh.cli import cli
from imagemesh.query.collection import Collection, open_collection
from imagemesh.query.concepts import ConceptError, ConceptNameError, parse_labels, save_concept, train_concept
from imagemesh.store.integrity import verify
from imagemesh.store.manifest import Manifest
from imagemesh.store.writer import VersionWriter
from imagemesh.testing import build_tiny_collection

N = 48
#: Image i of the tiny collection has the background of colour i % 4; 2 = blue ("Study i in blue").
BLUE = [i for i in range(N) if i % 4 == 2]
TRAIN = range(40)  # labelled rows; 40..47 are held out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_collection(tmp_path_factory.mktemp("concepts"), n=N)


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> Collection:
    return open_collection(tiny_dir)


@pytest.fixture
def coll(tiny_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny collection, for tests that write to it."""
    return Path(shutil.copytree(tiny_dir, tmp_path / "coll"))


def _blue_labels() -> tuple[list[int], list[int]]:
    return [i for i in TRAIN if i % 4 == 2], [i for i in TRAIN if i % 4 != 2]


def _labels_csv(path: Path, keys: list[str]) -> Path:
    """A labels file for the blue concept over TRAIN: header, image keys and row ids mixed,
    pos/neg and 1/0 mixed."""
    lines = ["id,label"]
    for i in TRAIN:
        ident = keys[i] if i % 2 else str(i)
        label = ("pos" if i % 4 == 2 else "neg") if i % 3 else ("1" if i % 4 == 2 else "0")
        lines.append(f"{ident},{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- training


def test_learnable_concept_is_learned(tiny: Collection) -> None:
    pos, neg = _blue_labels()
    c = train_concept(tiny, "raw", pos, neg)
    assert (c.embedding, c.n_pos, c.n_neg, c.cv_folds) == ("raw", 10, 30, 5)
    assert c.cv_score is not None and c.cv_score >= 0.9
    assert c.coef.dtype == np.float32 and c.coef.shape == (tiny.vectors("raw").shape[1],)
    s = c.scores(tiny.vectors("raw"))
    assert s.dtype == np.float32 and s.shape == (N,) and ((s >= 0) & (s <= 1)).all()
    held = np.arange(40, N)
    held_pos, held_neg = held[held % 4 == 2], held[held % 4 != 2]
    assert s[held_pos].min() > s[held_neg].max()
    assert (s[held_pos] >= 0.5).all() and (s[held_neg] < 0.5).all()
    assert c.to_dict()["cv_metric"] == "balanced_accuracy"


def test_training_is_deterministic_and_concept_frozen(tiny: Collection) -> None:
    pos, neg = _blue_labels()
    a = train_concept(tiny, None, pos, neg, seed=3)
    b = train_concept(tiny, None, list(reversed(pos)) + pos[:2], neg, seed=3)  # order and duplicates do not matter
    assert a.cv_score == b.cv_score and a.intercept == b.intercept and a.n_pos == b.n_pos
    np.testing.assert_array_equal(a.coef, b.coef)
    np.testing.assert_array_equal(a.scores(tiny.vectors()), b.scores(tiny.vectors()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.cv_score = 1.0  # type: ignore[misc]


def test_no_cv_score_when_a_class_has_one_example(tiny: Collection) -> None:
    c = train_concept(tiny, "raw", [2], [0, 1, 3, 4, 5])
    assert c.cv_score is None and c.cv_folds == 0 and (c.n_pos, c.n_neg) == (1, 5)
    s = c.scores(tiny.vectors("raw"))
    assert s.shape == (N,) and s[2] > s[[0, 1, 3, 4, 5]].max()


@pytest.mark.parametrize("pos, neg, message", [
    ([], [1, 2], "at least one positive and one negative"),
    ([1, 2], [], "at least one positive and one negative"),
    ([1, N], [2], "out of range"),
    ([-1], [2], "out of range"),
    ([1, 2, 3], [3, 4], "both positive and negative: 3"),
    ([True], [2], "integers"),
    (["2"], [3], "integers"),
    ([1.5], [3], "integers"),
])
def test_bad_labels_are_refused(tiny: Collection, pos: list, neg: list, message: str) -> None:
    with pytest.raises(ValueError, match=message) as e:
        train_concept(tiny, "raw", pos, neg)
    assert isinstance(e.value, ConceptError)


def test_too_many_labels_and_unknown_embedding(tiny: Collection, monkeypatch: pytest.MonkeyPatch) -> None:
    assert concepts.MAX_LABELS == 2000
    monkeypatch.setattr(concepts, "MAX_LABELS", 10)
    with pytest.raises(ConceptError, match="at most 10"):
        train_concept(tiny, "raw", list(range(6)), list(range(6, 12)))
    with pytest.raises(KeyError, match="unknown embedding"):
        train_concept(tiny, "nope", [1], [2])


def test_scores_check_the_dimension(tiny: Collection) -> None:
    c = train_concept(tiny, "raw", [2, 6], [0, 1])
    with pytest.raises(ValueError, match="16-d"):
        c.scores(np.zeros((3, 5), np.float32))


def test_train_and_score_100k_rows_well_under_a_second() -> None:
    rng = np.random.default_rng(0)
    n, d = 100_000, 64
    v = rng.standard_normal((n, d)).astype(np.float32)
    truth = v @ rng.standard_normal(d).astype(np.float32) > 0

    class Stub:  # what train_concept reads of a collection
        def __len__(self) -> int:
            return n

        def state(self, embedding: str | None) -> SimpleNamespace:
            return SimpleNamespace(name="synthetic", dim=d, vectors=v)

    coll = Stub()
    pos = rng.choice(np.flatnonzero(truth), 1000, replace=False).tolist()
    neg = rng.choice(np.flatnonzero(~truth), 1000, replace=False).tolist()
    train_concept(coll, None, pos[:5], neg[:5])  # type: ignore[arg-type]  # imports scikit-learn
    t = time.perf_counter()
    c = train_concept(coll, None, pos, neg)  # type: ignore[arg-type]
    s = c.scores(v)
    took = time.perf_counter() - t
    assert took < 1.0, f"train + 5-fold CV on 2,000 labels + scoring 100k rows took {took:.2f} s"
    assert c.cv_score is not None and c.cv_score > 0.9 and ((s >= 0.5) == truth).mean() > 0.9


def test_parse_labels() -> None:
    text = "id,label\n\n# a comment\n3,pos\n2306.01841v1/fig1,NEG\n 5 , 1 \n7,0,extra\n8,yes\n9,False\n"
    assert parse_labels(text) == [("3", True), ("2306.01841v1/fig1", False), ("5", True), ("7", False), ("8", True), ("9", False)]
    with pytest.raises(ConceptError, match="line 2: label 'maybe'"):
        parse_labels("1,pos\n2,maybe\n")
    with pytest.raises(ConceptError, match="line 1: expected 'id,label'"):
        parse_labels("12\n")
    with pytest.raises(ConceptError, match="no labels"):
        parse_labels("id,label\n")


# ---------------------------------------------------------------- concept save


def _yes_rows(c: Collection, name: str) -> set[int]:
    return set(np.flatnonzero(c.allowed({name: "yes"})).tolist())


def test_concept_save_adds_columns_in_a_new_version(coll: Path, tmp_path: Path) -> None:
    old = open_collection(coll)
    old_build = old.manifest.build_id
    old_neighbours = [h.id for h in old.neighbors(5, k=5)]
    labels = _labels_csv(tmp_path / "labels.csv", old.image_keys())
    r = CliRunner().invoke(cli, ["concept", "save", str(coll), "--name", "blue", "--labels", str(labels), "--threshold", "0.6", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["previous_build_id"] == old_build and out["build_id"] != old_build
    assert (out["n_pos"], out["n_neg"], out["cv_folds"], out["threshold"], out["embedding"]) == (10, 30, 5, 0.6, "raw")
    assert out["cv_score"] >= 0.9

    m = Manifest.read(coll)
    assert m.build_id == out["build_id"]
    assert m.source["concepts"]["blue"]["n_pos"] == 10
    assert verify(coll, models=False).ok

    new = open_collection(coll)
    assert new.schema.fields["blue"].value == "text" and new.schema.fields["blue_score"].value == "float"
    assert "blue" in new.schema.facet_fields and "blue_score" in new.schema.range_fields
    t = new.columns(["blue", "blue_score"]).sort_by("row_id")
    scores = np.array(t["blue_score"].to_pylist())
    assert _yes_rows(new, "blue") == set(np.flatnonzero(scores >= 0.6).tolist()) == set(BLUE)
    assert out["n_yes"] == len(BLUE)
    assert new.count({"blue_score": {"gte": 0.6}}) == len(BLUE)
    assert {f["value"]: f["count"] for f in new.facets()["blue"]} == {"yes": len(BLUE), "no": N - len(BLUE)}
    hit = new.neighbors(2, k=1)[0]
    assert hit.metadata["blue"] == "yes" and hit.metadata["blue_score"] >= 0.6
    # the rest is as it was: rows, other fields, vectors, the full-text index
    assert new.has_fts and new.count({"keyword": "blue"}) == old.count({"keyword": "blue"}) == len(BLUE)
    assert new.get(7)["title"] == old.get(7)["title"]
    np.testing.assert_array_equal(new.vectors("raw"), old.vectors("raw"))

    # a reader opened before the save keeps answering from the old version
    assert old.manifest.build_id == old_build and "blue" not in old.schema.fields
    assert [h.id for h in old.neighbors(5, k=5)] == old_neighbours
    assert old.count({"museum": "Prado"}) == N // 4 and "blue" not in old.get(3)
    assert old.count({"keyword": "blue"}) == len(BLUE) and old.facets()["museum"]
    old.check_table_files()


def test_concept_save_refuses_a_name_that_clashes(coll: Path, tmp_path: Path) -> None:
    labels = _labels_csv(tmp_path / "labels.csv", open_collection(coll).image_keys())
    runner = CliRunner()
    assert runner.invoke(cli, ["concept", "save", str(coll), "--name", "blue", "--labels", str(labels)]).exit_code == 0
    before = (coll / "manifest.json").read_bytes()
    for name in ("blue", "museum", "title", "row_id", "image_key", "search_text", "predictions", "keyword", "1st", "a-b", ""):
        r = runner.invoke(cli, ["concept", "save", str(coll), "--name", name, "--labels", str(labels)])
        assert r.exit_code == 2, (name, r.output)
        assert r.stderr.startswith("error: concept name") and r.stderr.count("\n") == 1, r.stderr
        assert (coll / "manifest.json").read_bytes() == before
    # NAME_score must be free too
    save_concept(coll, "x_score", [(2, True), (0, False)])
    with pytest.raises(ConceptNameError, match="already has a field 'x_score'"):
        save_concept(coll, "x", [(2, True), (0, False)])


@pytest.mark.parametrize("content, message", [
    (b"id,label\n2,pos\n0,maybe\n", "line 3: label 'maybe'"),
    (b"id,label\n2,pos\nno-such-image,neg\n", "no image 'no-such-image'"),
    (b"id,label\n2,pos\n999,neg\n", "no image with row id 999"),
    (b"id,label\n2,pos\n6,pos\n", "at least one positive and one negative"),
    (b"id,label\n2,pos\n2,neg\n", "both positive and negative: 2"),
    (b"", "no labels"),
    (b"\xff\xfe\x00garbage\x00", "not a UTF-8 text file"),
])
def test_bad_labels_file_fails_with_one_line(coll: Path, tmp_path: Path, content: bytes, message: str) -> None:
    f = tmp_path / "labels.csv"
    f.write_bytes(content)
    before = (coll / "manifest.json").read_bytes()
    r = CliRunner().invoke(cli, ["concept", "save", str(coll), "--name", "blue", "--labels", str(f)])
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert "Traceback" not in r.output and r.stdout == ""
    assert (coll / "manifest.json").read_bytes() == before


def test_concept_save_usage_errors(coll: Path, tmp_path: Path) -> None:
    labels = _labels_csv(tmp_path / "labels.csv", open_collection(coll).image_keys())
    runner = CliRunner()
    r = runner.invoke(cli, ["concept", "save", str(coll), "--name", "blue", "--labels", str(labels), "--embedding", "nope"])
    assert r.exit_code == 2 and r.stderr == "error: unknown embedding 'nope'; this collection has: raw\n"
    r = runner.invoke(cli, ["concept", "save", str(coll), "--name", "blue", "--labels", str(labels), "--threshold", "1.5"])
    assert r.exit_code == 2
    r = runner.invoke(cli, ["concept", "save", str(tmp_path), "--name", "blue", "--labels", str(labels)])
    assert r.exit_code == 1 and r.stderr.startswith("error: ") and "no manifest.json" in r.stderr
    r = runner.invoke(cli, ["concept", "save", str(coll), "--name", "blue", "--labels", str(labels)])
    assert r.exit_code == 0 and "concept blue: 10 positive, 30 negative on raw; 5-fold CV balanced accuracy" in r.stdout


def test_crash_before_publish_leaves_the_collection_unchanged(coll: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = (coll / "manifest.json").read_bytes()
    pos, neg = _blue_labels()
    labels = [(i, True) for i in pos] + [(i, False) for i in neg]

    def crash(self: VersionWriter, *a: object, **k: object) -> None:
        raise RuntimeError("simulated crash before the manifest switch")

    with monkeypatch.context() as mp:
        mp.setattr(VersionWriter, "publish", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            save_concept(coll, "blue", labels)
    # the new table version was committed aside, but nothing points to it
    assert (coll / "manifest.json").read_bytes() == before
    assert verify(coll, models=False).ok
    c = open_collection(coll)
    assert "blue" not in c.schema.fields and "blue" not in c.table.schema.names and c.count({"keyword": "blue"}) == len(BLUE)
    # and the next save works from the published version
    saved = save_concept(coll, "blue", labels)
    assert saved.previous_build_id == c.manifest.build_id and verify(coll, models=False).ok
    assert _yes_rows(open_collection(coll), "blue") == set(BLUE)
    assert not [p for p in (coll / "builds").iterdir() if p.name.endswith(".partial")]


def test_columns_computed_from_another_version_are_not_published(coll: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagemesh.store import writer

    real = writer.publish_columns

    def racing(root: Path, *a: object, **k: object) -> object:
        writer.republish(root)  # another writer publishes meanwhile
        return real(root, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "publish_columns", racing)
    before = Manifest.read(coll).build_id
    with pytest.raises(ValueError, match="changed while"):
        save_concept(coll, "blue", [(2, True), (0, False)])
    assert Manifest.read(coll).build_id != before and verify(coll, models=False).ok


def test_publish_columns_checks_its_columns(coll: Path) -> None:
    import pyarrow as pa

    from imagemesh.store.writer import publish_columns

    m = Manifest.read(coll)
    before = (coll / "manifest.json").read_bytes()
    with pytest.raises(ValueError, match="has 3 values, the collection has 48"):
        publish_columns(coll, {"x": pa.array([1.0, 2.0, 3.0])}, m.schema)
    with pytest.raises(ValueError, match="already has a column 'museum'"):
        publish_columns(coll, {"museum": pa.array(["a"] * N)}, m.schema)
    assert (coll / "manifest.json").read_bytes() == before
    assert not [p for p in (coll / "builds").iterdir() if p.name.endswith(".partial")]
