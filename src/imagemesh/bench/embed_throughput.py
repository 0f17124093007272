"""Embedding throughput: the embed pipeline vs bare ONNX Runtime on preloaded tensors.

Both run in the same process, on the same images, model and batch size, alternating
repetitions:

- **pipeline**: what ``imagemesh embed`` / ``build`` do per chunk: canonical JPEG bytes ->
  decode -> ``Embedding.prepare`` (letterbox resize + normalise) in one background thread
  (:func:`imagemesh.ingest.prefetch.prefetched`), overlapped with ONNX Runtime on the
  previous chunk (:func:`imagemesh.ingest.prefetch.embed_prepared`).
- **bare**: ONNX Runtime alone on tensors prepared beforehand (the ceiling).

Images: the bundled demo figures (166 real arXiv figures), repeated to ``--n`` images,
turned into canonical JPEGs once before timing (reading them from a collection's LanceDB
table is I/O and left out of both). Target: pipeline >= 0.9x bare.

    imagemesh bench embed-throughput [--embedding imagenet] [--n 512] [--reps 3] [--json out.json]
"""

from __future__ import annotations

import os
import platform
import time
from importlib import resources
from pathlib import Path

import numpy as np


def _canonical_jpegs(n: int) -> list[bytes]:
    from imagemesh.media.canonical import canonical_image
    from imagemesh.media.images import load_image

    folder = Path(str(resources.files("imagemesh") / "demo_data" / "images"))
    files = sorted(folder.iterdir())
    blobs = [canonical_image(load_image(p))[0] for p in files[: min(n, len(files))]]
    return [blobs[i % len(blobs)] for i in range(n)]


def run(embedding: str = "imagenet", n: int = 512, batch: int = 64, reps: int = 3, threads: int = 0) -> dict:
    from imagemesh.core.embedding import make_embedding
    from imagemesh.media.canonical import decode_jpeg
    from imagemesh.ingest.prefetch import embed_prepared, prefetched
    from imagemesh.plugins import default_registries

    emb = make_embedding(default_registries().embeddings.get(embedding), threads)
    blobs = _canonical_jpegs(n)
    starts = list(range(0, n, batch))
    pre = [emb.prepare([decode_jpeg(b) for b in blobs[s : s + batch]]) for s in starts]
    embed_prepared([emb], [pre[0]], len(blobs[:batch]))  # warm-up (ORT allocations)

    def bare() -> float:
        t = time.perf_counter()
        for p, s in zip(pre, starts):
            embed_prepared([emb], [p], min(batch, n - s))
        return n / (time.perf_counter() - t)

    def pipeline() -> float:
        t = time.perf_counter()
        for s, p in prefetched(starts, lambda s: emb.prepare([decode_jpeg(b) for b in blobs[s : s + batch]])):
            embed_prepared([emb], [p], min(batch, n - s))
        return n / (time.perf_counter() - t)

    rows = []
    for r in range(reps):
        b = bare()
        p = pipeline()
        rows.append({"rep": r + 1, "bare_img_s": round(b, 2), "pipeline_img_s": round(p, 2), "ratio": round(p / b, 3)})
        print(f"rep {r + 1}: bare {b:.1f} img/s, pipeline {p:.1f} img/s, ratio {p / b:.3f}", flush=True)
    best_b = max(x["bare_img_s"] for x in rows)
    best_p = max(x["pipeline_img_s"] for x in rows)
    return {
        "embedding": embedding,
        "n_images": n,
        "batch": batch,
        "ort_threads": threads or "default",
        "reps": rows,
        "best_bare_img_s": best_b,
        "best_pipeline_img_s": best_p,
        "ratio_of_best": round(best_p / best_b, 3),
        "median_ratio": float(np.median([x["ratio"] for x in rows])),
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "python": platform.python_version(),
    }
