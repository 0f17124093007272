"""The ``Embedding`` interface: images in, float32 vectors out.

An embedding needs only :meth:`Embedding.embed_batch` and :meth:`Embedding.config` (the
shape follows ``llm``'s ``EmbeddingModel``). Its :meth:`config` identifies
the exact model (file hash, preprocessing) and is stored in the collection manifest, so a
collection can refuse vectors made by another model.
"""

from __future__ import annotations

import abc
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import numpy as np
from PIL import Image

__all__ = ["Embedding", "BaseEmbedding", "EmbeddingConfig", "Metric", "Prediction", "make_embedding"]

Metric = Literal["l2", "cosine"]


@dataclass(frozen=True)
class Prediction:
    """One class prediction of a classifier network (for display, e.g. ImageNet top-5)."""

    label: str
    p: float  # probability in [0, 1]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "p": round(float(self.p), 5)}


@dataclass(frozen=True)
class EmbeddingConfig:
    """What identifies the exact model that made a set of vectors.

    ``model_sha256`` is the hash of the network file (``None`` for models with no file,
    such as ``raw``); ``preprocess`` is the full preprocessing recipe.
    """

    name: str
    kind: str
    dim: int
    metric: Metric
    model_sha256: str | None = None
    preprocess: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "dim": self.dim,
            "metric": self.metric,
            "model_sha256": self.model_sha256,
            "preprocess": dict(self.preprocess),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EmbeddingConfig":
        return cls(
            name=d["name"],
            kind=d["kind"],
            dim=int(d["dim"]),
            metric=d["metric"],
            model_sha256=d.get("model_sha256"),
            preprocess=dict(d.get("preprocess") or {}),
            extra=dict(d.get("extra") or {}),
        )


class Embedding(abc.ABC):
    """Turns images into vectors.

    Attributes:
        name: registry name, e.g. ``"raw"``, ``"imagenet"``.
        dim: output dimension ``d`` (before PCA).
        metric: ``"l2"`` or ``"cosine"``: how vectors of this embedding are compared.
    """

    name: str
    dim: int
    metric: Metric

    @abc.abstractmethod
    def embed_batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed RGB images.

        Args:
            images: ``n`` PIL images (any size; mode RGB).

        Returns:
            ``float32[n, dim]``.
        """

    def embed_batch_with_predictions(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, list[list[Prediction]] | None]:
        """Like :meth:`embed_batch`, plus per-image class predictions for classifier networks.

        The default has no predictions (``None``). Classifiers override this to run the
        network once for both.
        """
        return self.embed_batch(images), None

    def prepare(self, images: Sequence[Image.Image]) -> Any:
        """The part of embedding that needs no network (resize, normalise), for pipelines.

        A pipeline calls this in a background thread for the next batch while
        :meth:`embed_prepared_with_predictions` runs the current one. It must be thread-safe.
        The default returns the images unchanged (all the work then happens in the network step).
        """
        return list(images)

    def embed_prepared_with_predictions(self, prepared: Any) -> tuple[np.ndarray, list[list[Prediction]] | None]:
        """:meth:`embed_batch_with_predictions` on the output of :meth:`prepare`."""
        return self.embed_batch_with_predictions(prepared)

    @abc.abstractmethod
    def config(self) -> EmbeddingConfig:
        """The identity of this exact model (stored in the manifest)."""


class BaseEmbedding(Embedding):
    """An :class:`Embedding` with a preferred batch size (``batch_size`` images per network call)."""

    batch_size: int = 32


def make_embedding(factory: Callable[..., Embedding], threads: int = 0) -> Embedding:
    """Instantiate a registered embedding factory, passing ``threads`` (ONNX Runtime
    intra-op threads, 0 = its default) if the factory takes that argument.

    Raises:
        whatever the factory raises (e.g. a missing model file).
    """
    try:
        takes_threads = "threads" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_threads = False
    return factory(threads=threads) if takes_threads else factory()
