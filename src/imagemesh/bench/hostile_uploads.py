"""Do uploads starve queries? ``imagemesh bench load --hostile-uploads N``.

A real ``imagemesh serve`` process on loopback (default settings) serves the bundled demo
collection. One probe client sends ``/api/neighbors`` requests back to back, and we record
their latency in two kinds of window, interleaved ``rounds`` times (the machine is shared
and noisy, so both kinds are measured in the same run):

* **idle**: the probe alone;
* **hostile**: the probe while ``N`` clients loop ``POST /api/query`` with a 5 KB PNG that
  decodes to 6300 x 6300 pixels (just under the default 40 Mpx upload limit): the most
  decoding work per byte an upload may ask for.

Reported: median of the per-window p50 / p95 probe latencies of each kind, their ratio
(target: hostile p50 < 2x idle p50, issue 15), upload outcomes (200 / 503 with
``Retry-After`` / other), and the latency of the first upload after the server says
``uploads_ready`` (target < 1 s), for a pixel-heavy PNG and for an ordinary figure.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["HostileResult", "run", "to_markdown", "main"]

HOST = "127.0.0.1"


@dataclass
class HostileResult:
    """Figures of one run (latencies in seconds)."""

    clients: int
    rounds: int
    window_s: float
    idle_p50: list[float] = field(default_factory=list)
    idle_p95: list[float] = field(default_factory=list)
    hostile_p50: list[float] = field(default_factory=list)
    hostile_p95: list[float] = field(default_factory=list)
    probe_errors: int = 0
    uploads: dict[str, int] = field(default_factory=dict)
    first_upload_heavy_s: float = float("nan")
    first_upload_figure_s: float = float("nan")
    ready_after_s: float = float("nan")

    def summary(self) -> dict[str, Any]:
        idle, hostile = statistics.median(self.idle_p50), statistics.median(self.hostile_p50)
        return {
            "clients": self.clients, "rounds": self.rounds, "window_s": self.window_s,
            "idle_p50_ms": round(idle * 1e3, 2), "idle_p95_ms": round(statistics.median(self.idle_p95) * 1e3, 2),
            "hostile_p50_ms": round(hostile * 1e3, 2), "hostile_p95_ms": round(statistics.median(self.hostile_p95) * 1e3, 2),
            "p50_ratio": round(hostile / idle, 2), "probe_errors": self.probe_errors, "uploads": dict(self.uploads),
            "first_upload_heavy_s": round(self.first_upload_heavy_s, 3), "first_upload_figure_s": round(self.first_upload_figure_s, 3),
            "ready_after_s": round(self.ready_after_s, 2),
        }


def heavy_png(side: int = 6300) -> bytes:
    """A one-colour ``side`` x ``side`` PNG: a few KB that decode to ``side**2`` pixels."""
    buf = io.BytesIO()
    Image.new("L", (side, side), 200).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _multipart(files: list[tuple[str, bytes]], fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for k, v in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for i, (k, data) in enumerate(files):
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="u{i}.png"\r\nContent-Type: image/png\r\n\r\n'.encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


class _Client:
    """One keep-alive HTTP/1.1 connection (reconnects after errors)."""

    def __init__(self, port: int, timeout: float = 120) -> None:
        self.port, self.timeout = port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers={"Content-Type": ctype} if ctype else {})
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, data
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _probe_window(port: int, seconds: float, n_images: int, rng: np.random.Generator) -> tuple[list[float], int]:
    c = _Client(port)
    lat: list[float] = []
    errors = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        row = int(rng.integers(n_images))
        t0 = time.perf_counter()
        try:
            status, _ = c.request("GET", f"/api/neighbors?id={row}&k=40")
        except OSError:
            status = 0
        lat.append(time.perf_counter() - t0)
        errors += status != 200
    return lat, errors


def run(collection: Path, clients: int = 16, rounds: int = 3, window_s: float = 20.0, seed: int = 0) -> HostileResult:
    """Start a server on ``collection``, then measure (see the module docstring).

    Raises:
        RuntimeError: the server did not start or never became ready for uploads.
    """
    res = HostileResult(clients, rounds, window_s)
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t_start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "imagemesh.cli", "serve", str(collection), "--port", str(port), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    heavy = heavy_png()
    try:
        c = _Client(port, timeout=5)
        info: dict[str, Any] = {}
        while time.monotonic() - t_start < 300:
            try:
                status, body = c.request("GET", "/api/info")
                info = json.loads(body) if status == 200 else {}
                if info.get("uploads_ready"):
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("server exited: " + (proc.stderr.read().decode()[-2000:] if proc.stderr else ""))
            time.sleep(0.1)
        else:
            raise RuntimeError("server not ready for uploads after 300 s")
        res.ready_after_s = time.monotonic() - t_start
        n_images = int(info["n_images"])
        up = _Client(port)
        body, ctype = _multipart([("positive_image", heavy)], {"k": "10"})
        t0 = time.perf_counter()
        status, _ = up.request("POST", "/api/query", body, ctype)
        res.first_upload_heavy_s = time.perf_counter() - t0 if status == 200 else float("nan")
        # an ordinary figure: a canonical JPEG of the collection itself, as a user would upload one
        _, jpeg = up.request("GET", "/api/images/0/image")
        body2, ctype2 = _multipart([("positive_image", jpeg)], {"k": "10"})
        t0 = time.perf_counter()
        status2, _ = up.request("POST", "/api/query", body2, ctype2)
        res.first_upload_figure_s = time.perf_counter() - t0 if status2 == 200 else float("nan")

        rng = np.random.default_rng(seed)
        lock = threading.Lock()
        outcomes: dict[str, int] = {}

        def uploader(stop: threading.Event) -> None:
            cl = _Client(port)
            while not stop.is_set():
                try:
                    s, _ = cl.request("POST", "/api/query", body, ctype)
                    key = str(s)
                except OSError as e:
                    key = type(e).__name__
                with lock:
                    outcomes[key] = outcomes.get(key, 0) + 1
                if key == "503":
                    stop.wait(0.05)  # a polite client would honour Retry-After; a hostile one barely waits

        for _ in range(rounds):
            lat, err = _probe_window(port, window_s, n_images, rng)
            res.idle_p50.append(float(np.percentile(lat, 50)))
            res.idle_p95.append(float(np.percentile(lat, 95)))
            res.probe_errors += err
            stop = threading.Event()
            threads = [threading.Thread(target=uploader, args=(stop,), daemon=True) for _ in range(clients)]
            for t in threads:
                t.start()
            time.sleep(2.0)  # let the uploads pile up first
            lat, err = _probe_window(port, window_s, n_images, rng)
            stop.set()
            for t in threads:
                t.join(timeout=180)
            res.hostile_p50.append(float(np.percentile(lat, 50)))
            res.hostile_p95.append(float(np.percentile(lat, 95)))
            res.probe_errors += err
        res.uploads = outcomes
        return res
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def to_markdown(s: dict[str, Any]) -> str:
    """A README-ready table of :meth:`HostileResult.summary`."""
    lines = [
        "| `/api/neighbors` (k=40) | p50 ms | p95 ms |",
        "|---|---|---|",
        f"| idle | {s['idle_p50_ms']} | {s['idle_p95_ms']} |",
        f"| while {s['clients']} clients loop 6300x6300 PNG uploads | {s['hostile_p50_ms']} | {s['hostile_p95_ms']} |",
        "",
        f"p50 ratio hostile/idle: **{s['p50_ratio']}x** (median of {s['rounds']} interleaved rounds of {s['window_s']:g} s each); "
        f"probe errors: {s['probe_errors']}; upload outcomes: {s['uploads']}; first upload after `uploads_ready` "
        f"({s['ready_after_s']} s after start): {s['first_upload_heavy_s']} s (6300x6300 PNG), {s['first_upload_figure_s']} s (a 512 px figure).",
    ]
    return "\n".join(lines)


def main(collection: Path, clients: int, rounds: int, window_s: float, out: Path | None) -> dict[str, Any]:
    """Run, print the table and JSON, and write them under ``out`` if given."""
    s = run(collection, clients, rounds, window_s).summary()
    md = to_markdown(s)
    print(md)
    print(json.dumps(s))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "hostile-uploads.json").write_text(json.dumps(s, indent=1) + "\n")
        (out / "hostile-uploads.md").write_text(md + "\n")
    return s
