"""Loopback load test of `imagemesh serve` (bounded: fixed duration, stops by itself).

For each collection -- the bundled demo (166 real arXiv figures) and a synthetic
1M-image collection written directly in the collection format -- it starts
``imagemesh serve DIR --workers W`` on 127.0.0.1, then runs ``--connections`` keep-alive
HTTP/1.1 connections for ``--seconds`` against a mix of ``/api/neighbors``,
``/api/random``, ``/api/facets`` and ``/api/images/{id}/thumbnail``, and records per-request
latency, errors, throughput and the server's RSS/PSS (all its processes) every second.
Half-way it switches the collection to a new version (a new build folder + an atomically
replaced manifest) and records when the workers start answering with the new build id;
errors must stay 0.

    imagemesh bench load                      # both collections, 60 s each
    imagemesh bench load --only demo --seconds 10

Writes ``benchmarks/results/load.json`` and ``load.md``. Only loopback addresses are used.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from imagemesh.bench.load_collections import bump_version, demo_collection, disk_usage, synthetic_collection

HOST = "127.0.0.1"  # loopback only


# ---------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            out += _tree(int(child))
    except OSError:
        pass
    return out


def _mem(pid: int) -> tuple[int, int, int]:
    """(RSS, PSS, anonymous) bytes of a process and its children. PSS splits shared
    pages; anonymous memory is the heap (caches, arrays), without the page cache of the
    memory-mapped vectors and indices, which grows as queries touch more of them."""
    rss = pss = anon = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
                elif line.startswith("Anonymous:"):
                    anon += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss, anon


# ---------------------------------------------------------------------- client


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> tuple[int, bytes]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for ln in lines[1:]:
        if ln.lower().startswith("content-length:"):
            length = int(ln.split(":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return status, body


def _paths(rng: random.Random, n: int, embeddings: list[str]) -> tuple[str, str]:
    r = rng.random()
    f = quote(json.dumps(rng.choice([{"year": {"gte": 2020}}, {"keyword": "speech"}, {"archive": "cs"}])))
    if r < 0.35:
        q = f"/api/neighbors?id={rng.randrange(n)}&k=20&embedding={rng.choice(embeddings)}"
        return "neighbors", q + (f"&filter={f}" if rng.random() < 0.25 else "")
    if r < 0.55:
        return "random", f"/api/random?n=40&seed={rng.randrange(10**6)}" + (f"&filter={f}" if rng.random() < 0.25 else "")
    if r < 0.65:
        return "facets", "/api/facets" + (f"?filter={f}" if rng.random() < 0.5 else "")
    return "thumbnail", f"/api/images/{rng.randrange(n)}/thumbnail"


async def _load(port: int, seconds: float, connections: int, n: int, embeddings: list[str], on_half: Any, switches: int = 2) -> dict[str, Any]:
    """Run the request mix for ``seconds``; ``on_half`` (if given) publishes a new
    collection version ``switches`` times, evenly spaced."""
    lat: dict[str, list[float]] = {}
    errors: list[str] = []
    builds_seen: list[tuple[float, str]] = []
    t_end = time.monotonic() + seconds
    t0 = time.monotonic()
    count = 0

    async def worker(i: int) -> None:
        nonlocal count
        rng = random.Random(i)
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.monotonic() < t_end:
                kind, path = _paths(rng, n, embeddings)
                t = time.perf_counter()
                try:
                    status, _ = await _request(reader, writer, path)
                except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                    errors.append(f"{kind}: {type(e).__name__}")
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, port)
                    continue
                dt = time.perf_counter() - t
                count += 1
                if status != 200:
                    errors.append(f"{kind}: HTTP {status}")
                lat.setdefault(kind, []).append(dt)
        finally:
            writer.close()

    async def probe() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        last = None
        while time.monotonic() < t_end:
            status, body = await _request(reader, writer, "/api/info")
            if status != 200:
                errors.append(f"info: HTTP {status}")
            else:
                b = json.loads(body)["build_id"]
                if b != last:
                    builds_seen.append((round(time.monotonic() - t0, 2), b))
                    last = b
            await asyncio.sleep(0.1)
        writer.close()

    async def switch() -> None:
        if on_half is None:
            return
        for n_sw in range(switches):
            await asyncio.sleep(max(0.0, t0 + seconds * (n_sw + 1) / (switches + 1) - time.monotonic()))
            t = time.monotonic() - t0
            new = await asyncio.to_thread(on_half)
            switch_info.setdefault("switches", []).append({"at_s": round(t, 2), "done_s": round(time.monotonic() - t0, 2), "new_build": new})

    switch_info: dict[str, Any] = {}
    await asyncio.gather(*(worker(i) for i in range(connections)), probe(), switch())
    elapsed = time.monotonic() - t0
    allv = [x for v in lat.values() for x in v]

    def stats(v: list[float]) -> dict[str, float]:
        a = np.asarray(v) * 1000
        return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 2)}

    return {
        "requests": count, "seconds": round(elapsed, 2), "throughput_rps": round(count / elapsed, 1),
        "errors": len(errors), "error_kinds": sorted(set(errors))[:20],
        "all": stats(allv), "by_endpoint": {k: stats(v) for k, v in sorted(lat.items())},
        "version_switch": {**switch_info, "builds_seen_by_probe": builds_seen},
    }


def run_one(name: str, root: Path, seconds: float, connections: int, workers: int, warmup: float = 0.0, switches: int = 2) -> dict[str, Any]:
    from imagemesh.query.collection import open_collection

    c = open_collection(root)
    n, embeddings, before = len(c), c.embeddings, c.manifest.build_id
    del c
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "imagemesh.cli", "serve", str(root), "--host", HOST, "--port", str(port), "--workers", str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        t0 = time.monotonic()
        while True:  # wait until every worker answers
            try:
                with socket.create_connection((HOST, port), timeout=1) as s:
                    s.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                    if s.recv(20).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if time.monotonic() - t0 > 600 or proc.poll() is not None:
                raise RuntimeError(f"server did not start: {proc.stdout.read().decode()[-2000:] if proc.stdout else ''}")
            time.sleep(0.5)
        startup = time.monotonic() - t0
        time.sleep(2.0)
        mem: list[dict[str, float]] = []
        stop = False

        phase = "warmup" if warmup > 0 else "measured"

        async def sample() -> None:
            t_s = time.monotonic()
            while not stop:
                rss, pss, anon = _mem(proc.pid)
                mem.append({"t_s": round(time.monotonic() - t_s, 1), "phase": phase, "rss_mb": round(rss / 2**20, 1), "pss_mb": round(pss / 2**20, 1), "anon_mb": round(anon / 2**20, 1)})
                await asyncio.sleep(1.0)

        async def main() -> dict[str, Any]:
            nonlocal stop, phase
            task = asyncio.create_task(sample())
            if warmup > 0:  # the same mix, not recorded: first-use costs (filter masks, planner structures) happen here
                await _load(port, warmup, connections, n, embeddings, None)
                phase = "measured"
            res = await _load(port, seconds, connections, n, embeddings, lambda: bump_version(root), switches)
            stop = True
            await task
            return res

        res = asyncio.run(main())
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    server_log = out.decode(errors="replace").strip().splitlines()
    rss = [m["rss_mb"] for m in mem if m["phase"] == "measured"]
    res.update({
        "collection": name, "n_images": n, "workers": workers, "connections": connections, "startup_s": round(startup, 1), "warmup_s": warmup,
        "build_before": before, "memory": {"samples": mem, "rss_mb_first": rss[0] if rss else None, "rss_mb_max": max(rss) if rss else None, "rss_mb_last": rss[-1] if rss else None},
        "collection_bytes": disk_usage(root), "server_log_lines": server_log[:50],
    })
    return res


def to_markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Load test: `imagemesh serve` on loopback",
        "",
        f"{results['when']}, machine: {results['machine']}. Load average before/after: {results['loadavg_before']} / {results['loadavg_after']} "
        "(other jobs shared the machine; the load generator runs on the same 2 cores).",
        "",
        "| collection | images | workers | conns | seconds | requests | req/s | errors | p50 ms | p99 ms | RSS MB first → max → last | PSS MB max | anonymous MB first → max → last |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        m = r["memory"]
        pss = max((s["pss_mb"] for s in m["samples"]), default=None)
        anon = [s["anon_mb"] for s in m["samples"] if s.get("phase", "measured") == "measured" and "anon_mb" in s]
        anon_txt = f"{anon[0]} → {max(anon)} → {anon[-1]}" if anon else "n/a"
        lines.append(f"| {r['collection']} | {r['n_images']:,} | {r['workers']} | {r['connections']} | {r['seconds']} | {r['requests']:,} | {r['throughput_rps']} | {r['errors']} | "
                     f"{r['all']['p50_ms']} | {r['all']['p99_ms']} | {m['rss_mb_first']} → {m['rss_mb_max']} → {m['rss_mb_last']} | {pss} | {anon_txt} |")
    for r in results["runs"]:
        lines += ["", f"## {r['collection']}: per endpoint", "", "| endpoint | requests | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
        for k, s in r["by_endpoint"].items():
            lines.append(f"| {k} | {s['n']:,} | {s['p50_ms']} | {s['p99_ms']} | {s['max_ms']} |")
        v = r["version_switch"]
        sw = ", ".join(f"{x['at_s']} s" for x in v.get("switches", []))
        lines += ["", f"Warm-up before the measured window: {r.get('warmup_s', 0)} s. New versions published at {sw}: builds seen by the /api/info probe "
                  f"{v.get('builds_seen_by_probe')}; errors during the whole run: {r['errors']}."]
        samples = [m for m in r["memory"]["samples"] if m.get("phase", "measured") == "measured"]
        if samples:
            every = max(1, len(samples) // 12)
            lines += ["", "Memory of all server processes over the measured window, MB (time: RSS / anonymous): "
                      + ", ".join(f"{m['t_s']:g} s {m['rss_mb']:.0f} / {m.get('anon_mb', float('nan')):.0f}" for m in samples[::every])]
    return "\n".join(lines) + "\n"


def main(seconds: float = 60, connections: int = 32, switches: int = 2, warmup: float = 0, workers: int = 2, synthetic_n: int = 1_000_000,
         only: str | None = None, work: Path = Path("benchmarks/.work/load"), out: Path = Path("benchmarks/results"), tag: str = "load") -> None:
    """Run the load test (see the module docstring); writes ``out/<tag>.json`` and ``.md``."""
    work.mkdir(parents=True, exist_ok=True)
    settings = dict(seconds=seconds, connections=connections, switches=switches, warmup=warmup, workers=workers, synthetic_n=synthetic_n, only=only, work=work, out=out, tag=tag)
    results: dict[str, Any] = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": f"{os.cpu_count()} cores",
        "loadavg_before": [round(x, 2) for x in os.getloadavg()], "settings": {k: str(v) for k, v in settings.items()}, "runs": [],
    }
    todo = []
    if only in (None, "demo"):
        print("demo collection ...", flush=True)
        todo.append(("demo", demo_collection(work)))
    if only in (None, "synthetic"):
        print(f"synthetic collection of {synthetic_n} ...", flush=True)
        todo.append((f"synthetic-{synthetic_n}", synthetic_collection(work, synthetic_n)))
    for name, root in todo:
        print(f"load: {name}, {seconds:g} s x {connections} connections, {workers} workers ...", flush=True)
        r = run_one(name, root, seconds, connections, workers, warmup, switches)
        print(f"  {r['requests']} requests, {r['throughput_rps']} req/s, p50 {r['all']['p50_ms']} ms, p99 {r['all']['p99_ms']} ms, errors {r['errors']}, "
              f"RSS {r['memory']['rss_mb_first']} -> {r['memory']['rss_mb_max']} MB; builds seen {r['version_switch'].get('builds_seen_by_probe')}", flush=True)
        results["runs"].append(r)
    results["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{tag}.json").write_text(json.dumps(results, indent=1))
    (out / f"{tag}.md").write_text(to_markdown(results))
    print(f"wrote {out / (tag + '.json')} and .md")
