"""The exceptions every layer shares.

:class:`ImagemeshError` is the base of imagemesh's own errors, so a caller can catch
everything imagemesh raises on bad input with one ``except``. Each subclass also derives
from the built-in it has always been (``ValueError``, ``KeyError``, ``RuntimeError``), so
existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = ["ImagemeshError", "FilterError"]


class ImagemeshError(Exception):
    """Base class of imagemesh's errors."""


class FilterError(ImagemeshError, ValueError):
    """A filter is malformed, names an unknown field, or has a value of the wrong type."""
