"""Anonymous memory of one process across version switches, without HTTP.

Opens a collection in a :class:`~imagemesh.web.serve.ReloadingApp`, runs bursts of the
load test's query mix (neighbours, random, facets with and without filters, thumbnails)
on 4 threads, then publishes and switches to a new version (``republish`` +
``reload_now``, which warms it) several times, printing anonymous memory (MB) after each
step. A process that kept old versions would grow by one version's caches per switch.

    imagemesh bench switch-memory benchmarks/.work/load/synthetic-1000000 [--switches 4]

The collection is modified (new versions are published; the content stays the same).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from imagemesh.store.writer import republish
from imagemesh.web.app import create_app
from imagemesh.web.serve import ReloadingApp, release_memory


def anon() -> int:
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) // 1024
    return -1


def main(root: Path, switches: int = 4) -> None:
    """Run the bursts and switches on the collection at ``root`` (see the module docstring)."""
    app = ReloadingApp(root, create_app, check_interval=0)
    filters = [{"year": {"gte": 2020}}, {"keyword": "speech"}, {"archive": "cs"}]

    def work(seed: int, n: int = 150) -> None:
        rng = np.random.default_rng(seed)
        c = app.collection
        for i in range(n):
            f = filters[i % 3] if i % 4 == 0 else None
            c.neighbors(int(rng.integers(0, len(c))), k=20, where=f)
            c.random(40, where=f, seed=int(rng.integers(0, 1_000_000)))
            c.facets(f if i % 2 else None)
            c.thumbnail(int(rng.integers(0, len(c))))

    def burst(seed: int) -> None:
        threads = [threading.Thread(target=work, args=(seed * 10 + j,)) for j in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    burst(0)
    print(f"after a first burst (cold caches): {anon()} MB", flush=True)
    burst(1)
    print(f"after a second burst (steady): {anon()} MB", flush=True)
    for sw in range(switches):
        republish(root)
        t = time.perf_counter()
        app.reload_now()
        print(f"switch {sw + 1}: open + warm {time.perf_counter() - t:.1f} s, {anon()} MB with both versions", flush=True)
        burst(2 + sw)
        release_memory()
        print(f"  after a burst on it and release_memory(): {anon()} MB", flush=True)

