"""Privacy and defaults of `imagemesh serve`, checked on a real server process on loopback:
binds 127.0.0.1 by default, read-only, caps request sizes and times, logs neither query
content nor client addresses, and writes nothing (collection folder, temp folder) when
images are uploaded for a query."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from imagemesh.query.collection import Collection
from imagemesh.web.serve import RequestCaps

from .conftest import FIGURES

TOKEN = "zq7secretquery"


def _tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> list[str]:
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            parts = ln.split()
            addr, p = parts[1].split(":")
            if int(p, 16) == port and parts[3] == "0A":  # LISTEN
                out.append(addr)
    return out


@pytest.fixture(scope="module")
def server(real_collection: Collection, tmp_path_factory: pytest.TempPathFactory):
    """`imagemesh serve` with default options (no --host), its own empty TMPDIR."""
    tmp = tmp_path_factory.mktemp("server-tmp")
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "imagemesh.cli", "serve", str(real_collection.root), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 180:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
        if proc.poll() is not None:
            pytest.fail(proc.stdout.read().decode() if proc.stdout else "server exited")
    state = {"proc": proc, "port": port, "tmp": tmp, "base": f"http://127.0.0.1:{port}"}
    yield state
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=30)


def _server_output(server: dict) -> str:
    proc = server["proc"]
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return (out or b"").decode(errors="replace")


def _png(path: Path) -> bytes:
    with Image.open(path) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "PNG")
        return buf.getvalue()


def test_binds_loopback_only_by_default(server: dict) -> None:
    addrs = _listening_addresses(server["port"])
    assert addrs and all(a in ("0100007F", "00000000000000000000000001000000") for a in addrs), addrs


def test_read_only_methods(server: dict) -> None:
    base = server["base"]
    for method in ("PUT", "DELETE", "PATCH"):
        for path in ("/api/info", "/api/images/0", "/api/query", "/"):
            assert httpx.request(method, base + path).status_code == 405
    assert httpx.post(base + "/api/info").status_code == 405


def test_request_caps(server: dict) -> None:
    base = server["base"]
    # body above the cap: refused from Content-Length, before the body is read
    r = httpx.post(base + "/api/query", content=b"x" * (18 * 1024 * 1024), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413
    # an oversized header block is refused by the HTTP parser
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=10) as s:
        s.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
        reply = s.recv(100)
    assert not reply.startswith(b"HTTP/1.1 200")
    # huge query parameters are 4xx, not 500
    assert 400 <= httpx.get(base + "/api/random?filter=" + quote(json.dumps({"keyword": "a" * 20000}))).status_code < 500


def test_request_time_cap() -> None:
    async def slow(scope, receive, send):
        await asyncio.sleep(5)

    async def call() -> int:
        app = RequestCaps(slow, timeout_s=0.2)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            t = time.monotonic()
            r = await c.get("/")
            assert time.monotonic() - t < 2
            return r.status_code

    assert asyncio.run(call()) == 503


def test_uploads_and_queries_leave_no_trace(server: dict, real_collection: Collection) -> None:
    base = server["base"]
    root = Path(real_collection.root)
    before_coll = _tree_state(root)
    before_tmp = sorted(p.name for p in server["tmp"].iterdir())
    pngs = [_png(p) for p in sorted((FIGURES / "images").glob("*.png"))[:3]]
    big = io.BytesIO()
    Image.frombytes("RGB", (900, 700), os.urandom(900 * 700 * 3)).save(big, "PNG")  # noise: > 1 MiB, Starlette would spool it to disk
    assert len(big.getvalue()) > 1024 * 1024
    n_ok = 0
    for i, data in enumerate([*pngs, big.getvalue()]):
        files = [("positive_image", (f"{TOKEN}-{i}.png", data, "image/png"))]
        r = httpx.post(base + "/api/query", data={"embedding": "raw", "k": "5", "filter": json.dumps({"keyword": TOKEN})}, files=files, timeout=120)
        assert r.status_code in (200, 400), r.text[:300]
        n_ok += r.status_code == 200
        r = httpx.post(base + "/api/query", data={"embedding": "raw", "k": "5"}, files=files, timeout=120)
        assert r.status_code == 200, r.text[:300]
        n_ok += 1
    assert n_ok >= 4
    for q in (f"/api/random?filter={quote(json.dumps({'title': {'contains': TOKEN}}))}", f"/api/neighbors?id={TOKEN}", f"/api/facets?filter={TOKEN}"):
        assert httpx.get(base + q).status_code < 500
    assert _tree_state(root) == before_coll
    assert sorted(p.name for p in server["tmp"].iterdir()) == before_tmp == []


def test_logs_hold_no_query_content_or_client_address(server: dict) -> None:
    base = server["base"]
    httpx.get(base + f"/api/neighbors?id=1&filter={quote(json.dumps({'keyword': TOKEN}))}")
    httpx.get(base + f"/api/random?filter=%7B{TOKEN}")
    httpx.get(base + f"/no/such/{TOKEN}")
    with socket.create_connection(("127.0.0.1", server["port"])) as s:  # malformed HTTP
        s.sendall(f"GARBAGE {TOKEN} \r\n\r\n".encode())
        s.recv(100)
    with httpx.Client() as c:
        local_ports = {c.get(base + "/api/info").status_code}
    out = _server_output(server)
    assert TOKEN not in out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    # the only line naming an address is the startup line with the server's own bind address
    assert all("127.0.0.1" not in ln or f"127.0.0.1:{server['port']}/" in ln for ln in lines), lines
    assert local_ports == {200}
