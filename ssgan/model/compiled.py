"""Inductor-compiled inference (CPU or GPU), with its on-disk cache, the process's cores, and a
graceful fall-back to eager.

* :class:`Compiled` wraps a function in ``torch.compile`` (inductor); if compiling or running the
  compiled graph raises, it prints one warning line and runs the eager function from then on
  (same arguments: a genuine input error is then raised by the eager call).
* :func:`use_inductor_cache` points ``TORCHINDUCTOR_CACHE_DIR`` at ``~/.cache/ssgan/inductor``
  unless the user set it, so the compile cost is paid once per machine: a later process loads the
  compiled graphs from there (docs/performance.md, "The CPU as a device": cold and warm times).
* :func:`use_all_cores`: torch's intra-op threads = the cores this process may run on
  (``os.sched_getaffinity``; torch's default is the machine's physical cores, which ignores
  taskset/cgroup pinning).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

#: ``--compile`` by default, per command: on where the compile cost (paid once per machine, then
#: loaded from inductor's cache) is paid back in a typical use, measured in docs/performance.md,
#: "The CPU as a device": a server's many edits at 256 px (1.4x faster each); not the inversion
#: (compiled it was not reliably faster on CPU), a one-shot ``generate`` or ``mix`` (too few
#: renders), nor the encoder's training (not measured).
DEFAULTS: dict[str, bool | None] = {"serve": None, "invert": False, "encoder train": False,
                                    "generate": False, "mix": False}
#: ``None`` in :data:`DEFAULTS` ("auto"): compiled for models of at least this many pixels a side,
#: where it was measured to pay (celeba-256 edits 1.29 → 0.92 s); at 32 px it does not (9.4 vs 9.5 ms).
AUTO_MIN_SIZE = 128


def compile_default(choice: bool | None, size: int) -> bool:
    """``--compile``/``--no-compile`` as given, else (``None``: auto) on for models of at least
    :data:`AUTO_MIN_SIZE` px."""
    return size >= AUTO_MIN_SIZE if choice is None else choice

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
DEFAULT_CACHE = Path("~/.cache/ssgan/inductor")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where the
    platform has no affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def use_all_cores() -> int:
    """Set torch's intra-op threads to :func:`usable_cores`; returns that number."""
    n = usable_cores()
    torch.set_num_threads(n)
    return n


def use_inductor_cache() -> Path:
    """``TORCHINDUCTOR_CACHE_DIR``: the user's value, else ``~/.cache/ssgan/inductor`` (set in this
    process's environment, before the first compile reads it). Returns the folder."""
    folder = os.environ.get(CACHE_ENV) or str(DEFAULT_CACHE.expanduser())
    os.environ[CACHE_ENV] = folder
    return Path(folder)


class Compiled:
    """``fn`` through ``torch.compile`` (inductor, ``dynamic=False``), or ``fn`` itself when
    ``enabled`` is false or compiling failed once (one ``ssgan: warning:`` line on stderr)."""

    def __init__(self, fn: Callable[..., Any], name: str, enabled: bool = True):
        self.eager, self.name = fn, name
        self.compiled: Callable[..., Any] | None = None
        if enabled:
            use_inductor_cache()
            self.compiled = torch.compile(fn, dynamic=False)

    @property
    def enabled(self) -> bool:
        return self.compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as e:  # inductor raises many types (a C++ compiler, a lowering, ...)
                first = (str(e).strip().splitlines() or [""])[0][:200]
                print(f"ssgan: warning: torch.compile of {self.name} failed ({type(e).__name__}: {first}); "
                      "running eager", file=sys.stderr)
                self.compiled = None
        return self.eager(*args, **kwargs)


def compile_synthesis(G: torch.nn.Module, enabled: bool = True) -> None:
    """With ``enabled``, route ``G.synthesize`` through :class:`Compiled` (an instance attribute
    shadowing the method), so every renderer of ``G`` (``ssgan.edit.editing.render``, the encoder's
    renders) runs compiled; else leave ``G`` as it is."""
    if enabled and not isinstance(G.__dict__.get("synthesize"), Compiled):
        G.synthesize = Compiled(type(G).synthesize.__get__(G), "the generator")
