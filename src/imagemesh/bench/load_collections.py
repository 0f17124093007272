"""Collections for the load benchmarks: the demo, a synthetic one of any size, new versions."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

__all__ = ["demo_collection", "synthetic_collection", "bump_version", "disk_usage"]


def demo_collection(work: Path) -> Path:
    from importlib import resources

    from imagemesh.ingest.build import BuildOptions, build_collection
    from imagemesh.query.collection import open_collection

    out = work / "demo"
    try:
        open_collection(out)
        return out
    except Exception:
        pass
    src = Path(str(resources.files("imagemesh") / "demo_data"))
    build_collection(src, out, BuildOptions(backend="faiss", progress=False), log=lambda s: None)
    return out


def synthetic_collection(work: Path, n: int, dim: int = 64, seed: int = 0) -> Path:
    """Write an ``n``-image collection directly: clustered vectors, an IVF index, plausible
    metadata, and small real-looking thumbnails (a few hundred distinct JPEGs, reused)."""
    import io

    import faiss
    import lancedb
    import pyarrow as pa
    from PIL import Image, ImageDraw

    from imagemesh.store.writer import VersionWriter
    from imagemesh.core.fileio import sha256_file
    from imagemesh.models.raw import RawPixels
    from imagemesh.store.pca import fit_pca
    from imagemesh.profiles.arxiv.records import Taxonomy
    from imagemesh.core.schema import MEDIA_ARROW_SCHEMA
    from imagemesh.core.text_search import FTS_COLUMN, fts_config
    from imagemesh.profiles.arxiv import ARXIV_SCHEMA, IMAGES_ARROW_SCHEMA, compose_search_text

    taxonomy = Taxonomy.load()

    out = work / f"synthetic-{n}"
    if (out / "manifest.json").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    writer = VersionWriter(out)  # the one collection writer: this function fills its folder
    partial = writer.folder

    # vectors: 2000 Gaussian clusters on the unit sphere (cosine embedding like "raw")
    centers = rng.standard_normal((2000, dim)).astype(np.float32)
    vec_file = partial / "vectors" / "raw.npy"
    mm = np.lib.format.open_memmap(vec_file, mode="w+", dtype=np.float32, shape=(n, dim))
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        x = centers[rng.integers(0, len(centers), m)] + 0.35 * rng.standard_normal((m, dim)).astype(np.float32)
        mm[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    mm.flush()
    del mm
    vectors = np.load(vec_file, mmap_mode="r")
    print(f"  vectors {time.time() - t0:.0f}s", flush=True)

    recipe = "IVF1024,Flat"
    index = faiss.index_factory(dim, recipe, faiss.METRIC_L2)
    index.train(np.ascontiguousarray(vectors[rng.choice(n, 65_536, replace=False)]))
    for s in range(0, n, step):
        index.add(np.ascontiguousarray(vectors[s : s + step]))
    idx_file = partial / "index" / "raw.faiss"
    faiss.write_index(index, str(idx_file))
    del index
    print(f"  index {time.time() - t0:.0f}s", flush=True)

    emb = RawPixels()
    reducer = fit_pca(iter([rng.standard_normal((512, emb.dim)).astype(np.float32)]), 512, emb.dim, dim)
    pca_file = partial / "pca" / "raw.npz"
    reducer.save(pca_file)

    thumbs = []
    for i in range(300):
        im = Image.new("RGB", (160, 120), tuple(int(v) for v in rng.integers(120, 256, 3)))
        d = ImageDraw.Draw(im)
        for _ in range(6):
            xy = sorted(rng.integers(0, 160, 2).tolist()), sorted(rng.integers(0, 120, 2).tolist())
            d.rectangle([xy[0][0], xy[1][0], xy[0][1], xy[1][1]], outline=tuple(int(v) for v in rng.integers(0, 120, 3)), width=2)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=80)
        thumbs.append(buf.getvalue())

    cats = [("cs", "cs.CV"), ("cs", "cs.CL"), ("cs", "cs.LG"), ("stat", "stat.ML"), ("math", "math.OC"), ("physics", "physics.optics"), ("q-bio", "q-bio.NC"), ("eess", "eess.IV")]
    words = "attention transformer speech image graph network learning model robust sparse optimal kernel quantum neural diffusion translation".split()
    db = lancedb.connect(str(out / "lance"))
    images_tbl = media_tbl = None
    wstep = 200_000
    for s in range(0, n, wstep):
        ids = np.arange(s, min(n, s + wstep))
        ci = rng.integers(0, len(cats), len(ids))
        yr = rng.integers(2007, 2025, len(ids))
        rows = []
        for r, c, y in zip(ids.tolist(), ci.tolist(), yr.tolist()):
            w = [words[(r * 7 + j * 13) % len(words)] for j in range(4)]
            aid = f"{y % 100:02d}{(r % 12) + 1:02d}.{r:05d}"
            rows.append({
                "row_id": r, "image_key": f"{aid}v1/fig{r % 5 + 1}", "arxiv_id": aid, "version": 1,
                "title": f"{w[0].title()} {w[1]} for {w[2]} {w[3]}", "authors": f"A. Author{r % 997}, B. Writer{r % 313}",
                "authors_list": [f"A. Author{r % 997}", f"B. Writer{r % 313}"], "abstract": None,
                "caption": f"Figure {r % 5 + 1}: {w[1]} {w[3]} results", "figure": str(r % 5 + 1),
                "archive": cats[c][0], "category": cats[c][1], "categories": [cats[c][1]], "year": y,
                "width": 640, "height": 480, "content_sha256": None, "predictions": None,
            })
            rows[-1]["search_text"] = compose_search_text(rows[-1], taxonomy.category_name)
        t_img = pa.Table.from_pylist([{f.name: row.get(f.name) for f in IMAGES_ARROW_SCHEMA} for row in rows], schema=IMAGES_ARROW_SCHEMA)
        t_med = pa.Table.from_pydict({"row_id": ids, "thumb": [thumbs[r % len(thumbs)] for r in ids.tolist()], "image": [thumbs[r % len(thumbs)] for r in ids.tolist()]}, schema=MEDIA_ARROW_SCHEMA)
        if images_tbl is None:
            images_tbl = db.create_table("images", data=t_img)
            media_tbl = db.create_table("media", data=t_med)
        else:
            images_tbl.add(t_img)
            media_tbl.add(t_med)
        print(f"  tables {min(n, s + wstep)}/{n} {time.time() - t0:.0f}s", flush=True)
    assert images_tbl is not None and media_tbl is not None
    images_tbl.optimize()
    media_tbl.optimize()
    images_tbl.create_index(FTS_COLUMN, config=fts_config())  # keyword filters (format v2)
    print(f"  full-text index {time.time() - t0:.0f}s", flush=True)
    entry = {
        "config": emb.config().to_dict(),
        "dim": dim,
        "pca": {**reducer.describe(), "fitted_on": 512, "file": "pca/raw.npz", "sha256": sha256_file(pca_file)},
        "vectors": {"file": "vectors/raw.npy", "shape": [n, dim], "bytes": vec_file.stat().st_size, "sha256": sha256_file(vec_file)},
        "index": {"backend": "faiss", "params": {"recipe": recipe, "nprobe": 16, "ntotal": n}, "file": "index/raw.faiss", "bytes": idx_file.stat().st_size, "sha256": sha256_file(idx_file)},
    }
    writer.publish(n, {"dir": "lance", "name": "images", "version": int(images_tbl.version), "media": "media", "media_version": int(media_tbl.version)},
                   {"raw": entry}, {"synthetic": True, "seed": seed}, ARXIV_SCHEMA.with_labels({}).to_dict())
    print(f"  synthetic collection of {n} images in {time.time() - t0:.0f}s, {disk_usage(out) / 1e9:.2f} GB", flush=True)
    return out


def bump_version(root: Path) -> str:
    """A new version of the same content (see :func:`imagemesh.store.writer.republish`)."""
    from imagemesh.store.writer import republish

    return republish(root)


def disk_usage(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
