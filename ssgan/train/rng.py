"""Random-number state of a training run: seeding, and capture / restore of every RNG the loop
depends on (torch CPU and CUDA, NumPy, Python's ``random``, named ``torch.Generator`` objects) as
uint8 tensors that a safetensors checkpoint holds, so that a resumed run continues bit for bit
(on CPU) as if it had never stopped.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def capture_rng(generators: dict[str, torch.Generator] | None = None) -> dict[str, torch.Tensor]:
    """Every RNG state that the training loop depends on, as uint8 tensors (safetensors-ready):
    torch CPU, every initialised CUDA device, NumPy's and Python's global RNGs and the named
    ``torch.Generator`` objects (``gen.<name>``)."""
    out: dict[str, torch.Tensor] = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            out[f"cuda.{i}"] = torch.cuda.get_rng_state(i)
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    if kind != "MT19937":
        raise RuntimeError(f"unexpected NumPy RNG kind {kind}")
    out["numpy.keys"] = _bytes_tensor(np.asarray(keys, dtype=np.uint32).tobytes())
    out["numpy.extra"] = _bytes_tensor(np.array([pos, has_gauss], dtype=np.int64).tobytes()
                                       + np.array([gauss], dtype=np.float64).tobytes())
    version, internal, gauss_next = random.getstate()
    out["python.state"] = _bytes_tensor(np.asarray(internal, dtype=np.uint64).tobytes())
    out["python.extra"] = _bytes_tensor(
        np.array([version, gauss_next is not None], dtype=np.int64).tobytes()
        + np.array([0.0 if gauss_next is None else gauss_next], dtype=np.float64).tobytes())
    for name, g in (generators or {}).items():
        out[f"gen.{name}"] = g.get_state()
    return out


def restore_rng(states: dict[str, torch.Tensor], generators: dict[str, torch.Generator] | None = None
                ) -> None:
    """Inverse of :func:`capture_rng`. Missing CUDA states (e.g. a CPU checkpoint) are skipped;
    a missing named generator raises ``KeyError``."""
    torch.set_rng_state(states["torch_cpu"].cpu())
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"cuda.{i}" in states:
                torch.cuda.set_rng_state(states[f"cuda.{i}"].cpu(), i)
    keys = np.frombuffer(states["numpy.keys"].numpy().tobytes(), dtype=np.uint32)
    extra = states["numpy.extra"].numpy().tobytes()
    pos, has_gauss = np.frombuffer(extra[:16], dtype=np.int64)
    (gauss,) = np.frombuffer(extra[16:], dtype=np.float64)
    np.random.set_state(("MT19937", keys.copy(), int(pos), int(has_gauss), float(gauss)))
    internal = tuple(int(x) for x in np.frombuffer(states["python.state"].numpy().tobytes(), np.uint64))
    pextra = states["python.extra"].numpy().tobytes()
    version, has_next = (int(x) for x in np.frombuffer(pextra[:16], dtype=np.int64))
    (gnext,) = np.frombuffer(pextra[16:], dtype=np.float64)
    random.setstate((version, internal, float(gnext) if has_next else None))
    for name, g in (generators or {}).items():
        g.set_state(states[f"gen.{name}"].cpu())


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), NumPy and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rank_seed(seed: int, rank: int) -> int:
    """A distinct, well-mixed seed per (seed, rank)."""
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, dtype=np.uint64)[0] >> 1)
