"""OpenAPI 3.1 description of the JSON API, served at ``/api/openapi.json``."""

from __future__ import annotations

from typing import Any

from .settings import WebSettings

__all__ = ["openapi_schema"]

_FILTER = {
    "name": "filter",
    "in": "query",
    "required": False,
    "description": 'JSON form of a metadata filter, e.g. {"category": "cs.CL", "year": {"gte": 2023}} or {"keyword": "transformer"}. Several keys mean AND.',
    "schema": {"type": "string"},
}
_ERROR = {"description": "invalid request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def openapi_schema(collection: Any, settings: WebSettings) -> dict[str, Any]:
    """The OpenAPI document for this collection's API (embedding names included as an enum)."""
    hit = {
        "type": "object",
        "required": ["id", "distance", "image_key", "thumbnail_url"],
        "properties": {
            "id": {"type": "integer", "description": "dense row id"},
            "distance": {"type": ["number", "null"], "description": "distance under the embedding (null for random samples)"},
            "image_key": {"type": "string"},
            "arxiv_id": {"type": ["string", "null"]},
            "version": {"type": ["integer", "null"]},
            "title": {"type": ["string", "null"]},
            "authors": {"type": ["string", "null"]},
            "caption": {"type": ["string", "null"]},
            "figure": {"type": ["string", "null"]},
            "archive": {"type": ["string", "null"]},
            "category": {"type": ["string", "null"]},
            "categories": {"type": ["array", "null"], "items": {"type": "string"}},
            "year": {"type": ["integer", "null"]},
            "predictions": {"type": "object", "description": "per embedding, top-5 class predictions [{label, p}]"},
            "thumbnail_url": {"type": "string"},
        },
    }
    facet = {"type": "array", "items": {"type": "object", "properties": {"value": {}, "label": {"type": "string"}, "count": {"type": "integer"}}}}
    ok = lambda ref: {"description": "OK", "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}  # noqa: E731
    return {
        "openapi": "3.1.0",
        "info": {"title": "imagemesh API", "version": "1", "description": "Read-only JSON API of an imagemesh collection."},
        "paths": {
            "/api/info": {"get": {"summary": "Collection size, embeddings and filterable fields", "responses": {"200": {"description": "OK"}}}},
            "/api/random": {
                "get": {
                    "summary": "A random sample of distinct images matching the filter",
                    "parameters": [
                        {"name": "n", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": settings.max_n}},
                        {"name": "seed", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                        _FILTER,
                    ],
                    "responses": {"200": ok("Results"), "400": _ERROR},
                }
            },
            "/api/neighbors": {
                "get": {
                    "summary": "Nearest neighbours of an image under an embedding; the image itself first",
                    "parameters": [
                        {"name": "id", "in": "query", "required": True, "schema": {"type": "string"}, "description": "row id, image key or arXiv id"},
                        {"name": "embedding", "in": "query", "schema": {"type": "string", "enum": list(collection.embeddings)}},
                        {"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": settings.max_k}},
                        _FILTER,
                    ],
                    "responses": {"200": ok("Results"), "400": _ERROR, "404": _ERROR},
                }
            },
            "/api/facets": {
                "get": {
                    "summary": "Counts of archive, category and year (with official names)",
                    "parameters": [_FILTER],
                    "responses": {"200": ok("Facets"), "400": _ERROR},
                }
            },
            "/api/images/{id}": {
                "get": {
                    "summary": "All metadata of one image",
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}],
                    "responses": {"200": {"description": "OK"}, "404": _ERROR},
                }
            },
            "/api/images/{id}/thumbnail": {
                "get": {
                    "summary": "JPEG thumbnail (longest side 256 px), immutable per build",
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}],
                    "responses": {"200": {"description": "JPEG", "content": {"image/jpeg": {}}}, "304": {"description": "not modified"}, "404": _ERROR},
                }
            },
        },
        "components": {
            "schemas": {
                "Hit": hit,
                "Results": {"type": "object", "properties": {"results": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}}}},
                "Facets": {"type": "object", "properties": {"archive": facet, "category": facet, "year": facet}},
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            }
        },
    }
