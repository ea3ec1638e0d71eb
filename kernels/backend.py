"""Which implementation an op runs: ``reference`` (plain PyTorch) or ``triton``.

The choice is read at call time, in this order: the Python override (:func:`set_backend` /
:func:`use_backend`), the environment variable ``SSGAN_BACKEND``, then the default — ``triton``
for CUDA tensors, ``reference`` otherwise. With ``TRITON_INTERPRET=1`` and ``SSGAN_BACKEND=triton``
the Triton kernels run on CPU tensors through Triton's interpreter (how CI tests them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

BACKENDS = ("reference", "triton")
_override: str | None = None


def _check(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown ssgan backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def set_backend(name: str | None) -> None:
    """Force ``name`` for every op (``None`` returns to the environment / default choice)."""
    global _override
    _override = None if name is None else _check(name)


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Context manager form of :func:`set_backend`."""
    global _override
    previous = _override
    set_backend(name)
    try:
        yield
    finally:
        _override = previous


def backend_for(t: torch.Tensor) -> str:
    """The backend an op on tensor ``t`` runs with right now."""
    if _override is not None:
        return _override
    env = os.environ.get("SSGAN_BACKEND")
    if env:
        return _check(env)
    return "triton" if t.is_cuda else "reference"
