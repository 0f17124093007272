"""Nothing is written outside the collection: a build with an ONNX embedding, a query and a
served upload, in processes whose HOME, XDG folders and TMPDIR are empty throwaway folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from imagemesh.testing import make_image_folder


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_build_query_and_upload_write_nothing_outside_the_collection(tmp_path: Path) -> None:
    src = make_image_folder(tmp_path / "src", n=8)
    out = tmp_path / "coll"
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "ORT_", "IMAGEMESH_"))}
    env.update(HOME=str(home), TMPDIR=str(tmp), XDG_CACHE_HOME=str(home / ".cache"), XDG_DATA_HOME=str(home / ".local/share"), XDG_CONFIG_HOME=str(home / ".config"))
    run = lambda *args: subprocess.run([sys.executable, "-m", "imagemesh.cli", *args], env=env, capture_output=True, text=True, timeout=600)  # noqa: E731
    r = run("build", str(src), "--out", str(out), "--embeddings", "raw,ternary", "--backend", "exact", "--pca-dim", "4", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run("neighbors", str(out), "0", "-e", "ternary", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    upload = (src / "images" / "img-0001.png").read_bytes()
    code = (
        "import asyncio, httpx, sys\n"
        "from imagemesh.query.collection import open_collection\n"
        "from imagemesh.web.app import create_app\n"
        "app = create_app(open_collection(sys.argv[1]))\n"
        "async def go():\n"
        "    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url='http://127.0.0.1') as c:\n"
        "        r = await c.post('/api/query', data={'embedding': 'ternary', 'k': '3'}, files={'positive_image': ('u.png', open(sys.argv[2], 'rb').read(), 'image/png')})\n"
        "        assert r.status_code == 200, r.text\n"
        "    for d in app.state.upload_decoders: d.close()\n"
        "asyncio.run(go())\n"
    )
    (tmp_path / "up.png").write_bytes(upload)
    r = subprocess.run([sys.executable, "-c", code, str(out), str(tmp_path / "up.png")], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _files(home) == []
    assert _files(tmp) == []
