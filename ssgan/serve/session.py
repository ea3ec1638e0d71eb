"""Per-tab editing state: the history of latents (undo/redo), the reference face, the last edit's
difference map, the render cache and the running inversion. Every browser tab gets its own
:class:`Session` (a random id); :class:`Sessions` keeps the most recently used ones."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from ssgan.model.generator import Synthesis
from ssgan.serve.engine import LocalCache
from ssgan.serve.errors import ClientError


class Cancelled(Exception):
    """Raised inside the inversion's callback when the user cancels it."""


@dataclass
class Step:
    """One entry of the history: the latent (1, n_latent, D) on the CPU and what made it."""

    latent: torch.Tensor
    action: str
    classes: list[int] = field(default_factory=list)


@dataclass
class InversionJob:
    """A running or finished upload → inversion; fields are read by the status endpoint."""

    name: str
    steps: int
    done_steps: int = 0
    loss: float | None = None
    psnr: float | None = None
    status: str = "running"  # running, done, cancelled, failed
    error: str | None = None
    started: float = field(default_factory=time.perf_counter)
    seconds: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "steps": self.steps, "done_steps": self.done_steps, "loss": self.loss,
                "psnr": self.psnr, "status": self.status, "error": self.error,
                "seconds": self.seconds if self.seconds is not None else time.perf_counter() - self.started}

    def progress(self, step: int, loss: torch.Tensor, psnr: torch.Tensor) -> None:
        """The inversion's callback: record progress, stop on cancel."""
        self.done_steps, self.loss, self.psnr = step, float(loss.mean()), float(psnr.mean())
        if self.cancel.is_set():
            raise Cancelled()


@dataclass
class Slider:
    """An interpolation or direction drag: every request of one drag starts from ``anchor`` and
    replaces the history entry the drag made, so a drag is one undo step."""

    key: tuple[Any, ...]
    anchor: torch.Tensor
    history_index: int = -1
    before: Synthesis | None = None  # the render when the drag began (its difference map's base)


class Session:
    """One tab's state; ``lock`` serialises its requests, ``latest_seq`` lets the newest win."""

    def __init__(self, sid: str):
        self.id = sid
        self.lock = threading.Lock()
        self.history: list[Step] = []
        self.position = -1
        self.reference: torch.Tensor | None = None
        self.reference_seed: int | None = None
        self.reference_pictures: dict[str, str] = {}
        self.cache = LocalCache()
        self.render: Synthesis | None = None
        self.change: dict[str, Any] | None = None
        self.slider: Slider | None = None
        self.latest_seq = -1
        self.job: InversionJob | None = None
        self.last_action: dict[str, Any] = {}
        self.used = time.monotonic()

    @property
    def current(self) -> Step | None:
        return self.history[self.position] if self.position >= 0 else None

    def push(self, step: Step) -> None:
        """Make ``step`` current, dropping the redo branch."""
        del self.history[self.position + 1:]
        self.history.append(step)
        self.position = len(self.history) - 1
        self.slider = None

    def see(self, seq: int | None) -> None:
        """Note a request's sequence number on arrival (before waiting for the lock)."""
        if seq is not None and seq > self.latest_seq:
            self.latest_seq = seq

    def stale(self, seq: int | None) -> bool:
        """True when a newer request of this tab arrived while this one waited: skip it."""
        return seq is not None and seq < self.latest_seq


class Sessions:
    """At most ``limit`` sessions; the least recently used one is forgotten beyond that."""

    def __init__(self, limit: int = 64):
        self.limit = limit
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self) -> Session:
        with self._lock:
            session = Session(secrets.token_urlsafe(12))
            self._items[session.id] = session
            while len(self._items) > self.limit:
                _, old = self._items.popitem(last=False)
                if old.job is not None:
                    old.job.cancel.set()
            return session

    def get(self, sid: Any) -> Session:
        """The session ``sid`` (any JSON value a client sent); an unknown or expired one is a 404
        ``ClientError`` (the page reloads to get a new one)."""
        with self._lock:
            session = self._items.get(sid) if isinstance(sid, str) else None
            if session is None:
                raise ClientError("unknown or expired session; reload the page", 404)
            self._items.move_to_end(session.id)
            session.used = time.monotonic()
            return session

    def __len__(self) -> int:
        return len(self._items)
