"""Overlap decoding/resizing with network inference: one background producer thread.

:func:`prefetched` runs ``produce(task)`` for the *next* task in a single background thread
while the caller consumes the current result (for example running ONNX Runtime, which
releases the GIL). One thread only: pypdfium2 (PDF rasterisation) must not be used from
several threads at once. At most two results exist at a time (the one being consumed and
the one being produced), so memory stays bounded by two chunks.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np

__all__ = ["prefetched", "embed_prepared"]

T = TypeVar("T")
R = TypeVar("R")


def prefetched(tasks: Sequence[T], produce: Callable[[T], R]) -> Iterator[tuple[T, R]]:
    """Yield ``(task, produce(task))`` in order; ``produce`` of task i+1 runs in a background
    thread while the caller handles task i. An exception in ``produce`` is raised here."""
    if not tasks:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagemesh-decode") as ex:
        fut: Future[R] = ex.submit(produce, tasks[0])
        for i, task in enumerate(tasks):
            result = fut.result()
            if i + 1 < len(tasks):
                fut = ex.submit(produce, tasks[i + 1])
            yield task, result


def embed_prepared(embeddings: Sequence[Any], prepared: Sequence[Any], n: int) -> dict[str, np.ndarray]:
    """Run each embedding's network step on its prepared batch (``n`` images); returns the
    chunk arrays ``vec__<name>`` (float32[n, dim]) and ``pred__<name>`` (JSON strings)."""
    import json

    out: dict[str, np.ndarray] = {}
    for emb, prep in zip(embeddings, prepared):
        if n:
            vecs, preds = emb.embed_prepared_with_predictions(prep)
        else:
            vecs, preds = np.zeros((0, emb.dim), np.float32), None
        vecs = np.asarray(vecs, dtype=np.float32)
        if vecs.shape != (n, emb.dim) or not np.isfinite(vecs).all():
            raise RuntimeError(f"embedding {emb.name} returned {vecs.dtype}{list(vecs.shape)} (or non-finite values) for {n} images")
        out[f"vec__{emb.name}"] = vecs
        pj = [json.dumps([p.to_dict() for p in pp]) for pp in preds] if preds else [""] * n
        out[f"pred__{emb.name}"] = np.array(pj, dtype=str)
    return out
