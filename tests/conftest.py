"""Shared fixtures: real data from ../shared/data and real collections built from it."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest

from imagemesh.ingest.build import BuildOptions, build_collection
from imagemesh.query.collection import Collection, open_collection

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FIGURES = SHARED / "arxiv-figures"
SNAPSHOT = SHARED / "arxiv-metadata" / "arxiv-metadata-oai-snapshot.sample.jsonl"


# ---------------------------------------------------------------- no silent skips in CI
#
# Tests skip where a machine lacks something (chromium, Ghostscript, torch, ../shared/data).
# On CI that would hide a missing install step, so .ci/run sets IMAGEMESH_NO_SKIPS=1 and
# every skip becomes a failure, except the opt-in full kill matrix.
_OPT_IN_SKIPS = ("IMAGEMESH_KILL_MATRIX=full",)


def _forbidden_skip(report: pytest.TestReport | pytest.CollectReport) -> bool:
    if os.environ.get("IMAGEMESH_NO_SKIPS") != "1" or not report.skipped or hasattr(report, "wasxfail"):
        return False
    return not any(tag in str(report.longrepr) for tag in _OPT_IN_SKIPS)


def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.longrepr = f"skipped, but IMAGEMESH_NO_SKIPS=1 (CI) forbids skips: {report.longrepr}"
    report.outcome = "failed"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if _forbidden_skip(report):
        _fail_skip(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    report = outcome.get_result()
    if _forbidden_skip(report):  # module-level skips (e.g. no chromium)
        _fail_skip(report)


# ---------------------------------------------------------------- fast lane
#
# `pytest -m "not slow"` is the developer's loop (synthetic fixtures, imagemesh.testing):
# a test is slow when it builds from the real data (../shared/data), drives a browser,
# kills processes, fuzzes, trains or starts Ray. The full suite (README's test command, CI)
# runs everything.
SLOW_FIXTURES = {"real_collection", "small_source", "categorized_collection"}
SLOW_MODULES = {
    "test_browser", "test_kill_build", "test_kill_serve", "test_fuzz_api", "test_fuzz_decoders", "test_ray",
    "test_train", "test_imagenet_parity", "test_arxiv_src", "test_privacy", "test_models", "test_integrity", "test_schemathesis", "test_collapse_calibration",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else ""
        if module in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def require_shared() -> None:
    if not FIGURES.is_dir():
        pytest.skip(f"real data not found at {FIGURES}")


def make_subset(dst: Path, n: int, start: int = 0) -> Path:
    """Copy ``n`` rows of the real figures CSV (and their images) into ``dst``."""
    require_shared()
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "images").mkdir(exist_ok=True)
    with open(FIGURES / "figures.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)[start : start + n]
        fields = reader.fieldnames
    assert fields is not None
    with open(dst / "figures.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow(r)
            for p in (FIGURES / "images").iterdir():
                if p.stem == r["arxiv_id"]:
                    shutil.copy(p, dst / "images" / p.name)
    return dst


@pytest.fixture(scope="session")
def real_collection(tmp_path_factory: pytest.TempPathFactory) -> Collection:
    """All 166 real arXiv figures, embeddings raw + imagenet, exact backend."""
    require_shared()
    out = tmp_path_factory.mktemp("real") / "coll"
    build_collection(FIGURES, out, BuildOptions(backend="exact", progress=False))
    return open_collection(out)


@pytest.fixture(scope="session")
def small_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 real figures (PDF, PNG, JPG mix) in the figures-CSV format."""
    return make_subset(tmp_path_factory.mktemp("src") / "figs", 24)


@pytest.fixture(scope="session")
def categorized_collection(tmp_path_factory: pytest.TempPathFactory) -> Collection:
    """20 real figures joined with real arXiv snapshot records (titles, authors and
    categories from 20 different papers of the sample, re-keyed to the figures' arXiv
    ids), so archives and categories have values with official names. raw embedding,
    exact backend."""
    import json

    from imagemesh.ingest.sources.figures_csv import read_figures_csv

    root = tmp_path_factory.mktemp("categorized")
    src = make_subset(root / "src", 20, start=40)
    items, _ = read_figures_csv(src / "figures.csv")
    ids = list(dict.fromkeys(str(it.metadata["arxiv_id"]) for it in items))
    records = []
    for line in SNAPSHOT.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("categories") and rec["categories"].split()[0] not in {r["categories"].split()[0] for r in records}:
            records.append(rec)
    snap = root / "snapshot.jsonl"
    snap.write_text("".join(json.dumps(dict(r, id=i)) + "\n" for i, r in zip(ids, records)), encoding="utf-8")
    out = root / "coll"
    build_collection(src, out, BuildOptions(embeddings=["raw", "ternary"], backend="exact", metadata_files=[snap], progress=False))
    return open_collection(out)


def tar_package(path: Path, members: dict[str, str | bytes]) -> Path:
    """A gzipped tar at ``path`` (an arXiv-style source package) holding ``members``
    (name -> text or bytes); returns ``path``."""
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            raw = data.encode("utf-8") if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path
