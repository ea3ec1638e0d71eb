"""Which implementation an op runs: ``reference`` (plain PyTorch) or ``triton``, and whether Triton
can run at all.

The choice is read at call time, in this order: the Python override (:func:`set_backend` /
:func:`use_backend`, for every op or only for the ops named in ``ops``: ``bias_act``, ``fuse``,
``grouped_mlp``, ``upfirdn2d``), the environment variable ``SSGAN_BACKEND``, then the default —
``triton`` for CUDA tensors when Triton is installed, ``reference`` otherwise.

Fallback rule (the same for every op, applied by :func:`runs_triton`). The Triton kernels run
only where they can: Triton is installed, the tensor is on a CUDA device or Triton's interpreter
is on (:func:`interpreting`), and the op's kernels cover the inputs (each op's docstring lists
what they do not cover). Elsewhere

* the default choice takes the reference maths, silently (``import ssgan`` and every op work
  without Triton, e.g. on macOS: reference only);
* a forced ``triton`` (``SSGAN_BACKEND=triton``, :func:`set_backend` / :func:`use_backend`) is a
  :class:`TritonUnavailable` error naming the op and the reason: never a silent substitute.

Triton's interpreter (``TRITON_INTERPRET=1``, how CI tests the kernels on CPU tensors) is read
once, here, the way Triton reads it, when ``ssgan.kernels`` is imported: that is when
``triton.jit`` decides whether the kernels are compiled or interpreted.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

import torch

try:  # optional: without it only the reference maths run
    import triton
    import triton.language as tl
except ImportError:
    triton = tl = None

BACKENDS = ("reference", "triton")
OPS = ("bias_act", "fuse", "grouped_mlp", "upfirdn2d")
_override: str | None = None
_override_ops: frozenset[str] | None = None  # None: the override applies to every op


def _interpret_flag() -> bool:
    if triton is None:
        return False
    knobs = getattr(triton, "knobs", None)  # Triton >= 3.4 parses the variable itself
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


_INTERPRET = _interpret_flag()


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)  # what every op's kernels take


def dtype_uncovered(dtype: torch.dtype) -> str | None:
    """Why the kernels do not take inputs of ``dtype`` (None: they do), for :func:`runs_triton`."""
    if dtype not in FLOAT_DTYPES:
        return f"dtype {dtype} is not a float16/bfloat16/float32/float64"
    return None


class TritonUnavailable(RuntimeError):
    """The ``triton`` backend was forced for an op whose Triton kernels cannot run here."""


def interpreting() -> bool:
    """Whether the Triton kernels run under Triton's interpreter (``TRITON_INTERPRET``, read when
    ``ssgan.kernels`` was imported). False without Triton."""
    return _INTERPRET


def _check(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown ssgan backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def set_backend(name: str | None, ops: Iterable[str] | None = None) -> None:
    """Force ``name`` for every op, or only for ``ops`` (the others follow the environment /
    default choice); ``None`` returns every op to the environment / default choice."""
    global _override, _override_ops
    if ops is not None:
        ops = frozenset(ops)
        unknown = sorted(ops - set(OPS))
        if unknown:
            raise ValueError(f"unknown ssgan op(s) {', '.join(unknown)}; choose from {', '.join(OPS)}")
    _override = None if name is None else _check(name)
    _override_ops = ops


@contextlib.contextmanager
def use_backend(name: str | None, ops: Iterable[str] | None = None) -> Iterator[None]:
    """Context manager form of :func:`set_backend`."""
    global _override, _override_ops
    previous = _override, _override_ops
    set_backend(name, ops)
    try:
        yield
    finally:
        _override, _override_ops = previous


def _forced(op: str | None) -> str | None:
    """The backend forced for ``op`` by the override or ``SSGAN_BACKEND``; None: not forced."""
    if _override is not None and (_override_ops is None or op in _override_ops):
        return _override
    env = os.environ.get("SSGAN_BACKEND")
    return _check(env) if env else None


def backend_for(t: torch.Tensor, op: str | None = None) -> str:
    """The backend op ``op`` (one of :data:`OPS`) is set to run with right now on tensor ``t``
    (before the fallback rule of :func:`runs_triton`)."""
    forced = _forced(op)
    if forced is not None:
        return forced
    return "triton" if t.is_cuda and triton is not None else "reference"


def _cannot_run(t: torch.Tensor) -> str | None:
    """Why no Triton kernel can run on ``t`` here; None when one can."""
    if triton is None:
        return "Triton is not installed (pip install triton; it ships for Linux)"
    if not (t.is_cuda or _INTERPRET):
        return (f"the tensor is on {t.device.type}: Triton kernels need CUDA tensors, or Triton's "
                "interpreter (TRITON_INTERPRET=1 set before ssgan is imported)")
    return None


def runs_triton(op: str, t: torch.Tensor, uncovered: str | None = None) -> bool:
    """Whether ``op`` runs its Triton kernels on ``t`` (the fallback rule in the module docstring):
    False means the reference maths. ``uncovered``: why the op's kernels do not cover these
    inputs, None if they do. Raises :class:`TritonUnavailable` when ``triton`` was forced and
    cannot run."""
    if backend_for(t, op) == "reference":
        return False
    why = _cannot_run(t) or uncovered
    if why is None:
        return True
    if _forced(op) == "triton":
        raise TritonUnavailable(f"ssgan.kernels.{op}: the triton backend was forced (SSGAN_BACKEND or "
                                f"set_backend/use_backend) but {why}; use the reference backend here")
    return False
