"""The editor without HTTP: every browser tab's :class:`~ssgan.serve.session.Session` edited with
the one shared :class:`~ssgan.serve.engine.Engine`.

Each operation takes a session id and plain values and returns the JSON-ready state the page draws
(:meth:`Editor.state`'s dict), or a :class:`Download`'s bytes. Input the editor cannot use raises
:class:`~ssgan.serve.errors.ClientError`; anything else is a bug and propagates.
:mod:`ssgan.serve.routes` puts this on HTTP; tests and scripts call it directly.

An edit renders the new latent with the session's per-class cache and records, over the edited
classes (all classes when none), the change from the picture before it (:meth:`Editor._show`); a
slider drag (interpolation, direction) starts every request from the drag's anchor and replaces
the history entry it made, so a drag is one undo step.
"""

from __future__ import annotations

import base64
import io
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from ssgan.checkpoint import param_digest
from ssgan.data.base import DatasetError
from ssgan.edit import editing as E
from ssgan.edit import photos
from ssgan.model.generator import Synthesis
from ssgan.provenance import COMPOSITE, TRAINED, Provenance, encode_image, software
from ssgan.serve.engine import Engine
from ssgan.serve.errors import ClientError
from ssgan.serve.session import Cancelled, InversionJob, Session, Sessions, Slider, Step

MAX_SEED = 2**31 - 1  # random seeds are drawn from 0 … MAX_SEED
DOWNLOADS = ("image.png", "mask.png", "diff.png", "latent.npy")
log = logging.getLogger("ssgan.serve")


@dataclass(frozen=True)
class Limits:
    """Upload caps and inversion bounds."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    invert_steps: int = 200
    max_invert_steps: int = 2000
    max_sessions: int = 64


@dataclass(frozen=True)
class Download:
    """A file generated from a session's state: its name, bytes and media type."""

    filename: str
    body: bytes
    media_type: str


class Upload(io.BytesIO):
    """Uploaded bytes, named in messages by the name the browser gave (never used as a path)."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return f"upload {self.name!r}"


def data_url(png: bytes) -> str:
    """PNG bytes (:func:`ssgan.provenance.encode_image`'s, so that a preview saved from the page is
    marked like a download) as a ``data:image/png;base64,…`` URL."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def decode_upload(data: bytes, name: str, size: int, limits: Limits) -> torch.Tensor:
    """The uploaded image as (1, 3, size, size) in [−1, 1], read as ``ssgan invert`` reads photos
    (:func:`ssgan.edit.photos.read_photo`: EXIF orientation, RGB, LANCZOS); ``ClientError`` 400
    when empty, 413 over the pixel cap, 415 when it is not an image."""
    if not data:
        raise ClientError("the upload is empty; choose an image file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Exception as e:  # PIL raises many types for non-images (and DecompressionBombError)
        why = "" if isinstance(e, Image.UnidentifiedImageError) else f" ({type(e).__name__}: {e})"
        raise ClientError(f"{name} is not an image this server can read{why}; upload a PNG or JPEG",
                          415) from None
    if width * height > limits.max_pixels:
        raise ClientError(f"{name} is {width}x{height} = {width * height:,} pixels; the limit is "
                          f"{limits.max_pixels:,} (--max-pixels)", 413)
    try:
        image, _ = photos.read_photo(Upload(data, name), size)  # type: ignore[arg-type]
    except DatasetError as e:
        raise ClientError(str(e), 415) from None
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1


def read_latent(data: bytes, name: str) -> np.ndarray:
    """The float array of a ``.npy`` file's bytes (never unpickled) as float32; ``ClientError``
    400 otherwise."""
    hint = "download one from this page or use ssgan generate/invert's latent/*.npy"
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # numpy raises several types for a file that is not .npy
        raise ClientError(f"{name} is not a .npy array ({e}); {hint}") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        what = f"dtype {array.dtype}" if isinstance(array, np.ndarray) else "an .npz archive"
        raise ClientError(f"{name} holds {what}, not a float array; {hint}")
    return array.astype(np.float32, copy=False)


def seed_or_random(seed: int | None) -> int:
    """``seed``, or a random one in 0 … MAX_SEED when it is None."""
    return random.randint(0, MAX_SEED) if seed is None else int(seed)


def last_action(name: str, started: float, recomputed: Iterable[int] = ()) -> dict[str, Any]:
    """The state's ``last``: the action, its server time in ms since ``started``
    (``time.perf_counter``) and the classes whose local generators it re-ran."""
    return {"name": name, "ms": round((time.perf_counter() - started) * 1000, 1),
            "recomputed_classes": list(recomputed)}


def rounded(x: float) -> float | None:
    """``x`` to 4 decimals, None for NaN (JSON has no NaN)."""
    return None if x != x else round(float(x), 4)


Build = Callable[[Session, torch.Tensor], tuple[torch.Tensor, str]]


class Editor:
    """The API's behaviour, independent of HTTP: sessions, edits, inversion jobs and downloads."""

    def __init__(self, engine: Engine, limits: Limits = Limits(), watermark: bool = True, key_id: int = 0):
        """``watermark``, ``key_id``: the downloads' invisible watermark (``ssgan serve
        --no-watermark / --watermark-key``); every download carries its provenance record."""
        self.engine = engine
        self.limits = limits
        self.sessions = Sessions(limits.max_sessions)
        self.prov = Provenance(TRAINED, "serve-download", software(), param_digest(engine.G), watermark,
                               key_id)

    # ----- model and sessions -------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The model (size, classes with their colours, directions) and the limits."""
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
        """A new tab: seed 0 as the face, seed 1 as the reference."""
        session = self.sessions.create()
        with session.lock:
            self._set(session, Step(self.engine.sample(0), "sample seed 0", []), "sample")
            self._set_reference(session, self.engine.sample(1), 1)
        return self._state(session)

    def state(self, sid: Any) -> dict[str, Any]:
        """The session's state as the page draws it."""
        session = self.sessions.get(sid)
        with session.lock:
            return self._state(session)

    # ----- actions ------------------------------------------------------------------------
    def sample(self, sid: Any, seed: int | None = None, truncation: float | None = None,
               seq: int | None = None) -> dict[str, Any]:
        """A new face: ``seed`` (random when None) at ``truncation`` (the engine's when None)."""
        chosen = seed_or_random(seed)

        def act(s: Session) -> None:
            t0 = time.perf_counter()
            self._set(s, Step(self.engine.sample(chosen, truncation), f"sample seed {chosen}", []), "sample",
                      started=t0)
        return self._run(sid, seq, act)

    def reference(self, sid: Any, seed: int | None = None, from_current: bool = False,
                  seq: int | None = None) -> dict[str, Any]:
        """A new reference face: ``seed`` (random when None), or the current face."""
        def act(s: Session) -> None:
            t0 = time.perf_counter()
            if from_current:
                self._set_reference(s, s.current.latent, None)
            else:
                chosen = seed_or_random(seed)
                self._set_reference(s, self.engine.sample(chosen), chosen)
            s.last_action = last_action("reference", t0)
        return self._run(sid, seq, act)

    def resample(self, sid: Any, classes: Sequence[int], part: str = "texture", seed: int | None = None,
                 seq: int | None = None) -> dict[str, Any]:
        """``classes``' ``part`` codes from the sample of ``seed`` (random when None)."""
        classes, part, names = self._region(classes, part)

        def build(s: Session, current: torch.Tensor) -> tuple[torch.Tensor, str]:
            chosen = seed_or_random(seed)
            latent = self.engine.replace(current, self.engine.sample(chosen), classes, part)
            return latent, f"resample {part} of {names} (seed {chosen})"
        return self._edit(sid, seq, "resample", classes, build)

    def copy(self, sid: Any, classes: Sequence[int], part: str = "texture", seq: int | None = None
             ) -> dict[str, Any]:
        """``classes``' ``part`` codes from the reference."""
        classes, part, names = self._region(classes, part)

        def build(s: Session, current: torch.Tensor) -> tuple[torch.Tensor, str]:
            latent = self.engine.replace(current, s.reference, classes, part)
            return latent, f"copy {part} of {names} from the reference"
        return self._edit(sid, seq, "copy", classes, build)

    def interpolate(self, sid: Any, classes: Sequence[int], part: str, t: float, seq: int | None = None
                    ) -> dict[str, Any]:
        """One step of an interpolation drag: ``classes``' ``part`` codes a fraction ``t`` of the
        way from the drag's anchor to the reference (:meth:`Engine.interpolate`)."""
        classes, part, names = self._region(classes, part)

        def build(s: Session, anchor: torch.Tensor) -> tuple[torch.Tensor, str]:
            latent = self.engine.interpolate(anchor, s.reference, classes, part, t)
            return latent, f"interpolate {part} of {names} to the reference, t = {t:.2f}"
        return self._edit(sid, seq, "interpolate", classes, build, ("interpolate", tuple(classes), part))

    def move(self, sid: Any, classes: Sequence[int], part: str, direction: str, strength: float,
             seq: int | None = None) -> dict[str, Any]:
        """One step of a direction drag: the drag's anchor moved ``strength`` (in [−20, 20]) along
        ``direction`` inside ``classes``' ``part`` codes (:meth:`Engine.move`)."""
        classes, part, names = self._region(classes, part)
        if not -20 <= strength <= 20:
            raise ClientError(f"strength must be in [-20, 20], not {strength}")

        def build(s: Session, anchor: torch.Tensor) -> tuple[torch.Tensor, str]:
            d = self.engine.direction(direction, classes, part)
            latent = self.engine.move(anchor, d, classes, strength)
            return latent, f"move {part} of {names} along {d.name} by {strength:+.2f}"
        key = ("direction", tuple(classes), part, direction)
        return self._edit(sid, seq, "direction", classes, build, key)

    def undo(self, sid: Any) -> dict[str, Any]:
        """Back one history step (``ClientError`` when there is none)."""
        return self._go(sid, -1)

    def redo(self, sid: Any) -> dict[str, Any]:
        """Forward one history step (``ClientError`` when there is none)."""
        return self._go(sid, 1)

    def open_latent(self, sid: Any, data: bytes, name: str) -> dict[str, Any]:
        """A compact W+ ``.npy`` (``ssgan generate``/``invert``/this page's download), from its bytes
        (never a path, no pickle) → the new current face."""
        try:
            latent = E.as_latent(read_latent(data, name), self.engine.G, name)[:1].cpu()
        except ValueError as e:  # as_latent's message names the shape the model needs
            raise ClientError(str(e)) from None

        def act(s: Session) -> None:
            self._set(s, Step(latent, f"open {name}", []), "open")
        return self._run(sid, None, act)

    # ----- inversion ----------------------------------------------------------------------
    def start_inversion(self, sid: Any, data: bytes, name: str, steps: int | None) -> dict[str, Any]:
        """Invert the uploaded image in a thread (``steps`` latent-search steps, the limits' default
        when None; the engine's encoder when it has one); the job's state (poll :meth:`job`)."""
        session = self.sessions.get(sid)
        steps = self.limits.invert_steps if steps is None else int(steps)
        if not 1 <= steps <= self.limits.max_invert_steps:
            raise ClientError(f"steps must be in 1..{self.limits.max_invert_steps}, not {steps}")
        image = decode_upload(data, name, self.engine.cfg.size, self.limits)
        with session.lock:
            if session.job is not None and session.job.status == "running":
                raise ClientError("an inversion is already running in this tab; cancel it first", 409)
            job = session.job = InversionJob(name, steps)
        threading.Thread(target=self._invert, args=(session, job, image), daemon=True,
                         name=f"ssgan-invert-{session.id}").start()
        return job.as_dict()

    def job(self, sid: Any) -> dict[str, Any]:
        """The session's inversion job (None before the first)."""
        session = self.sessions.get(sid)
        return {"job": None if session.job is None else session.job.as_dict()}

    def cancel(self, sid: Any) -> dict[str, Any]:
        """Stop the running inversion at its next step; the job's state."""
        session = self.sessions.get(sid)
        if session.job is not None and session.job.status == "running":
            session.job.cancel.set()
        return self.job(sid)

    def download(self, sid: Any, kind: str) -> Download:
        """One of :data:`DOWNLOADS` of the current face: its image, mask, the last edit's difference
        map (``ClientError`` 404 before any) or the W+ latent (float32 (n_latent, D) ``.npy``)."""
        session = self.sessions.get(sid)
        with session.lock:
            if kind == "latent.npy":
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(session.current.latent[0].cpu().numpy(), dtype=np.float32))
                body, media = buf.getvalue(), "application/octet-stream"
            elif kind in ("image.png", "mask.png"):
                prov = self._provenance(session)
                body = encode_image(self.engine.pictures(session.render)[kind[:-4]],
                                    prov if kind == "image.png" else prov.without_watermark())
                media = "image/png"
            elif kind == "diff.png":
                if session.change is None:
                    raise ClientError("no edit yet: nothing to diff", 404)
                body = encode_image(session.change["image"], self._provenance(session).without_watermark())
                media = "image/png"
            else:
                raise ClientError(f"unknown download {kind!r}; one of {', '.join(DOWNLOADS)}", 404)
            return Download(f"ssgan-{session.position:03d}-{kind}", body, media)

    # ----- internals ----------------------------------------------------------------------
    def _provenance(self, session: Session) -> Provenance:
        """The downloads' record: a composite when the current face began as an uploaded photo
        (or an opened latent, usually a photo's), else generated."""
        origin = next((s.action for s in reversed(session.history[:session.position + 1])
                       if s.action.startswith(("sample ", "open ", "invert "))), "sample")
        return replace(self.prov, source_type=TRAINED if origin.startswith("sample") else COMPOSITE)

    def _run(self, sid: Any, seq: int | None, fn: Callable[[Session], None]) -> dict[str, Any]:
        """Run ``fn`` under the session's lock unless a newer request of the tab already arrived."""
        session = self.sessions.get(sid)
        session.see(seq)
        with session.lock:
            if session.stale(seq):
                return self._state(session, stale=True)
            fn(session)
            return self._state(session)

    def _region(self, classes: Sequence[int], part: str) -> tuple[list[int], str, str]:
        """Checked ``classes`` and ``part``, and the classes' names for the history."""
        classes, part = self.engine.check_classes(classes), self.engine.check_part(part)
        return classes, part, ", ".join(self.engine.classes.names[c] for c in classes)

    def _edit(self, sid: Any, seq: int | None, name: str, classes: list[int], build: Build,
              slider_key: tuple[Any, ...] | None = None) -> dict[str, Any]:
        """Make ``build(session, start)`` → (latent, action) the current face, ``start`` being the
        current latent, or for a drag (``slider_key``) the anchor of the drag that made it."""
        def act(s: Session) -> None:
            t0 = time.perf_counter()
            slider = s.slider  # the drag goes on while the same slider moves the step it made
            if slider_key is None:
                slider = None
            elif slider is None or slider.key != slider_key or slider.history_index != s.position:
                slider = Slider(slider_key, s.current.latent)
            latent, action = build(s, s.current.latent if slider is None else slider.anchor)
            self._set(s, Step(latent, action, classes), name, slider, t0)
        return self._run(sid, seq, act)

    def _go(self, sid: Any, by: int) -> dict[str, Any]:
        """Undo (``by`` −1) or redo (+1); the change shown is over the classes of the step crossed."""
        name = "redo" if by > 0 else "undo"

        def act(s: Session) -> None:
            t0 = time.perf_counter()
            target = s.position + by
            if not 0 <= target < len(s.history):
                raise ClientError(f"nothing to {name}")
            crossed = s.history[max(target, s.position)]
            s.position, s.slider = target, None
            self._show(s, s.current.latent, crossed.classes, s.render, name, t0)
        return self._run(sid, None, act)

    def _set(self, session: Session, step: Step, name: str, slider: Slider | None = None,
             started: float | None = None) -> None:
        """Show ``step`` (the change since the previous render, or since a drag began) and make it
        current; a drag's later requests replace the history entry its first one pushed."""
        continuing = slider is not None and session.slider is slider
        previous = session.render
        self._show(session, step.latent, step.classes, slider.before if continuing else previous, name,
                   started)
        if continuing:
            session.history[slider.history_index] = step
        else:
            session.push(step)
            if slider is not None:
                slider.history_index, slider.before = session.position, previous
                session.slider = slider

    def _show(self, session: Session, latent: torch.Tensor, classes: list[int], before: Synthesis | None,
              name: str, started: float | None = None) -> None:
        """Render ``latent`` (the session's cache) as the session's picture; record the change from
        ``before`` over ``classes`` (all when empty) and ``name`` as the last action."""
        t0 = time.perf_counter() if started is None else started
        out = self.engine.render(latent, session.cache)
        if before is not None:
            classes = classes or list(range(self.engine.cfg.seg_dim))
            change = self.engine.change(before, out, classes)
            session.change = {"image": change["diff"][0], "inside": change["inside"],
                              "outside": change["outside"], "classes": classes, "region": change["region"][0]}
        session.render = out
        session.last_action = last_action(name, t0, session.cache.recomputed)

    def _set_reference(self, session: Session, latent: torch.Tensor, seed: int | None) -> None:
        session.reference, session.reference_seed = latent.cpu(), seed
        pics = self.engine.pictures(self.engine.render(latent))
        # a sampled face, or (seed None) the current face, whatever it began as
        prov = self._provenance(session) if seed is None else replace(self.prov, source_type=TRAINED)
        session.reference_pictures = {"image": data_url(encode_image(pics["image"], prov)),
                                      "mask": data_url(encode_image(pics["mask"], prov.without_watermark()))}

    def _invert(self, session: Session, job: InversionJob, image: torch.Tensor) -> None:
        """The inversion thread: the result becomes the current face; a failure is the job's
        ``error`` (shown in the page) and a logged traceback, and the server keeps running."""
        try:
            latent = self.engine.invert(image, job.steps, job.progress)
            with session.lock:
                self._set(session, Step(latent.cpu(), f"invert {job.name} ({job.steps} steps)", []), "invert",
                          started=job.started)
        except Cancelled:
            job.status = "cancelled"
        except Exception as e:
            log.error("inversion of %s failed", job.name, exc_info=e)
            job.status, job.error = "failed", f"{type(e).__name__}: {e}"
        else:
            job.status = "done"
        job.seconds = time.perf_counter() - job.started

    def _state(self, session: Session, stale: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"session": session.id, "seq": session.latest_seq}
        if stale:
            return {**out, "stale": True}
        pics = self.engine.pictures(session.render)
        change = session.change
        prov = self._provenance(session)
        plain = prov.without_watermark()
        out.update({
            "position": session.position, "length": len(session.history),
            "can_undo": session.position > 0, "can_redo": session.position < len(session.history) - 1,
            "action": session.current.action, "classes": session.current.classes,
            "image": data_url(encode_image(pics["image"], prov)),
            "mask": data_url(encode_image(pics["mask"], plain)),
            "labels": base64.b64encode(pics["labels"].tobytes()).decode(),
            "diff": None if change is None else {
                "image": data_url(encode_image(change["image"], plain)), "inside": rounded(change["inside"]),
                "outside": rounded(change["outside"]), "classes": change["classes"],
                "region": base64.b64encode(change["region"].astype(np.uint8).tobytes()).decode()},
            "reference": {**session.reference_pictures, "seed": session.reference_seed},
            "last": session.last_action,
            "job": None if session.job is None else session.job.as_dict(),
        })
        return out
