"""MetadataFilter: JSON form, reference semantics, and the escaped LanceDB compiler.

The congruence tests run the same random filters through the pure-Python ``matches``
and through LanceDB on a real table on disk, with hostile strings as values.
"""

from __future__ import annotations

import json
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagemesh.profiles.arxiv import ARXIV_SCHEMA, IMAGES_ARROW_SCHEMA, compose_search_text
from imagemesh import And, Contains, Eq, FilterError, In, Keyword, Not, Or, Range, from_dict, parse_filter, to_lance_predicate

SCHEMA = ARXIV_SCHEMA
HOSTILE = ["O'Brien", "'; DROP TABLE images; --", "100%", "a_b", "\\", '"quoted"', "ünïcödé Ω", "x' OR '1'='1", "NULL", "", " ", "`row_id`"]


def test_shorthands_parse_to_canonical() -> None:
    assert from_dict({"year": 2023}) == Eq("year", 2023)
    assert from_dict({"year": {"gte": 2020}}) == Range("year", gte=2020)
    assert from_dict({"category": {"in": ["cs.CL", "cs.CV"]}}) == In("category", ("cs.CL", "cs.CV"))
    assert from_dict({"category": ["cs.CL"]}) == In("category", ("cs.CL",))
    assert from_dict({"keyword": "transformer"}) == Keyword("transformer")
    assert from_dict({"title": {"contains": "x"}}) == Contains("title", "x")
    assert from_dict({"year": 2023, "archive": "cs"}) == And((Eq("year", 2023), Eq("archive", "cs")))
    assert from_dict({"not": {"year": 2023}}) == Not(Eq("year", 2023))
    assert from_dict({"or": [{"year": 2022}, {"year": 2023}]}) == Or((Eq("year", 2022), Eq("year", 2023)))
    assert from_dict({}) is None and parse_filter("") is None


@pytest.mark.parametrize(
    "f",
    [
        Eq("year", 2023),
        In("category", ("cs.CL", "O'Brien")),
        Range("year", gt=1, lte=5),
        Contains("caption", "it's"),
        Keyword("transformer"),
        Not(Or((Eq("archive", "cs"), And((Range("year", gte=2020), Contains("title", "x")))))),
    ],
)
def test_canonical_json_round_trip(f) -> None:
    assert from_dict(json.loads(json.dumps(f.to_dict()))) == f


@pytest.mark.parametrize(
    "bad",
    [
        "[1, 2]",
        "{not json",
        '{"year": {"between": [1, 2]}}',
        '{"year": true}',
        '{"year": {"gte": "2020"}}',
        '{"year": {"gte": NaN}}',
        '{"op": "nope"}',
        '{"op": "eq", "field": "year"}',
        '{"title": "a\\u0000b"}',
        '{"keyword": 5}',
        json.dumps({"title": "x" * 5000}),
        json.dumps({"category": {"in": ["a"] * 2000}}),
    ],
)
def test_malformed_filters_raise_filter_error(bad: str) -> None:
    with pytest.raises(FilterError):
        parse_filter(bad)


def test_deep_nesting_is_refused() -> None:
    f: dict = {"year": 1}
    for _ in range(40):
        f = {"not": f}
    with pytest.raises(FilterError):
        from_dict(f)


@pytest.mark.parametrize("field", ["bogus", "year; DROP TABLE images", "`year`", "predictions", ""])
def test_compiler_rejects_unknown_columns(field: str) -> None:
    with pytest.raises(FilterError):
        to_lance_predicate(Eq(field, "x") if field else Contains("nope", "x"), SCHEMA)


def test_compiler_checks_value_types() -> None:
    with pytest.raises(FilterError):
        to_lance_predicate(Eq("year", "2020"), SCHEMA)
    with pytest.raises(FilterError):
        to_lance_predicate(Eq("title", 5), SCHEMA)
    with pytest.raises(FilterError):
        to_lance_predicate(Range("title", gte=1), SCHEMA)


def test_compiler_escapes_quotes() -> None:
    pred = to_lance_predicate(Eq("title", "O'Brien'; DROP TABLE images; --"), SCHEMA)
    assert pred is not None
    assert "'O''Brien''; DROP TABLE images; --'" in pred


# ------------------------------------------------------------------ congruence on a real LanceDB table

ROWS = [
    {"title": "O'Brien on transformers", "caption": "Figure with <b> & \"quotes\"", "year": 2023, "archive": "cs", "category": "cs.CL", "categories": ["cs.CL", "cs.LG"], "authors": "A. O'Brien"},
    {"title": "'; DROP TABLE images; --", "caption": "100% of a_b", "year": 2022, "archive": "cs", "category": "cs.CV", "categories": ["cs.CV"], "authors": "B"},
    {"title": "ünïcödé Ω plots", "caption": None, "year": None, "archive": "math", "category": "math.GT", "categories": ["math.GT"], "authors": None},
    {"title": None, "caption": "x' OR '1'='1", "year": 2007, "archive": None, "category": None, "categories": None, "authors": "C. Backslash \\"},
    {"title": "NULL", "caption": "", "year": 1999, "archive": "hep-th", "category": "hep-th", "categories": ["hep-th", "gr-qc"], "authors": "D"},
    {"title": "Transformer TRANSFORMER", "caption": "`row_id`", "year": 2023, "archive": "cs", "category": "cs.CL", "categories": [], "authors": "E"},
]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory):
    rows = []
    for i, r in enumerate(ROWS):
        full = {f.name: None for f in IMAGES_ARROW_SCHEMA}
        full.update(r, row_id=i, image_key=f"k{i}", arxiv_id=f"2301.0000{i}", version=1, abstract=None)
        full["search_text"] = compose_search_text(full)
        rows.append(full)
    db = lancedb.connect(str(tmp_path_factory.mktemp("lance")))
    return db.create_table("images", data=pa.Table.from_pylist(rows, schema=IMAGES_ARROW_SCHEMA)), rows


def _lance_rows(tbl, f) -> set[int]:
    pred = to_lance_predicate(f, SCHEMA)
    q = tbl.search().select(["row_id"]).limit(None)
    if pred is not None:
        q = q.where(pred)
    return set(q.to_arrow()["row_id"].to_pylist())


texts = st.sampled_from(HOSTILE + ["cs", "transformer", "o'b", "2023", "Ω", "plots", "cs.CL", "hep-th", "ünïcödé plots", "o'brien TRANSFORMERS", "2301.00001"])
text_fields = st.sampled_from(["title", "caption", "archive", "category", "authors", "categories"])
leaf = st.one_of(
    st.builds(Eq, text_fields, texts),
    st.builds(lambda f, vs: In(f, tuple(vs)), text_fields, st.lists(texts, min_size=1, max_size=3)),
    st.builds(lambda v: Eq("year", v), st.sampled_from([1999, 2007, 2022, 2023, 2024])),
    st.builds(lambda lo, hi: Range("year", gte=lo, lt=hi), st.integers(1990, 2025), st.integers(1990, 2030)),
    st.builds(Contains, text_fields, texts),
    st.builds(Keyword, texts),
)
filters = st.recursive(
    leaf,
    lambda kids: st.one_of(
        st.builds(lambda xs: And(tuple(xs)), st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda xs: Or(tuple(xs)), st.lists(kids, min_size=1, max_size=3)),
        st.builds(Not, kids),
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(f=filters)
def test_lance_predicate_and_python_reference_select_the_same_rows(table, f) -> None:
    tbl, rows = table
    expected = {i for i, r in enumerate(rows) if f.matches(r)}
    assert _lance_rows(tbl, f) == expected


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_literals(table, value: str) -> None:
    tbl, rows = table
    for f in (Eq("title", value), Contains("caption", value), Keyword(value)):
        assert _lance_rows(tbl, f) == {i for i, r in enumerate(rows) if f.matches(r)}
    # the table is intact afterwards
    assert tbl.count_rows() == len(rows)


def test_null_semantics_are_two_valued(table) -> None:
    tbl, rows = table
    f = Not(Eq("year", 2023))
    got = _lance_rows(tbl, f)
    assert 2 in got  # year is null -> Eq is false -> Not is true
    assert got == {i for i, r in enumerate(rows) if f.matches(r)}
    assert np.all([not Eq("year", 2023).matches(rows[2])])


def test_empty_text_on_empty_list_matches_nothing(table) -> None:
    """Found by hypothesis: '' is a substring of the joined empty list in SQL, but an empty
    list has no element to contain it."""
    tbl, rows = table
    f = Contains("categories", "")
    assert _lance_rows(tbl, f) == {i for i, r in enumerate(rows) if f.matches(r)} == {0, 1, 2, 4}
