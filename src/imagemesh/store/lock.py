"""One writer at a time per collection folder.

Build, ingest, embed, ``verify --repair`` and ``concept save`` hold :func:`writer_lock` for
as long as they write: an OS file lock (the ``filelock`` library: ``flock`` on
``<collection>/.imagemesh.lock``), so a writer that dies -- even by SIGKILL -- releases it
with its process and no stale lock is left to clear. A second writer fails at once with a
:class:`CollectionLocked` naming the holder (host, pid, what, since when), unless it asks
to wait. Within one process the lock is re-entrant (an ingest that builds holds it once).
Readers (``open``, ``serve``) never take it: publishing is an atomic manifest switch.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator, ParamSpec, TypeVar

from filelock import FileLock, Timeout

from imagemesh.core.errors import ImagemeshError

__all__ = ["CollectionLocked", "writer_lock", "holding_writer_lock", "LOCK_NAME"]

P = ParamSpec("P")
R = TypeVar("R")

LOCK_NAME = ".imagemesh.lock"
_HOLDER = ".imagemesh.lock.json"


class CollectionLocked(ImagemeshError):
    """Another writer holds the collection folder."""


def _holder(root: Path) -> str:
    try:
        h = json.loads((root / _HOLDER).read_text(encoding="utf-8"))
        return f"{h.get('what', 'a writer')} (pid {h.get('pid')} on {h.get('host')}, since {h.get('since')})"
    except (OSError, ValueError, AttributeError):
        return "another writer"


@contextlib.contextmanager
def writer_lock(root: str | Path, what: str, wait: float = 0.0) -> Iterator[None]:
    """Hold the writer lock of collection folder ``root`` (created if missing).

    Args:
        what: who writes, for the message another writer gets (e.g. ``"imagemesh build"``).
        wait: seconds to wait for the holder to finish (0: fail at once; < 0: wait forever).

    Raises:
        CollectionLocked: another process holds it (after ``wait`` seconds).
    """
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / LOCK_NAME), is_singleton=True)
    first = not lock.is_locked
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        raise CollectionLocked(f"{root} is being written by {_holder(root)}; try again when it has finished") from None
    try:
        if first:
            info = {"what": what, "pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            with contextlib.suppress(OSError):
                (root / _HOLDER).write_text(json.dumps(info), encoding="utf-8")
        yield
    finally:
        lock.release()


def holding_writer_lock(what: str, param: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a writer so that it holds :func:`writer_lock` of the folder passed as its
    argument ``param`` for its whole run (re-entrant: a writer calling another is fine)."""

    def deco(fn: Callable[P, R]) -> Callable[P, R]:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            root = sig.bind_partial(*args, **kwargs).arguments[param]
            with writer_lock(root, what):
                return fn(*args, **kwargs)

        return wrapper

    return deco
