"""arXiv ids, the official taxonomy, and the metadata snapshot reader on real records."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagemesh.profiles.arxiv.records import Taxonomy, parse_arxiv_id, read_snapshot

from .conftest import SNAPSHOT, require_shared


@pytest.mark.parametrize(
    "text,id_,v,year",
    [
        ("2306.01841v1", "2306.01841", 1, 2023),
        ("0704.0001", "0704.0001", None, 2007),
        ("arXiv:1501.00001v12", "1501.00001", 12, 2015),
        ("hep-th/9901001", "hep-th/9901001", None, 1999),
        ("math.GT/0309136v2", "math.GT/0309136", 2, 2003),
    ],
)
def test_parse_ids(text: str, id_: str, v: int | None, year: int) -> None:
    a = parse_arxiv_id(text)
    assert (a.id, a.version, a.year) == (id_, v, year)


@pytest.mark.parametrize("bad", ["", "2306.1841", "hello", "../etc/passwd", "2306.01841v", "HEP-TH/9901001"])
def test_bad_ids(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_arxiv_id(bad)


def test_taxonomy_aliases_and_names() -> None:
    t = Taxonomy.load()
    assert t.canonical_category("math.IT") == "cs.IT"
    assert t.canonical_category("cmp-lg") == "cs.CL"
    assert t.archive_of("cs.CL") == "cs" and t.archive_of("hep-th") == "hep-th"
    assert t.category_name("cs.CL") == "Computation and Language"
    assert t.archive_name("cs") == "Computer Science"


def test_snapshot_sample_reads_every_record(tmp_path: Path) -> None:
    require_shared()
    t = Taxonomy.load()
    recs, problems = read_snapshot(SNAPSHOT, t)
    assert len(recs) == 200 and problems == []
    r = recs["0704.0001"]
    assert r.category == "hep-ph" and r.archive == "hep-ph" and r.year == 2007
    assert r.title.startswith("Calculation of prompt diphoton") and "\n" not in r.title
    assert all(rec.category is None or rec.category == rec.categories[0] for rec in recs.values())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "nonsense"}\n[1]\n\n{"id": "0704.0002", "categories": "math.CO cs.CG"}\n', encoding="utf-8")
    recs, problems = read_snapshot(bad, t)
    assert list(recs) == ["0704.0002"] and len(problems) == 2
