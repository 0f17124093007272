"""`imagemesh serve --workers 2` on loopback: a new collection version is picked up by every
worker without a failed request, and a SIGKILLed worker is replaced while the other keeps
answering."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from imagemesh.ingest.build import BuildOptions, build_collection
from imagemesh.store.writer import republish as bump_version

from .conftest import make_subset


def _children(pid: int) -> list[int]:
    """Worker processes of the uvicorn supervisor ``pid`` (not multiprocessing's resource tracker)."""
    out = []
    try:
        kids = [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    for k in kids:
        try:
            cmd = Path(f"/proc/{k}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            out.append(k)
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("serve")
    root = base / "coll"
    build_collection(make_subset(base / "src", 12), root, BuildOptions(backend="faiss", embeddings=["raw"], pca_dim=8, progress=False))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "imagemesh.cli", "serve", str(root), "--port", str(port), "--workers", "2", "--reload-interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 180:
        try:
            if httpx.get(url + "/api/info", timeout=2).status_code == 200 and len(_children(proc.pid)) >= 2:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            pytest.fail(proc.stdout.read().decode() if proc.stdout else "server exited")
        time.sleep(0.3)
    yield {"root": root, "url": url, "proc": proc}
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=30)


class Load:
    """Requests on fresh connections (so both workers get them) until stopped."""

    def __init__(self, url: str) -> None:
        self.url, self.ok, self.errors, self.builds = url, 0, [], []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            path = ("/api/info", f"/api/neighbors?id={i % 12}&k=5", f"/api/images/{i % 12}/thumbnail", "/api/facets")[i % 4]
            try:
                r = httpx.get(self.url + path, timeout=30)
                if r.status_code != 200:
                    self.errors.append(f"{path}: {r.status_code}")
                else:
                    self.ok += 1
                    if path == "/api/info":
                        self.builds.append(r.json()["build_id"])
            except httpx.HTTPError as e:
                self.errors.append(f"{path}: {type(e).__name__}")

    def __enter__(self) -> "Load":
        self._t.start()
        return self

    def __exit__(self, *a) -> None:
        self._stop.set()
        self._t.join(timeout=60)


def test_new_version_is_served_without_failed_requests(served: dict) -> None:
    with Load(served["url"]) as load:
        time.sleep(1.0)
        new = bump_version(served["root"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and load.builds[-6:].count(new) < 6:
            time.sleep(0.2)
    assert load.errors == []
    assert load.builds[-6:] == [new] * 6, load.builds[-10:]
    assert load.ok > 10


def test_killed_worker_is_replaced(served: dict) -> None:
    proc = served["proc"]
    workers = _children(proc.pid)
    assert len(workers) >= 2
    with Load(served["url"]) as load:
        time.sleep(0.5)
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = _children(proc.pid)
            if len(now) >= 2 and workers[0] not in now:
                break
            time.sleep(0.3)
        ok_at_kill = load.ok
        time.sleep(2.0)
    now = _children(proc.pid)
    assert workers[0] not in now and len(now) >= 2, (workers, now)
    assert load.ok > ok_at_kill, (load.ok, ok_at_kill, load.errors)  # kept answering
    # only requests in flight on the killed worker can fail
    assert len(load.errors) <= 2, load.errors
