"""Registries of named implementations (embeddings, index backends, frontends).

A :class:`Registry` is an object, never import-time global state. Implementations are
registered by name as lazy ``"package.module:Attr"`` strings (after fsspec's registry);
:func:`imagemesh.plugins.default_registries` fills fresh registries from the entry-point groups
``imagemesh.embeddings``, ``imagemesh.backends`` and ``imagemesh.frontends``, which is how
the built-ins register too (see ``pyproject.toml``). A name is never silently overwritten.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from imagemesh.core.errors import ImagemeshError

__all__ = ["Registry", "Registries", "RegistryError"]

T = TypeVar("T")


class RegistryError(ImagemeshError, KeyError):
    """Unknown name, a clash on registration, or a target that cannot be imported."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Name -> lazily imported object."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._targets: dict[str, str] = {}
        self._loaded: dict[str, T] = {}

    def register(self, name: str, target: str | T, *, replace: bool = False) -> None:
        """Register ``target`` (an object or a ``"pkg.mod:Attr"`` string) under ``name``.

        Raises:
            RegistryError: ``name`` is taken and ``replace`` is false.
        """
        if not replace and (name in self._targets or name in self._loaded):
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._loaded.pop(name, None)
        self._targets.pop(name, None)
        if isinstance(target, str):
            self._targets[name] = target
        else:
            self._loaded[name] = target

    def get(self, name: str) -> T:
        """The object registered as ``name``, imported on first use.

        Raises:
            RegistryError: unknown name or import failure.
        """
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._targets:
            raise RegistryError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names()) or '(none)'}")
        mod_name, _, attr = self._targets[name].partition(":")
        try:
            obj: Any = importlib.import_module(mod_name)
            for part in attr.split(".") if attr else []:
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise RegistryError(f"{self.kind} {name!r} ({self._targets[name]}) cannot be loaded: {e}") from e
        self._loaded[name] = obj
        return obj

    def names(self) -> list[str]:
        return sorted(set(self._targets) | set(self._loaded))

    def __contains__(self, name: object) -> bool:
        return name in self._targets or name in self._loaded

    def load_entry_points(self, group: str) -> None:
        """Register every entry point of ``group`` (a clash raises :class:`RegistryError`)."""
        for ep in entry_points(group=group):
            if ep.name in self and self._targets.get(ep.name) == ep.value:
                continue  # the same distribution seen twice (e.g. an editable install)
            self.register(ep.name, ep.value)


@dataclass
class Registries:
    embeddings: Registry[Any] = field(default_factory=lambda: Registry("embedding"))
    backends: Registry[Any] = field(default_factory=lambda: Registry("index backend"))
    frontends: Registry[Any] = field(default_factory=lambda: Registry("frontend"))
