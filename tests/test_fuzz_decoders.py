"""Image decoders fed mutated real files (PNG, JPEG, PDF, EPS from ../shared/data) in the
isolated worker: every case is a decoded image or an ImageLoadError, the caller survives
crashes, time-outs and memory exhaustion, and a build over fuzzed files completes."""

from __future__ import annotations

import os
import re
import random
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from imagemesh.media.canonical import canonical_image
from imagemesh.media.images import ImageLimits, ImageLoadError, load_image
from imagemesh.media.isolate import IsolatedDecoder, IsolationLimits

from .conftest import FIGURES, SHARED, require_shared

EPS_DIR = SHARED / "arxiv-eps"


def seeds() -> dict[str, list[Path]]:
    require_shared()
    by_kind: dict[str, list[Path]] = {"png": [], "jpeg": [], "pdf": []}
    for p in sorted((FIGURES / "images").iterdir()):
        kind = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf"}.get(p.suffix.lower())
        if kind and p.stat().st_size < 400_000:
            by_kind[kind].append(p)
    by_kind["eps"] = [p for p in sorted(EPS_DIR.glob("*")) if p.suffix.lower() in (".eps", ".ps")] if shutil.which("gs") else []
    return by_kind


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One of: flip bytes, truncate, insert junk, duplicate a block, zero a block, splice
    the header onto random bytes."""
    b = bytearray(data)
    op = rng.randrange(6)
    n = len(b)
    if op == 0:
        for _ in range(rng.randint(1, 32)):
            i = rng.randrange(n)
            b[i] = rng.randrange(256)
    elif op == 1:
        b = b[: rng.randrange(1, n)]
    elif op == 2:
        i = rng.randrange(n)
        b[i:i] = rng.randbytes(rng.randint(1, 4096))
    elif op == 3:
        i, j = sorted(rng.randrange(n) for _ in range(2))
        b[j:j] = b[i : min(j, i + 65536)]
    elif op == 4:
        i = rng.randrange(n)
        b[i : i + rng.randint(1, 2048)] = bytes(min(n - i, 2048))
    else:
        b = b[: rng.randint(8, 64)] + bytearray(rng.randbytes(rng.randint(16, 20000)))
    return bytes(b)


def test_fuzzed_files_never_take_down_the_caller(tmp_path: Path) -> None:
    by_kind = seeds()
    rng = random.Random(20261129)
    per_kind = {"png": 60, "jpeg": 40, "pdf": 60, "eps": 30}
    outcomes: dict[str, int] = {"decoded": 0, "ImageLoadError": 0, "crash": 0, "timeout": 0}
    tried = 0
    with IsolatedDecoder(ImageLimits(), IsolationLimits(timeout_s=30)) as dec:
        for kind, n in per_kind.items():
            files = by_kind.get(kind) or []
            for c in range(n if files else 0):
                src = files[c % len(files)]
                data = mutate(src.read_bytes(), rng)
                tried += 1
                try:
                    if c % 2:
                        size, jpeg = dec.canonical_bytes(data)
                    else:
                        p = tmp_path / f"{kind}-{c}{src.suffix}"
                        p.write_bytes(data)
                        size, jpeg = dec.canonical(p)
                    with Image.open(__import__("io").BytesIO(jpeg)) as im:
                        assert im.format == "JPEG" and max(im.size) <= 512
                    assert size[0] > 0 and size[1] > 0
                    outcomes["decoded"] += 1
                except ImageLoadError as e:
                    outcomes["ImageLoadError"] += 1
                    outcomes["crash"] += "crashed" in e.reason or "killed" in e.reason or "died" in e.reason
                    outcomes["timeout"] += "timed out" in e.reason
        restarts = dec.restarts
    print(f"\ndecoder fuzz: {tried} cases, {outcomes}, worker restarts {restarts}")
    assert tried >= 160
    assert outcomes["decoded"] + outcomes["ImageLoadError"] == tried
    assert outcomes["decoded"] > 0 and outcomes["ImageLoadError"] > 0


def test_isolated_result_equals_in_process() -> None:
    by_kind = seeds()
    with IsolatedDecoder() as dec:
        for kind in ("png", "jpeg", "pdf"):
            p = by_kind[kind][0]
            img = load_image(p)
            assert dec.canonical(p) == (img.size, canonical_image(img)[0])
            assert dec.canonical_bytes(p.read_bytes()) == (img.size, canonical_image(img)[0])


def test_worker_crash_timeout_and_memory_limit_are_errors(tmp_path: Path) -> None:
    by_kind = seeds()
    pdf = max(by_kind["pdf"], key=lambda p: p.stat().st_size)
    dec = IsolatedDecoder(ImageLimits(raster_max_side=4096))
    try:
        dec.canonical(by_kind["png"][0])  # start the worker
        pid = dec._proc.pid

        def crash() -> None:
            time.sleep(0.05)
            os.kill(pid, signal.SIGSEGV)

        t = threading.Thread(target=crash)
        t.start()
        with pytest.raises(ImageLoadError, match=r"crashed \(SIGSEGV\)|killed"):
            for _ in range(200):  # keep it busy until the signal lands
                dec.canonical(pdf)
        t.join()
        assert dec.restarts == 1
        assert dec.canonical(by_kind["png"][0])[0][0] > 0  # replaced, works again
    finally:
        dec.close()

    with IsolatedDecoder(ImageLimits(raster_max_side=8192), IsolationLimits(timeout_s=0.01)) as slow:
        with pytest.raises(ImageLoadError, match="timed out"):
            slow.canonical(pdf)

    big = tmp_path / "big.png"
    Image.new("RGB", (7000, 7000), (200, 10, 10)).save(big)
    with IsolatedDecoder(ImageLimits(), IsolationLimits(memory_bytes=64 * 1024 * 1024)) as small:
        with pytest.raises(ImageLoadError, match="memory|killed|MemoryError|cannot allocate|corrupt"):
            small.canonical(big)
        assert small.canonical(by_kind["png"][0])[0][0] > 0


def test_build_decodes_in_the_isolated_worker(tmp_path: Path) -> None:
    """Builds decode in an IsolatedDecoder by default: the output equals an in-process
    build bit for bit, and a file that blows the worker's memory limit is one skipped
    image with its reason, not a dead build."""
    import csv

    import numpy as np

    from imagemesh.ingest.build import BuildOptions, build_collection
    from imagemesh.query.collection import open_collection

    from .conftest import make_subset

    src = make_subset(tmp_path / "src", 8)
    isolated = build_collection(src, tmp_path / "iso", BuildOptions(embeddings=["raw"], backend="exact", map_2d=False, progress=False))
    inproc = build_collection(src, tmp_path / "inproc", BuildOptions(embeddings=["raw"], backend="exact", map_2d=False, progress=False, isolate_decoders=False))
    assert isolated.n_images == inproc.n_images == 8 and not isolated.failures
    a, b = open_collection(tmp_path / "iso"), open_collection(tmp_path / "inproc")
    assert np.array_equal(a.vectors("raw"), b.vectors("raw"))
    assert a.images(range(8)) == b.images(range(8))
    assert [a.get(i)["width"] for i in range(8)] == [b.get(i)["width"] for i in range(8)]

    # a 7900x7900 RGBA PNG (62 Mpx: within the pixel limit) needs > 400 MB to decode; the
    # worker gets 256 MB, enough for every real figure
    with open(src / "figures.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    big = dict(rows[0], arxiv_id="2312.99999v1", paper_title="big", fig1_file_path="./img/2312.99999v1.png")
    Image.new("RGBA", (7900, 7900), (200, 10, 10, 255)).save(src / "images" / "2312.99999v1.png")
    with open(src / "figures.csv", "a", newline="", encoding="utf-8") as f:
        csv.DictWriter(f, fieldnames=list(rows[0])).writerow(big)
    opts = BuildOptions(embeddings=["raw"], backend="exact", map_2d=False, progress=False, isolation=IsolationLimits(memory_bytes=256 * 1024 * 1024))
    report = build_collection(src, tmp_path / "limited", opts)
    assert report.n_items == 9 and report.n_images == 8, (report.n_items, report.n_images, report.failures)
    (fail,) = report.failures
    assert "2312.99999" in fail["key"] and re.search("memory|killed|MemoryError|cannot allocate", fail["reason"]), fail
