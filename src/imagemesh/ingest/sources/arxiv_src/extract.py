"""Safe extraction of arXiv source packages into a work folder.

A package is what arXiv stores per paper: a (gzipped) tar, a gzipped single file
(LaTeX or PDF), a zip, or a bare ``.tex``/``.pdf``. Archives inside the package
(``.tar``, ``.tar.gz``, ``.tgz``, ``.zip``) are unpacked into the folder that holds
them, as arXiv does, down to ``ExtractLimits.max_depth`` levels.

Safety: every member name is checked before anything is written (no ``..``, absolute
paths, Windows drive letters or backslash paths, NUL/control characters, over-long
names); only regular files and folders are extracted (symlinks, hard links, devices and
FIFOs are skipped with a reason); tar members go through tarfile's ``data`` filter on
top; the total uncompressed bytes, the member count, the size of one member and the
nesting depth are capped (decompression bombs stop at the limit, not at the end of the
stream). Nothing is written outside ``dest``.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

__all__ = ["ExtractLimits", "ExtractResult", "ExtractError", "extract_package", "sniff_package"]

_MIB = 1024 * 1024
_JUNK_DIRS = {"__MACOSX"}
_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip", ".tar.bz2", ".tbz", ".tbz2")


class ExtractError(Exception):
    """The package cannot be extracted at all (empty, not an archive, limit exceeded)."""


@dataclass(frozen=True)
class ExtractLimits:
    """Limits of one package's extraction (all nested archives together).

    Attributes:
        max_total_bytes: uncompressed bytes written, in all.
        max_member_bytes: size of one extracted file.
        max_members: archive members (files, folders, links) looked at, in all.
        max_depth: archive nesting (1 = the package itself, 2 = an archive inside it, ...).
        max_name_length: characters of one member path.
    """

    max_total_bytes: int = 1024 * _MIB
    max_member_bytes: int = 256 * _MIB
    max_members: int = 10_000
    max_depth: int = 3
    max_name_length: int = 1024


@dataclass
class ExtractResult:
    """What :func:`extract_package` did.

    ``kind``: ``tar``, ``zip``, ``gzip-tex`` (gzipped single file), ``gzip-pdf``,
    ``pdf``, ``tex`` or ``file``. ``files`` are POSIX paths relative to ``dest``.
    ``skipped``: members not extracted, with reasons (security or limits).
    ``ignored``: macOS metadata (``__MACOSX/``, ``._*``) left out.
    ``errors``: problems that stopped part of the extraction (truncated data, limits).
    """

    kind: str
    files: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    gzip_name: str | None = None
    members: int = 0
    bytes_written: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Budget:
    def __init__(self, limits: ExtractLimits) -> None:
        self.limits = limits
        self.members = 0
        self.bytes = 0

    def member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise ExtractError(f"more than {self.limits.max_members} archive members (possible archive bomb)")

    def add_bytes(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.limits.max_total_bytes:
            raise ExtractError(f"more than {self.limits.max_total_bytes} uncompressed bytes (possible decompression bomb)")


def sniff_package(head: bytes) -> str:
    """``gzip``, ``bzip2``, ``zip``, ``tar``, ``pdf``, ``ps`` or ``other`` from the first 512+ bytes."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"%!PS") or head.startswith(b"\xc5\xd0\xd3\xc6"):
        return "ps"
    if len(head) >= 512 and _looks_like_v7_tar(head[:512]):
        return "tar"
    return "other"


def _looks_like_v7_tar(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        return True
    except tarfile.HeaderError:
        return False


def safe_member_path(name: str, limits: ExtractLimits) -> tuple[PurePosixPath | None, str]:
    """Check an archive member name; ``(relative path, "")`` or ``(None, reason)``."""
    if not name or not name.strip():
        return None, "empty name"
    if len(name) > limits.max_name_length:
        return None, f"name longer than {limits.max_name_length} characters"
    if "\x00" in name:
        return None, "NUL character in name"
    if _CTRL.search(name):
        return None, "control character in name"
    if _DRIVE.match(name):
        return None, "Windows drive letter in name (absolute Windows path)"
    if "\\" in name:
        return None, "backslash in name (Windows path)"
    if name.startswith("/"):
        return None, "absolute path"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return None, "name is not valid UTF-8"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None, "path with '..' (escapes the package)"
    if not parts:
        return None, "empty name"
    return PurePosixPath(*parts), ""


def _is_junk(rel: PurePosixPath) -> bool:
    return any(p in _JUNK_DIRS for p in rel.parts) or rel.name.startswith("._") or rel.name == ".DS_Store"


def _copy_limited(src: IO[bytes], dst: Path, expected: int | None, budget: _Budget) -> int:
    n = 0
    with open(dst, "xb") as f:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            n += len(chunk)
            if n > budget.limits.max_member_bytes:
                raise ExtractError(f"a member is larger than {budget.limits.max_member_bytes} bytes")
            if expected is not None and n > expected:
                raise ExtractError("member is larger than its header says")
            budget.add_bytes(len(chunk))
            f.write(chunk)
    return n


def _target(dest: Path, base: PurePosixPath, rel: PurePosixPath) -> Path:
    target = dest.joinpath(*base.parts, *rel.parts)
    root = os.path.realpath(dest)
    if os.path.commonpath([root, os.path.realpath(target)]) != root:  # belt and braces
        raise ExtractError(f"member {rel} resolves outside the work folder")
    return target


class _Extractor:
    def __init__(self, dest: Path, limits: ExtractLimits, result: ExtractResult) -> None:
        self.dest = dest
        self.budget = _Budget(limits)
        self.limits = limits
        self.result = result
        self._n_nested = 0

    def _record(self, target: Path) -> None:
        self.result.files.append(target.relative_to(self.dest).as_posix())

    def _prepare(self, name: str, base: PurePosixPath, is_dir: bool) -> Path | None:
        if is_dir and name and not [p for p in name.split("/") if p not in ("", ".")]:
            return None  # "." / "./": the archive's own root (``tar czf p.tar.gz -C dir .``), nothing to do
        rel, why = safe_member_path(name, self.limits)
        if rel is None:
            self.result.skipped.append({"name": name.encode("utf-8", "backslashreplace").decode(), "reason": why})
            return None
        if _is_junk(rel):
            if not is_dir:
                self.result.ignored.append(str(base / rel))
            return None
        target = _target(self.dest, base, rel)
        # every existing parent must be a real folder (never follow anything else)
        cur = self.dest
        for part in target.relative_to(self.dest).parts[:-1]:
            cur = cur / part
            if cur.is_symlink() or (cur.exists() and not cur.is_dir()):
                self.result.skipped.append({"name": name, "reason": f"parent {cur.relative_to(self.dest)} is not a folder"})
                return None
        if not is_dir and (target.exists() or target.is_symlink()):
            self.result.skipped.append({"name": name, "reason": "duplicate member (first one kept)"})
            return None
        return target

    def tar(self, fileobj: BinaryIO, base: PurePosixPath, depth: int) -> None:
        try:
            tf = tarfile.open(fileobj=fileobj, mode="r|*")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise ExtractError(f"not a readable tar archive: {e}") from e
        with tf:
            try:
                for m in tf:
                    self.budget.member()
                    self.result.members += 1
                    if m.isdir():
                        t = self._prepare(m.name, base, True)
                        if t is not None:
                            t.mkdir(parents=True, exist_ok=True)
                        continue
                    if m.issym() or m.islnk():
                        kind = "symlink" if m.issym() else "hard link"
                        self.result.skipped.append({"name": m.name, "reason": f"{kind} to {m.linkname!r} (links are not extracted)"})
                        continue
                    if not m.isreg():
                        kind = {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "FIFO"}.get(m.type, f"type {m.type!r}")
                        self.result.skipped.append({"name": m.name, "reason": f"special file ({kind})"})
                        continue
                    if m.size > self.limits.max_member_bytes:
                        raise ExtractError(f"member {m.name!r} is {m.size} bytes, limit {self.limits.max_member_bytes}")
                    t = self._prepare(m.name, base, False)
                    if t is None:
                        continue
                    try:  # tarfile's own 'data' filter, on top of the checks above
                        tarfile.data_filter(m, str(self.dest / base) if base.parts else str(self.dest))
                    except tarfile.FilterError as e:
                        self.result.skipped.append({"name": m.name, "reason": f"refused by tarfile data filter: {e}"})
                        continue
                    t.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(m)
                    if src is None:
                        continue
                    try:
                        n = _copy_limited(src, t, m.size, self.budget)
                    except (EOFError, OSError, tarfile.TarError, zlib.error) as e:
                        t.unlink(missing_ok=True)
                        raise ExtractError(f"truncated or corrupt archive at member {m.name!r}: {e}") from e
                    if n != m.size:
                        t.unlink(missing_ok=True)
                        raise ExtractError(f"truncated archive: member {m.name!r} has {n} of {m.size} bytes")
                    os.chmod(t, 0o644)
                    self._record(t)
                    self._maybe_nested(t, depth)
            except ExtractError:
                raise
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                raise ExtractError(f"truncated or corrupt archive: {e}") from e

    def zip(self, path: Path, base: PurePosixPath, depth: int) -> None:
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise ExtractError(f"not a readable zip archive: {e}") from e
        with zf:
            for info in zf.infolist():
                self.budget.member()
                self.result.members += 1
                mode = (info.external_attr >> 16) & 0xFFFF
                if info.is_dir():
                    t = self._prepare(info.filename, base, True)
                    if t is not None:
                        t.mkdir(parents=True, exist_ok=True)
                    continue
                if mode and stat.S_ISLNK(mode):
                    self.result.skipped.append({"name": info.filename, "reason": "symlink (links are not extracted)"})
                    continue
                if mode and not stat.S_ISREG(mode) and stat.S_IFMT(mode):
                    self.result.skipped.append({"name": info.filename, "reason": "special file"})
                    continue
                if info.flag_bits & 0x1:
                    self.result.skipped.append({"name": info.filename, "reason": "encrypted"})
                    continue
                if info.file_size > self.limits.max_member_bytes:
                    raise ExtractError(f"member {info.filename!r} is {info.file_size} bytes, limit {self.limits.max_member_bytes}")
                t = self._prepare(info.filename, base, False)
                if t is None:
                    continue
                t.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(info) as src:
                        _copy_limited(src, t, info.file_size, self.budget)
                except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as e:
                    t.unlink(missing_ok=True)
                    self.result.skipped.append({"name": info.filename, "reason": f"corrupt member: {e}"})
                    continue
                os.chmod(t, 0o644)
                self._record(t)
                self._maybe_nested(t, depth)

    def _maybe_nested(self, t: Path, depth: int) -> None:
        """Unpack an archive found inside the package into its own folder, then drop it."""
        if not t.name.lower().endswith(_ARCHIVE_SUFFIXES):
            return
        with open(t, "rb") as f:
            kind = sniff_package(f.read(1024))
        if kind not in ("gzip", "bzip2", "zip", "tar"):
            return
        rel = t.relative_to(self.dest).as_posix()
        if depth + 1 > self.limits.max_depth:
            self.result.skipped.append({"name": rel, "reason": f"archive nested deeper than {self.limits.max_depth} levels"})
            return
        base = PurePosixPath(rel).parent
        # Moved aside first, so a member with the archive's own name (figs.tar.gz inside
        # figs.tar.gz) is extracted, not refused as a duplicate. No member can take the
        # aside name: member names with a backslash are refused (safe_member_path).
        self._n_nested += 1
        aside = self.dest / f".nested\\{self._n_nested}"
        os.replace(t, aside)
        self.result.files.remove(rel)
        try:
            if kind == "zip":
                self.zip(aside, base, depth + 1)
            else:
                with open(aside, "rb") as f:
                    self.tar(f, base, depth + 1)
        except ExtractError as e:
            if "bomb" in str(e) or "limit" in str(e):
                aside.unlink(missing_ok=True)
                raise
            self.result.errors.append(f"nested archive {rel}: {e}")
            if not t.exists():  # keep the unreadable archive as a plain file, as before
                os.replace(aside, t)
                self.result.files.append(rel)
                return
        aside.unlink(missing_ok=True)


def _gunzip_limited(src: Path, dst: Path, budget: _Budget) -> int:
    try:
        with gzip.open(src, "rb") as g:
            return _copy_limited(g, dst, None, budget)  # type: ignore[arg-type]
    except (OSError, EOFError, zlib.error) as e:
        dst.unlink(missing_ok=True)
        raise ExtractError(f"truncated or corrupt gzip data: {e}") from e


def _gzip_name(path: Path) -> str | None:
    """The original file name stored in a gzip header (FNAME), if any."""
    with open(path, "rb") as f:
        head = f.read(10)
        if len(head) < 10 or head[:2] != b"\x1f\x8b" or not head[3] & 0x08:
            return None
        if head[3] & 0x04:  # FEXTRA
            xlen = int.from_bytes(f.read(2), "little")
            f.read(xlen)
        name = bytearray()
        while len(name) < 1024:
            c = f.read(1)
            if not c or c == b"\x00":
                break
            name += c
    text = name.decode("latin-1")
    return text if text and not _CTRL.search(text) else None


def extract_package(path: Path, dest: Path, limits: ExtractLimits = ExtractLimits()) -> ExtractResult:
    """Extract the package at ``path`` into the (new or empty) folder ``dest``.

    Returns:
        An :class:`ExtractResult`. A truncated archive keeps the files that were
        complete and records the problem in ``errors``.

    Raises:
        ExtractError: nothing could be extracted (empty file, unreadable archive,
            a limit exceeded -- then ``dest`` is emptied).
    """
    path = Path(path)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    size = path.stat().st_size
    if size == 0:
        raise ExtractError("empty file (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(1024)
    if not head.strip(b"\x00"):
        raise ExtractError(f"file holds only NUL bytes ({size} bytes): no archive, no source")
    kind = sniff_package(head)
    result = ExtractResult(kind="file")
    ex = _Extractor(dest, limits, result)
    try:
        if kind == "gzip":
            result.gzip_name = _gzip_name(path)
            inner = dest / ".gunzipped"
            try:
                _gunzip_limited(path, inner, ex.budget)
            except ExtractError as e:
                if inner.exists():
                    inner.unlink()
                raise e
            with open(inner, "rb") as f:
                ikind = sniff_package(f.read(1024))
            if ikind == "tar":
                result.kind = "tar"
                ex.budget.bytes = 0  # the tar's members are counted again as they are written
                try:
                    with open(inner, "rb") as f:
                        ex.tar(f, PurePosixPath(), 1)
                finally:
                    inner.unlink()
            else:
                stem = Path(result.gzip_name or path.name).name
                if stem.lower().endswith(".gz"):
                    stem = stem[:-3]
                if ikind == "pdf":
                    result.kind = "gzip-pdf"
                    name = stem if stem.lower().endswith(".pdf") else "paper.pdf"
                else:
                    result.kind = "gzip-tex" if ikind == "other" else f"gzip-{ikind}"
                    name = stem if stem.lower().endswith((".tex", ".ltx", ".latex")) else "main.tex"
                    if ikind == "ps":
                        name = "paper.ps"
                rel, _why = safe_member_path(name, limits)
                final = dest / (rel.name if rel is not None else "main.tex")
                os.replace(inner, final)
                result.files.append(final.name)
        elif kind == "bzip2":
            result.kind = "tar"
            import bz2

            try:
                with bz2.open(path, "rb") as f:
                    ex.tar(f, PurePosixPath(), 1)  # type: ignore[arg-type]
            except (OSError, EOFError) as e:
                raise ExtractError(f"corrupt bzip2 data: {e}") from e
        elif kind == "tar":
            result.kind = "tar"
            with open(path, "rb") as f:
                ex.tar(f, PurePosixPath(), 1)
        elif kind == "zip":
            result.kind = "zip"
            ex.zip(path, PurePosixPath(), 1)
        else:
            result.kind = {"pdf": "pdf", "ps": "ps"}.get(kind, "tex")
            name = path.name if kind != "other" or path.suffix.lower() in (".tex", ".ltx") else "main.tex"
            rel, _why = safe_member_path(name, limits)
            target = dest / (rel.name if rel is not None else "main.tex")
            with open(path, "rb") as src:
                _copy_limited(src, target, None, ex.budget)
            result.files.append(target.name)
    except ExtractError as e:
        msg = str(e)
        if "bomb" in msg or "limit" in msg or not result.files:
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True, exist_ok=True)
            result.files.clear()
            raise
        result.errors.append(msg)
    result.bytes_written = ex.budget.bytes
    result.files.sort()
    return result
