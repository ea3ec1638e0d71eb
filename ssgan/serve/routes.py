"""The JSON API on HTTP (docs/serve.md, "JSON API"): one function per route. Each parses its
request (a JSON body, query parameters or an upload's bytes), calls the app's
:class:`~ssgan.serve.editor.Editor` (``request.app.state.editor``; blocking work in a thread) and
answers JSON. Nothing the client sends is used as a path.

Errors: :func:`client_error` answers a :class:`~ssgan.serve.errors.ClientError` as
``{"error": message}`` with its status; :func:`internal_error` answers any other exception, a bug,
with a 500 ``{"error": "internal error: …"}`` and logs its traceback; the server keeps serving.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ssgan.serve.editor import Editor
from ssgan.serve.errors import ClientError
from ssgan.serve.openapi import OPENAPI_PATH, openapi

STATIC = Path(__file__).with_name("static")
MAX_JSON_BYTES = 1_000_000
log = logging.getLogger("ssgan.serve")
_MISSING = object()


# ----- parsing --------------------------------------------------------------------------------
def editor_of(request: Request) -> Editor:
    """The editor of the app serving ``request``."""
    return request.app.state.editor


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (``{}`` when empty)."""
    raw = await request.body()
    if len(raw) > MAX_JSON_BYTES:
        raise ClientError("request body too large", 413)
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise ClientError("the request body must be JSON") from None
    if not isinstance(body, dict):
        raise ClientError("the request body must be a JSON object")
    return body


async def upload(request: Request) -> bytes:
    """The request's bytes, refused (413) over the editor's ``max_bytes`` by their announced
    length and while they arrive."""
    limit = editor_of(request).limits.max_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdecimal() and int(length) > limit:
        raise ClientError(f"the upload is {int(length):,} bytes; the limit is {limit:,} (--max-upload-mb)",
                          413)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ClientError(f"the upload is over the limit of {limit:,} bytes (--max-upload-mb)", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def field(body: dict[str, Any], name: str, kind: type, default: Any = _MISSING) -> Any:
    """``body[name]`` as ``kind`` (int, float, str, or list: a list of ints), ``default`` when
    absent or null; ``ClientError`` naming the field otherwise."""
    value = body.get(name)
    if value is None:
        if default is _MISSING:
            raise ClientError(f"missing field {name!r}")
        return default
    try:
        if kind is list:
            if not isinstance(value, list):
                raise TypeError
            return [int(v) for v in value]
        if kind is int and (isinstance(value, bool) or float(value) != int(value)):
            raise TypeError
        return kind(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int() of a JSON 1e400
        raise ClientError(f"field {name!r} must be {kind.__name__}, not {value!r}") from None


def whole_number(text: str, name: str) -> int:
    """A query parameter as a whole number; ``ClientError`` naming it otherwise."""
    if not text.isdecimal() or len(text) > 18:  # 18 digits: far above every limit, far below int()'s
        raise ClientError(f"{name} must be a whole number, not {text[:40]!r}")
    return int(text)


def edit_call(editor: Editor, body: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """The editor call an ``/api/edit`` body asks for (its ``op``: resample, copy, interpolate or
    direction, with that edit's fields)."""
    sid, op = body.get("session"), body.get("op")
    classes, part = field(body, "classes", list), field(body, "part", str, "texture")
    seq = field(body, "seq", int, None)
    if op == "resample":
        return partial(editor.resample, sid, classes, part, field(body, "seed", int, None), seq)
    if op == "copy":
        return partial(editor.copy, sid, classes, part, seq)
    if op == "interpolate":
        return partial(editor.interpolate, sid, classes, part, field(body, "t", float), seq)
    if op == "direction":
        return partial(editor.move, sid, classes, part, field(body, "direction", str),
                       field(body, "strength", float), seq)
    raise ClientError(f"op must be resample, copy, interpolate or direction, not {op!r}")


async def answer(fn: Callable[..., dict[str, Any]], *args: Any) -> JSONResponse:
    """``fn(*args)`` run in a worker thread (renders block), answered as JSON."""
    return JSONResponse(await run_in_threadpool(fn, *args))


# ----- routes ---------------------------------------------------------------------------------
async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html")


async def info(request: Request) -> Response:
    return JSONResponse(editor_of(request).info())


async def openapi_document(request: Request) -> Response:
    return JSONResponse(openapi(editor_of(request)))


async def session(request: Request) -> Response:
    return await answer(editor_of(request).new_session)


async def state(request: Request) -> Response:
    return await answer(editor_of(request).state, request.query_params.get("session"))


async def sample(request: Request) -> Response:
    b = await json_body(request)
    return await answer(editor_of(request).sample, b.get("session"), field(b, "seed", int, None),
                        field(b, "truncation", float, None), field(b, "seq", int, None))


async def reference(request: Request) -> Response:
    b = await json_body(request)
    return await answer(editor_of(request).reference, b.get("session"), field(b, "seed", int, None),
                        bool(b.get("from_current", False)), field(b, "seq", int, None))


async def edit(request: Request) -> Response:
    return await answer(edit_call(editor_of(request), await json_body(request)))


async def undo(request: Request) -> Response:
    return await answer(editor_of(request).undo, (await json_body(request)).get("session"))


async def redo(request: Request) -> Response:
    return await answer(editor_of(request).redo, (await json_body(request)).get("session"))


async def latent(request: Request) -> Response:
    editor, q = editor_of(request), request.query_params
    editor.sessions.get(q.get("session"))  # an unknown session before reading the upload
    data = await upload(request)
    return await answer(editor.open_latent, q.get("session"), data, (q.get("name") or "latent.npy")[:100])


async def invert(request: Request) -> Response:
    editor, q = editor_of(request), request.query_params
    editor.sessions.get(q.get("session"))
    steps = q.get("steps")
    steps_n = None if steps is None else whole_number(steps, "steps")
    data = await upload(request)
    return await answer(editor.start_inversion, q.get("session"), data, (q.get("name") or "upload")[:100],
                        steps_n)


async def invert_status(request: Request) -> Response:
    return JSONResponse(editor_of(request).job(request.query_params.get("session")))


async def invert_cancel(request: Request) -> Response:
    return JSONResponse(editor_of(request).cancel((await json_body(request)).get("session")))


async def download(request: Request) -> Response:
    got = await run_in_threadpool(editor_of(request).download, request.query_params.get("session"),
                                  request.path_params["kind"])
    return Response(got.body, media_type=got.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{got.filename}"'})


ROUTES: list[BaseRoute] = [
    Route("/", index),
    Route("/api/info", info),
    Route(OPENAPI_PATH, openapi_document),
    Route("/api/session", session, methods=["POST"]),
    Route("/api/state", state),
    Route("/api/sample", sample, methods=["POST"]),
    Route("/api/reference", reference, methods=["POST"]),
    Route("/api/edit", edit, methods=["POST"]),
    Route("/api/latent", latent, methods=["POST"]),
    Route("/api/undo", undo, methods=["POST"]),
    Route("/api/redo", redo, methods=["POST"]),
    Route("/api/invert", invert, methods=["POST"]),
    Route("/api/invert", invert_status, methods=["GET"]),
    Route("/api/invert/cancel", invert_cancel, methods=["POST"]),
    Route("/api/download/{kind}", download),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]


# ----- errors ---------------------------------------------------------------------------------
async def client_error(request: Request, exc: ClientError) -> Response:
    """A :class:`ClientError`: its message with its status."""
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def internal_error(request: Request, exc: Exception) -> Response:
    """Any other exception is a bug: its traceback logged, one line for the page, a 500."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)
