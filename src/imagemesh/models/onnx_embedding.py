"""Embeddings computed by an ONNX network in ONNX Runtime, described by a model card (JSON).

A card gives the network file, its sha256, the preprocessing (:class:`ImagePreprocess`),
the input name, the output that holds the embedding and, for classifiers, the logits
output and a labels file. Predictions (top-k classes) are returned for display.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from imagemesh.models.ort import ort
from PIL import Image

from imagemesh.core.fileio import sha256_file
from imagemesh.core.embedding import BaseEmbedding, EmbeddingConfig, Metric, Prediction
from imagemesh.models.preprocess import ImagePreprocess

__all__ = ["OnnxEmbedding", "ModelCardError", "sha256_file"]


class ModelCardError(ValueError):
    """A model card or its ONNX file is missing, unreadable or inconsistent."""



class OnnxEmbedding(BaseEmbedding):
    """An embedding network run by ONNX Runtime.

    Args:
        card_path: the model card JSON; the ONNX file and labels are resolved next to it.
        name: registry name (default: the card's ``name``).
        metric: how vectors compare (default: the card's, else ``"cosine"``).
        threads: ONNX Runtime intra-op threads (``0`` = ORT's default).
        top_k: number of predictions kept per image for classifier cards.
        spinning: let idle ONNX Runtime threads busy-wait (ORT's default); ``False`` leaves
            the CPU to other threads such as the pipeline's decode thread.

    Raises:
        ModelCardError: missing files, a hash mismatch, or outputs not in the graph.
    """

    def __init__(self, card_path: Path, name: str | None = None, metric: Metric | None = None, threads: int = 0, top_k: int = 5, verify_hash: bool = True, spinning: bool = True) -> None:
        card_path = Path(card_path)
        try:
            self.card: dict[str, Any] = json.loads(card_path.read_text())
        except (OSError, ValueError) as e:
            raise ModelCardError(f"cannot read model card {card_path}: {e}") from e
        self.model_path = card_path.parent / self.card["file"]
        if not self.model_path.is_file():
            raise ModelCardError(f"model file {self.model_path} is missing")
        self.sha256 = sha256_file(self.model_path)
        if verify_hash and self.card.get("sha256") and self.card["sha256"] != self.sha256:
            raise ModelCardError(f"{self.model_path} sha256 {self.sha256[:12]}… does not match its card {self.card['sha256'][:12]}…")
        self.name = name or self.card["name"]
        self.metric = metric or self.card.get("metric", "cosine")
        self.preprocess = ImagePreprocess.from_dict(self.card["preprocess"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # Busy-waiting of idle ORT threads (ORT's default) can take CPU from the pipeline's
        # decode thread; an A/B on the shared 2-core machine was too noisy to decide.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self._session = ort.InferenceSession(str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        self.input_name = self.card.get("input", inputs[0])
        self.feature_output = self.card.get("feature_output", "features")
        self.logits_output = self.card.get("logits_output")
        for needed in [self.feature_output] + ([self.logits_output] if self.logits_output else []):
            if needed not in outputs:
                raise ModelCardError(f"output {needed!r} not in {self.model_path.name}; outputs: {outputs}")
        if self.input_name not in inputs:
            raise ModelCardError(f"input {self.input_name!r} not in {self.model_path.name}; inputs: {inputs}")
        self.dim = int(self.card["feature_dim"])
        self.labels: list[str] | None = None
        if self.logits_output and self.card.get("labels_file"):
            self.labels = (card_path.parent / self.card["labels_file"]).read_text(encoding="utf-8").splitlines()
        self.top_k = int(top_k)
        batch_dim = self._session.get_inputs()[inputs.index(self.input_name)].shape[0]
        self.fixed_batch: int | None = batch_dim if isinstance(batch_dim, int) and batch_dim == 1 else None  # e.g. ONNX Model Zoo VGG16: [1, 3, 224, 224]

    def prepare(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Decode-side work (resize + normalise): ``n`` images -> ``float32[n, 3, s, s]``.

        Thread-safe and independent of ONNX Runtime, so a pipeline can prepare the next
        batch while :meth:`embed_prepared_with_predictions` runs the current one.
        """
        return self.preprocess(images)

    def _run_prepared(self, x: np.ndarray, with_logits: bool) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(x)
        names = [self.feature_output] + ([self.logits_output] if with_logits and self.logits_output else [])
        if self.fixed_batch is not None and n != self.fixed_batch:
            parts = [self._session.run(names, {self.input_name: x[i : i + 1]}) for i in range(n)]
            res = [np.concatenate([p[j] for p in parts]) for j in range(len(names))]
        else:
            res = self._session.run(names, {self.input_name: x})
        feats = np.asarray(res[0], dtype=np.float32).reshape(n, -1)
        if feats.shape[1] != self.dim:
            raise ModelCardError(f"{self.name}: network gave {feats.shape[1]}-d features, card says {self.dim}")
        return feats, (np.asarray(res[1], dtype=np.float32).reshape(n, -1) if len(res) > 1 else None)

    def _run(self, images: Sequence[Image.Image], with_logits: bool) -> tuple[np.ndarray, np.ndarray | None]:
        return self._run_prepared(self.prepare(images), with_logits)

    def embed_batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``n`` images -> ``float32[n, dim]`` network features."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self._run(images, with_logits=False)[0]

    def _predictions(self, logits: np.ndarray) -> list[list[Prediction]]:
        assert self.labels is not None
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        top = np.argsort(-p, axis=1)[:, : self.top_k]
        return [[Prediction(self.labels[j], float(p[i, j])) for j in top[i]] for i in range(len(logits))]

    def embed_prepared_with_predictions(self, x: np.ndarray) -> tuple[np.ndarray, list[list[Prediction]] | None]:
        """Like :meth:`embed_batch_with_predictions` on the output of :meth:`prepare`."""
        if len(x) == 0:
            return np.zeros((0, self.dim), np.float32), []
        feats, logits = self._run_prepared(x, with_logits=self.labels is not None)
        if logits is None or self.labels is None:
            return feats, None
        return feats, self._predictions(logits)

    def embed_batch_with_predictions(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, list[list[Prediction]] | None]:
        if not images:
            return np.zeros((0, self.dim), np.float32), []
        return self.embed_prepared_with_predictions(self.prepare(images))

    def config(self) -> EmbeddingConfig:
        return EmbeddingConfig(
            name=self.name,
            kind="onnx",
            dim=self.dim,
            metric=self.metric,
            model_sha256=self.sha256,
            preprocess=self.preprocess.to_dict(),
            extra={"file": self.model_path.name, "feature_output": self.feature_output, "architecture": self.card.get("architecture")},
        )
