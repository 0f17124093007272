"""Settings of the web app (constructor arguments, no globals)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WebSettings"]


@dataclass(frozen=True)
class WebSettings:
    """Limits and defaults of the JSON API.

    Attributes:
        max_k: largest ``k`` for ``/api/neighbors`` and ``/api/query``.
        max_n: largest ``n`` for ``/api/random``.
        max_filter_chars: longest accepted ``filter`` parameter (characters).
        max_upload_bytes: largest ``POST /api/query`` body (all files and fields), bytes;
            the body is held in memory only, never written to disk.
        max_upload_pixels: largest uploaded image, width * height, checked from the image
            header before decoding (decompression-bomb guard).
        max_upload_images: most uploaded images in one query.
        max_query_items: most positives + negatives (ids and uploads) in one query.
        isolate_uploads: decode uploaded images in an
            :class:`~imagemesh.media.isolate.IsolatedDecoder` worker process (one per server
            process, started on the first upload) so a decoder crash or hang cannot take
            the server down; ``False`` decodes in the request thread.
        upload_workers: uploads decoded and embedded at once per server process, each with
            its own decoder worker process, on threads of their own: queries never wait
            behind uploads for a request thread.
        upload_queue: uploads that may wait for a worker; one more gets 503 with
            ``Retry-After`` at once (admission control) instead of piling up.
        warm_uploads: at start, in the background, start the decoder workers and load the
            embedding networks, so the first upload does not pay for them (``/api/info``
            says ``uploads_ready``).
        upload_decode_timeout_s: wall-clock limit of one isolated upload decode, seconds.
        upload_decode_memory_bytes: address space the decoder worker may add, bytes.
        worker_threads: threads that run requests in one server process (anyio's thread
            limiter, default 40). Queries are CPU-bound: more threads than cores only
            interleave them, and starve the thread that opens and warms a new version.
            Applied at ASGI startup (lifespan).
        title: page title.
    """

    max_k: int = 500
    max_n: int = 500
    default_k: int = 40
    default_n: int = 40
    max_filter_chars: int = 8_192
    max_upload_bytes: int = 16 * 1024 * 1024
    max_upload_pixels: int = 40_000_000
    max_upload_images: int = 8
    max_query_items: int = 32
    isolate_uploads: bool = True
    upload_workers: int = 1
    upload_queue: int = 4
    warm_uploads: bool = True
    upload_decode_timeout_s: float = 20.0
    upload_decode_memory_bytes: int = 1024 * 1024 * 1024
    worker_threads: int = 4
    title: str = "imagemesh"
