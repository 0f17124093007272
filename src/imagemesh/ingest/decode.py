"""The decode stage of a build: source files -> canonical images, thumbnails, prepared batches.

Image failures are recorded per item, never raised: a hostile or broken file costs its own
image, not the build.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image

from imagemesh.core.embedding import Embedding
from imagemesh.core.fileio import sha256_file
from imagemesh.ingest.chunks import pack_blobs
from imagemesh.ingest.sources.base import SourceItem
from imagemesh.media.canonical import canonical_image, decode_jpeg
from imagemesh.media.images import ImageLimits, ImageLoadError, load_image, make_thumbnail
from imagemesh.media.isolate import IsolatedDecoder

__all__ = ["decode_chunk", "decode_and_prepare"]


def decode_chunk(items: Sequence[SourceItem], limits: ImageLimits, decoder: IsolatedDecoder | None = None) -> tuple[dict[str, np.ndarray], list[Image.Image]]:
    """Decode one chunk and make canonical images + thumbnails. Image failures are
    recorded, never raised. Returns the chunk arrays (without vectors) and the images.

    With ``decoder`` the source files are decoded in its worker process (a crash or hang
    there is a failed image); the canonical JPEG it returns is decoded here, exactly as
    :func:`canonical_image` does in process, so both give the same pixels and vectors."""
    images: list[Image.Image] = []
    ok = np.zeros(len(items), dtype=bool)
    errors = [""] * len(items)
    shas = [""] * len(items)
    sizes = np.zeros((len(items), 2), dtype=np.int32)
    thumbs: list[bytes] = []
    canon: list[bytes] = []
    for i, it in enumerate(items):
        try:
            shas[i] = sha256_file(it.path)
            if decoder is not None:
                size, c_bytes = decoder.canonical(it.path)
                c_img = decode_jpeg(c_bytes)
            else:
                img = load_image(it.path, limits)
                size = img.size
                c_bytes, c_img = canonical_image(img)
            thumb = make_thumbnail(c_img)
        except ImageLoadError as e:
            errors[i] = e.reason
            continue
        except Exception as e:  # a decoder bug must not end the build; report it
            errors[i] = f"{type(e).__name__}: {e}"
            continue
        images.append(c_img)
        ok[i] = True
        sizes[i] = size
        thumbs.append(thumb)
        canon.append(c_bytes)
    out: dict[str, np.ndarray] = {
        "keys": np.array([it.key for it in items], dtype=str),
        "ok": ok,
        "errors": np.array(errors, dtype=str),
        "sha256": np.array(shas, dtype=str),
        "sizes": sizes,
        **pack_blobs(thumbs, "thumb"),
        **pack_blobs(canon, "image"),
    }
    return out, images


def decode_and_prepare(items: Sequence[SourceItem], embeddings: Sequence[Embedding], limits: ImageLimits, decoder: IsolatedDecoder | None = None) -> tuple[dict[str, np.ndarray], list[Any], int]:
    """The CPU work before the networks (decode, canonical image, thumbnail, each
    embedding's :meth:`~Embedding.prepare`): runs in the pipeline's background thread."""
    data, images = decode_chunk(items, limits, decoder)
    return data, [emb.prepare(images) if images else [] for emb in embeddings], len(images)


