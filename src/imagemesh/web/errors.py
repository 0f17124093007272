"""HTTP errors and headers of the API: :class:`ApiError` (a 4xx with a JSON message), the
exception handlers (never a 500 with details; 405 keeps ``Allow``), and the security headers."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ApiError", "SecurityHeaders", "CSP", "api_error", "http_error", "damaged_collection", "server_error"]

log = logging.getLogger("imagemesh.web")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class ApiError(Exception):
    """A client error: HTTP ``status`` (4xx, or 503 when busy) and a message for
    ``{"error": message}``; ``headers`` go with the response (e.g. ``Retry-After``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class SecurityHeaders:
    """Adds CSP and related headers to every response (pure ASGI middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def api_error(request: Request, exc: Exception) -> JSONResponse:
    """:class:`ApiError` and upload errors -> their status with ``{"error": message}``."""
    status, message = getattr(exc, "status", 400), getattr(exc, "message", str(exc))
    body: dict[str, object] = {"error": message}
    if getattr(exc, "upload", None):
        body["upload"] = getattr(exc, "upload")
    return JSONResponse(body, status_code=status, headers=getattr(exc, "headers", None) or None)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's HTTP errors (404 route, 405 method) as JSON, keeping their headers (``Allow``)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 304:
        return Response(status_code=304)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=dict(exc.headers or {}))


async def damaged_collection(request: Request, exc: Exception) -> JSONResponse:
    """A part of the collection that does not match its manifest (a file's sha256, a table
    fragment): 503 naming it, so the rest keeps answering and the operator knows what to run."""
    log.error("damaged collection: %s", type(exc).__name__)
    return JSONResponse({"error": f"the collection is damaged: {str(exc)[:300]}; run `imagemesh verify`"}, status_code=503)


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    """Anything else: a 500 without details; the log names the exception type only (no query content)."""
    log.error("internal error: %s", type(exc).__name__)
    return JSONResponse({"error": "internal error"}, status_code=500)
