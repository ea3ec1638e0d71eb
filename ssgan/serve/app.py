"""The editor's web app (Starlette): :func:`create_app` puts the routes of :mod:`ssgan.serve.routes`
over one :class:`~ssgan.serve.editor.Editor`, with their exception handlers and the page's
security headers (:class:`Headers`)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.exceptions import ExceptionMiddleware

from ssgan.serve.editor import Editor, Limits
from ssgan.serve.engine import Engine
from ssgan.serve.errors import ClientError
from ssgan.serve.routes import ROUTES, client_error, internal_error

# The page may load only its own files (and the images the API returns as data: URLs).
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'")


def create_app(engine: Engine, limits: Limits | None = None, watermark: bool = True,
               key_id: int = 0) -> Starlette:
    """The Starlette app: ``/`` (the page), ``/static/…`` and ``/api/…`` (docs/serve.md, "JSON API");
    its editor is ``app.state.editor`` (``limits``: :class:`Limits`' defaults when None;
    ``watermark``, ``key_id``: the downloads' watermark).

    A ``ClientError`` is answered by Starlette's exception handling; the catch-all for every other
    exception sits in an ``ExceptionMiddleware`` inside :class:`Headers`, not in Starlette's
    ``ServerErrorMiddleware`` (where ``exception_handlers={Exception: …}`` would put it): so a 500
    keeps the page's headers, and its traceback is logged once (by :func:`internal_error`) instead
    of re-raised to the server."""
    app = Starlette(routes=ROUTES, exception_handlers={ClientError: client_error},
                    middleware=[Middleware(Headers),
                                Middleware(ExceptionMiddleware, handlers={Exception: internal_error})])
    app.state.editor = Editor(engine, Limits() if limits is None else limits, watermark, key_id)
    return app


class Headers:
    """ASGI middleware: the page's Content-Security-Policy (only its own files; data: images) on
    every response, and no caching of API answers."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"no-referrer")]
                if api:
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
