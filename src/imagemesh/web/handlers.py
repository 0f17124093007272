"""The API's route handlers: module-level functions reading :class:`~imagemesh.web.state.ServingState`
from ``request.app.state`` (the route table is in :mod:`imagemesh.web.app`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from imagemesh.query.concepts import ConceptError, train_concept
from imagemesh.query.papers import paper_rows, similar_papers
from imagemesh.query.sampling import sample_rows
from imagemesh.query.text_rank import snippet
from imagemesh.store.reader import CollectionError, ImageNotFound
from imagemesh.web.errors import ApiError
from imagemesh.web.openapi import openapi_schema
from imagemesh.web.params import validate_params
from imagemesh.web.state import ServingState
from imagemesh.web.upload import UploadError, canonical_upload, read_form

__all__ = ["info", "random_", "neighbors", "query", "text_search", "concept", "clusters", "reused", "paper", "similar_papers_", "facets", "suggest", "map_", "image", "thumbnail", "full_image", "openapi", "index_page", "about_page"]

STATIC = Path(str(resources.files("imagemesh.web") / "static"))
QUERY_FILES = ("positive_image", "negative_image")


def info(request: Request) -> JSONResponse:
    """Size, embeddings, the schema (``fields``), limits, which embeddings have a map."""
    st = ServingState.of(request)
    c, s = st.collection, st.settings
    d = c.info()
    d["title"] = s.title
    d["limits"] = {"max_k": s.max_k, "max_n": s.max_n, "max_upload_bytes": s.max_upload_bytes, "max_upload_images": s.max_upload_images, "max_query_items": s.max_query_items}
    d["maps"] = {name: bool(c.manifest.embeddings[name].get("map")) for name in c.embeddings}
    d["uploads_ready"] = st.uploads_ready
    return JSONResponse(d)


def random_(request: Request) -> JSONResponse:
    """A random sample; a seed fixes one permutation of the matching images, ``offset`` pages it
    (the sampler of the CLI and Python, :mod:`imagemesh.query.sampling`)."""
    st = ServingState.of(request)
    c, p = st.collection, st.params(request, st.models.random)
    emb = st.embedding(p.embedding)
    sel = st.selection(p.filter) or c.select(None)
    page, total = sample_rows(sel, len(c), st.fetch_k(p.n, p.collapse), p.seed, p.offset)
    body = st.results(c.hits(page), emb, p.n, p.collapse)
    body.update(total=total, offset=p.offset, seed=p.seed, next_offset=p.offset + len(page))
    return JSONResponse(body)


def neighbors(request: Request) -> JSONResponse:
    """kNN of a collection image, with the plan used."""
    st = ServingState.of(request)
    c, p = st.collection, st.params(request, st.models.neighbors)
    row = st.resolve(p.id)
    emb = st.embedding(p.embedding)
    hits, plan = c.neighbors_with_plan(row, embedding=emb, k=st.fetch_k(p.k, p.collapse), where=st.selection(p.filter))
    body = {"query": row, "embedding": emb, "metric": st.metrics[emb], "plan": plan.to_dict()}
    body.update(st.results(hits, emb, p.k, p.collapse))
    return JSONResponse(body)


async def query(request: Request) -> JSONResponse:
    """kNN of a combined query vector (multipart form).

    Fields: ``positive`` / ``negative`` (repeatable; row id, image key or arXiv id),
    files ``positive_image`` / ``negative_image`` (repeatable; PNG, JPEG, GIF, WebP,
    BMP, TIFF), ``embedding``, ``k``, ``filter``, ``collapse``. The query vector is
    ``mean(positives) - mean(negatives)`` in the embedding's reduced space (Rocchio
    without weights), re-normalised for cosine embeddings; with no negatives it is
    the mean of the positives. Negative collection images never appear in results.
    """
    st = ServingState.of(request)
    c, s = st.collection, st.settings
    if request.query_params:
        names = ", ".join(sorted(request.query_params))[:80]
        raise ApiError(400, f"POST /api/query takes its parameters as form fields, not in the query string ({names})")
    form = await read_form(request, s.max_upload_bytes, s.max_query_items + 16)
    for name in form.files:
        if name not in QUERY_FILES:
            raise ApiError(400, f"unknown file field {name[:40]!r}; use positive_image or negative_image")
    p = validate_params(st.models.query, [(name, v) for name, vals in form.fields.items() for v in vals])
    emb, k, collapse = st.embedding(p.embedding), p.k, p.collapse
    sel = st.selection(p.filter)
    pos_ids = [st.resolve(v) for v in p.positive]
    neg_ids = [st.resolve(v) for v in p.negative]
    pos_files = form.files.get("positive_image", [])
    neg_files = form.files.get("negative_image", [])
    if len(pos_files) + len(neg_files) > s.max_upload_images:
        raise ApiError(400, f"at most {s.max_upload_images} images per query")
    if len(pos_ids) + len(neg_ids) + len(pos_files) + len(neg_files) > s.max_query_items:
        raise ApiError(400, f"at most {s.max_query_items} query items")
    if not pos_ids and not pos_files:
        raise ApiError(400, "give at least one positive: an uploaded image (positive_image) or a collection image (positive)")

    def embed(dec: object = None) -> tuple[np.ndarray, np.ndarray | None]:
        vecs = c.vectors(emb)
        parts_p = [np.asarray(vecs[pos_ids], np.float32)] if pos_ids else []
        parts_n = [np.asarray(vecs[neg_ids], np.float32)] if neg_ids else []
        if pos_files or neg_files:
            images = []
            for fld, files in (("positive_image", pos_files), ("negative_image", neg_files)):
                names = form.filenames.get(fld, [])
                for i, data in enumerate(files):
                    try:
                        images.append(canonical_upload(data, st.upload_limits, dec))  # type: ignore[arg-type]
                    except UploadError as e:
                        name = names[i] if i < len(names) else f"{fld} {i + 1}"
                        raise UploadError(e.status, f"{name}: {e.message}", {"field": fld, "index": i, "filename": name}) from None
            try:
                embedder = c.query_embedder(emb)
            except CollectionError as e:
                raise ApiError(409, f"cannot embed uploads: {e}") from None
            up = embedder(images, canonical=True)
            if pos_files:
                parts_p.append(up[: len(pos_files)])
            if neg_files:
                parts_n.append(up[len(pos_files) :])
        p = np.concatenate(parts_p).mean(0)
        n = np.concatenate(parts_n).mean(0) if parts_n else None
        return p, n

    # uploads: their own threads behind an admission gate (503 when full); ids only: cheap
    p, n = await (st.run_upload(embed) if pos_files or neg_files else run_in_threadpool(embed))
    qv = p if n is None else p - n
    if st.metrics[emb] == "cosine":
        norm = float(np.linalg.norm(qv))
        if norm < 1e-6:
            raise ApiError(400, "positives and negatives cancel out; the query vector is zero")
        qv = qv / norm
    fetch = min(len(c), st.fetch_k(k, collapse) + len(set(neg_ids)))
    dist, ids, plan = await run_in_threadpool(c.search_vectors, qv[None, :].astype(np.float32), emb, fetch, sel)
    negs = set(neg_ids)
    keep = [(int(i), float(d)) for i, d in zip(ids[0], dist[0]) if i >= 0 and int(i) not in negs]
    hits = c.hits([i for i, _ in keep], [d for _, d in keep])
    body = {
        "query": {"positive": pos_ids, "negative": neg_ids, "positive_uploads": len(pos_files), "negative_uploads": len(neg_files)},
        "embedding": emb,
        "metric": st.metrics[emb],
        "combination": "mean(positives) - mean(negatives)" if n is not None else "mean(positives)",
        "plan": plan.to_dict(),
    }
    body.update(st.results(hits, emb, k, collapse))
    return JSONResponse(body)


def _paper_id(request: Request) -> str:
    aid = str(request.path_params["arxiv_id"])
    if not aid or len(aid) > 80:
        raise ApiError(400, "arxiv_id: 1 to 80 characters")
    return aid


def _figure_key(h: dict[str, Any]) -> tuple[int, str, int]:
    fig = str(h.get("figure") or "")
    digits = "".join(ch for ch in fig.split(".")[0] if ch.isdigit())
    return (int(digits) if digits else 1 << 30, fig, int(h["id"]))


def paper(request: Request) -> JSONResponse:
    """Every figure of one paper (any version), in figure order, with the paper's metadata."""
    st = ServingState.of(request)
    st.params(request, st.models.paper)
    c = st.collection
    try:
        rows = paper_rows(c, _paper_id(request))
    except ImageNotFound as e:
        raise ApiError(404, str(e)) from None
    figures = sorted((st.hit_json(h) for h in c.hits(rows)), key=_figure_key)
    first = c.get(rows[0])
    meta = {k: first.get(k) for k in ("arxiv_id", "version", "title", "authors", "year", "category", "archive") if k in first}
    return JSONResponse({**meta, "n_figures": len(figures), "figures": figures})


def similar_papers_(request: Request) -> JSONResponse:
    """Papers whose figures look like this paper's (:func:`imagemesh.query.papers.similar_papers`)."""
    st = ServingState.of(request)
    c, p = st.collection, st.params(request, st.models.similar_papers)
    emb = st.embedding(p.embedding)
    sel = st.selection(p.filter)
    try:
        matches = similar_papers(c, _paper_id(request), emb, p.k, sel)
    except ImageNotFound as e:
        raise ApiError(404, str(e)) from None
    best = {h.id: st.hit_json(h) for h in c.hits([m.best_row for m in matches])}
    out = []
    for m in matches:
        b = best.get(m.best_row, {})
        out.append({
            "arxiv_id": m.arxiv_id, "score": round(m.score, 6), "title": b.get("title"), "year": b.get("year"),
            "best": b, "matched": [{"query": q, "row": r, "distance": round(d, 6)} for q, r, d in m.matched],
        })
    return JSONResponse({"arxiv_id": _paper_id(request), "embedding": emb, "metric": st.metrics[emb], "papers": out})


def text_search(request: Request) -> JSONResponse:
    """Figures ranked by BM25 relevance to ``q`` (:mod:`imagemesh.query.text_rank`), with a
    snippet of each showing the matched words."""
    st = ServingState.of(request)
    c, p = st.collection, st.params(request, st.models.text_search)
    if not c.has_fts:
        raise ApiError(409, "this collection has no full-text index; rebuild it to rank by text")
    sel = st.selection(p.filter)
    try:
        res = st.text.search(p.q, p.k, sel.mask if sel else None, p.offset)
    except ValueError as e:
        raise ApiError(400, f"q: {e}") from None
    rows = [int(r) for r in res.rows]
    fields = [f for f in c.schema.keyword_fields if f in c.table.schema.names]
    records = {r["row_id"]: r for r in c.take(rows, fields)} if rows and fields else {}
    terms = [*res.words, *res.expansions]
    out = []
    for h, score in zip(c.hits(rows), res.scores):
        d = st.hit_json(h)
        d["score"] = round(float(score), 4)
        d["snippet"] = snippet(records.get(h.id, {}), fields, terms)
        out.append(d)
    return JSONResponse({
        "q": p.q, "words": list(res.words), "prefix": res.prefix, "expansions": list(res.expansions),
        "total": res.total, "offset": p.offset, "next_offset": p.offset + len(rows), "results": out,
    })


def concept(request: Request) -> JSONResponse:
    """Train a concept from labelled figures and rank the collection by it (stateless: the
    labels come with every request and nothing is kept; :mod:`imagemesh.query.concepts`)."""
    st = ServingState.of(request)
    c, p = st.collection, st.params(request, st.models.concept)
    emb = st.embedding(p.embedding)
    sel = st.selection(p.filter)
    pos = [st.resolve(v) for v in p.positive]
    neg = [st.resolve(v) for v in p.negative]
    try:
        model = train_concept(c, emb, pos, neg)
    except ConceptError as e:
        raise ApiError(400, str(e)) from None
    scores = model.scores(np.asarray(c.vectors(emb), np.float32))
    rows = sel.rows(len(c)) if sel is not None else np.arange(len(c), dtype=np.int64)
    order = rows[np.lexsort((rows, -scores[rows]))][: p.k]
    out = []
    for h in c.hits([int(r) for r in order]):
        d = st.hit_json(h)
        d["score"] = round(float(scores[h.id]), 5)
        out.append(d)
    info = {k: v for k, v in model.to_dict().items() if k != "coef"}
    return JSONResponse({"concept": info, "total": int(rows.size), "n_yes": int((scores[rows] >= 0.5).sum()), "results": out})


def clusters(request: Request) -> JSONResponse:
    """The k-means clusters of an embedding (:mod:`imagemesh.query.clusters`): label words,
    size, representative figures; with a filter, how many of each cluster's figures match.
    Use one as a filter: ``{"cluster": {"embedding": ..., "id": ...}}``."""
    st = ServingState.of(request)
    c, p = st.collection, st.params(request, st.models.clusters)
    emb = st.embedding(p.embedding)
    sel = st.selection(p.filter)
    cl = c.clustering(emb)
    reps = sorted({r for x in cl.clusters for r in x.representatives})
    shown = {h.id: st.hit_json(h) for h in c.hits(reps)}
    out = []
    for x in cl.clusters:
        d = x.to_dict()
        d["representatives"] = [shown[r] for r in x.representatives if r in shown]
        if sel is not None and sel.mask is not None:
            d["matching"] = int(np.count_nonzero(sel.mask[cl.rows(x.id)]))
        out.append(d)
    return JSONResponse({"embedding": emb, "k": cl.k, "clusters": out})


def reused(request: Request) -> JSONResponse:
    """Figures that appear in several papers, earliest paper first (:mod:`imagemesh.query.reuse`);
    with ``id``, only that figure's group (``null`` if it appears in one paper only)."""
    st = ServingState.of(request)
    c, p = st.collection, st.params(request, st.models.reused)
    emb = st.embedding(p.embedding)
    if "arxiv_id" not in c.schema.filterable():
        raise ApiError(409, "this collection has no arxiv_id field: figures cannot be traced across papers")
    r = st.reuse.get(c, emb, st.metrics[emb])

    def group_json(gi: int) -> dict[str, Any]:
        g = r.groups[gi]
        return {"first": g.papers[0], "papers": list(g.papers), "figures": [st.hit_json(h) for h in c.hits(list(g.rows))]}

    base = {"embedding": emb, "threshold": r.threshold, "n_groups": len(r.groups)}
    if p.id is not None:
        gi = int(r.group_of[st.resolve(p.id)])
        return JSONResponse({**base, "group": group_json(gi) if gi >= 0 else None})
    return JSONResponse({**base, "groups": [group_json(i) for i in range(min(p.limit, len(r.groups)))]})


def facets(request: Request) -> JSONResponse:
    """Counts of the schema's facet fields over the filtered rows."""
    st = ServingState.of(request)
    p = st.params(request, st.models.facets)
    return JSONResponse(st.collection.facets(st.selection(p.filter)))


def suggest(request: Request) -> JSONResponse:
    """Most frequent values of a suggest field starting with (or containing a word starting with) ``prefix``."""
    st = ServingState.of(request)
    p = st.params(request, st.models.suggest)
    return JSONResponse({"field": p.field, "prefix": p.prefix, "values": st.suggestions.top(p.field, p.prefix, p.limit)})


def map_(request: Request) -> JSONResponse:
    """The build-time 2-D map of an embedding: ``ids``, ``x``, ``y`` in [0, 1] of the filtered rows."""
    st = ServingState.of(request)
    c, p = st.collection, st.params(request, st.models.map)
    emb = st.embedding(p.embedding)
    sel = st.selection(p.filter) or c.select(None)
    m = c.map_2d(emb)
    if m is None:
        raise ApiError(404, f"this collection has no 2-D map of {emb!r} (built with map_2d off)")
    xy, method = m
    ids = sel.rows(len(c))
    cl = c.clustering(emb)
    labels = []
    for x in cl.clusters:  # where to write each cluster's label: the median of its figures
        pts = np.asarray(xy[cl.rows(x.id)], np.float64)
        labels.append({"id": x.id, "label": x.label, "size": x.size, "x": round(float(np.median(pts[:, 0])), 5), "y": round(float(np.median(pts[:, 1])), 5)})
    return JSONResponse({
        "embedding": emb,
        "method": method,
        "n_total": len(c),
        "ids": ids.tolist(),
        "x": np.round(xy[ids, 0].astype(np.float64), 5).tolist(),
        "y": np.round(xy[ids, 1].astype(np.float64), 5).tolist(),
        "clusters": labels,
    })


def image(request: Request) -> JSONResponse:
    """All metadata of one image, with its thumbnail and image URLs."""
    st = ServingState.of(request)
    row = st.resolve(str(request.path_params["id"]))
    d = st.collection.get(row)
    d["id"] = d.pop("row_id")
    d["thumbnail_url"] = f"/api/images/{row}/thumbnail?v={st.version}"
    d["image_url"] = f"/api/images/{row}/image?v={st.version}"
    if d.get("arxiv_id"):
        d["arxiv_url"] = f"https://arxiv.org/abs/{d['arxiv_id']}" + (f"v{d['version']}" if d.get("version") else "")
    return JSONResponse(d)


def _jpeg(request: Request, kind: str) -> Response:
    st = ServingState.of(request)
    c = st.collection
    try:
        row = c.resolve(int(request.path_params["id"]))
    except (ImageNotFound, ValueError) as e:
        raise ApiError(404, str(e)) from None
    etag = f'"{st.version}-{kind}-{row}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    try:
        data = c.thumbnail(row) if kind == "thumb" else c.image(row)
    except ImageNotFound as e:
        raise ApiError(404, str(e)) from None
    return Response(data, media_type="image/jpeg", headers=headers)


def thumbnail(request: Request) -> Response:
    """The 256 px thumbnail JPEG (``ETag``, immutable caching)."""
    return _jpeg(request, "thumb")


def full_image(request: Request) -> Response:
    """The canonical JPEG (longest side <= 512 px; ``ETag``, immutable caching)."""
    return _jpeg(request, "image")


def openapi(request: Request) -> JSONResponse:
    st = ServingState.of(request)
    return JSONResponse(openapi_schema(st.collection, st.settings, st.models))


def index_page(request: Request) -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def about_page(request: Request) -> FileResponse:
    return FileResponse(STATIC / "about.html", headers={"Cache-Control": "no-cache"})
