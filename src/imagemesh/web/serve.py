"""Serving a collection: hot version switching, request caps, several worker processes.

* :class:`ReloadingApp` wraps a frontend (``create_app(collection, settings)``). At most
  every ``check_interval`` seconds a request triggers a cheap ``stat`` of
  ``manifest.json``; when it changed and names another ``build_id``, the new version is
  opened in a background thread while the old one keeps answering, warmed with the
  filters users ran recently (:meth:`~imagemesh.query.collection.Collection.warm`), and then
  swapped in for new requests. Requests already running finish on the version they started with
  (a build keeps the previous build folder and table versions, see
  :mod:`imagemesh.ingest.build`). A version that fails to open is not switched to (the old one
  stays; the failure is logged without request content).
* :class:`RequestCaps` rejects request bodies above ``max_body_bytes`` (413, checked from
  ``Content-Length`` and while streaming), caps the time of one request (503 after
  ``timeout_s``) and answers only ``GET``, ``HEAD`` and the frontend's own ``POST`` routes
  (the server is read-only: other methods get the frontend's 405).
* :func:`run` starts uvicorn bound to ``127.0.0.1`` by default, with no access log (no
  query content, no client addresses) and no server header. ``workers > 1`` starts that
  many processes; each opens the collection itself, and since vectors, FAISS and Annoy
  indices are memory-mapped read-only, the processes share one copy of them in the page
  cache.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagemesh.query.collection import Collection, open_collection
from imagemesh.store.manifest import Manifest, ManifestError
from imagemesh.web.settings import WebSettings

__all__ = ["ReloadingApp", "RequestCaps", "run", "make_app", "app_from_env", "release_memory", "ENV_PREFIX"]

log = logging.getLogger("imagemesh.web")

ENV_PREFIX = "IMAGEMESH_SERVE_"


def _manifest_stamp(root: Path) -> tuple[int, int, int] | None:
    try:
        st = (root / "manifest.json").stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)


class ReloadingApp:
    """An ASGI app serving the newest complete version of a collection folder.

    Args:
        root: the collection folder.
        create_app: the frontend factory ``create_app(collection, settings)``.
        settings: :class:`WebSettings`.
        check_interval: seconds between ``stat`` calls on ``manifest.json`` (0 = every request).
        opener: opens a collection (default :func:`imagemesh.open_collection`).
        collection: an already open collection of ``root`` (else it is opened here).
        warm_filters: before switching to a new version, warm it with this many of the
            current version's most recent filters (:meth:`Collection.warm`); 0 = no warming.
    """

    def __init__(
        self,
        root: str | Path,
        create_app: Callable[[Collection, WebSettings], ASGIApp],
        settings: WebSettings | None = None,
        check_interval: float = 1.0,
        opener: Callable[[Path], Collection] = open_collection,
        collection: Collection | None = None,
        warm_filters: int = 16,
    ) -> None:
        self.root = Path(root)
        self.warm_filters = int(warm_filters)
        self.release_delay_s = 5.0
        self.create_app = create_app
        self.settings = settings or WebSettings()
        self.check_interval = float(check_interval)
        self.opener = opener
        self._stamp = _manifest_stamp(self.root)
        c = collection if collection is not None else opener(self.root)
        self._current: tuple[Collection, ASGIApp] = (c, create_app(c, self.settings))
        self._next_check = time.monotonic() + self.check_interval
        self._reloading = False
        self._lock = threading.Lock()
        self.reloads = 0
        self.failed_reloads = 0

    @property
    def collection(self) -> Collection:
        return self._current[0]

    @property
    def build_id(self) -> str:
        return self._current[0].manifest.build_id

    def _changed(self) -> bool:
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.check_interval
        stamp = _manifest_stamp(self.root)
        if stamp is None or stamp == self._stamp:
            return False
        try:
            build_id = Manifest.read(self.root).build_id
        except ManifestError:
            return False  # being replaced, or damaged: keep serving the current version
        if build_id == self.build_id:
            self._stamp = stamp
            return False
        return True

    def reload_now(self) -> bool:
        """Open the version ``manifest.json`` names now and switch to it (blocking).
        Returns whether the served version changed."""
        stamp = _manifest_stamp(self.root)
        try:
            c = self.opener(self.root)
        except Exception as e:  # keep the old version; no request content in the log
            self.failed_reloads += 1
            log.warning("imagemesh: new collection version not served (%s): %s", type(e).__name__, str(e)[:300])
            self._stamp = stamp
            return False
        if c.manifest.build_id == self.build_id:
            self._stamp = stamp
            return False
        if self.warm_filters:
            # Do the new version's one-time work (facet columns, index pages, the masks and
            # planner structures of the filters users ran recently) before it takes
            # requests, so a switch does not turn into a burst of cold, slow queries.
            try:
                c.warm(self.collection.recent_filters(self.warm_filters), previous=self.collection)
            except Exception as e:  # warming is an optimisation; serve the new version anyway
                log.warning("imagemesh: warming build %s failed (%s)", c.manifest.build_id, type(e).__name__)
        self._current = (c, self.create_app(c, self.settings))
        self._stamp = stamp
        self.reloads += 1
        log.warning("imagemesh: now serving build %s (%d images)", c.manifest.build_id, len(c))
        return True

    def _reload_thread(self) -> None:
        try:
            switched = self.reload_now()
        finally:
            self._reloading = False
        if switched:
            # Requests that started on the old version finish within the request timeout;
            # then its caches are garbage and the allocator can give the pages back, so
            # that a process holds at most two versions' caches (old + the one warming).
            time.sleep(min(self.release_delay_s, 60.0))
            release_memory()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._reloading and self._changed():
            with self._lock:
                start = not self._reloading
                self._reloading = True
            if start:
                # Open the new version in a thread; this and other requests keep being
                # served by the current version meanwhile.
                threading.Thread(target=self._reload_thread, daemon=True, name="imagemesh-reload").start()
        await self._current[1](scope, receive, send)


class RequestCaps:
    """Body-size and time caps for every HTTP request (pure ASGI middleware).

    Args:
        app: the wrapped app.
        max_body_bytes: largest request body; larger ones get 413 before the app reads them.
        timeout_s: longest time for one request; then 503 (if nothing was sent yet).
        max_header_bytes: largest header block (names + values); larger ones get 431
            (whichever HTTP parser uvicorn uses: httptools ignores ``h11_max_incomplete_event_size``).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int = 17 * 1024 * 1024, timeout_s: float = 30.0, max_header_bytes: int = 64 * 1024) -> None:
        self.app = app
        self.max_body_bytes = int(max_body_bytes)
        self.timeout_s = float(timeout_s)
        self.max_header_bytes = int(max_header_bytes)

    async def _reply(self, send: Send, status: int, message: str) -> None:
        body = ('{"error": "%s"}' % message).encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if sum(len(k) + len(v) + 4 for k, v in scope.get("headers", [])) > self.max_header_bytes:
            await self._reply(send, 431, f"request header block larger than {self.max_header_bytes} bytes")
            return
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    too_big = int(v) > self.max_body_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await self._reply(send, 413, f"request body larger than {self.max_body_bytes} bytes")
                    return
        received = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge()
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            with anyio.fail_after(self.timeout_s):
                await self.app(scope, capped_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reply(send, 413, f"request body larger than {self.max_body_bytes} bytes")
        except TimeoutError:
            if not started:
                await self._reply(send, 503, f"request took longer than {self.timeout_s:g} s")


class _BodyTooLarge(Exception):
    pass


def release_memory() -> None:
    """Collect garbage and return free heap pages to the OS (glibc ``malloc_trim``; a no-op
    where glibc is absent). Without it, a process's RSS keeps the high-water mark of
    every version it ever warmed."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def make_app(
    root: str | Path,
    frontend: str = "explorer",
    settings: WebSettings | None = None,
    check_interval: float = 1.0,
    timeout_s: float = 30.0,
    collection: Collection | None = None,
) -> ASGIApp:
    """The served app: the frontend in a :class:`ReloadingApp` behind :class:`RequestCaps`
    (body cap = the upload limit plus 1 MiB for the form's other parts)."""
    from imagemesh.plugins import default_registries

    settings = settings or WebSettings()
    create_app = default_registries().frontends.get(frontend)
    inner = ReloadingApp(root, create_app, settings, check_interval=check_interval, collection=collection)
    max_body = int(getattr(settings, "max_upload_bytes", 16 * 1024 * 1024)) + 1024 * 1024
    app = RequestCaps(inner, max_body_bytes=max_body, timeout_s=timeout_s)
    app.reloading = inner  # type: ignore[attr-defined]
    return app


def app_from_env() -> ASGIApp:
    """uvicorn factory for worker processes: the settings come from ``IMAGEMESH_SERVE_*``
    environment variables set by :func:`run`."""
    env = os.environ
    return make_app(
        env[ENV_PREFIX + "ROOT"],
        frontend=env.get(ENV_PREFIX + "FRONTEND", "explorer"),
        check_interval=float(env.get(ENV_PREFIX + "CHECK_INTERVAL", "1.0")),
        timeout_s=float(env.get(ENV_PREFIX + "TIMEOUT", "30")),
    )


def run(
    root: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    frontend: str = "explorer",
    workers: int = 1,
    check_interval: float = 1.0,
    timeout_s: float = 30.0,
    collection: Collection | None = None,
    max_connections: int = 1024,
) -> None:
    """Serve ``root`` with uvicorn (blocks). See the module docstring for the defaults."""
    import uvicorn

    common: dict[str, Any] = dict(
        host=host, port=port, access_log=False, log_level="warning", server_header=False, date_header=False,
        limit_concurrency=max_connections, timeout_keep_alive=5, h11_max_incomplete_event_size=64 * 1024,
    )
    if workers <= 1:
        uvicorn.run(make_app(root, frontend, check_interval=check_interval, timeout_s=timeout_s, collection=collection), **common)
        return
    os.environ[ENV_PREFIX + "ROOT"] = str(Path(root).resolve())
    os.environ[ENV_PREFIX + "FRONTEND"] = frontend
    os.environ[ENV_PREFIX + "CHECK_INTERVAL"] = str(check_interval)
    os.environ[ENV_PREFIX + "TIMEOUT"] = str(timeout_s)
    uvicorn.run("imagemesh.web.serve:app_from_env", factory=True, workers=int(workers), **common)
