"""The command line on a real collection (click's runner, in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from imagemesh.cli import cli
from imagemesh.query.collection import Collection


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def test_neighbors_json_fields(runner, real_collection: Collection) -> None:
    r = runner.invoke(cli, ["neighbors", str(real_collection.root), "0", "-k", "7", "--embedding", "raw", "--json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)
    assert len(hits) == 7 and hits[0]["id"] == 0 and hits[0]["distance"] == 0
    for h in hits:
        assert {"id", "distance", "arxiv_id", "title", "caption", "year"} <= set(h)


def test_neighbors_by_arxiv_id_with_where(runner, real_collection: Collection) -> None:
    aid = real_collection.get(4)["arxiv_id"]
    where = '{"year": {"gte": 2023}}'
    r = runner.invoke(cli, ["neighbors", str(real_collection.root), aid, "--where", where, "--json", "-k", "500"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)
    assert len(hits) == real_collection.count(where) and all(h["year"] >= 2023 for h in hits)


def test_random_seeded(runner, real_collection: Collection) -> None:
    args = ["random", str(real_collection.root), "-n", "5", "--seed", "3", "--json", "--where", '{"keyword": "language"}']
    a, b = runner.invoke(cli, args), runner.invoke(cli, args)
    assert a.exit_code == 0 and json.loads(a.stdout) == json.loads(b.stdout)
    assert len({h["id"] for h in json.loads(a.stdout)}) == 5


@pytest.mark.parametrize(
    "args,msg",
    [
        (["neighbors", "{c}", "0", "--where", "{bad"], "not valid JSON"),
        (["neighbors", "{c}", "0", "--where", '{"nope": 1}'], "unknown field"),
        (["neighbors", "{c}", "no-such-image"], "no image"),
        (["neighbors", "{c}", "0", "--embedding", "vgg99"], "unknown embedding"),
        (["random", "{c}", "--where", '{"year": {"gte": "x"}}'], "finite number"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(runner, real_collection: Collection, args, msg) -> None:
    r = runner.invoke(cli, [a.replace("{c}", str(real_collection.root)) for a in args])
    assert r.exit_code == 2
    assert msg in r.stderr and "Traceback" not in r.output


def test_not_a_collection(runner, tmp_path: Path) -> None:
    r = runner.invoke(cli, ["random", str(tmp_path)])
    assert r.exit_code == 1 and "not an imagemesh collection" in r.stderr


def test_build_then_info(runner, tmp_path: Path, small_source: Path) -> None:
    out = tmp_path / "c"
    r = runner.invoke(cli, ["build", str(small_source), "--out", str(out), "--embeddings", "raw", "--backend", "annoy", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "24 indexed (24 new) of 24" in r.stdout
    info = json.loads(runner.invoke(cli, ["info", str(out), "--json"]).stdout)
    human = runner.invoke(cli, ["info", str(out)]).stdout
    assert "24 images" in human and "embedding raw" in human
    assert info["n_images"] == 24 and info["embeddings"][0]["backend"] == "annoy"
    r = runner.invoke(cli, ["build", str(small_source), "--out", str(out), "--backend", "nope", "--quiet"])
    assert r.exit_code == 2 and "unknown index backend" in r.stderr


def test_serve_on_a_busy_port_fails_clearly(runner, real_collection: Collection) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        r = runner.invoke(cli, ["serve", str(real_collection.root), "--port", str(port)])
        assert r.exit_code == 1 and "cannot listen on 127.0.0.1:" in r.output and "--port" in r.output, r.output
        r = runner.invoke(cli, ["demo", "--port", str(port)])  # checked before any build
        assert r.exit_code == 1 and "cannot listen" in r.output, r.output


def test_open_expands_the_home_folder(real_collection: Collection, tmp_path: Path, monkeypatch) -> None:
    import imagemesh

    (tmp_path / "coll").symlink_to(real_collection.root)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert len(imagemesh.open("~/coll")) == len(real_collection)


def test_runtime_failures_exit_1_without_traceback(runner, tmp_path: Path, small_source: Path) -> None:
    # --out under a file: the folder cannot be created (an OSError, as on a read-only disk)
    r = runner.invoke(cli, ["build", str(small_source), "--out", str(small_source / "figures.csv" / "c"), "--embeddings", "raw", "--quiet"])
    assert r.exit_code == 1 and "Traceback" not in r.output and r.stderr.startswith("error:"), r.output
    r = runner.invoke(cli, ["random", str(small_source), "--seed", "-5"])
    assert r.exit_code == 2 and "--seed" in r.output
    r = runner.invoke(cli, ["neighbors", str(small_source), "0", "-k", "501"])
    assert r.exit_code == 2 and "-k" in r.output
