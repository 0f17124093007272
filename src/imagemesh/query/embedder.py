"""Embedding new images (uploads) into a collection's reduced space."""

from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from imagemesh.core.embedding import make_embedding
from imagemesh.core.registry import Registries
from imagemesh.media.canonical import canonical_image
from imagemesh.store.pca import PcaReducer
from imagemesh.store.reader import CollectionError, CollectionReader

__all__ = ["QueryEmbedder", "make_query_embedder"]


class QueryEmbedder:
    """Embeds new images into a collection's reduced space (network -> PCA -> normalise)."""

    def __init__(self, embedding: Any, reducer: Any, metric: str) -> None:
        self.embedding = embedding
        self.reducer = reducer
        self.metric = metric
        self._lock = threading.Lock()

    def __call__(self, images: Sequence[Any], canonical: bool = False) -> np.ndarray:
        """``n`` RGB PIL images -> ``float32[n, d]`` in the collection's reduced space.

        Images go through the same canonical form as at build time (JPEG at <= 512 px),
        unless ``canonical`` says they already are that form (e.g. from
        :func:`imagemesh.web.upload.canonical_upload`); encoding twice would change pixels."""
        canon = list(images) if canonical else [canonical_image(img)[1] for img in images]
        with self._lock:  # one network call at a time keeps memory bounded
            raw = self.embedding.embed_batch(canon)
        red = self.reducer.transform(raw)
        if self.metric == "cosine":
            red = red / np.maximum(np.linalg.norm(red, axis=1, keepdims=True), 1e-12)
        return red.astype(np.float32)


def make_query_embedder(reader: CollectionReader, embedding: str | None, registries: Registries) -> QueryEmbedder:
    """A :class:`QueryEmbedder` with the network, preprocessing and PCA that built ``embedding``.

    Raises:
        CollectionError: the network available now is not the one that built the
            collection (its config or file hash differs).
        RegistryError: the embedding is not installed here.
    """
    st = reader.state(embedding)
    emb = make_embedding(registries.embeddings.get(st.name), 0)
    if emb.config().to_dict() != st.config.to_dict():
        raise CollectionError(f"embedding {st.name!r} available here differs from the one that built the collection (model file or preprocessing changed)")
    entry = reader.manifest.embeddings[st.name]["pca"]
    reducer = PcaReducer.load(reader.check_file(entry, f"PCA of {st.name!r}"))
    return QueryEmbedder(emb, reducer, st.config.metric)
