"""imagemesh: explore large image collections (arXiv figures) by what the images look like.

Python use::

    import imagemesh
    c = imagemesh.open("demo")                       # a collection folder
    hits = c.neighbors("2306.01841v1", embedding="imagenet", k=20,
                       where={"year": {"gte": 2023}})
    sample = c.random(12, where={"keyword": "transformer"}, seed=0)

Interfaces: :class:`Embedding`, :class:`Index`, :class:`MetadataFilter` (``Eq``, ``In``,
``Range``, ``Contains``, ``Keyword``, ``And``, ``Or``, ``Not``), :class:`Collection`.

Layers (each imports only those below it; see README "Architecture")::

    cli, web, bench, training
    query (Collection, planner, filters -> masks)     ingest (sources, pipeline)
    store (manifest, writer, reader, integrity)
    backends, models, profiles, plugins
    media (decoding, canonical image)
    core (interfaces and values)

Names are imported on first use, so ``import imagemesh`` is cheap.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("imagemesh")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

_EXPORTS = {
    "open": ("imagemesh.query.collection", "open_collection"),
    "open_collection": ("imagemesh.query.collection", "open_collection"),
    "Collection": ("imagemesh.query.collection", "Collection"),
    "Hit": ("imagemesh.query.search", "Hit"),
    "SearchPlan": ("imagemesh.query.planner", "SearchPlan"),
    "CollectionError": ("imagemesh.store.reader", "CollectionError"),
    "ImageNotFound": ("imagemesh.store.reader", "ImageNotFound"),
    "ImagemeshError": ("imagemesh.core.errors", "ImagemeshError"),
    "Embedding": ("imagemesh.core.embedding", "Embedding"),
    "BaseEmbedding": ("imagemesh.core.embedding", "BaseEmbedding"),
    "EmbeddingConfig": ("imagemesh.core.embedding", "EmbeddingConfig"),
    "Prediction": ("imagemesh.core.embedding", "Prediction"),
    "Index": ("imagemesh.core.index", "Index"),
    "IndexCapabilities": ("imagemesh.core.index", "IndexCapabilities"),
    "AllowedRows": ("imagemesh.core.index", "AllowedRows"),
    "IndexError_": ("imagemesh.core.index", "IndexError_"),
    "exact_search": ("imagemesh.core.index", "exact_search"),
    "MetadataFilter": ("imagemesh.core.filters", "MetadataFilter"),
    "Eq": ("imagemesh.core.filters", "Eq"),
    "In": ("imagemesh.core.filters", "In"),
    "Range": ("imagemesh.core.filters", "Range"),
    "Contains": ("imagemesh.core.filters", "Contains"),
    "Keyword": ("imagemesh.core.filters", "Keyword"),
    "And": ("imagemesh.core.filters", "And"),
    "Or": ("imagemesh.core.filters", "Or"),
    "Not": ("imagemesh.core.filters", "Not"),
    "FilterError": ("imagemesh.core.errors", "FilterError"),
    "from_dict": ("imagemesh.core.filters", "from_dict"),
    "parse_filter": ("imagemesh.core.filters", "parse_filter"),
    "to_lance_predicate": ("imagemesh.core.filter_sql", "to_lance_predicate"),
    "MetadataSchema": ("imagemesh.core.schema", "MetadataSchema"),
    "FieldKind": ("imagemesh.core.schema", "FieldKind"),
    "Registry": ("imagemesh.core.registry", "Registry"),
    "Registries": ("imagemesh.core.registry", "Registries"),
    "RegistryError": ("imagemesh.core.registry", "RegistryError"),
    "default_registries": ("imagemesh.plugins", "default_registries"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'imagemesh' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
