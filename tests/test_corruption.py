"""Corruption matrix (fast lane): a damaged vectors, PCA or map file, or a damaged LanceDB file
of either table, is refused or answered with a clear error naming it -- never a silent wrong
answer, never a 500."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from imagemesh.cli import cli
from imagemesh.ingest.build import build_collection
from imagemesh.ingest.options import BuildOptions
from imagemesh.query.collection import open_collection
from imagemesh.store.reader import CollectionError
from imagemesh.testing import make_image_folder
from imagemesh.web.app import create_app
from imagemesh.web.settings import WebSettings


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corrupt")
    out = root / "coll"
    build_collection(make_image_folder(root / "src", n=16), out, BuildOptions(embeddings=["raw"], backend="annoy", pca_dim=4, progress=False, isolate_decoders=False))
    return out


def _copy(master: Path, tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "coll"
    shutil.copytree(master, out)
    m = json.loads((out / "manifest.json").read_text())
    return out, m


def _flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) - 8 if at is None else at
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _get(app: object, *paths: str) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1") as c:
            return [await c.get(p) for p in paths]

    return asyncio.run(go())


@pytest.mark.parametrize("damage", ["flip", "nan"])
def test_damaged_vectors_are_refused_on_open_and_by_verify(master: Path, tmp_path: Path, damage: str) -> None:
    out, m = _copy(master, tmp_path)
    vec = out / m["data_dir"] / m["embeddings"]["raw"]["vectors"]["file"]
    if damage == "flip":
        _flip(vec)
    else:
        x = np.load(vec)
        x[3] = np.nan
        with open(vec, "wb") as f:
            np.save(f, x)
    with pytest.raises(CollectionError, match="vectors"):
        open_collection(out)
    r = CliRunner().invoke(cli, ["verify", str(out), "--no-models"])
    assert r.exit_code == 1 and "vectors/raw.npy" in r.output, r.output


def test_damaged_pca_refuses_uploads_with_a_4xx(master: Path, tmp_path: Path) -> None:
    out, m = _copy(master, tmp_path)
    _flip(out / m["data_dir"] / m["embeddings"]["raw"]["pca"]["file"])
    c = open_collection(out)  # queries of stored images still work: PCA is not used by them
    assert len(c.neighbors(0, k=3)) == 3
    with pytest.raises(CollectionError, match="PCA"):
        c.query_embedder("raw")
    png = (out.parent / "up.png")
    shutil.copy(next((master.parent / "src" / "images").iterdir()), png)

    async def go() -> httpx.Response:
        app = create_app(c, WebSettings(isolate_uploads=False))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1") as cl:
            return await cl.post("/api/query", data={"k": "3"}, files={"positive_image": ("u.png", png.read_bytes(), "image/png")})

    r = asyncio.run(go())
    assert r.status_code == 409 and "PCA" in r.json()["error"], r.text


def test_damaged_map_is_a_503_naming_it_the_rest_answers(master: Path, tmp_path: Path) -> None:
    out, m = _copy(master, tmp_path)
    _flip(out / m["data_dir"] / m["embeddings"]["raw"]["map"]["file"])
    app = create_app(open_collection(out), WebSettings(isolate_uploads=False))
    bad, ok1, ok2 = _get(app, "/api/map", "/api/neighbors?id=0", "/api/random?n=3")
    assert bad.status_code == 503 and "map" in bad.json()["error"] and "imagemesh verify" in bad.json()["error"], bad.text
    assert ok1.status_code == 200 and ok2.status_code == 200


def test_non_finite_query_vector_is_a_value_error(master: Path) -> None:
    c = open_collection(master)
    q = np.full((1, c.state("raw").dim), np.nan, np.float32)
    with pytest.raises(ValueError, match="finite"):
        c.search_vectors(q, "raw", 3)


@pytest.mark.parametrize("table", ["images", "media"])
@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_truncated_or_deleted_table_file_is_refused_on_open(master: Path, tmp_path: Path, table: str, damage: str) -> None:
    out, m = _copy(master, tmp_path)
    f = sorted((out / "lance" / f"{table}.lance" / "data").glob("*.lance"))[0]
    if damage == "deleted":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CollectionError, match="imagemesh verify") as e:
        open_collection(out)
    assert f.name in str(e.value)
    r = CliRunner().invoke(cli, ["random", str(out), "-n", "3"])
    assert r.exit_code == 1 and "Traceback" not in r.output and "imagemesh verify" in r.output, r.output


def test_flipped_byte_in_the_metadata_table_is_refused_on_open(master: Path, tmp_path: Path) -> None:
    """Same size, one byte changed inside a Lance page: LanceDB may read it without an
    error, so only the sha256 recorded at publish tells; the collection is not opened."""
    out, m = _copy(master, tmp_path)
    f = sorted((out / "lance" / "images.lance" / "data").glob("*.lance"))[0]
    _flip(f, at=f.stat().st_size // 2)
    with pytest.raises(CollectionError, match="sha256") as e:
        open_collection(out)
    assert "metadata table" in str(e.value) and f.name in str(e.value) and "imagemesh verify" in str(e.value)
    r = CliRunner().invoke(cli, ["neighbors", str(out), "0"])
    assert r.exit_code == 1 and "Traceback" not in r.output and "imagemesh verify" in r.output, r.output


def test_flipped_byte_in_the_media_table_is_a_503_on_image_routes(master: Path, tmp_path: Path) -> None:
    """The media table (the bulk of a collection) is hashed in the background while the
    server answers; once the damage is found, image routes answer 503 naming the file and
    everything else still answers."""
    out, m = _copy(master, tmp_path)
    f = sorted((out / "lance" / "media.lance" / "data").glob("*.lance"))[0]
    _flip(f, at=f.stat().st_size // 2)
    app = create_app(open_collection(out), WebSettings(isolate_uploads=False, warm_uploads=False))
    assert app.state.imagemesh.media_checked.wait(60)
    thumb, image, ok1, ok2 = _get(app, "/api/images/0/thumbnail", "/api/images/1/image", "/api/neighbors?id=0", "/api/random?n=3")
    for r in (thumb, image):
        assert r.status_code == 503, r.text
        assert "media table" in r.json()["error"] and f.name in r.json()["error"] and "imagemesh verify" in r.json()["error"]
    assert ok1.status_code == 200 and ok2.status_code == 200, (ok1.text, ok2.text)
    # an intact copy serves images
    app2 = create_app(open_collection(master), WebSettings(isolate_uploads=False, warm_uploads=False))
    assert app2.state.imagemesh.media_checked.wait(60)
    assert _get(app2, "/api/images/0/thumbnail")[0].status_code == 200


def test_flipped_byte_in_a_table_data_file_is_found_by_verify(master: Path, tmp_path: Path) -> None:
    out, m = _copy(master, tmp_path)
    assert any(k.startswith("images.lance/data/") for k in m["table"]["files"])
    f = sorted((out / "lance" / "images.lance" / "data").glob("*.lance"))[0]
    _flip(f, at=f.stat().st_size // 2)  # LanceDB may read this without an error: only the checksum tells
    r = CliRunner().invoke(cli, ["verify", str(out), "--no-models"])
    assert r.exit_code == 1 and f.name in r.output and "sha256" in r.output, r.output
    assert CliRunner().invoke(cli, ["verify", str(master), "--no-models"]).exit_code == 0
