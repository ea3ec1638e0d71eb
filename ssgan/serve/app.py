"""The editor's web app (Starlette): one static page and the JSON API it uses (docs/serve.md,
"JSON API"). Nothing the client sends is used as a path; uploads are decoded in memory and
downloads are generated from the session's state."""

from __future__ import annotations

import base64
import io
import json
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ssgan.data.base import DatasetError
from ssgan.edit import editing as E
from ssgan.edit import photos
from ssgan.serve.engine import EditError, Engine
from ssgan.serve.session import Cancelled, InversionJob, Session, SessionError, Sessions, Slider, Step

STATIC = Path(__file__).with_name("static")
# The page may load only its own files (and the images the API returns as data: URLs).
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'")
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class Limits:
    """Upload caps and inversion bounds."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    invert_steps: int = 200
    max_invert_steps: int = 2000
    max_sessions: int = 64


class APIError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Upload(io.BytesIO):
    """Uploaded bytes, named in messages by the name the browser gave (never used as a path)."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return f"upload {self.name!r}"


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def data_url(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png(image)).decode()


def decode_upload(data: bytes, name: str, size: int, limits: Limits) -> torch.Tensor:
    """The uploaded image as (1, 3, size, size) in [−1, 1], read as ``ssgan invert`` reads photos
    (:func:`ssgan.edit.photos.read_photo`: EXIF orientation, RGB, LANCZOS); ``APIError`` 413 over
    the pixel cap, 415 when it is not an image."""
    if not data:
        raise APIError(400, "the upload is empty; choose an image file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Exception as e:  # PIL raises many types for non-images (and DecompressionBombError)
        why = "" if isinstance(e, Image.UnidentifiedImageError) else f" ({type(e).__name__}: {e})"
        raise APIError(415, f"{name} is not an image this server can read{why}; "
                            f"upload a PNG or JPEG") from None
    if width * height > limits.max_pixels:
        raise APIError(413, f"{name} is {width}x{height} = {width * height:,} pixels; the limit is "
                            f"{limits.max_pixels:,} (--max-pixels)")
    try:
        image, _ = photos.read_photo(Upload(data, name), size)  # type: ignore[arg-type]
    except DatasetError as e:
        raise APIError(415, str(e)) from None
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1


class Editor:
    """The API's behaviour, independent of HTTP (the routes below call it)."""

    def __init__(self, engine: Engine, limits: Limits = Limits()):
        self.engine = engine
        self.limits = limits
        self.sessions = Sessions(limits.max_sessions)

    # ----- helpers ------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        e, cfg = self.engine, self.engine.cfg
        return {"size": cfg.size, "n_latent": cfg.n_latent, "style_dim": cfg.style_dim,
                "classes": [{"index": i, "name": n, "color": [int(v) for v in e.colors[i]],
                             "transparent": i in e.classes.transparent}
                            for i, n in enumerate(e.classes.names)],
                "parts": ["texture", "shape", "all"], "directions": e.direction_names(),
                "direction_kind": "user" if e.user_directions else "pca",
                "truncation": e.truncation, "device": str(e.device),
                "limits": {"max_bytes": self.limits.max_bytes, "max_pixels": self.limits.max_pixels,
                           "invert_steps": self.limits.invert_steps,
                           "max_invert_steps": self.limits.max_invert_steps}}

    def new_session(self) -> dict[str, Any]:
        session = self.sessions.create()
        with session.lock:
            self._set(session, Step(self.engine.sample(0), "sample seed 0", []), "sample")
            self._set_reference(session, self.engine.sample(1), 1)
        return self.state(session)

    def _set(self, session: Session, step: Step, name: str, slider: Slider | None = None,
             started: float | None = None) -> None:
        """Render ``step``, record the change from the previous render over ``step.classes`` (all
        classes when none), make it current (a slider drag replaces its own entry)."""
        t0 = time.perf_counter() if started is None else started
        out = self.engine.render(step.latent, session.cache)
        continuing = slider is not None and session.slider is slider
        before = slider.before if continuing else session.render  # a drag: the change since it began
        if before is not None:
            classes = step.classes or list(range(self.engine.cfg.seg_dim))
            change = self.engine.change(before, out, classes)
            session.change = {"image": change["diff"][0], "inside": change["inside"],
                              "outside": change["outside"], "classes": classes,
                              "region": change["region"][0]}
        if continuing:
            session.history[slider.history_index] = step
        else:
            previous = session.render
            session.push(step)
            if slider is not None:
                slider.history_index, slider.before = session.position, previous
                session.slider = slider
        session.render = out
        session.last_action = {"name": name, "ms": round((time.perf_counter() - t0) * 1000, 1),
                               "recomputed_classes": list(session.cache.recomputed)}

    def _set_reference(self, session: Session, latent: torch.Tensor, seed: int | None) -> None:
        session.reference, session.reference_seed = latent.cpu(), seed
        pics = self.engine.pictures(self.engine.render(latent))
        session.reference_pictures = {"image": data_url(pics["image"]), "mask": data_url(pics["mask"])}

    def state(self, session: Session, stale: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"session": session.id, "seq": session.latest_seq}
        if stale:
            return {**out, "stale": True}
        step = session.current
        pics = self.engine.pictures(session.render)
        change = session.change
        out.update({
            "position": session.position, "length": len(session.history),
            "can_undo": session.position > 0, "can_redo": session.position < len(session.history) - 1,
            "action": step.action, "classes": step.classes,
            "image": data_url(pics["image"]), "mask": data_url(pics["mask"]),
            "labels": base64.b64encode(pics["labels"].tobytes()).decode(),
            "diff": None if change is None else {
                "image": data_url(change["image"]), "inside": _num(change["inside"]),
                "outside": _num(change["outside"]), "classes": change["classes"],
                "region": base64.b64encode(change["region"].astype(np.uint8).tobytes()).decode()},
            "reference": {**session.reference_pictures, "seed": session.reference_seed},
            "last": session.last_action,
            "job": None if session.job is None else session.job.as_dict(),
        })
        return out

    def _run(self, sid: str | None, seq: int | None, fn: Callable[[Session], None]) -> dict[str, Any]:
        """Run ``fn`` under the session's lock unless a newer request of the tab already arrived."""
        session = self.sessions.get(sid)
        session.see(seq)
        with session.lock:
            if session.stale(seq):
                return self.state(session, stale=True)
            fn(session)
            return self.state(session)

    # ----- actions ------------------------------------------------------------------------
    def sample(self, sid: str | None, seed: int | None, truncation: float | None, seq: int | None = None
               ) -> dict[str, Any]:
        seed = random.randint(0, MAX_SEED) if seed is None else int(seed)

        def act(s: Session) -> None:
            t0 = time.perf_counter()
            step = Step(self.engine.sample(seed, truncation), f"sample seed {seed}", [])
            self._set(s, step, "sample", None, t0)
        return self._run(sid, seq, act)

    def reference(self, sid: str | None, seed: int | None, from_current: bool = False,
                  seq: int | None = None) -> dict[str, Any]:
        def act(s: Session) -> None:
            t0 = time.perf_counter()
            if from_current:
                self._set_reference(s, s.current.latent, None)
            else:
                chosen = random.randint(0, MAX_SEED) if seed is None else int(seed)
                self._set_reference(s, self.engine.sample(chosen), chosen)
            s.last_action = {"name": "reference", "ms": round((time.perf_counter() - t0) * 1000, 1),
                             "recomputed_classes": []}
        return self._run(sid, seq, act)

    def edit(self, sid: str | None, body: dict[str, Any]) -> dict[str, Any]:
        op = body.get("op")
        classes = self.engine.check_classes(_get(body, "classes", list))
        part = self.engine.check_part(_get(body, "part", str, "texture"))
        seq = _get(body, "seq", int, None)
        names = ", ".join(self.engine.classes.names[c] for c in classes)

        def act(s: Session) -> None:
            t0 = time.perf_counter()
            current = s.current.latent
            if op == "resample":
                seed = _get(body, "seed", int, None)
                seed = random.randint(0, MAX_SEED) if seed is None else seed
                latent = self.engine.replace(current, self.engine.sample(seed), classes, part)
                self._set(s, Step(latent, f"resample {part} of {names} (seed {seed})", classes), op, None, t0)
            elif op == "copy":
                latent = self.engine.replace(current, s.reference, classes, part)
                action = f"copy {part} of {names} from the reference"
                self._set(s, Step(latent, action, classes), op, None, t0)
            elif op in ("interpolate", "direction"):
                key: tuple[Any, ...] = (op, tuple(classes), part)
                if op == "direction":
                    key += (_get(body, "direction", str),)
                slider = s.slider if s.slider is not None and s.slider.key == key \
                    and s.slider.history_index == s.position else None
                anchor = slider.anchor if slider is not None else current
                if op == "interpolate":
                    t = _get(body, "t", float)
                    latent = self.engine.interpolate(anchor, s.reference, classes, part, t)
                    action = f"interpolate {part} of {names} to the reference, t = {t:.2f}"
                else:
                    strength = _get(body, "strength", float)
                    if not -20 <= strength <= 20:
                        raise EditError(f"strength must be in [-20, 20], not {strength}")
                    d = self.engine.direction(key[3], classes, part)
                    latent = self.engine.move(anchor, d, classes, strength)
                    action = f"move {part} of {names} along {d.name} by {strength:+.2f}"
                self._set(s, Step(latent, action, classes), op, slider or Slider(key, anchor), t0)
            else:
                raise EditError(f"op must be resample, copy, interpolate or direction, not {op!r}")
        return self._run(sid, seq, act)

    def undo(self, sid: str | None, redo: bool = False) -> dict[str, Any]:
        def act(s: Session) -> None:
            t0 = time.perf_counter()
            target = s.position + (1 if redo else -1)
            if not 0 <= target < len(s.history):
                raise EditError("nothing to redo" if redo else "nothing to undo")
            moved = s.history[max(target, s.position)]  # the step undone or redone
            s.position, s.slider = target, None
            out = self.engine.render(s.current.latent, s.cache)
            classes = moved.classes or list(range(self.engine.cfg.seg_dim))
            change = self.engine.change(s.render, out, classes)
            s.change = {"image": change["diff"][0], "inside": change["inside"], "outside": change["outside"],
                        "classes": classes, "region": change["region"][0]}
            s.render = out
            s.last_action = {"name": "redo" if redo else "undo",
                             "ms": round((time.perf_counter() - t0) * 1000, 1),
                             "recomputed_classes": list(s.cache.recomputed)}
        return self._run(sid, None, act)

    def open_latent(self, sid: str | None, data: bytes, name: str) -> dict[str, Any]:
        """A compact W+ ``.npy`` (``ssgan generate``/``invert``/this page's download), read from the
        request body (never a path, no pickle) → the new current face."""
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as e:  # numpy raises several types for a file that is not .npy
            raise APIError(400, f"{name} is not a .npy array ({e}); download one from this page or "
                                f"use ssgan generate/invert's latent/*.npy") from None
        try:
            latent = E.as_latent(array, self.engine.G, name)[:1].cpu()
        except ValueError as e:
            raise APIError(400, str(e)) from None

        def act(s: Session) -> None:
            self._set(s, Step(latent, f"open {name}", []), "open")
        return self._run(sid, None, act)

    def start_inversion(self, sid: str | None, data: bytes, name: str, steps: int | None) -> dict[str, Any]:
        session = self.sessions.get(sid)
        steps = self.limits.invert_steps if steps is None else int(steps)
        if not 1 <= steps <= self.limits.max_invert_steps:
            raise APIError(400, f"steps must be in 1..{self.limits.max_invert_steps}, not {steps}")
        image = decode_upload(data, name, self.engine.cfg.size, self.limits)
        with session.lock:
            if session.job is not None and session.job.status == "running":
                raise APIError(409, "an inversion is already running in this tab; cancel it first")
            job = session.job = InversionJob(name, steps)
        threading.Thread(target=self._invert, args=(session, job, image), daemon=True,
                         name=f"ssgan-invert-{session.id}").start()
        return job.as_dict()

    def _invert(self, session: Session, job: InversionJob, image: torch.Tensor) -> None:
        try:
            latent = self.engine.invert(image, job.steps, job.progress)
        except Cancelled:
            job.status = "cancelled"
        except Exception as e:  # reported in the page; the server keeps running
            job.status, job.error = "failed", f"{type(e).__name__}: {e}"
        else:
            with session.lock:
                self._set(session, Step(latent.cpu(), f"invert {job.name} ({job.steps} steps)", []), "invert")
                session.last_action["ms"] = round((time.perf_counter() - job.started) * 1000, 1)
            job.status = "done"
        job.seconds = time.perf_counter() - job.started

    def job(self, sid: str | None) -> dict[str, Any]:
        session = self.sessions.get(sid)
        return {"job": None if session.job is None else session.job.as_dict()}

    def cancel(self, sid: str | None) -> dict[str, Any]:
        session = self.sessions.get(sid)
        if session.job is not None and session.job.status == "running":
            session.job.cancel.set()
        return self.job(sid)

    def download(self, sid: str | None, kind: str) -> Response:
        session = self.sessions.get(sid)
        with session.lock:
            step, render, change = session.current, session.render, session.change
            tag = f"ssgan-{session.position:03d}"
            if kind == "latent.npy":
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(step.latent[0].cpu().numpy(), dtype=np.float32))
                body, media = buf.getvalue(), "application/octet-stream"
            elif kind in ("image.png", "mask.png"):
                body, media = png(self.engine.pictures(render)[kind[:-4]]), "image/png"
            elif kind == "diff.png":
                if change is None:
                    raise APIError(404, "no edit yet: nothing to diff")
                body, media = png(change["image"]), "image/png"
            else:
                raise APIError(404, f"unknown download {kind!r}; one of image.png, mask.png, diff.png, "
                                    f"latent.npy")
        filename = f"{tag}-{kind}"
        return Response(body, media_type=media,
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 4)


_MISSING = object()


def _get(body: dict[str, Any], name: str, kind: type, default: Any = _MISSING) -> Any:
    """``body[name]`` as ``kind`` (``default`` when absent or null), else ``EditError`` naming it."""
    value = body.get(name)
    if value is None:
        if default is _MISSING:
            raise EditError(f"missing field {name!r}")
        return default
    try:
        if kind is list:
            if not isinstance(value, list):
                raise TypeError
            return [int(v) for v in value]
        if kind is int and (isinstance(value, bool) or float(value) != int(value)):
            raise TypeError
        return kind(value)
    except (TypeError, ValueError):
        raise EditError(f"field {name!r} must be {kind.__name__}, not {value!r}") from None


# ----- HTTP -----------------------------------------------------------------------------------
def create_app(engine: Engine, limits: Limits = Limits()) -> Starlette:
    """The Starlette app: ``/`` (the page), ``/static/…`` and ``/api/…`` (docs/serve.md)."""
    editor = Editor(engine, limits)

    def endpoint(fn: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                result = await fn(request)
            except APIError as e:
                return JSONResponse({"error": str(e)}, status_code=e.status)
            except SessionError as e:
                return JSONResponse({"error": str(e)}, status_code=404)
            except (EditError, ValueError) as e:
                return JSONResponse({"error": str(e)}, status_code=400)
            except Exception as e:  # one line for the page; the server keeps running
                return JSONResponse({"error": f"internal error: {type(e).__name__}: {e}"}, status_code=500)
            return result if isinstance(result, Response) else JSONResponse(result)
        return wrapped

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > 1_000_000:
            raise APIError(413, "request body too large")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise APIError(400, "the request body must be JSON") from None
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object")
        return body

    async def read_capped(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limits.max_bytes:
            raise APIError(413, f"the upload is {int(length):,} bytes; the limit is {limits.max_bytes:,} "
                                f"(--max-upload-mb)")
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limits.max_bytes:
                raise APIError(413, f"the upload is over the limit of {limits.max_bytes:,} bytes "
                                    f"(--max-upload-mb)")
            chunks.append(chunk)
        return b"".join(chunks)

    def sync(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        from starlette.concurrency import run_in_threadpool
        return run_in_threadpool(fn, *args)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def info(request: Request) -> Any:
        return editor.info()

    async def session(request: Request) -> Any:
        return await sync(editor.new_session)

    async def state(request: Request) -> Any:
        s = editor.sessions.get(request.query_params.get("session"))
        return await sync(lambda: _locked_state(editor, s))

    async def sample(request: Request) -> Any:
        b = await body_of(request)
        return await sync(editor.sample, b.get("session"), _get(b, "seed", int, None),
                          _get(b, "truncation", float, None), _get(b, "seq", int, None))

    async def reference(request: Request) -> Any:
        b = await body_of(request)
        return await sync(editor.reference, b.get("session"), _get(b, "seed", int, None),
                          bool(b.get("from_current", False)), _get(b, "seq", int, None))

    async def edit(request: Request) -> Any:
        b = await body_of(request)
        return await sync(editor.edit, b.get("session"), b)

    async def undo(request: Request) -> Any:
        b = await body_of(request)
        return await sync(editor.undo, b.get("session"), False)

    async def redo(request: Request) -> Any:
        b = await body_of(request)
        return await sync(editor.undo, b.get("session"), True)

    async def invert(request: Request) -> Any:
        q = request.query_params
        editor.sessions.get(q.get("session"))
        steps = q.get("steps")
        if steps is not None and not steps.isdigit():
            raise APIError(400, f"steps must be a whole number, not {steps!r}")
        data = await read_capped(request)
        name = (q.get("name") or "upload")[:100]
        return await sync(editor.start_inversion, q.get("session"), data, name,
                          None if steps is None else int(steps))

    async def latent(request: Request) -> Any:
        q = request.query_params
        editor.sessions.get(q.get("session"))
        data = await read_capped(request)
        return await sync(editor.open_latent, q.get("session"), data, (q.get("name") or "latent.npy")[:100])

    async def invert_status(request: Request) -> Any:
        return editor.job(request.query_params.get("session"))

    async def invert_cancel(request: Request) -> Any:
        b = await body_of(request)
        return editor.cancel(b.get("session"))

    async def download(request: Request) -> Any:
        return await sync(editor.download, request.query_params.get("session"), request.path_params["kind"])

    routes = [
        Route("/", endpoint(index)),
        Route("/api/info", endpoint(info)),
        Route("/api/session", endpoint(session), methods=["POST"]),
        Route("/api/state", endpoint(state)),
        Route("/api/sample", endpoint(sample), methods=["POST"]),
        Route("/api/reference", endpoint(reference), methods=["POST"]),
        Route("/api/edit", endpoint(edit), methods=["POST"]),
        Route("/api/latent", endpoint(latent), methods=["POST"]),
        Route("/api/undo", endpoint(undo), methods=["POST"]),
        Route("/api/redo", endpoint(redo), methods=["POST"]),
        Route("/api/invert", endpoint(invert), methods=["POST"]),
        Route("/api/invert", endpoint(invert_status), methods=["GET"]),
        Route("/api/invert/cancel", endpoint(invert_cancel), methods=["POST"]),
        Route("/api/download/{kind}", endpoint(download)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(Headers)])
    app.state.editor = editor
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


def _locked_state(editor: Editor, session: Session) -> dict[str, Any]:
    with session.lock:
        return editor.state(session)
