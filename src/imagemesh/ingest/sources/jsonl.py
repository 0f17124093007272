"""A folder of images plus ``metadata.jsonl``: any collection whose fields are its own.

``metadata.jsonl`` holds one JSON object per image::

    {"file": "images/vase-017.jpg", "museum": "Rijksmuseum", "artist": "Delft", "century": 17}

* ``file`` (required): the image's path relative to the folder; it must stay inside it.
* ``key`` (optional): the stable image key; default ``file`` without its extension.
* every other key is a metadata field. Names are lower-case identifiers
  (``[a-z_][a-z0-9_]*``, at most 64 characters, at most 64 fields) that do not clash with
  imagemesh's own columns (``row_id``, ``image_key``, ``width``, ``height`` ...).

Each field's kind is inferred from all its values (:func:`~imagemesh.core.schema.infer_kind`):
all integers -> ``int``, numbers -> ``float``, lists of strings -> ``text_list``, otherwise
``text`` (numbers among strings become text). A field with an object value, or a list of
non-strings, is dropped with a problem. Roles: every text field is searched by ``keyword``
and can be "contains"-filtered and suggested; text and int fields with 2 to
:data:`MAX_FACET_VALUES` distinct values, and at most one per two images (values that
repeat), get facets; numeric fields get a range control;
``title`` (or else the first text field) is the title.

Bad lines (not JSON, not an object, no ``file``, a path outside the folder, a missing file,
a duplicate key) are reported as problems and skipped; they never stop the build.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from imagemesh.core.schema import SYSTEM_FIELDS, FieldKind, MetadataSchema, infer_kind
from imagemesh.ingest.sources.base import SourceData, SourceItem, SourceProblem

__all__ = ["name", "detect", "read", "METADATA_FILE", "MAX_FACET_VALUES"]

name = "jsonl"
#: The metadata file a jsonl source folder holds.
METADATA_FILE = "metadata.jsonl"
#: Text/int fields with at most this many distinct values get facets.
MAX_FACET_VALUES = 50
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
_MAX_FIELDS = 64
_RESERVED = set(SYSTEM_FIELDS) | {"file", "key"}


def detect(path: Path) -> bool:
    """A folder holding ``metadata.jsonl``."""
    path = Path(path)
    return path.is_dir() and (path / METADATA_FILE).is_file()


def _coerce(value: Any, kind: FieldKind) -> Any:
    if value is None:
        return None
    if kind is FieldKind.TEXT:
        return value if isinstance(value, str) else json.dumps(value)
    if kind is FieldKind.FLOAT:
        return float(value)
    return value


def read(path: Path) -> SourceData:
    """Read a jsonl source folder (see the module docstring).

    Raises:
        ValueError: ``path`` has no ``metadata.jsonl``, or it holds no usable line.
    """
    root = Path(path).resolve()
    meta = root / METADATA_FILE
    if not meta.is_file():
        raise ValueError(f"{path}: no {METADATA_FILE}")
    problems: list[SourceProblem] = []
    rows: list[tuple[str, Path, dict[str, Any]]] = []
    seen: set[str] = set()
    with open(meta, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            where = f"{METADATA_FILE}:{n}"
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                problems.append(SourceProblem(where, f"not JSON: {e}"))
                continue
            if not isinstance(obj, dict):
                problems.append(SourceProblem(where, "not a JSON object"))
                continue
            rel = obj.get("file")
            if not isinstance(rel, str) or not rel.strip():
                problems.append(SourceProblem(where, "no \"file\""))
                continue
            img = (root / rel).resolve()
            if root not in img.parents:
                problems.append(SourceProblem(where, f"file {rel[:80]!r} is outside the folder"))
                continue
            if not img.is_file():
                problems.append(SourceProblem(where, f"no image file {rel[:80]!r}"))
                continue
            key = obj.get("key")
            key = str(key) if isinstance(key, (str, int)) and str(key).strip() else str(Path(rel).with_suffix("")).replace("\\", "/")
            if key in seen:
                problems.append(SourceProblem(where, f"duplicate image key {key[:80]!r}"))
                continue
            seen.add(key)
            rows.append((key, img, {k: v for k, v in obj.items() if k not in ("file", "key")}))
    if not rows:
        raise ValueError(f"{meta}: no usable line ({len(problems)} problem(s){': ' + problems[0].reason if problems else ''})")

    names: list[str] = []
    for _, _, md in rows:
        for k in md:
            if k not in names:
                names.append(k)
    kinds: dict[str, FieldKind] = {}
    for k in names:
        if not isinstance(k, str) or not _NAME.match(k) or k in _RESERVED:
            problems.append(SourceProblem(METADATA_FILE, f"field {str(k)[:70]!r} ignored: names are lower-case identifiers other than {', '.join(sorted(_RESERVED))}"))
            continue
        kind = infer_kind([md.get(k) for _, _, md in rows])
        if kind is None:
            problems.append(SourceProblem(METADATA_FILE, f"field {k!r} ignored: its values are objects or lists of non-strings"))
            continue
        if len(kinds) >= _MAX_FIELDS:
            problems.append(SourceProblem(METADATA_FILE, f"field {k!r} ignored: more than {_MAX_FIELDS} fields"))
            continue
        kinds[k] = kind

    items = [SourceItem(key, img, {k: _coerce(md.get(k), kind) for k, kind in kinds.items()}) for key, img, md in sorted(rows, key=lambda r: r[0])]
    text = tuple(k for k, v in kinds.items() if v is FieldKind.TEXT)
    texty = tuple(k for k, v in kinds.items() if v in (FieldKind.TEXT, FieldKind.TEXT_LIST))
    numeric = tuple(k for k, v in kinds.items() if v in (FieldKind.INT, FieldKind.FLOAT))
    facets = tuple(
        k for k, v in kinds.items()
        if v in (FieldKind.TEXT, FieldKind.INT) and 2 <= len({it.metadata.get(k) for it in items if it.metadata.get(k) is not None}) <= min(MAX_FACET_VALUES, len(items) // 2)
    )
    schema = MetadataSchema(
        fields=kinds,
        keyword_fields=texty,
        facet_fields=facets,
        range_fields=numeric,
        text_fields=text,
        suggest_fields=texty,
        hit_fields=tuple(kinds),
        title_field="title" if kinds.get("title") is FieldKind.TEXT else (text[0] if text else None),
        profile="jsonl",
    )
    return SourceData(items, problems, schema)
