"""Run image decoders on untrusted files in a child process with time and memory limits.

Pillow, pypdfium2 (PDFium) and Ghostscript are native code fed with files from the
internet. A decoder bug may raise (handled by :func:`imagemesh.media.images.load_image`), but it
may also segfault, abort, loop forever or allocate without bound -- which would take down a
build of millions of images, or the web server decoding an uploaded query image.

:class:`IsolatedDecoder` keeps one long-lived worker process (``spawn``-ed, so it shares no
threads or locks with the parent) that decodes a file and returns its *canonical form*
(the original size and the canonical JPEG bytes, see :func:`imagemesh.media.canonical.canonical_image`),
the same bytes an in-process decode gives. Each request has a wall-clock limit; the
worker's address space is capped (``RLIMIT_AS``: what it had after its imports plus
``memory_bytes``) and so is its CPU time. A worker that crashes, times out or runs out of
memory is replaced, and the request fails with :class:`~imagemesh.media.images.ImageLoadError`
naming the cause (``"decoder crashed (SIGSEGV)"``, ``"decoder timed out after 60 s"``,
``"decoder ran out of memory"``), which a build records as a skipped image and a server
answers with a 4xx.

Usage::

    with IsolatedDecoder(ImageLimits()) as dec:
        (w, h), jpeg = dec.canonical(path)           # a file
        (w, h), jpeg = dec.canonical_bytes(data)     # bytes (uploads: never written to disk)
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from imagemesh.media.images import ImageLimits, ImageLoadError

__all__ = ["IsolationLimits", "IsolatedDecoder", "spawn_problem"]

_MIB = 1024 * 1024


@dataclass(frozen=True)
class IsolationLimits:
    """Limits of one decode in the worker process.

    Attributes:
        timeout_s: wall-clock seconds per file (the worker is killed and replaced after).
        memory_bytes: address space the worker may add to what its imports took.
        cpu_s: CPU seconds of one worker process (``RLIMIT_CPU``; a backstop, the worker
            is replaced after it is reached).
    """

    timeout_s: float = 120.0
    memory_bytes: int = 3072 * _MIB
    cpu_s: int = 3600


def _vm_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def spawn_problem() -> str | None:
    """Why a worker process cannot be spawned from this program, or ``None``.

    multiprocessing's ``spawn`` re-imports the main program in the worker; a program read
    from stdin (``python - <<EOF``) has no file to re-import, and every worker would die at
    start with exit code 1.
    """
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or getattr(main, "__spec__", None) is not None or os.path.exists(path):
        return None
    return (f"the decoder worker process cannot start: the main program ({path}) is not a file that "
            "multiprocessing can re-import; run it from a .py file, or turn isolation off "
            "(BuildOptions(isolate_decoders=False) / WebSettings(isolate_uploads=False))")


def _decode(source: str | bytes, limits: ImageLimits) -> tuple[tuple[int, int], bytes]:
    """In the worker: decode a path or bytes to (original size, canonical JPEG bytes)."""
    from imagemesh.media.canonical import canonical_image
    from imagemesh.media.images import load_image, load_image_bytes

    img = load_image(Path(source), limits) if isinstance(source, str) else load_image_bytes(source, limits, Path("<upload>"))
    data, _ = canonical_image(img)
    return img.size, data


def _worker(conn: Connection, memory_bytes: int, cpu_s: int) -> None:
    """Worker loop: import everything first, then cap memory and CPU, then serve requests."""
    import resource

    import imagemesh.media.canonical  # noqa: F401  (heavy imports happen before the cap)
    import imagemesh.media.images  # noqa: F401

    try:
        resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + memory_bytes, resource.RLIM_INFINITY))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    except (ValueError, OSError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        source, limits = msg
        try:
            size, data = _decode(source, limits)
            conn.send(("ok", size, data))
        except ImageLoadError as e:
            conn.send(("error", e.reason, None))
        except MemoryError:
            conn.send(("error", "decoder ran out of memory", None))
        except Exception as e:  # any other decoder failure is a per-file error
            conn.send(("error", f"{type(e).__name__}: {str(e)[:300]}", None))


class IsolatedDecoder:
    """Decodes files in a worker process (see the module docstring). Thread-safe: calls are
    serialised (one worker); create several for parallel decoding.

    Args:
        limits: the decoding limits passed to :func:`imagemesh.media.images.load_image`.
        isolation: time and memory limits of the worker.
    """

    def __init__(self, limits: ImageLimits | None = None, isolation: IsolationLimits | None = None) -> None:
        self.limits = limits or ImageLimits()
        self.isolation = isolation or IsolationLimits()
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self.restarts = 0  # workers replaced after a crash, timeout or out-of-memory

    # -------------------------------------------------------------- lifecycle

    def _start(self) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker, args=(child, int(self.isolation.memory_bytes), int(self.isolation.cpu_s)), daemon=True, name="imagemesh-decoder")
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent

    def _stop(self, kill: bool) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            if not kill:
                try:
                    conn.send(None)
                except (OSError, ValueError):
                    pass
            conn.close()
        if proc is not None:
            if kill and proc.is_alive():
                proc.kill()
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)

    def close(self) -> None:
        with self._lock:
            self._stop(kill=False)

    def __enter__(self) -> "IsolatedDecoder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self._stop(kill=True)
        except Exception:
            pass

    # -------------------------------------------------------------- requests

    def _request(self, source: str | bytes, label: Path) -> tuple[tuple[int, int], bytes]:
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                if self._proc is not None:
                    self._stop(kill=True)
                problem = spawn_problem()
                if problem:
                    raise ImageLoadError(label, problem)
                self._start()
            assert self._conn is not None
            try:
                self._conn.send((source, self.limits))
                ready = self._conn.poll(self.isolation.timeout_s)
                reply = self._conn.recv() if ready else None
            except (EOFError, OSError, BrokenPipeError):
                reply, ready = None, True
            if reply is None:
                code = None
                if self._proc is not None:
                    self._proc.join(timeout=0.5 if ready else 0)
                    code = self._proc.exitcode
                self._stop(kill=True)
                self.restarts += 1
                if not ready:
                    raise ImageLoadError(label, f"decoder timed out after {self.isolation.timeout_s:g} s")
                if code is not None and code < 0:
                    try:
                        name = signal.Signals(-code).name
                    except ValueError:
                        name = f"signal {-code}"
                    if -code in (signal.SIGKILL, signal.SIGXCPU):
                        raise ImageLoadError(label, f"decoder was killed ({name}: time or memory limit)")
                    raise ImageLoadError(label, f"decoder crashed ({name})")
                raise ImageLoadError(label, f"decoder process died (exit code {code})")
        status, a, b = reply
        if status == "ok":
            return (int(a[0]), int(a[1])), bytes(b)
        raise ImageLoadError(label, str(a))

    def canonical(self, path: str | Path) -> tuple[tuple[int, int], bytes]:
        """Decode the file at ``path``: ``((width, height) of the original, canonical JPEG)``.

        Raises:
            ImageLoadError: what :func:`~imagemesh.media.images.load_image` raises, or the worker
                crashed, timed out or ran out of memory.
        """
        return self._request(str(Path(path).resolve()), Path(path))

    def canonical_bytes(self, data: bytes) -> tuple[tuple[int, int], bytes]:
        """Like :meth:`canonical` for an in-memory file (an upload); nothing touches disk."""
        return self._request(bytes(data), Path("<upload>"))
