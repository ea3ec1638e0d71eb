"""Which implementation an op runs: ``reference`` (plain PyTorch) or ``triton``.

The choice is read at call time, in this order: the Python override (:func:`set_backend` /
:func:`use_backend`, for every op or only for the ops named in ``ops``: ``bias_act``, ``fuse``,
``grouped_mlp``, ``upfirdn2d``), the environment variable ``SSGAN_BACKEND``, then the default —
``triton`` for CUDA tensors, ``reference`` otherwise. With ``TRITON_INTERPRET=1`` and ``SSGAN_BACKEND=triton``
the Triton kernels run on CPU tensors through Triton's interpreter (how CI tests them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

import torch

BACKENDS = ("reference", "triton")
OPS = ("bias_act", "fuse", "grouped_mlp", "upfirdn2d")
_override: str | None = None
_override_ops: frozenset[str] | None = None  # None: the override applies to every op


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


def backend_for(t: torch.Tensor, op: str | None = None) -> str:
    """The backend op ``op`` (one of :data:`OPS`) runs with right now on tensor ``t``."""
    if _override is not None and (_override_ops is None or op in _override_ops):
        return _override
    env = os.environ.get("SSGAN_BACKEND")
    if env:
        return _check(env)
    return "triton" if t.is_cuda else "reference"
