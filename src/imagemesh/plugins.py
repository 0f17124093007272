"""The installed plugins: fresh registries of embeddings, index backends and frontends.

Built-ins register through the same entry-point groups as third-party plugins
(``imagemesh.embeddings``, ``imagemesh.backends``, ``imagemesh.frontends``; see
``pyproject.toml``); the user's imported ONNX models register from their cards.
"""

from __future__ import annotations

from typing import Any

from imagemesh.core.registry import Registries
from imagemesh.models.cards import register_user_models

__all__ = ["default_registries"]


def default_registries(models_folder: Any = None) -> Registries:
    """Fresh registries holding the built-ins, any installed plugins and the user's imported
    models (the cards in ``models_folder``, default ``$IMAGEMESH_MODELS`` or
    ``~/.local/share/imagemesh/models``; see :mod:`imagemesh.models.cards`).

    Raises:
        RegistryError: two plugins register the same name.
    """
    regs = Registries()
    regs.embeddings.load_entry_points("imagemesh.embeddings")
    regs.backends.load_entry_points("imagemesh.backends")
    regs.frontends.load_entry_points("imagemesh.frontends")
    register_user_models(regs.embeddings, models_folder)
    return regs
