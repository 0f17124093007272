"""The explorer in a real browser: Playwright for Python driving Debian's chromium against a
live uvicorn server on 127.0.0.1 serving the real 166-figure collection.

Screenshots of the main views go to test-artifacts/ (gitignored). Skipped, with a message,
only where /usr/bin/chromium is absent (CI installs it with apt-get).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from imagemesh.query.collection import Collection
from imagemesh.web.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]

if not CHROMIUM.exists():
    pytest.skip("browser tests need Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package (the test extra)")


@contextlib.contextmanager
def live_server(collection: Collection) -> Iterator[str]:
    """The explorer for ``collection`` under uvicorn on a free loopback port."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(collection), host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(real_collection: Collection) -> Iterator[str]:
    with live_server(real_collection) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    ctx.set_default_timeout(30_000)  # generous: CI machines can be slow; a wait only returns early
    pg = ctx.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.base = server  # type: ignore[attr-defined]
    pg.expected_errors = []  # type: ignore[attr-defined]  # console messages a test provokes on purpose
    yield pg
    ctx.close()
    # no script errors and no CSP violations anywhere
    problems = [p for p in problems if not any(x in p for x in pg.expected_errors)]  # type: ignore[attr-defined]
    assert not problems, problems


def shot(pg: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def open_app(pg: Any, query: str = "?seed=1") -> None:
    pg.goto(pg.base + "/" + query)
    pg.wait_for_selector("body[data-ready='1']")


def tile_ids(pg: Any) -> list[int]:
    return [int(x) for x in pg.eval_on_selector_all("#grid .tile", "ts => ts.map(t => t.dataset.id)")]


def url_state(pg: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(pg.url).query).items()}


def wait_status(pg: Any, pattern: str) -> str:
    pg.wait_for_function("p => new RegExp(p).test(document.getElementById('status').textContent)", arg=pattern)
    return pg.inner_text("#status")


def test_double_click_shows_neighbours_most_similar_first(page, real_collection) -> None:
    open_app(page)
    shot(page, "grid-random")
    target = tile_ids(page)[2]
    page.dblclick(f"#grid .tile[data-id='{target}']")
    wait_status(page, "nearest neighbours of")
    ids = tile_ids(page)
    assert ids[0] == target and len(ids) == 40
    assert page.inner_text("#grid .tile >> nth=0").startswith("target")
    dists = [float(t.split("=")[1]) for t in page.eval_on_selector_all("#grid .tile .dist", "ds => ds.slice(1).map(d => d.textContent)")]
    assert dists == sorted(dists) and all(d > 0 for d in dists)
    # the same order as the library's exact kNN under the default embedding
    assert ids == [h.id for h in real_collection.neighbors(target, embedding=real_collection.embeddings[0], k=40)]
    assert url_state(page)["mode"] == "neighbors" and url_state(page)["id"] == str(target)
    assert not page.is_hidden("#selected")
    shot(page, "grid-neighbours")


def test_keyword_and_year_filters_narrow_results(page, real_collection) -> None:
    from imagemesh.query.text_rank import TextRanker

    ranker = TextRanker(real_collection)
    open_app(page)
    page.fill("#keyword", "translation")
    page.click("#search")
    want = ranker.search("translation", 40)  # the last word is also a prefix: translation, translations
    text = wait_status(page, "whose text matches")
    assert f"of {want.total} figures whose text matches" in text and len(tile_ids(page)) == min(40, want.total)
    # ranked by relevance (the library's BM25 order), each matching one of the words, the words marked
    assert tile_ids(page) == [int(r) for r in want.rows]
    allowed = real_collection.allowed({"or": [{"keyword": w} for w in want.expansions]})
    assert all(allowed[i] for i in tile_ids(page))
    marks = page.eval_on_selector_all("#grid .tile .snippet mark", "ms => ms.map(m => m.textContent.toLowerCase())")
    assert marks and set(marks) <= set(want.expansions), marks
    # the year dropdown lists counts; choosing one narrows further
    options = page.eval_on_selector_all("#year option", "os => os.map(o => [o.value, o.textContent])")
    year, label = next((v, t) for v, t in options if v)
    assert re.search(r"\(\d+\)$", label)
    page.click("#more-filters")  # year is one of the optional filters
    page.select_option("#year", year)
    m = ranker.search("translation", 40, real_collection.allowed({"year": int(year)})).total
    wait_status(page, f"of {m} figures whose text matches")
    assert all(real_collection.get(i)["year"] == int(year) for i in tile_ids(page))
    assert url_state(page)["keyword"].strip() == "translation" and url_state(page)["year"] == year
    # this collection has no category data: the dropdown says so instead of offering a lone "(unknown)"
    assert page.inner_text("#category").strip() == "no category data in this collection"
    assert page.eval_on_selector("#category", "s => s.disabled")
    # as the user types, the last word is a prefix: "machine transl" finds "machine translation"
    page.fill("#keyword", "machine transl")
    text = wait_status(page, "“machine transl”")
    want = ranker.search("machine transl", 40, real_collection.allowed({"year": int(year)}))
    assert f"of {want.total} figures" in text and "translation" in text
    assert tile_ids(page) == [int(r) for r in want.rows]


def test_plain_words_titles_and_link_fallbacks(page, real_collection) -> None:
    """Issue 16's small fixes: tiles show a short title; the details heading names the arXiv id
    and figure number (not a row id); the status line says how many figures matched, with the
    search plan in its tooltip; a blank keyword is no filter; a link's unknown embedding falls
    back to the first one with a notice."""
    open_app(page, "?seed=1&embedding=nope")
    text = page.inner_text("#status")
    first = real_collection.embeddings[0]
    assert "“nope” is not in this collection; showing " + first in text, text
    assert page.eval_on_selector("#embedding", "s => s.value") == first
    assert "nope" not in page.eval_on_selector_all("#embedding option", "os => os.map(o => o.value)")
    first = real_collection.embeddings[0]
    assert first in page.inner_text("#embedding") and "—" in page.inner_text("#embedding")  # each embedding says what it is
    i = tile_ids(page)[0]
    title = real_collection.get(i)["title"]
    assert page.inner_text(f"#grid .tile[data-id='{i}'] .tile-title")[:20] == title[:20]
    page.click(f"#grid .tile[data-id='{i}']")
    page.wait_for_function("i => document.getElementById('detail-kicker').title === `row ${i}`", arg=i)
    kicker = page.inner_text("#detail-kicker")
    rec = real_collection.get(i)
    assert kicker.startswith(rec["arxiv_id"]) and f"Figure {rec['figure']}" in kicker and "#" not in kicker, kicker
    # neighbours within a filter: plain words, the plan only in the tooltip
    page.fill("#keyword", "translation")
    page.dblclick(f"#grid .tile[data-id='{i}']")
    n = real_collection.count({"keyword": "translation"})
    text = wait_status(page, "nearest neighbours of")
    assert f"among {n} matching figures" in text and "plan" not in text, text
    assert page.eval_on_selector("#status", "s => s.title").startswith("search plan: ")
    # a blank keyword box is no filter (it used to match nothing)
    open_app(page, "?seed=1")
    page.fill("#keyword", "   ")
    page.click("#search")
    text = wait_status(page, "random sample")
    assert f"of {len(real_collection)} images" in text, text


def test_paper_view_and_papers_like_this(page, real_collection) -> None:
    from imagemesh.query.papers import similar_papers

    open_app(page)
    i = tile_ids(page)[3]
    aid = real_collection.get(i)["arxiv_id"]
    page.click(f"#grid .tile[data-id='{i}']")
    page.wait_for_function("i => document.getElementById('detail-kicker').title === `row ${i}`", arg=i)
    page.click("#detail-papers")
    text = wait_status(page, "papers whose figures look like")
    emb = real_collection.embeddings[0]
    want = similar_papers(real_collection, aid, emb, k=40)
    assert tile_ids(page) == [m.best_row for m in want], text
    assert url_state(page)["paper"] == aid and url_state(page)["papers"] == "similar"
    shot(page, "papers-like-this")
    # reload: the same view from the URL
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    wait_status(page, "papers whose figures look like")
    assert tile_ids(page) == [m.best_row for m in want]
    # all figures of a paper (the demo has one per paper)
    j = tile_ids(page)[0]
    page.click(f"#grid .tile[data-id='{j}']")
    page.wait_for_function("j => document.getElementById('detail-kicker').title === `row ${j}`", arg=j)
    page.click("#detail-paper")
    wait_status(page, f"All 1 figure of {real_collection.get(j)['arxiv_id']}")
    assert tile_ids(page) == [j]
    # a search from the form leaves the paper view
    page.click("#search")
    wait_status(page, "random sample")
    assert "paper" not in url_state(page)


def test_clusters_view_and_cluster_filter(page, real_collection) -> None:
    open_app(page)
    page.click("#view-clusters")
    page.wait_for_selector("#clusters-list .cluster-card")
    emb = real_collection.embeddings[0]
    cl = real_collection.clustering(emb)
    cards = page.eval_on_selector_all("#clusters-list .cluster-card", "cs => cs.map(c => [Number(c.dataset.id), c.querySelector('.cluster-label').textContent])")
    assert cards == [[x.id, x.label] for x in cl.clusters]
    assert url_state(page)["view"] == "clusters"
    shot(page, "clusters")
    # choosing a cluster filters the grid to its figures
    c1 = cl.clusters[1]
    page.click(f"#clusters-list .cluster-card[data-id='{c1.id}']")
    text = wait_status(page, "random sample")
    assert f"of {c1.size} matching images" in text and "cluster" in text, text
    assert set(tile_ids(page)) == set(int(r) for r in cl.rows(c1.id))
    assert url_state(page)["cluster"] == f"{emb}:{c1.id}" and url_state(page).get("view") is None
    assert page.inner_text("#cluster-chip").startswith("Cluster:")
    # the link restores it; the chip removes it
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    wait_status(page, f"of {c1.size} matching images")
    page.click("#cluster-chip")
    text = wait_status(page, f"of {len(real_collection)} images")
    assert "cluster" not in url_state(page) and page.is_hidden("#cluster-chip")


def test_concept_from_the_tray_ranks_the_grid(page, real_collection) -> None:
    import numpy as np

    from imagemesh.query.concepts import train_concept

    open_app(page)
    ids = tile_ids(page)
    pos, neg = ids[:3], ids[3:6]
    for i, button in [*((i, "#detail-pos") for i in pos), *((i, "#detail-neg") for i in neg)]:
        page.click(f"#grid .tile[data-id='{i}']")
        page.wait_for_function("i => document.getElementById('detail-kicker').title === `row ${i}`", arg=i)
        page.click(button)
    page.click("#tray-concept")
    text = wait_status(page, "ranked by a concept learned from 3 examples and 3 counter-examples")
    emb = real_collection.embeddings[0]
    model = train_concept(real_collection, emb, pos, neg)
    scores = model.scores(np.asarray(real_collection.vectors(emb), np.float32))
    want = [int(r) for r in np.lexsort((np.arange(len(scores)), -scores))[:40]]
    assert tile_ids(page) == want, text
    assert url_state(page)["concept"] == "1" and url_state(page)["mode"] == "query"
    assert page.inner_text(f"#grid .tile[data-id='{want[0]}'] .dist").startswith("p=")
    shot(page, "concept")


def test_url_reloads_same_state_and_back_forward(page, browser) -> None:
    open_app(page, "?seed=5")
    random_ids = tile_ids(page)
    page.dblclick("#grid .tile >> nth=4")
    wait_status(page, "nearest neighbours of")
    page.select_option("#embedding", "raw")
    wait_status(page, "under raw")
    page.check("#collapse")
    wait_status(page, "under raw")
    neighbour_ids = tile_ids(page)
    url = page.url
    assert {"mode": "neighbors", "embedding": "raw", "collapse": "1"}.items() <= url_state(page).items()
    # a fresh page on the same URL shows the same state
    other = browser.new_page()
    other.goto(url)
    other.wait_for_selector("body[data-ready='1']")
    assert tile_ids(other) == neighbour_ids
    assert other.input_value("#embedding") == "raw" and other.is_checked("#collapse") and other.is_checked("#mode-neighbors")
    other.close()
    # back / forward walk the history
    page.go_back()
    page.wait_for_function("() => !document.getElementById('collapse').checked")
    wait_status(page, "under raw")
    page.go_back()
    wait_status(page, "under imagenet")
    page.go_back()
    wait_status(page, "random sample")
    assert tile_ids(page) == random_ids
    page.go_forward()
    wait_status(page, "nearest neighbours of")


def test_upload_query_returns_neighbours(page, real_collection) -> None:
    open_app(page)
    page.set_input_files("#upload", files=[{"name": "my-figure.jpg", "mimeType": "image/jpeg", "buffer": real_collection.image(12)}])
    wait_status(page, "closest to 1 image")
    assert tile_ids(page)[0] == 12 and len(tile_ids(page)) == 40
    assert url_state(page)["mode"] == "query" and not page.is_hidden("#tray")
    assert page.eval_on_selector("#tray-pos img", "i => i.src.startsWith('blob:')")
    shot(page, "upload-query")


def test_bad_uploads_are_named_and_do_not_break_later_queries(page, real_collection) -> None:
    open_app(page)
    # not an image (a text file named .jpg): refused before it reaches the tray
    page.set_input_files("#upload", files=[{"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"just some text\n" * 20}])
    wait_status(page, "Not added: notes.jpg is not an image")
    assert page.is_hidden("#tray")
    # an image header with a corrupt body: the server refuses it, naming the file, and the page drops it
    page.expected_errors.append("the server responded with a status of 400")
    broken = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
    page.set_input_files("#upload", files=[{"name": "broken.png", "mimeType": "image/png", "buffer": broken}])
    text = wait_status(page, "broken.png was removed from the query")
    assert "broken.png:" in text, text
    assert page.eval_on_selector_all("#tray-pos img", "is => is.length") == 0
    # the next upload works
    page.set_input_files("#upload", files=[{"name": "good.jpg", "mimeType": "image/jpeg", "buffer": real_collection.image(12)}])
    wait_status(page, "images closest to 1 image")
    assert tile_ids(page)[0] == 12


def test_multi_image_positive_negative_query(page) -> None:
    open_app(page)
    ids = tile_ids(page)
    for i, button in ((ids[0], "#detail-pos"), (ids[1], "#detail-pos"), (ids[2], "#detail-neg")):
        page.click(f"#grid .tile[data-id='{i}']")
        page.wait_for_function("i => document.getElementById('detail-kicker').title === `row ${i}`", arg=i)
        page.click(button)
    page.click("#tray-search")
    text = wait_status(page, "closest to 2 images and away from 1")
    assert "mean(positives) - mean(negatives)" in text
    got = tile_ids(page)
    assert ids[2] not in got and len(got) == 40
    st = url_state(page)
    assert st["pos"] == f"{ids[0]},{ids[1]}" and st["neg"] == str(ids[2])


def test_hover_shows_top5_and_details_panel(page) -> None:
    open_app(page)
    page.hover("#grid .tile >> nth=3")
    page.wait_for_selector("#tooltip:not([hidden])")
    assert "ImageNet top-5" in page.text_content("#tooltip")
    assert page.eval_on_selector_all("#tooltip ol[data-classifier='imagenet'] li", "l => l.length") == 5
    shot(page, "hover-top5")
    # click opens the detail panel: full canonical image, caption, title, arXiv link, figure number
    tid = tile_ids(page)[3]
    page.click(f"#grid .tile[data-id='{tid}']")
    page.wait_for_selector("#detail:not([hidden])")
    page.wait_for_function("() => document.getElementById('detail-img').naturalWidth > 0")
    assert page.get_attribute("#detail-img", "src").startswith(f"/api/images/{tid}/image")
    assert page.get_attribute("#detail-arxiv", "href").startswith("https://arxiv.org/abs/")
    assert "figure" in page.inner_text("#detail-meta") and page.inner_text("#detail-title")
    page.wait_for_function("() => document.getElementById('detail-abstract').textContent !== 'Loading…'")
    shot(page, "detail-panel")
    page.keyboard.press("Escape")
    assert page.is_hidden("#detail")


def test_keyboard_navigation(page) -> None:
    open_app(page)
    ids = tile_ids(page)
    page.focus("#grid .tile >> nth=0")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.dataset.id") == str(ids[1])
    page.keyboard.press("ArrowDown")
    down = int(page.evaluate("document.activeElement.dataset.id"))
    assert ids.index(down) > 2  # next row, same column
    page.keyboard.press("ArrowUp")
    assert page.evaluate("document.activeElement.dataset.id") == str(ids[1])
    page.keyboard.press("i")
    page.wait_for_selector("#detail:not([hidden])")
    page.keyboard.press("Escape")
    assert page.is_hidden("#detail")
    page.focus(f"#grid .tile[data-id='{ids[1]}']")
    page.keyboard.press("Enter")
    wait_status(page, "nearest neighbours of")
    assert tile_ids(page)[0] == ids[1]
    assert page.evaluate("document.activeElement.dataset.id") == str(ids[1])


def test_more_results_on_scroll_and_export(page, real_collection) -> None:
    open_app(page, "?seed=2")
    first = tile_ids(page)
    page.mouse.wheel(0, 20000)
    page.wait_for_function("() => document.querySelectorAll('#grid .tile').length >= 80")
    ids = tile_ids(page)
    assert ids[:40] == first and len(set(ids)) == len(ids)
    assert int(url_state(page)["n"]) >= 80
    page.wait_for_timeout(300)
    ids = tile_ids(page)
    with page.expect_download() as dl:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text(encoding="utf-8"))))
    assert [int(r["id"]) for r in rows] == ids and rows[0]["rank"] == "1"
    assert rows[0]["title"] == (real_collection.get(ids[0])["title"] or "")
    with page.expect_download() as dl:
        page.click("#export-json")
    d = json.loads(Path(dl.value.path()).read_text(encoding="utf-8"))
    assert [r["id"] for r in d["results"]] == ids and d["mode"] == "random"


def test_collapse_toggle_and_suggestions(page, real_collection) -> None:
    open_app(page)
    page.dblclick("#grid .tile >> nth=0")
    wait_status(page, "nearest neighbours of")
    page.check("#collapse")
    wait_status(page, "nearest neighbours of")
    assert url_state(page)["collapse"] == "1" and len(set(tile_ids(page))) == len(tile_ids(page))
    # optional filters reveal title/author inputs whose suggestions come from /api/suggest
    page.click("#more-filters")
    title = real_collection.get(0)["title"]
    page.fill("#f-title", title[:5])
    page.wait_for_function("t => [...document.querySelectorAll('#suggest-title option')].some(o => o.value === t)", arg=title)


def map_point(page, xy) -> tuple[float, float]:
    """Screen position of a map point, read once the canvas has stopped moving.

    Results arriving under the map can add a scrollbar and shift the canvas by a few
    pixels, more than the 10 px a hover reaches, so the box is read until two reads agree.
    """
    box = page.locator("#map-canvas").bounding_box()
    for _ in range(20):
        page.wait_for_timeout(100)
        again = page.locator("#map-canvas").bounding_box()
        if again == box:
            break
        box = again
    side = min(box["width"], box["height"]) - 40
    x = box["x"] + (box["width"] - side) / 2 + float(xy[0]) * side
    y = box["y"] + (box["height"] - side) / 2 + (1 - float(xy[1])) * side
    return x, y


def test_map_view_selects_an_image(page, real_collection) -> None:
    open_app(page)
    page.click("#view-map")
    page.wait_for_function("() => /figures/.test(document.getElementById('map-legend').textContent)")
    assert url_state(page)["view"] == "map"
    xy, _ = real_collection.map_2d(real_collection.embeddings[0])
    # the most isolated point, so that a click lands on it alone
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(len(xy)) * 9
    pick = int(np.argmax(d.min(1)))
    page.locator("#map-canvas").scroll_into_view_if_needed()
    page.wait_for_load_state("networkidle")
    x, y = map_point(page, xy[pick])
    page.mouse.move(x, y, steps=4)
    page.wait_for_selector("#tooltip:not([hidden])")
    before = page.locator("#map-canvas").bounding_box()
    page.mouse.click(x, y)
    page.wait_for_function("id => new URLSearchParams(location.search).get('id') === String(id)", arg=pick)
    page.wait_for_selector("#detail:not([hidden])")
    page.wait_for_timeout(300)
    assert page.locator("#map-canvas").bounding_box() == before  # a click never moves the canvas
    # so a second click at the same spot lands on the same figure
    page.mouse.click(x, y)
    page.wait_for_timeout(300)
    assert url_state(page)["id"] == str(pick)
    shot(page, "map-selected")
    for _ in range(5):
        page.click("#map-zoom-in")
    page.wait_for_timeout(600)
    shot(page, "map-zoomed")
    page.click("#detail-similar")
    wait_status(page, "nearest neighbours of")
    assert tile_ids(page)[0] == pick and url_state(page).get("view") is None


def test_phone_width(browser, server) -> None:
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True)
    pg = ctx.new_page()
    pg.goto(server + "/?seed=1")
    pg.wait_for_selector("body[data-ready='1']")
    assert pg.evaluate("document.documentElement.scrollWidth") <= 390
    boxes = pg.eval_on_selector_all("#grid .tile", "ts => ts.slice(0, 3).map(t => t.getBoundingClientRect().top)")
    assert boxes[0] == boxes[1]  # at least two columns
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "phone-grid.png"))
    target = pg.eval_on_selector("#grid .tile >> nth=1", "t => t.dataset.id")
    pg.dblclick("#grid .tile >> nth=1")
    pg.wait_for_function("() => /nearest neighbours of/.test(document.getElementById('status').textContent)")
    assert pg.eval_on_selector("#grid .tile", "t => t.dataset.id") == target
    pg.tap("#grid .tile >> nth=2")
    pg.wait_for_selector("#detail:not([hidden])")
    box = pg.locator("#detail").bounding_box()
    assert box["width"] <= 390 and box["x"] >= 0
    pg.screenshot(path=str(ARTIFACTS / "phone-detail.png"))
    pg.click("#detail-close")
    pg.click("#view-map")
    pg.wait_for_function("() => /figures/.test(document.getElementById('map-legend').textContent)")
    assert pg.evaluate("document.documentElement.scrollWidth") <= 390
    pg.screenshot(path=str(ARTIFACTS / "phone-map.png"))
    ctx.close()


def test_about_page_and_no_inline_script(page) -> None:
    page.goto(page.base + "/about")
    text = page.inner_text("main")
    assert "no data from its users" in text and "Nothing you upload is stored" in text
    static = Path(__file__).resolve().parents[1] / "src" / "imagemesh" / "web" / "static"
    for html in static.glob("*.html"):
        src = html.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)", src)
        assert not re.search(r"\son[a-z]+=", src) and "style=" not in src
    for module in static.glob("*.js"):  # app.js and the modules it imports
        js = module.read_text(encoding="utf-8")
        assert "innerHTML" not in js.replace("Nothing here uses innerHTML", "") and "eval(" not in js, module.name


def test_metadata_is_rendered_as_text(page) -> None:
    """Hostile metadata (HTML, LaTeX, quotes) from the API shows up as text, never as markup."""
    evil = '<img src=x id=pwned onerror="window.pwned=1"><b>bold</b> & "q" $\\alpha<\\beta$'

    def fake_random(route: Any) -> None:
        hit = {"id": 0, "distance": None, "image_key": "k", "arxiv_id": "2301.00001", "version": 1, "title": evil, "authors": evil,
               "caption": evil, "figure": evil, "year": 2023, "category": evil, "categories": [evil],
               "predictions": {"imagenet": [{"label": evil, "p": 0.5}]}, "thumbnail_url": "/api/images/0/thumbnail"}
        route.fulfill(status=200, content_type="application/json", body=json.dumps({"results": [hit], "total": 1, "next_offset": 1}))

    page.route("**/api/random*", fake_random)
    page.route("**/api/images/0", lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(
        {"id": 0, "title": evil, "authors": evil, "abstract": evil, "caption": evil, "figure": evil, "image_url": "/api/images/0/image"})))
    open_app(page)
    page.hover("#grid .tile")
    page.wait_for_selector("#tooltip:not([hidden])")
    page.click("#grid .tile")
    page.wait_for_selector("#detail:not([hidden])")
    assert page.query_selector("#pwned") is None and page.query_selector("#tooltip b, #detail b, #grid b") is None
    assert not page.evaluate("window.pwned === 1")
    page.wait_for_function("e => document.getElementById('detail-abstract').textContent === e", arg=evil)
    assert page.query_selector("#pwned") is None and page.query_selector("#tooltip b, #detail b, #grid b") is None
    assert evil in page.text_content("#tooltip") and evil in page.text_content("#detail-title")


def test_category_dropdown_shows_official_names_and_keyword_finds_them(browser, categorized_collection) -> None:
    """On a collection joined with arXiv snapshot records: the category dropdown lists
    official names with counts, choosing one narrows the grid, the keyword box (the
    full-text index) finds images by a category's official name, and hover shows the
    ternary class."""
    from imagemesh.profiles.arxiv.records import Taxonomy

    c = categorized_collection
    tax = Taxonomy.load()
    with live_server(c) as base:
        ctx = browser.new_context(viewport={"width": 1360, "height": 900})
        ctx.set_default_timeout(30_000)
        pg = ctx.new_page()
        problems: list[str] = []
        pg.on("pageerror", lambda e: problems.append(str(e)))
        pg.base = base
        open_app(pg)
        options = pg.eval_on_selector_all("#category option", "os => os.map(o => [o.value, o.textContent])")
        facet = {f["value"]: f for f in c.facets()["category"] if f["value"]}
        assert len(facet) >= 5
        for value, f in facet.items():
            name = tax.category_name(value)
            assert name and [value, f"{value} \u2014 {name} ({f['count']})"] in options
        shot(pg, "category-names")
        value = max(facet, key=lambda v: facet[v]["count"])
        pg.select_option("#category", value)
        wait_status(pg, f"of {facet[value]['count']} matching images")
        assert tile_ids(pg) and all(c.get(i)["category"] == value for i in tile_ids(pg))
        assert url_state(pg)["category"] == value
        # keyword: the official name of another category, typed in lower case
        other = next(v for v in facet if v != value)
        pg.select_option("#category", "")
        pg.fill("#keyword", tax.category_name(other).lower() + " ")  # whole words: no prefix
        pg.click("#search")
        n = c.count({"keyword": tax.category_name(other)})
        wait_status(pg, f"of {n} figures whose text matches")
        got = set(tile_ids(pg))
        assert {r for r in range(len(c)) if c.get(r)["category"] == other} <= got
        assert got == set(np.flatnonzero(c.allowed({"keyword": tax.category_name(other)})).tolist())
        shot(pg, "keyword-category-name")
        # hover shows the ternary classifier's class (this collection has that embedding)
        pg.hover("#grid .tile >> nth=0")
        pg.wait_for_selector("#tooltip:not([hidden])")
        labels = pg.eval_on_selector_all("#tooltip ol[data-classifier='ternary'] .pred-label", "ls => ls.map(l => l.textContent)")
        assert labels and set(labels) <= {"diagram", "sensor", "mixed"}, labels
        assert "ternary prediction" in pg.text_content("#tooltip")
        shot(pg, "hover-ternary")
        ctx.close()
        assert not problems, problems


@pytest.fixture(scope="module")
def jsonl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Collection]]:
    """A synthetic jsonl collection (imagemesh.testing: museum / artist / century / tags fields)."""
    from imagemesh.query.collection import open_collection
    from imagemesh.testing import build_tiny_collection

    c = open_collection(build_tiny_collection(tmp_path_factory.mktemp("jsonl"), n=48))
    with live_server(c) as url:
        yield url, c


def test_collection_with_its_own_fields_gets_its_own_controls(browser: Any, jsonl_server: tuple[str, Collection]) -> None:
    """No arXiv field exists: the facet dropdowns, the text filters and the detail panel come
    from the collection's schema, and choosing a facet value narrows the grid."""
    url, c = jsonl_server
    ctx = browser.new_context(viewport={"width": 1360, "height": 900})
    ctx.set_default_timeout(30_000)
    pg = ctx.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.base = url  # type: ignore[attr-defined]
    open_app(pg)
    options = pg.eval_on_selector_all("#facet-museum option", "os => os.map(o => o.value)")
    assert sorted(v for v in options if v) == ["Louvre", "Prado", "Rijksmuseum", "Uffizi"]
    assert pg.query_selector("#facet-artist") is not None and pg.query_selector("#facet-century") is not None
    assert pg.query_selector("#archive") is None or pg.is_hidden("#archive")
    pg.select_option("#facet-museum", "Louvre")
    wait_status(pg, "of 12 matching images")
    ids = tile_ids(pg)
    assert ids and all(c.get(i)["museum"] == "Louvre" for i in ids)
    assert url_state(pg).get("museum") == "Louvre"
    pg.click(f"#grid .tile[data-id='{ids[0]}']")
    pg.wait_for_selector("#detail:not([hidden])")
    pg.wait_for_function("() => document.querySelectorAll('#detail-fields dt').length > 0")
    dts = pg.eval_on_selector_all("#detail-fields dt", "ds => ds.map(d => d.textContent)")
    assert {"museum", "artist", "century"} <= set(dts), dts
    pg.screenshot(path=str(ARTIFACTS / "jsonl-detail.png"))
    ctx.close()
    assert not problems, problems


def test_saved_concept_is_a_dropdown(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """`imagemesh concept save` adds a facet column in a new version: the explorer shows it as
    a dropdown, and choosing "yes" narrows the grid to the figures the concept accepts."""
    from imagemesh.query.collection import open_collection
    from imagemesh.query.concepts import save_concept
    from imagemesh.testing import build_tiny_collection

    root = build_tiny_collection(tmp_path_factory.mktemp("concept-ui"), n=48)
    labels = [(i, i % 4 == 2) for i in range(0, 40)]  # "blue" figures
    saved = save_concept(root, "blue", labels, threshold=0.5)
    c = open_collection(root)
    with live_server(c) as url:
        ctx = browser.new_context(viewport={"width": 1360, "height": 900})
        ctx.set_default_timeout(30_000)
        pg = ctx.new_page()
        pg.base = url  # type: ignore[attr-defined]
        open_app(pg)
        options = pg.eval_on_selector_all("#facet-blue option", "os => os.map(o => o.value)")
        assert sorted(v for v in options if v) == ["no", "yes"]
        pg.select_option("#facet-blue", "yes")
        wait_status(pg, f"of {saved.n_yes} matching images")
        assert set(tile_ids(pg)) == {i for i in range(len(c)) if c.get(i)["blue"] == "yes"}
        ctx.close()
