"""The ``imagemesh`` command line (click).

Commands: ``build``, ``ingest arxiv``, ``embed``, ``neighbors``, ``random``, ``info``, ``verify``,
``serve``, ``demo``, ``models``, ``concept save``, ``bench`` (:mod:`imagemesh.bench.commands`) and ``train``
(:mod:`imagemesh.training.commands`). Failures print one ``error:`` line, never a traceback,
and exit with status 1 (the command failed: not a collection, no images, a busy port, a file
system error) or 2 (wrong arguments: bad filter, unknown image, embedding or backend).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from imagemesh.core.errors import FilterError
from imagemesh.core.registry import RegistryError

__all__ = ["main", "cli"]


#: Exit statuses: 0 done; 1 the command failed (unreadable collection, no images, a busy
#: port, a file system error); 2 the arguments are wrong (bad filter, unknown image,
#: embedding or backend; click's own usage errors are 2 as well). Never a traceback.
EXIT_FAILED, EXIT_USAGE = 1, 2


def _fail(msg: str, code: int = EXIT_FAILED) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(code)


def _os_error(e: OSError) -> str:
    return f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"


#: The largest k of the CLI: the API's (``WebSettings.max_k``), one limit for both.
MAX_K = 500


def _check_port(host: str, port: int) -> None:
    """Fail with a clear message if ``host:port`` cannot be bound (before a long build or
    an open, and instead of uvicorn's exit code 3)."""
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        _fail(f"cannot listen on {host}:{port} ({e.strerror or e}); is another server running? choose another port with --port")


def _open(path: Path) -> Any:
    from imagemesh.store.reader import CollectionError
    from imagemesh.query.collection import open_collection
    from imagemesh.store.manifest import ManifestError

    try:
        return open_collection(path)
    except (CollectionError, ManifestError, RegistryError) as e:
        _fail(str(e))
    except OSError as e:
        _fail(_os_error(e))


def _where(text: str | None) -> Any:
    from imagemesh.core.filters import parse_filter

    try:
        return parse_filter(text)
    except FilterError as e:
        _fail(f"--where: {e}", EXIT_USAGE)


def _print_hits(hits: list[Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=1))
        return
    for h in hits:
        d = h.to_dict()
        dist = "" if d["distance"] is None else f"{d['distance']:.4f}"
        title = (d.get("title") or "")[:70]
        click.echo(f"{d['id']:>7}  {dist:>8}  {d.get('image_key', ''):<24} {d.get('year') or '':>4}  {title}")


class _Commands(click.Group):
    """The command group; a writer that finds the collection held by another writer says so
    in one line and exits 1 (whatever the command)."""

    def invoke(self, ctx: click.Context) -> object:
        from imagemesh.store.lock import CollectionLocked

        try:
            return super().invoke(ctx)
        except CollectionLocked as e:
            _fail(str(e))
            return None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="imagemesh")
def cli() -> None:
    """Explore image collections (arXiv figures) by visual similarity."""
    # imagemesh's own loggers show INFO on stderr; other libraries (faiss announces how it
    # loaded) stay at the root logger's default, warnings only.
    logger = logging.getLogger("imagemesh")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _quiet(quiet: bool) -> None:
    logging.getLogger("imagemesh").setLevel(logging.WARNING if quiet else logging.INFO)


@cli.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Collection folder to create or replace.")
@click.option("--embeddings", default=None, help="Comma-separated embedding names (default: every available one).")
@click.option("--backend", default="faiss", show_default=True, help="Index backend: exact, annoy or faiss.")
@click.option("--index-params", default=None, help='Backend build parameters as JSON, e.g. \'{"recipe": "IVF64,Flat"}\' or \'{"n_trees": 100}\'.')
@click.option("--metadata", "metadata", multiple=True, type=click.Path(exists=True, path_type=Path), help="arXiv metadata joined by arXiv id: snapshot (JSON lines), .abs record or folder of .abs records; repeatable.")
@click.option("--pca-dim", default=64, show_default=True, type=click.IntRange(1, 4096), help="Dimension after IncrementalPCA (capped by the data).")
@click.option("--chunk-size", default=64, show_default=True, type=click.IntRange(1, 100_000), help="Images per resumable chunk.")
@click.option("--threads", default=0, type=click.IntRange(0, 256), help="ONNX Runtime threads (0 = default).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def build(source: Path, out: Path, embeddings: str | None, backend: str, index_params: str | None, metadata: tuple[Path, ...], pca_dim: int, chunk_size: int, threads: int, quiet: bool) -> None:
    """Build a collection from SOURCE (a figures CSV, or a folder with figures.csv + images/).

    A killed build resumes when run again with the same arguments; the previous
    collection at --out stays readable until the new one is complete.
    """
    from imagemesh.ingest.build import BuildOptions, build_collection

    try:
        params = json.loads(index_params) if index_params else None
        if params is not None and not isinstance(params, dict):
            raise ValueError("--index-params must be a JSON object")
    except ValueError as e:
        _fail(str(e), EXIT_USAGE)
    opts = BuildOptions(
        embeddings=[e.strip() for e in embeddings.split(",") if e.strip()] if embeddings else None,
        backend=backend,
        index_params=params,
        pca_dim=pca_dim,
        chunk_size=chunk_size,
        metadata_files=list(metadata),
        progress=not quiet,
        threads=threads,
    )
    _quiet(quiet)
    try:
        report = build_collection(source, out, opts)
    except RegistryError as e:
        _fail(str(e), EXIT_USAGE)
    except ValueError as e:
        _fail(str(e))
    except OSError as e:
        _fail(_os_error(e))
    click.echo(report.summary())


@cli.command()
@click.argument("collection", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("image_id")
@click.option("--embedding", "-e", default=None, help="Embedding name (default: the first).")
@click.option("-k", default=20, show_default=True, type=click.IntRange(1, MAX_K), help="Neighbours (at most 500, as in the API).")
@click.option("--where", default=None, help='Filter JSON, e.g. \'{"year": {"gte": 2023}}\'.')
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results.")
def neighbors(collection: Path, image_id: str, embedding: str | None, k: int, where: str | None, as_json: bool) -> None:
    """Nearest neighbours of IMAGE_ID (row id, image key or arXiv id)."""
    from imagemesh.store.reader import ImageNotFound

    c = _open(collection)
    f = _where(where)
    try:
        hits = c.neighbors(image_id, embedding=embedding, k=k, where=f)
    except (ImageNotFound, KeyError, FilterError, ValueError) as e:
        _fail(str(e).strip('"'), EXIT_USAGE)
    _print_hits(hits, as_json)


@cli.command()
@click.argument("collection", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-n", default=20, show_default=True, type=click.IntRange(0, 100_000))
@click.option("--where", default=None, help="Filter JSON.")
@click.option("--seed", default=None, type=click.IntRange(0, 2**63 - 1), help="Seed for a reproducible sample (the same rows as /api/random?seed=).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results.")
def random(collection: Path, n: int, where: str | None, seed: int | None, as_json: bool) -> None:
    """A random sample of images (distinct, matching --where)."""
    c = _open(collection)
    f = _where(where)
    try:
        hits = c.random(n, where=f, seed=seed)
    except (FilterError, ValueError) as e:
        _fail(str(e), EXIT_USAGE)
    _print_hits(hits, as_json)


@cli.command()
@click.argument("collection", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON (size, build, embeddings, schema, facets).")
def info(collection: Path, as_json: bool) -> None:
    """The collection's size, embeddings, fields and top facet values."""
    c = _open(collection)
    d = c.info()
    d["facets"] = c.facets(top=20)
    if as_json:
        click.echo(json.dumps(d, indent=1, ensure_ascii=False))
        return
    click.echo(f"{c.root}: {d['n_images']} images, build {d['build_id']} ({d['created']}), {d['fields'].get('profile') or 'collection'} schema")
    for e in d["embeddings"]:
        ev = e["explained_variance"]
        click.echo(f"  embedding {e['name']:<12} {e['metric']:<6} {e['input_dim']}-d -> {e['dim']}-d" + (f" (PCA {ev:.2f})" if ev is not None else "") + f", index {e['backend']}")
    click.echo("  fields: " + ", ".join(f"{k} ({v})" for k, v in d["fields"]["fields"].items()))
    for field, values in d["facets"].items():
        click.echo(f"  {field}: " + ", ".join(f"{v['label']} ({v['count']})" for v in values[:8]) + (" ..." if len(values) > 8 else ""))


@cli.command()
@click.argument("collection", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--frontend", default="explorer", show_default=True, help="Frontend registered in the imagemesh.frontends entry-point group.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Server processes (they share the memory-mapped vectors and indices).")
@click.option("--reload-interval", default=1.0, show_default=True, type=click.FloatRange(0, 3600), help="Seconds between checks of manifest.json for a new collection version (served without downtime).")
@click.option("--request-timeout", default=30.0, show_default=True, type=click.FloatRange(0.1, 3600), help="Longest time for one request (then 503).")
@click.option("--quiet", is_flag=True, help="No start-up banner; warnings only.")
def serve(collection: Path, host: str, port: int, frontend: str, workers: int, reload_interval: float, request_timeout: float, quiet: bool) -> None:
    """Serve the web explorer for COLLECTION.

    Binds 127.0.0.1 unless --host says otherwise; read-only; keeps no request log. A new
    version of the collection (a finished build or repair) is picked up without downtime.
    """
    from imagemesh.plugins import default_registries
    from imagemesh.web.serve import run

    _check_port(host, port)
    c = _open(collection)
    try:
        default_registries().frontends.get(frontend)
    except RegistryError as e:
        _fail(str(e), EXIT_USAGE)
    _quiet(quiet)
    if not quiet:
        click.echo(f"imagemesh: serving {c.root} at http://{host}:{port}/ with {workers} worker(s)  (Ctrl-C to stop)")
    run(collection, host=host, port=port, frontend=frontend, workers=workers, check_interval=reload_interval,
        timeout_s=request_timeout, collection=c if workers == 1 else None)


def _cache_dir() -> Path:
    """``$IMAGEMESH_CACHE``, else ``$XDG_CACHE_HOME/imagemesh``, else ``~/.cache/imagemesh``."""
    if os.environ.get("IMAGEMESH_CACHE"):
        return Path(os.environ["IMAGEMESH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imagemesh"


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--rebuild", is_flag=True, help="Rebuild the demo collection even if it exists.")
@click.option("--no-serve", is_flag=True, help="Only build the demo collection and print its path.")
@click.option("--quiet", is_flag=True, help="No progress or banner; warnings only.")
def demo(host: str, port: int, rebuild: bool, no_serve: bool, quiet: bool) -> None:
    """Build the bundled demo corpus (166 arXiv figures) once, then serve it.

    The collection lives in $IMAGEMESH_CACHE/demo (default ~/.cache/imagemesh/demo) and is
    reused; it is rebuilt when missing, damaged or of an older collection format.
    """
    from importlib import resources

    from imagemesh.ingest.build import BuildOptions, build_collection
    from imagemesh.store.reader import CollectionError
    from imagemesh.query.collection import open_collection
    from imagemesh.store.manifest import ManifestError

    out = _cache_dir() / "demo"
    src = Path(str(resources.files("imagemesh") / "demo_data"))
    if not no_serve:
        _check_port(host, port)
    c = None
    if not rebuild:
        try:
            c = open_collection(out)
        except (CollectionError, ManifestError):
            c = None
    _quiet(quiet)
    if c is None:
        if not quiet:
            click.echo(f"building the demo collection in {out} (first run only) ...", err=True)
        try:
            report = build_collection(src, out, BuildOptions(backend="faiss", progress=not quiet))
        except OSError as e:
            _fail(_os_error(e))
        if not quiet:
            click.echo(report.summary(), err=True)
        c = open_collection(out)
    if no_serve:
        click.echo(str(out))
        return
    from imagemesh.web.serve import run

    if not quiet:
        click.echo(f"imagemesh demo: open http://{host}:{port}/  ({len(c)} arXiv figures; Ctrl-C to stop)")
    # the same serving path as `imagemesh serve` (request caps, no access log, hot version switch)
    run(out, host=host, port=port, collection=c)


@cli.group()
def ingest() -> None:
    """Ingest raw sources into a collection (arXiv source packages)."""


@ingest.command("arxiv")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Collection folder to create or extend.")
@click.option("--metadata", "metadata", multiple=True, type=click.Path(exists=True, path_type=Path), help="Metadata snapshot (JSON lines), .abs record or folder of .abs records; repeatable.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 256), help="Processes for extraction and rasterisation.")
@click.option("--embeddings", default=None, help="Comma-separated embedding names (default: every available one).")
@click.option("--backend", default="faiss", show_default=True, help="Index backend: exact, annoy or faiss.")
@click.option("--pca-dim", default=64, show_default=True, type=click.IntRange(1, 4096))
@click.option("--json", "as_json", is_flag=True, help="Print the ingest report as JSON instead of a table.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def ingest_arxiv_cmd(sources: tuple[Path, ...], out: Path, metadata: tuple[Path, ...], workers: int, embeddings: str | None, backend: str, pca_dim: int, as_json: bool, quiet: bool) -> None:
    """Ingest arXiv source packages (files, folders, bulk arXiv_src_*.tar) into --out.

    Packages already ingested (same sha256) are skipped, so a killed run resumes;
    new packages are appended to an existing collection. The per-package outcomes
    are in --out/ingest-report.json.
    """
    from imagemesh.ingest.build import BuildOptions
    from imagemesh.ingest.sources.arxiv_src.ingest import NothingIngested, format_summary, format_table, ingest_arxiv

    opts = BuildOptions(
        embeddings=[e.strip() for e in embeddings.split(",") if e.strip()] if embeddings else None,
        backend=backend, pca_dim=pca_dim, progress=not quiet,
    )
    _quiet(quiet)
    try:
        report = ingest_arxiv(list(sources), out, metadata_files=list(metadata), workers=workers, build_options=opts, progress=not quiet)
    except NothingIngested as e:  # the table says why, package by package
        if as_json:
            click.echo(json.dumps(e.report.to_dict(), indent=1, ensure_ascii=False))
        else:
            click.echo(format_table(e.report.packages))
            click.echo(format_summary(e.report))
        _fail(f"{e}; report: {out / 'ingest-report.json'}")
    except RegistryError as e:
        _fail(str(e), EXIT_USAGE)
    except ValueError as e:
        _fail(str(e))
    except OSError as e:
        _fail(_os_error(e))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1, ensure_ascii=False))
        return
    click.echo(format_table(report.packages))
    click.echo(format_summary(report))
    if report.build:
        click.echo(f"collection: {out} ({report.build.get('n_images')} images); report: {out / 'ingest-report.json'}")


@cli.command()
@click.argument("collection", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repair", is_flag=True, help="Rebuild damaged index/map files from the stored vectors and switch the manifest atomically.")
@click.option("--no-models", is_flag=True, help="Skip comparing the installed embedding networks with the recorded ones.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(collection: Path, repair: bool, no_models: bool, as_json: bool) -> None:
    """Check every file of COLLECTION against the sha256 and sizes in its manifest, and its
    table versions. Exit status 0 = intact (or repaired), 1 = damaged."""
    from imagemesh.store.integrity import RepairError
    from imagemesh.store.integrity import repair as repair_collection
    from imagemesh.store.integrity import verify as verify_collection

    report = verify_collection(collection, models=not no_models)
    if repair and not report.ok:
        click.echo(report.summary(), err=True)
        try:
            report = repair_collection(collection)
        except RepairError as e:
            _fail(str(e))
    click.echo(json.dumps(report.to_dict(), indent=1) if as_json else report.summary())
    sys.exit(0 if report.ok else 1)


# ---------------------------------------------------------------- embeddings: embed, models, train
# (self-contained block; heavy imports stay inside the commands)


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        _fail(f"{what}: expected comma-separated numbers, got {text!r}", EXIT_USAGE)
        raise  # unreachable


@cli.command("embed")
@click.argument("collection", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--embedding", "-e", required=True, help="Embedding name (see `imagemesh models list`).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="local: decode thread + ONNX Runtime here; ray: Ray Data actor pool (the `ray` extra).")
@click.option("--ray-address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray).")
@click.option("--ray-cpus", default=None, type=click.IntRange(1, 4096), help="CPUs of the local Ray started when there is no address.")
@click.option("--ray-actors", default=2, show_default=True, type=click.IntRange(1, 4096), help="Actors in the pool (each loads the model once).")
@click.option("--chunk-size", default=64, show_default=True, type=click.IntRange(1, 100_000), help="Images per batch and resumable chunk.")
@click.option("--threads", default=0, type=click.IntRange(0, 256), help="ONNX Runtime threads (0 = default).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def embed_cmd(collection: Path, embedding: str, executor: str, ray_address: str | None, ray_cpus: int | None, ray_actors: int, chunk_size: int, threads: int, quiet: bool) -> None:
    """Add (or recompute) an embedding of an existing collection, with its PCA and index,
    from the stored canonical images (no re-ingest)."""
    from imagemesh.ingest.embed import add_embedding
    from imagemesh.ingest.options import BuildOptions
    from imagemesh.store.reader import CollectionError
    from imagemesh.store.manifest import ManifestError

    opts = BuildOptions(chunk_size=chunk_size, threads=threads, progress=not quiet, executor=executor,
                        ray_address=ray_address or os.environ.get("RAY_ADDRESS"), ray_cpus=ray_cpus, ray_actors=ray_actors)
    _quiet(quiet)
    try:
        entry = add_embedding(collection, embedding, opts)
    except RegistryError as e:
        _fail(str(e), EXIT_USAGE)
    except (CollectionError, ManifestError, ValueError, RuntimeError) as e:
        _fail(str(e))
    except OSError as e:
        _fail(_os_error(e))
    click.echo(f"embedding {embedding}: {entry['config']['dim']}-d -> PCA {entry['dim']}-d, index {entry['index']['backend']}; collection {collection}")


@cli.group("models")
def models_group() -> None:
    """Embedding models: list the available ones, import an ONNX model."""


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def models_list_cmd(as_json: bool) -> None:
    """List the available embeddings (built-ins, plugins and imported models) with their cards."""
    from imagemesh.models.cards import list_models, models_dir

    from imagemesh.plugins import default_registries

    rows = list_models(default_registries())
    if as_json:
        click.echo(json.dumps(rows, indent=1, ensure_ascii=False))
        return
    for r in rows:
        if "error" in r:
            click.echo(f"{r['name']:<14} {r['source']:<16} ERROR {r['error']}")
            continue
        extra = []
        if r.get("labels"):
            extra.append("labels " + "/".join(r["labels"][:5]))
        if r.get("cv_accuracy") is not None:
            extra.append(f"{r['cv_folds']}-fold CV {r['cv_accuracy'] * 100:.1f}%")
        if r.get("nmi_successive_last") is not None:
            extra.append(f"NMI(t-1,t) {r['nmi_successive_last']}")
        sha = (r.get("model_sha256") or "")[:12]
        click.echo(f"{r['name']:<14} {r['source']:<16} {r['kind']:<8} {r['dim']:>5}-d {r['metric']:<6} {sha:<12} {'; '.join(extra)}")
    click.echo(f"(user models folder: {models_dir()})", err=True)


@models_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Embedding name, e.g. vgg16.")
@click.option("--input-size", required=True, type=int, help="Square input side in pixels, e.g. 224.")
@click.option("--mean", default="0.485,0.456,0.406", show_default=True, help="Per-channel RGB mean on the 0-1 scale.")
@click.option("--std", default="0.229,0.224,0.225", show_default=True, help="Per-channel RGB std on the 0-1 scale.")
@click.option("--output", required=True, help="Output (or intermediate tensor / node) holding the embedding.")
@click.option("--input", "input_name", default=None, help="Input name (needed when the model has several).")
@click.option("--logits", default=None, help="Output with class scores (optional; needs --labels).")
@click.option("--labels", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Class names, one per line.")
@click.option("--resize", type=click.Choice(["letterbox", "center_crop"]), default="letterbox", show_default=True)
@click.option("--metric", type=click.Choice(["cosine", "l2"]), default="cosine", show_default=True)
@click.option("--description", default=None, help="Training data / provenance for the model card.")
@click.option("--replace", is_flag=True, help="Overwrite a user model of the same name.")
def models_import_cmd(file: Path, name: str, input_size: int, mean: str, std: str, output: str, input_name: str | None, logits: str | None, labels: Path | None, resize: str, metric: str, description: str | None, replace: bool) -> None:
    """Import an ONNX model FILE as an embedding (copied into the user models folder with a card)."""
    from imagemesh.models.cards import CardEmbeddingFactory, ModelImportError, import_onnx_model
    from imagemesh.plugins import default_registries

    regs = default_registries()
    taken = [n for n in regs.embeddings.names() if not (replace and isinstance(regs.embeddings.get(n), CardEmbeddingFactory) and n == name)]
    try:
        card = import_onnx_model(file, name, input_size=input_size, mean=_floats(mean, "--mean"), std=_floats(std, "--std"), output=output,
                                 input_name=input_name, logits=logits, labels=labels, resize=resize, metric=metric,
                                 description=description, taken=taken, replace=replace)
    except ModelImportError as e:
        _fail(str(e), EXIT_USAGE)
    d = json.loads(card.read_text())
    click.echo(f"imported {name}: {d['feature_dim']}-d from {d['feature_output']!r}, sha256 {d['sha256'][:12]}…; card {card}")


# ---------------------------------------------------------------- concepts
# (self-contained block; heavy imports stay inside the commands)


@cli.group("concept")
def concept_group() -> None:
    """Concepts: linear classifiers trained from labelled images, saved as facet columns."""


@concept_group.command("save")
@click.argument("collection", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True, help="Field name of the concept, e.g. figure_type (adds NAME and NAME_score).")
@click.option("--labels", "labels_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CSV of 'id,label' lines: id = row id, image key or arXiv id; label = 1/0 or pos/neg.")
@click.option("--embedding", "-e", default=None, help="Embedding whose vectors the concept is trained on (default: the collection's default).")
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1), help="Images with a score >= threshold get NAME = yes.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1), help="Seed of the cross-validation split.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def concept_save_cmd(collection: Path, name: str, labels_file: Path, embedding: str | None, threshold: float, seed: int, as_json: bool) -> None:
    """Train a concept from the labelled images of COLLECTION (class-balanced logistic
    regression over an embedding's stored vectors) and publish a new version with two new
    fields: NAME ("yes"/"no" by --threshold; a facet, so {"NAME": "yes"} is a filter and a
    dropdown) and NAME_score (the probability; a range field). Atomic: readers keep the old
    version until the manifest switches; a failure leaves the collection as it was."""
    from imagemesh.query.concepts import ConceptError, ConceptNameError, read_labels, save_concept
    from imagemesh.store.manifest import ManifestError
    from imagemesh.store.reader import CollectionError

    try:
        labels = read_labels(labels_file)
        saved = save_concept(collection, name, labels, embedding=embedding, threshold=threshold, seed=seed, what=labels_file.name)
    except ConceptNameError as e:
        _fail(str(e), EXIT_USAGE)
    except KeyError as e:  # unknown embedding
        _fail(str(e).strip('"'), EXIT_USAGE)
    except (ConceptError, CollectionError, ManifestError, ValueError) as e:
        _fail(str(e))
    except OSError as e:
        _fail(_os_error(e))
    if as_json:
        click.echo(json.dumps(saved.to_dict(), indent=1, ensure_ascii=False))
        return
    c = saved.concept
    cv = f"{c.cv_folds}-fold CV balanced accuracy {c.cv_score:.3f}" if c.cv_score is not None else "no CV score (a class has < 2 examples)"
    click.echo(f"concept {saved.name}: {c.n_pos} positive, {c.n_neg} negative on {c.embedding}; {cv}; "
               f"{saved.n_yes} of {saved.n_images} images 'yes' (score >= {saved.threshold:g}); "
               f"fields {saved.name}, {saved.score_field}; version {saved.build_id}")


def _add_command_groups() -> None:
    # each imports click only at import time; the heavy modules inside its commands
    from imagemesh.bench.commands import bench_group
    from imagemesh.training.commands import train_group

    cli.add_command(bench_group)
    cli.add_command(train_group)


_add_command_groups()


def main() -> None:
    cli(prog_name="imagemesh")


if __name__ == "__main__":
    main()
