"""OpenAPI 3.1 description of the JSON API, served at ``/api/openapi.json``."""

from __future__ import annotations

from typing import Any

from imagemesh.core.filter_schema import filter_json_schema
from imagemesh.web.params import RequestModels, openapi_form_schema, openapi_parameters
from imagemesh.web.settings import WebSettings

__all__ = ["openapi_schema"]

_ARXIV_PATH = {"name": "arxiv_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 80}, "description": "arXiv id, with or without version"}
_ID_PATH = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
_ERROR = {"description": "invalid request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_JPEG = {"description": "JPEG", "content": {"image/jpeg": {}}}


def openapi_schema(collection: Any, settings: WebSettings, models: RequestModels) -> dict[str, Any]:
    """The OpenAPI document for this collection's API.

    Parameters and the ``/api/query`` body come from ``models`` (the pydantic models that
    validate requests, :mod:`imagemesh.web.params`); ``filter`` from
    :func:`~imagemesh.core.filter_schema.filter_json_schema` of the collection's schema.
    """
    fs = filter_json_schema(collection.schema, embeddings=list(collection.embeddings))
    params = lambda model: openapi_parameters(model, fs)  # noqa: E731
    files = {"positive_image": "PNG, JPEG, GIF, WebP, BMP or TIFF", "negative_image": "PNG, JPEG, GIF, WebP, BMP or TIFF"}
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
            "predictions": {"type": "object", "description": "per classifier (e.g. imagenet), top-5 class predictions [{label, p}]"},
            "thumbnail_url": {"type": "string"},
            "duplicates": {"type": "array", "items": {"type": "integer"}, "description": "with collapse=true: ids folded into this hit"},
        },
    }
    facet = {"type": "array", "items": {"type": "object", "properties": {"value": {}, "label": {"type": "string"}, "count": {"type": "integer"}}}}
    ok = lambda ref: {"description": "OK", "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}  # noqa: E731
    return {
        "openapi": "3.1.0",
        "info": {"title": "imagemesh API", "version": "1", "description": "Read-only JSON API of an imagemesh collection. Nothing sent to it is stored."},
        "paths": {
            "/api/info": {"get": {"summary": "Collection size, embeddings, filterable fields, limits, which embeddings have a 2-D map", "responses": {"200": {"description": "OK"}}}},
            "/api/random": {
                "get": {
                    "summary": "A random sample of distinct images matching the filter; a seed fixes one permutation, offset pages through it",
                    "parameters": params(models.random),
                    "responses": {"200": ok("Results"), "400": _ERROR},
                }
            },
            "/api/neighbors": {
                "get": {
                    "summary": "Nearest neighbours of an image under an embedding; the image itself first",
                    "parameters": params(models.neighbors),
                    "responses": {"200": ok("Results"), "400": _ERROR, "404": _ERROR},
                }
            },
            "/api/query": {
                "post": {
                    "summary": "Nearest neighbours of uploaded and/or collection images: positives and negatives",
                    "description": "Query vector = mean(positives) - mean(negatives) in the embedding's reduced space "
                    "(re-normalised for cosine embeddings); with no negatives, the mean of the positives. Uploads are embedded "
                    "by the same network, preprocessing and PCA as the collection, in memory, and never stored. Negative "
                    f"collection images are left out of the results. Body at most {settings.max_upload_bytes} bytes, at most "
                    f"{settings.max_upload_images} images of at most {settings.max_upload_pixels} pixels each.",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": openapi_form_schema(models.query, fs, files, settings.max_upload_images),
                            }
                        },
                    },
                    "responses": {"200": ok("Results"), "400": _ERROR, "404": _ERROR, "413": _ERROR, "415": _ERROR},
                }
            },
            "/api/search": {
                "get": {
                    "summary": "Figures ranked by BM25 relevance of their text (caption, title, abstract, ... the keyword fields) to q; "
                    "the last word is also a prefix; each result has a snippet with the matched words' offsets",
                    "parameters": params(models.text_search),
                    "responses": {"200": ok("TextResults"), "400": _ERROR, "409": _ERROR},
                }
            },
            "/api/concepts": {
                "get": {
                    "summary": "Train a concept (class-balanced logistic regression on the embedding's stored vectors) from figures labelled "
                    "positive and negative, with its cross-validated balanced accuracy, and rank the (filtered) collection by its score. "
                    "Stateless: the labels come with the request, nothing is kept",
                    "parameters": params(models.concept),
                    "responses": {"200": ok("ConceptResults"), "400": _ERROR, "404": _ERROR},
                }
            },
            "/api/clusters": {
                "get": {
                    "summary": "k-means clusters of an embedding's vectors (FAISS, fixed seed, k = sqrt(n/2) in [2, 200]) with label words "
                    "(class-based TF-IDF of captions and titles) and representative figures; filter one with {\"cluster\": {\"embedding\", \"id\"}}",
                    "parameters": params(models.clusters),
                    "responses": {"200": ok("Clusters"), "400": _ERROR},
                }
            },
            "/api/reused": {
                "get": {
                    "summary": "Figures that appear in several papers (same file hash, or within the embedding's calibrated near-duplicate "
                    "distance), grouped, each group's papers in submission order: the first is where the figure first appeared",
                    "parameters": params(models.reused),
                    "responses": {"200": {"description": "OK"}, "400": _ERROR, "404": _ERROR, "409": _ERROR},
                }
            },
            "/api/papers/{arxiv_id}": {
                "get": {
                    "summary": "Every figure of one paper (any version), in figure order, with the paper's title, authors and year",
                    "parameters": [_ARXIV_PATH, *params(models.paper)],
                    "responses": {"200": ok("Paper"), "400": _ERROR, "404": _ERROR},
                }
            },
            "/api/papers/{arxiv_id}/similar": {
                "get": {
                    "summary": "Papers whose figures look like this paper's: for each of its figures the distance to the other paper's "
                    "nearest figure, averaged over its figures (smaller = more alike)",
                    "parameters": [_ARXIV_PATH, *params(models.similar_papers)],
                    "responses": {"200": ok("SimilarPapers"), "400": _ERROR, "404": _ERROR},
                }
            },
            "/api/facets": {
                "get": {
                    "summary": "Counts of archive, category and year (with official names)",
                    "parameters": params(models.facets),
                    "responses": {"200": ok("Facets"), "400": _ERROR},
                }
            },
            "/api/suggest": {
                "get": {
                    "summary": "Most frequent values of a field starting with (then containing a word starting with) a prefix, for autocompletion",
                    "parameters": params(models.suggest),
                    "responses": {"200": ok("Suggestions"), "400": _ERROR},
                }
            },
            "/api/map": {
                "get": {
                    "summary": "The build-time 2-D map (t-SNE, or PCA for large collections) of an embedding, coordinates in [0, 1]",
                    "parameters": params(models.map),
                    "responses": {"200": ok("Map"), "400": _ERROR, "404": _ERROR},
                }
            },
            "/api/images/{id}": {
                "get": {
                    "summary": "All metadata of one image (abstract, authors, figure, predictions, arXiv URL, thumbnail and image URLs)",
                    "parameters": [_ID_PATH],
                    "responses": {"200": {"description": "OK"}, "404": _ERROR},
                }
            },
            "/api/images/{id}/thumbnail": {
                "get": {
                    "summary": "JPEG thumbnail (longest side 256 px), immutable per build (ETag)",
                    "parameters": [_ID_PATH],
                    "responses": {"200": _JPEG, "304": {"description": "not modified"}, "404": _ERROR},
                }
            },
            "/api/images/{id}/image": {
                "get": {
                    "summary": "The canonical JPEG (longest side <= 512 px) that the embeddings saw, immutable per build (ETag)",
                    "parameters": [_ID_PATH],
                    "responses": {"200": _JPEG, "304": {"description": "not modified"}, "404": _ERROR},
                }
            },
            "/api/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}},
        },
        "components": {
            "schemas": {
                "Hit": hit,
                "Results": {
                    "type": "object",
                    "properties": {
                        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
                        "collapsed": {"type": "integer", "description": "hits folded into earlier ones by collapse"},
                        "total": {"type": "integer", "description": "random: images matching the filter"},
                        "next_offset": {"type": "integer", "description": "random: offset of the next page"},
                        "plan": {"type": "object", "description": "kNN: how the filtered search was answered"},
                    },
                },
                "Facets": {"type": "object", "properties": {"archive": facet, "category": facet, "year": facet}},
                "Suggestions": {"type": "object", "properties": {"values": {"type": "array", "items": {"type": "object", "properties": {"value": {"type": "string"}, "count": {"type": "integer"}}}}}},
                "Map": {
                    "type": "object",
                    "properties": {
                        "method": {"type": "string"},
                        "ids": {"type": "array", "items": {"type": "integer"}},
                        "x": {"type": "array", "items": {"type": "number"}},
                        "y": {"type": "array", "items": {"type": "number"}},
                        "clusters": {"type": "array", "items": {"type": "object"}, "description": "label positions: {id, label, size, x, y} (median of the cluster's figures)"},
                    },
                },
                "TextResults": {
                    "type": "object",
                    "required": ["results", "total"],
                    "properties": {
                        "total": {"type": "integer"}, "next_offset": {"type": "integer"},
                        "expansions": {"type": "array", "items": {"type": "string"}},
                        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
                    },
                },
                "ConceptResults": {
                    "type": "object",
                    "required": ["concept", "results"],
                    "properties": {
                        "concept": {"type": "object", "description": "cv_score (balanced accuracy, null with < 2 labels in a class), cv_folds, n_pos, n_neg, embedding"},
                        "total": {"type": "integer"}, "n_yes": {"type": "integer", "description": "figures with score >= 0.5"},
                        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
                    },
                },
                "Clusters": {
                    "type": "object",
                    "required": ["k", "clusters"],
                    "properties": {
                        "k": {"type": "integer"},
                        "clusters": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "integer"}, "size": {"type": "integer"}, "label": {"type": "string"},
                                    "label_words": {"type": "array", "items": {"type": "string"}},
                                    "representatives": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
                                    "matching": {"type": "integer", "description": "with a filter: the cluster's figures that match it"},
                                },
                            },
                        },
                    },
                },
                "Paper": {
                    "type": "object",
                    "required": ["n_figures", "figures"],
                    "properties": {"arxiv_id": {"type": ["string", "null"]}, "title": {"type": ["string", "null"]}, "n_figures": {"type": "integer"},
                                   "figures": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}}},
                },
                "SimilarPapers": {
                    "type": "object",
                    "required": ["papers"],
                    "properties": {
                        "papers": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"arxiv_id": {"type": "string"}, "score": {"type": "number"}, "best": {"$ref": "#/components/schemas/Hit"},
                                               "matched": {"type": "array", "items": {"type": "object"}}},
                            },
                        }
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "upload": {
                            "type": "object",
                            "description": "POST /api/query: the uploaded file at fault",
                            "properties": {"field": {"type": "string"}, "index": {"type": "integer"}, "filename": {"type": "string"}},
                        },
                    },
                },
            }
        },
    }
