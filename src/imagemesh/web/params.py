"""Typed request parameters of the JSON API.

One pydantic model per operation, built for the served collection (its embedding names
and suggest fields become enums) and the server's :class:`~imagemesh.web.settings.WebSettings`
(its limits become bounds). Every request is validated by its model, and the parameters
in ``/api/openapi.json`` are generated from the same model, so the two cannot drift
(``tests/test_schemathesis.py`` checks both ways against a live server).

Wire rules, where a JSON Schema says nothing about query strings:

* a parameter given twice is refused (400), not silently reduced to one value;
* an empty value (``k=``) is a value, validated like any other (an empty ``k`` is not a
  number); leave a parameter out for its default;
* booleans are ``true`` or ``false``;
* ``filter`` is the JSON of a :class:`~imagemesh.core.filters.MetadataFilter` in its
  shorthand form; its JSON Schema comes from :func:`imagemesh.core.filter_schema.filter_json_schema`;
* parameters an operation does not know are refused (400): a misspelt ``fliter`` would
  otherwise return unfiltered results without a word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from imagemesh.web.errors import ApiError
from imagemesh.web.settings import WebSettings

__all__ = ["RequestModels", "request_models", "validate_params", "openapi_parameters", "openapi_form_schema", "FILTER_FIELD"]

#: Name of the parameter that carries filter JSON (described by the filter JSON Schema).
FILTER_FIELD = "filter"
_INT64_MAX = 2**63 - 1
_ID_MAX_CHARS = 200


_ID_ITEM = {"type": "string", "minLength": 1, "maxLength": _ID_MAX_CHARS, "pattern": r"\S"}


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class RequestModels:
    """The parameter model of each operation (classes derived from pydantic ``BaseModel``)."""

    random: type[BaseModel]
    neighbors: type[BaseModel]
    facets: type[BaseModel]
    suggest: type[BaseModel]
    map: type[BaseModel]
    query: type[BaseModel]
    paper: type[BaseModel]
    similar_papers: type[BaseModel]
    text_search: type[BaseModel]
    concept: type[BaseModel]
    clusters: type[BaseModel]
    reused: type[BaseModel]


def _literal(values: Iterable[str]) -> Any:
    """``Literal["a", "b"]`` of ``values`` (``str`` when there are none)."""
    vals = tuple(values)
    return Literal.__getitem__(vals) if vals else str


def request_models(settings: WebSettings, embeddings: Iterable[str], suggest_fields: Iterable[str]) -> RequestModels:
    """Parameter models of every operation for one served collection.

    Args:
        settings: limits (``max_k``, ``max_n``) and defaults.
        embeddings: embedding names (the ``embedding`` enum; default the first).
        suggest_fields: fields ``/api/suggest`` serves (the ``field`` enum).
    """
    emb_type: Any = Optional[_literal(embeddings)]
    s = settings
    filter_ = (Optional[str], Field(None, description='JSON of a metadata filter, e.g. {"category": "cs.CL", "year": {"gte": 2023}} or {"keyword": "transformer"}; several keys mean AND'))
    collapse = (bool, Field(False, description="collapse near-duplicates: a hit is dropped (and listed in the `duplicates` of the earlier hit it matches) when an earlier kept hit has the same content_sha256 or lies within the duplicate threshold under the embedding (cosine distance 0.02; for L2, 5% of the median distance between random pairs)"))
    k = (int, Field(s.default_k, ge=1, le=s.max_k, description="number of neighbours"))

    def model(name: str, **fields: Any) -> type[BaseModel]:
        return create_model(name, __base__=_Params, **fields)

    return RequestModels(
        random=model(
            "RandomParams",
            n=(int, Field(s.default_n, ge=0, le=s.max_n, description="sample size")),
            seed=(Optional[int], Field(None, ge=0, le=_INT64_MAX, description="fixes one permutation of the matching images; none: a fresh sample")),
            offset=(int, Field(0, ge=0, le=10**9, description="position in the seed's permutation (paging)")),
            filter=filter_,
            collapse=collapse,
            embedding=(emb_type, Field(None, description="embedding used by collapse; default: the first")),
        ),
        neighbors=model(
            "NeighborsParams",
            id=(str, Field(min_length=1, max_length=_ID_MAX_CHARS, description="row id, image key or arXiv id")),
            embedding=(emb_type, Field(None, description="default: the first embedding")),
            k=k,
            filter=filter_,
            collapse=collapse,
        ),
        facets=model("FacetsParams", filter=filter_),
        suggest=model(
            "SuggestParams",
            field=(_literal(suggest_fields), Field(description="a field with a list column <field>_list (authors) counts its elements")),
            prefix=(str, Field("", max_length=200)),
            limit=(int, Field(10, ge=1, le=100)),
        ),
        map=model("MapParams", embedding=(emb_type, Field(None, description="default: the first embedding")), filter=filter_),
        paper=model("PaperParams"),
        reused=model(
            "ReusedParams",
            embedding=(emb_type, Field(None, description="the embedding whose near-duplicate distance joins figures; default: the first")),
            id=(Optional[str], Field(None, min_length=1, max_length=_ID_MAX_CHARS, description="only the group of this figure (row id, image key or arXiv id)")),
            limit=(int, Field(50, ge=1, le=500, description="most groups returned, the most papers first")),
        ),
        clusters=model(
            "ClustersParams",
            embedding=(emb_type, Field(None, description="default: the first embedding")),
            filter=(Optional[str], Field(None, description="JSON of a metadata filter: each cluster also gets the count of its figures that match")),
        ),
        concept=model(
            "ConceptParams",
            positive=(list[str], Field(min_length=1, max_length=250, description="figures that show the concept (row ids, image keys or arXiv ids); none may also be a negative")),
            negative=(list[str], Field(min_length=1, max_length=250, description="figures that do not")),
            embedding=(emb_type, Field(None, description="the vectors the classifier is trained on; default: the first embedding")),
            k=(int, Field(s.default_k, ge=1, le=s.max_k, description="figures returned, highest score first")),
            filter=filter_,
        ),
        text_search=model(
            "TextSearchParams",
            q=(str, Field(min_length=1, max_length=500, description="words; the last one is also a prefix unless the text ends with a space")),
            k=(int, Field(s.default_k, ge=1, le=s.max_k, description="results per page")),
            offset=(int, Field(0, ge=0, le=10**6, description="position in the ranking (paging)")),
            filter=filter_,
        ),
        similar_papers=model(
            "SimilarPapersParams",
            embedding=(emb_type, Field(None, description="default: the first embedding")),
            k=(int, Field(min(20, s.max_k), ge=1, le=s.max_k, description="number of papers")),
            filter=(Optional[str], Field(None, description="JSON of a metadata filter on the candidate figures")),
        ),
        query=model(
            "QueryForm",
            positive=(list[str], Field([], max_length=s.max_query_items, description="row ids, image keys or arXiv ids")),
            negative=(list[str], Field([], max_length=s.max_query_items, description="row ids, image keys or arXiv ids; left out of the results")),
            embedding=(emb_type, Field(None, description="default: the first embedding")),
            k=k,
            filter=filter_,
            collapse=collapse,
        ),
    )


def validate_params(model: type[BaseModel], items: Iterable[tuple[str, str]]) -> Any:
    """Validate query-string or form ``(name, value)`` pairs with ``model``.

    List fields collect repeated names; any other name given twice is refused. Values
    arrive as text and are converted by pydantic (strictly for booleans).

    Raises:
        ApiError: 400 naming the parameter and what is wrong with it.
    """
    lists = {name for name, f in model.model_fields.items() if _is_list(f.annotation)}
    data: dict[str, Any] = {}
    for name, value in items:
        if name in lists:
            if not value.strip() or len(value) > _ID_MAX_CHARS:
                raise ApiError(400, f"{name}: each value is a row id, image key or arXiv id of 1 to {_ID_MAX_CHARS} characters")
            data.setdefault(name, []).append(value)
            continue
        if name in data:
            raise ApiError(400, f"{name[:40]}: given more than once")
        if name not in model.model_fields:
            known = ", ".join(model.model_fields)
            raise ApiError(400, f"unknown parameter {name[:40]!r}; this operation takes {known}")
        if model.model_fields[name].annotation is bool:
            if value not in ("true", "false"):
                raise ApiError(400, f"{name}: must be true or false, got {value[:40]!r}")
        data[name] = value
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "parameters"
        raise ApiError(400, f"{where}: {err['msg']}") from None


def _is_list(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is list


def _field_schemas(model: type[BaseModel]) -> tuple[dict[str, Any], set[str]]:
    js = model.model_json_schema()
    props = js.get("properties", {})
    for p in props.values():
        p.pop("title", None)
        # Optional[X] renders as anyOf [X, null]; a parameter is either absent or an X
        if "anyOf" in p:
            kinds = [a for a in p.pop("anyOf") if a.get("type") != "null"]
            if len(kinds) == 1:
                p.update(kinds[0])
            if p.get("default", 0) is None:
                p.pop("default")
    return props, set(js.get("required", []))


def openapi_parameters(model: type[BaseModel], filter_schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OpenAPI 3.1 ``parameters`` (in the query string) of ``model``; ``filter`` is
    described as JSON content with ``filter_schema``."""
    props, required = _field_schemas(model)
    out = []
    for name, schema in props.items():
        if schema.get("type") == "array":  # repeated parameters: each a non-blank id
            schema["items"] = dict(_ID_ITEM)
        desc = schema.pop("description", None)
        p: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if desc:
            p["description"] = desc
        if name == FILTER_FIELD:
            p["content"] = {"application/json": {"schema": dict(filter_schema)}}
        else:
            p["schema"] = schema
        out.append(p)
    return out


def openapi_form_schema(model: type[BaseModel], filter_schema: Mapping[str, Any], files: Mapping[str, str], max_items: int) -> dict[str, Any]:
    """JSON Schema of a multipart body: ``model``'s fields, plus the binary file fields
    ``files`` (name -> description, at most ``max_items`` each); at least one of
    ``positive`` or ``positive_image`` is required."""
    props, _ = _field_schemas(model)
    for name, schema in props.items():
        if schema.get("type") == "array":
            schema["items"] = dict(_ID_ITEM)
        if name == FILTER_FIELD:
            props[name] = {**{k: v for k, v in schema.items() if k == "description"}, "type": "string", "contentMediaType": "application/json", "contentSchema": dict(filter_schema)}
    for name, desc in files.items():
        props[name] = {"type": "array", "items": {"type": "string", "format": "binary"}, "maxItems": max_items, "description": desc}
    return {
        "type": "object",
        "properties": props,
        "additionalProperties": False,
        "anyOf": [{"required": ["positive"], "properties": {"positive": {"minItems": 1}}}, {"required": ["positive_image"], "properties": {"positive_image": {"minItems": 1}}}],
    }
