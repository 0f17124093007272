"""Settings of the web app (constructor arguments, no globals)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WebSettings"]


@dataclass(frozen=True)
class WebSettings:
    """Limits and defaults of the JSON API.

    Attributes:
        max_k: largest ``k`` for ``/api/neighbors``.
        max_n: largest ``n`` for ``/api/random``.
        max_filter_chars: longest accepted ``filter`` parameter (characters).
        title: page title.
    """

    max_k: int = 500
    max_n: int = 500
    default_k: int = 40
    default_n: int = 40
    max_filter_chars: int = 8_192
    title: str = "imagemesh"
