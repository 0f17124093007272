"""Reading one version of a collection: manifest, metadata tables, vectors, indices, media.

:class:`CollectionReader` opens exactly the version ``manifest.json`` names and checks that
its files match (sizes, shapes, index checksums, table versions and row counts). It answers
storage questions only (rows, metadata, media bytes, vectors, indices); the query layer
(:class:`imagemesh.query.collection.Collection`) builds kNN, filters, sampling and facets on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import lancedb
import numpy as np

from imagemesh.core.embedding import EmbeddingConfig
from imagemesh.core.errors import ImagemeshError
from imagemesh.core.index import Index, IndexError_
from imagemesh.core.registry import Registries
from imagemesh.core.schema import MetadataSchema
from imagemesh.core.text_search import FTS_COLUMN
from imagemesh.plugins import default_registries
from imagemesh.store.integrity import IntegrityError, check_file
from imagemesh.store.manifest import Manifest, ManifestError

T = TypeVar("T")

__all__ = ["CollectionReader", "CollectionError", "ImageNotFound", "EmbeddingState", "DEFAULT_EMBEDDING_PREFERENCE"]

#: Which embedding a collection answers with when none is named.
DEFAULT_EMBEDDING_PREFERENCE = ("imagenet", "raw")


class CollectionError(ManifestError):
    """The collection cannot be opened or does not match its manifest."""


class ImageNotFound(ImagemeshError, KeyError):
    """No image with that row id or key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class EmbeddingState:
    """One embedding of an open collection: its config, reduced dimension, memory-mapped
    ``float32[N, dim]`` vectors and loaded index."""

    name: str
    config: EmbeddingConfig
    dim: int
    vectors: np.ndarray
    index: Index


class CollectionReader:
    """A read-only view of one version of a collection folder.

    Args:
        root: the collection folder (holds ``manifest.json``; ``~`` is expanded).
        registries: where index backends are looked up (default: built-ins + plugins).
        verify_checksums: check the sha256 of every file before it is used (vectors,
            index and the metadata table's LanceDB files on open; PCA and map on first use;
            the media table's files by :meth:`check_table_files`, which a server runs in
            the background), once per file and process (see :mod:`imagemesh.store.integrity`);
            off only for trusted, very large collections. Sizes are always checked.

    Raises:
        CollectionError: missing files, a file whose size, sha256 or shape differs from
            the manifest, or a metadata table whose row count or version differs.
        ManifestError: no manifest, another format version, or a malformed one.
    """

    def __init__(self, root: Path, registries: Registries | None = None, verify_checksums: bool = True) -> None:
        self.root = Path(root).expanduser()
        self.registries = registries or default_registries()
        self.manifest = Manifest.read(self.root)
        self.data_dir = self.root / self.manifest.data_dir
        try:
            self.schema = MetadataSchema.from_dict(self.manifest.schema)
        except ValueError as e:
            raise CollectionError(f"manifest schema: {e}") from None
        self.verify_checksums = bool(verify_checksums)
        #: table ("metadata" / "media") -> why it must not be read (a damaged file)
        self.damaged: dict[str, str] = {}
        self._check_table_sizes()
        if self.verify_checksums:
            self.check_table_files(("metadata",))
        self._open_tables()
        self._embeddings = {name: self._open_embedding(name, entry) for name, entry in self.manifest.embeddings.items()}
        self._key_to_row: dict[str, int] | None = None
        self._paper_rows: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ opening

    def check_file(self, entry: dict[str, Any], what: str) -> Path:
        """The path of a manifest file entry, checked to exist with the recorded size and,
        when ``verify_checksums`` is on, the recorded sha256 (hashed once per file and process:
        :func:`~imagemesh.store.integrity.check_file`), so a damaged or replaced file is
        refused before anything reads it.

        Raises:
            CollectionError: missing, of another size, or another sha256.
        """
        path = self.data_dir / entry["file"]
        if not path.is_file():
            raise CollectionError(f"{what}: file {path} is missing")
        size = path.stat().st_size
        if "bytes" in entry and size != int(entry["bytes"]):
            raise CollectionError(f"{what}: {path.name} is {size} bytes, manifest says {entry['bytes']} (truncated or replaced)")
        if self.verify_checksums:
            try:
                check_file(path, entry.get("sha256"), entry.get("bytes"))
            except IntegrityError as e:
                raise CollectionError(f"{what}: {e}") from None
        return path

    def _table_files(self, tables: Sequence[str]) -> list[tuple[str, Path, dict[str, Any]]]:
        """``(table, path, record)`` of the LanceDB files recorded at publish for ``tables``
        (``"metadata"``: the images table and its indices; ``"media"``)."""
        t = self.manifest.table
        base = self.root / t.get("dir", "lance")
        prefix = {"metadata": f"{t.get('name', 'images')}.lance/", "media": f"{t.get('media', 'media')}.lance/"}
        out = []
        for rel, rec in sorted((t.get("files") or {}).items()):
            for table in tables:
                if rel.startswith(prefix[table]):
                    out.append((table, base / rel, rec))
        return out

    def _check_table_sizes(self) -> None:
        for table, path, rec in self._table_files(("metadata", "media")):
            try:
                size = path.stat().st_size
            except OSError:
                raise CollectionError(f"the {table} table's file {path.name} is missing; run `imagemesh verify`") from None
            if size != int(rec.get("bytes", -1)):
                raise CollectionError(f"the {table} table's file {path.name} is {size} bytes, the manifest says {rec.get('bytes')} (truncated or replaced); run `imagemesh verify`")

    def check_table_files(self, tables: Sequence[str] = ("metadata", "media")) -> None:
        """Check the sha256 of every LanceDB file of ``tables`` recorded at publish (hashed
        once per file and process). A mismatch marks the table damaged: from then on every
        read of it raises :class:`CollectionError`, so nothing answers from a damaged file.

        Raises:
            CollectionError: a file differs from the sha256 recorded at publish.
        """
        for table, path, rec in self._table_files(tables):
            if table in self.damaged:
                continue
            try:
                check_file(path, rec.get("sha256"), rec.get("bytes"))
            except IntegrityError:
                self.damaged[table] = (f"the {table} table's file {path.name} does not match the sha256 recorded at publish "
                                       "(corrupted or replaced); run `imagemesh verify`")
        for table in tables:
            if table in self.damaged:
                raise CollectionError(self.damaged[table])

    def _open_tables(self) -> None:
        t = self.manifest.table
        lance_dir = self.root / t.get("dir", "lance")
        if not lance_dir.is_dir():
            raise CollectionError(f"metadata table folder {lance_dir} is missing")
        try:
            db = lancedb.connect(str(lance_dir))
            self.table = db.open_table(t.get("name", "images"))
            self.table.checkout(int(t["version"]))
            self.media = db.open_table(t.get("media", "media"))
            self.media.checkout(int(t["media_version"]))
        except (ValueError, OSError, RuntimeError, KeyError) as e:
            raise CollectionError(f"cannot open metadata tables in {lance_dir} at the manifest's versions: {e}") from e
        if FTS_COLUMN not in self.table.schema.names:
            raise CollectionError(f"metadata table in {lance_dir} has no {FTS_COLUMN!r} column; rebuild the collection")
        # Without its full-text index (e.g. removed by hand) keyword filters still work, by scanning.
        self.has_fts = any(ix.index_type == "FTS" and list(ix.columns) == [FTS_COLUMN] for ix in self.table.list_indices())
        for name, tbl in (("metadata", self.table), ("media", self.media)):
            rows = tbl.count_rows()
            if rows != self.manifest.n_images:
                raise CollectionError(f"{name} table has {rows} rows, manifest says {self.manifest.n_images}")

    def _open_embedding(self, name: str, entry: dict[str, Any]) -> EmbeddingState:
        what = f"embedding {name!r}"
        try:
            config = EmbeddingConfig.from_dict(entry["config"])
            dim = int(entry["dim"])
            vpath = self.check_file(entry["vectors"], f"{what} vectors")
            # Native loaders (Annoy, FAISS) follow offsets inside a memory-mapped file: a
            # same-size corrupted file could crash a later query, so its sha256 is checked first.
            ipath = self.check_file(entry["index"], f"{what} index")
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, CollectionError):
                raise
            raise CollectionError(f"{what}: malformed manifest entry: {e}") from e
        try:
            vectors = np.load(vpath, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise CollectionError(f"{what}: cannot read vectors {vpath.name}: {e}") from e
        if vectors.shape != (self.manifest.n_images, dim) or vectors.dtype != np.float32:
            raise CollectionError(f"{what}: vectors are {vectors.dtype}{list(vectors.shape)}, manifest says float32[{self.manifest.n_images}, {dim}]")
        cls = self.registries.backends.get(entry["index"]["backend"])
        params = dict(entry["index"].get("params", {}))
        params["file_bytes"] = entry["index"].get("bytes")
        try:
            index = cls.load(ipath, dim, params)
        except IndexError_ as e:
            raise CollectionError(f"{what}: {e}") from e
        if index.ntotal != self.manifest.n_images:
            raise CollectionError(f"{what}: index holds {index.ntotal} vectors, manifest says {self.manifest.n_images}")
        return EmbeddingState(name, config, dim, vectors, index)

    # ------------------------------------------------------------------ basics

    def __len__(self) -> int:
        return self.manifest.n_images

    @property
    def embeddings(self) -> list[str]:
        """Embedding names, the default first (``imagenet`` when present, as the seed
        ImageMesh defaulted to its ImageNet CNN; else ``raw``; else the first), then the
        others in manifest order. The default is what queries without ``embedding`` use."""
        names = list(self._embeddings)
        if not names:
            return names
        first = next((n for n in DEFAULT_EMBEDDING_PREFERENCE if n in names), names[0])
        return [first] + [n for n in names if n != first]

    def embedding_info(self) -> list[dict[str, Any]]:
        """Per embedding: ``name``, ``metric``, ``dim`` (reduced), ``input_dim``, ``backend``,
        ``explained_variance`` (of the PCA), ``description`` (one line, may be empty)."""
        out = []
        for name in self.embeddings:
            st = self._embeddings[name]
            entry = self.manifest.embeddings[name]
            out.append({
                "name": name,
                "metric": st.config.metric,
                "dim": st.dim,
                "input_dim": st.config.dim,
                "backend": entry["index"]["backend"],
                "explained_variance": entry.get("pca", {}).get("explained_variance"),
                "description": self._describe(name),
            })
        return out

    def _describe(self, name: str) -> str:
        """The embedding's one-line ``description`` (a class attribute of registered
        embeddings; model cards may carry one), or ``""``."""
        try:
            factory = self.registries.embeddings.get(name)
        except KeyError:
            return ""
        return str(getattr(factory, "description", "") or "")

    def state(self, embedding: str | None) -> EmbeddingState:
        """The open embedding ``embedding`` (default: the first of :attr:`embeddings`).

        Raises:
            KeyError: no such embedding in this collection.
        """
        if embedding is None:
            embedding = self.embeddings[0]
        try:
            return self._embeddings[embedding]
        except KeyError:
            raise KeyError(f"unknown embedding {embedding!r}; this collection has: {', '.join(self.embeddings)}") from None

    def vectors(self, embedding: str | None = None) -> np.ndarray:
        """Reduced vectors ``float32[N, d]`` (memory-mapped, read-only)."""
        return self.state(embedding).vectors

    def resolve(self, image: int | str) -> int:
        """Row id of ``image``: a row id (int or digit string), an image key
        (``"2306.01841v1/fig1"``), or a paper id (arXiv id) with exactly one image.

        Raises:
            ImageNotFound: no such image, or a paper id with several images.
        """
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            if 0 <= int(image) < len(self):
                return int(image)
            raise ImageNotFound(f"no image with row id {image}")
        text = str(image).strip()
        if text.isascii() and text.isdigit():  # "¹" and "٣" are digits to str.isdigit, not to int()
            return self.resolve(int(text))
        if self._key_to_row is None:
            self._load_keys()
        assert self._key_to_row is not None
        if text in self._key_to_row:
            return self._key_to_row[text]
        matches = sorted(self._paper_rows.get(text, []))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ImageNotFound(f"{text!r} names {len(matches)} images; use an image key such as {self.get(matches[0])['image_key']!r}")
        raise ImageNotFound(f"no image {text!r}")

    def _load_keys(self) -> None:
        cols = ["row_id", "image_key"] + [c for c in ("arxiv_id", "version") if c in self.table.schema.names]
        t = self._read("metadata", lambda: self.table.search().select(cols).limit(None).to_arrow())
        keys: dict[str, int] = {}
        papers: dict[str, list[int]] = {}
        for r in t.to_pylist():
            keys[r["image_key"]] = r["row_id"]
            aid, ver = r.get("arxiv_id"), r.get("version")
            for name in {aid} | ({f"{aid}v{ver}"} if aid and ver else set()):
                if name:
                    papers.setdefault(name, []).append(r["row_id"])
        self._paper_rows = papers
        self._key_to_row = keys

    # ------------------------------------------------------------------ metadata

    def _read(self, table: str, read: Callable[[], T]) -> T:
        """Run a LanceDB read; a damaged or missing data file (LanceDB raises RuntimeError,
        OSError or ValueError) becomes a :class:`CollectionError` naming the table, and so
        does a table :meth:`check_table_files` found damaged."""
        if table in self.damaged:
            raise CollectionError(self.damaged[table])
        try:
            return read()
        except (RuntimeError, OSError, ValueError) as e:
            raise CollectionError(f"the {table} table cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); a data file is damaged or missing") from None

    def full_text(self, query: Any, columns: Sequence[str], limit: int) -> Any:
        """Run a LanceDB full-text ``query`` on the metadata table's ``search_text`` index:
        a ``pyarrow.Table`` of ``columns`` (``_score``: BM25), at most ``limit`` rows.

        Raises:
            CollectionError: the table cannot be read.
        """
        return self._read("metadata", lambda: self.table.search(query, query_type="fts").select(list(columns)).limit(limit).to_arrow())

    def take(self, rows: Sequence[int], columns: Sequence[str]) -> list[dict[str, Any]]:
        """Metadata of ``rows`` (in that order) restricted to ``columns`` (``row_id`` always);
        ``predictions`` parsed from JSON."""
        if not len(rows):
            return []
        rows = [int(r) for r in rows]
        names = set(self.table.schema.names)
        cols = ["row_id", *[c for c in columns if c != "row_id" and c in names]]
        t = self._read("metadata", lambda: self.table.take_offsets(sorted(set(rows))).select(cols).to_arrow())
        by_id = {r["row_id"]: r for r in t.to_pylist()}
        out = []
        for r in rows:
            rec = dict(by_id[r])
            if "predictions" in rec:
                rec["predictions"] = json.loads(rec["predictions"]) if rec["predictions"] else {}
            out.append(rec)
        return out

    def get(self, image: int | str) -> dict[str, Any]:
        """All metadata of one image (``dict``; ``predictions`` parsed from JSON).

        Raises:
            ImageNotFound: no such image.
        """
        row = self.resolve(image)
        return self.take([row], [f.name for f in self.table.schema])[0]

    def image_keys(self) -> list[str]:
        """Image keys in row-id order."""
        t = self._read("metadata", lambda: self.table.search().select(["row_id", "image_key"]).limit(None).to_arrow()).sort_by("row_id")
        return t["image_key"].to_pylist()

    def columns(self, names: Sequence[str]) -> Any:
        """``row_id`` and the given columns of every row, as a ``pyarrow.Table`` (unordered)."""
        return self._read("metadata", lambda: self.table.search().select(["row_id", *[n for n in names if n != "row_id"]]).limit(None).to_arrow())

    # ------------------------------------------------------------------ media

    def _media(self, rows: Sequence[int], column: str) -> list[bytes]:
        rows = [self.resolve(int(r)) for r in rows]
        if not rows:
            return []
        t = self._read("media", lambda: self.media.take_offsets(sorted(set(rows))).select(["row_id", column]).to_arrow())
        by_id = dict(zip(t["row_id"].to_pylist(), t[column].to_pylist()))
        missing = [r for r in rows if by_id.get(r) is None]
        if missing:
            raise ImageNotFound(f"no {column} stored for rows {missing[:5]}")
        return [bytes(by_id[r]) for r in rows]

    def thumbnail(self, row_id: int) -> bytes:
        """JPEG bytes of the thumbnail (longest side 256 px) of ``row_id``.

        Raises:
            ImageNotFound: no such row.
        """
        return self._media([row_id], "thumb")[0]

    def image(self, row_id: int) -> bytes:
        """JPEG bytes of the canonical image (longest side <= 512 px) of ``row_id``: the
        pixels every embedding saw.

        Raises:
            ImageNotFound: no such row.
        """
        return self._media([row_id], "image")[0]

    def images(self, rows: Sequence[int]) -> list[bytes]:
        """Canonical JPEGs of several rows, in the given order."""
        return self._media(rows, "image")

    def map_2d(self, embedding: str | None = None) -> tuple[np.ndarray, str] | None:
        """The build-time 2-D map of an embedding: ``(float32[N, 2] in [0, 1], method)``,
        or ``None`` if the collection has none.

        Raises:
            CollectionError: the map file is missing or of the wrong shape.
        """
        st = self.state(embedding)
        entry = self.manifest.embeddings[st.name].get("map")
        if not entry:
            return None
        xy = np.load(self.check_file(entry, f"map of {st.name!r}"), mmap_mode="r")
        if xy.shape != (len(self), 2):
            raise CollectionError(f"map of {st.name!r} has shape {xy.shape}, expected ({len(self)}, 2)")
        return np.asarray(xy), str(entry.get("method"))
