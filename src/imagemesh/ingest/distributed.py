"""The embed step on Ray Data (``imagemesh embed DIR --embedding NAME --executor ray``).

Needs the optional ``ray`` extra (``pip install -e ".[ray]"``). The dataset is the
collection's row ids (``ray.data.from_numpy``); ``map_batches`` sends batches of row ids to a
pool of actors (:class:`EmbedActor`), each of which opens the collection's media table and
loads the ONNX model **once**, then per batch reads the canonical JPEGs of those rows,
decodes, preprocesses and runs ONNX Runtime, and returns ``{"id", "vec", "pred"}``. The
driver writes the vectors back into the same resumable chunk files as the local executor,
so PCA, index and manifest are made exactly as for a local ``embed``.

On a cluster: start Ray (``ray start --head`` on one machine, ``ray start --address=HEAD:6379``
on the others), install imagemesh (and any user models folder) on every node, put the
collection on storage every node sees at the same path, and pass ``--ray-address HEAD:6379``
(or set ``RAY_ADDRESS``). Without an address a local Ray is started with ``--ray-cpus`` CPUs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["EmbedActor", "ray_embed_rows", "ray_available"]


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


class EmbedActor:
    """One Ray actor: the collection and the embedding are opened once, in ``__init__``.

    ``__call__({"data": int64[b]}) -> {"id": int64[b], "vec": float32[b, dim], "pred": str[b]}``
    (``pred``: JSON list of ``{label, p}``, or ``""``).
    """

    def __init__(self, collection: str, embedding: str, models_folder: str | None = None) -> None:
        from imagemesh.core.embedding import make_embedding
        from imagemesh.media.canonical import decode_jpeg
        from imagemesh.store.reader import CollectionReader
        from imagemesh.plugins import default_registries

        regs = default_registries(models_folder=models_folder)
        self._decode = decode_jpeg
        self._c = CollectionReader(Path(collection), registries=regs)
        self._emb = make_embedding(regs.embeddings.get(embedding), 1)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import json

        ids = np.asarray(batch["data"], dtype=np.int64)
        images = [self._decode(b) for b in self._c.images(ids.tolist())]
        vecs, preds = self._emb.embed_prepared_with_predictions(self._emb.prepare(images))
        pj = [json.dumps([p.to_dict() for p in pp]) for pp in preds] if preds else [""] * len(ids)
        return {"id": ids, "vec": np.asarray(vecs, dtype=np.float32), "pred": np.array(pj, dtype=object)}


def ray_embed_rows(
    collection: Path,
    embedding: str,
    n: int,
    *,
    batch_size: int = 64,
    num_actors: int = 2,
    address: str | None = None,
    num_cpus: int | None = None,
    models_folder: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Embed rows ``0..n-1`` of ``collection`` on Ray; yields ``(ids, vectors, predictions)``
    batches in whatever order the actors finish (the caller places them by id).

    Raises:
        RuntimeError: Ray is not installed (the ``ray`` extra).
    """
    if not ray_available():
        raise RuntimeError("--executor ray needs Ray Data: pip install 'imagemesh[ray]'")
    import ray

    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            kwargs["address"] = address
        elif num_cpus:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        # Row ids as in-memory blocks (no read tasks: on a small local Ray every CPU can go to
        # the actors without starving a reader).
        n_blocks = max(1, min(n, 4 * num_actors, -(-n // batch_size)))
        ds = ray.data.from_numpy([a for a in np.array_split(np.arange(n, dtype=np.int64), n_blocks) if len(a)])
        out = ds.map_batches(
            EmbedActor,
            fn_constructor_kwargs={"collection": str(Path(collection).resolve()), "embedding": embedding, "models_folder": str(models_folder) if models_folder else None},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=num_actors),  # (``concurrency=`` is deprecated)
            num_cpus=1,
        )
        for b in out.iter_batches(batch_size=None, batch_format="numpy"):
            ids = np.asarray(b["id"], dtype=np.int64)
            if progress:
                progress(len(ids))
            yield ids, np.asarray(b["vec"], dtype=np.float32), [str(p) for p in b["pred"]]
    finally:
        if started:
            ray.shutdown()
