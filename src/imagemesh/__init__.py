"""imagemesh: explore large image collections (arXiv figures) by what the images look like.

Python use::

    import imagemesh
    c = imagemesh.open("demo")                       # a collection folder
    hits = c.neighbors("2306.01841v1", embedding="imagenet", k=20,
                       where={"year": {"gte": 2023}})
    sample = c.random(12, where={"keyword": "transformer"}, seed=0)

Interfaces: :class:`Embedding`, :class:`Index`, :class:`MetadataFilter` (``Eq``, ``In``,
``Range``, ``Contains``, ``Keyword``, ``And``, ``Or``, ``Not``), :class:`Collection`.
"""

from __future__ import annotations

from .collection import Collection, CollectionError, Hit, ImageNotFound, SearchPlan, open_collection
from .embedding import BaseEmbedding, Embedding, EmbeddingConfig, Prediction
from .filters import And, Contains, Eq, FilterError, In, Keyword, MetadataFilter, Not, Or, Range, from_dict, parse_filter, to_lance_predicate
from .index import Index, IndexError_, exact_search
from .registry import Registries, Registry, RegistryError, default_registries
from .schema import MetadataSchema

open = open_collection  # noqa: A001 - ``imagemesh.open(path)`` is the public entry point

__version__ = "0.1.0"

__all__ = [
    "open",
    "Collection",
    "CollectionError",
    "Hit",
    "ImageNotFound",
    "SearchPlan",
    "Embedding",
    "BaseEmbedding",
    "EmbeddingConfig",
    "Prediction",
    "Index",
    "IndexError_",
    "exact_search",
    "MetadataFilter",
    "Eq",
    "In",
    "Range",
    "Contains",
    "Keyword",
    "And",
    "Or",
    "Not",
    "FilterError",
    "from_dict",
    "parse_filter",
    "to_lance_predicate",
    "MetadataSchema",
    "Registry",
    "Registries",
    "RegistryError",
    "default_registries",
]
