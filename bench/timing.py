"""Shared timing helpers for the CUDA microbenchmarks in :mod:`bench`.

* :func:`cuda_time_ms` — median wall time of a callable on the current CUDA stream, measured
  with CUDA events around each call after warm-up (warm-up also absorbs Triton autotuning and
  torch.compile compilation);
* :func:`peak_mib` — the extra device memory one call needs at its peak, in MiB;
* :func:`environment` — what the numbers were measured on (device, git commit, torch, triton);
* :func:`require_cuda` — exit with a clear message (status 2) when there is no GPU: the
  benchmarks never produce numbers without one.

All functions take a zero-argument callable; build it with the inputs already on the device so
that only the op is timed.
"""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["cuda_time_ms", "peak_mib", "environment", "require_cuda"]

ROOT = Path(__file__).resolve().parent.parent


def require_cuda(what: str = "this benchmark") -> None:
    """Exit with status 2 and a message on stderr unless a CUDA device is available."""
    if not torch.cuda.is_available():
        print(f"{what} needs a CUDA GPU; none is available, so nothing was measured.", file=sys.stderr)
        raise SystemExit(2)


def cuda_time_ms(fn: Callable[[], object], warmup: int = 10, repeats: int = 50) -> float:
    """Median time of ``fn()`` in milliseconds over ``repeats`` calls, after ``warmup`` calls.

    Each call is bracketed by its own pair of CUDA events on the current stream, so the time is
    the GPU time of the work ``fn`` enqueues (plus any launch gaps while the GPU waits on the
    host). The device is synchronised once after all repeats; the results of ``fn`` are dropped.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for start, end in zip(starts, ends, strict=True):
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends, strict=True))


def peak_mib(fn: Callable[[], object]) -> float:
    """Peak device memory allocated during one call of ``fn()`` beyond what was already allocated
    (the resident inputs), in MiB. Its result is kept alive until the peak has been read."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak / 2**20


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def environment() -> dict[str, str]:
    """{device, commit, torch, triton, cuda, python}: the GPU's name (or "cpu"), the git commit of
    this checkout ("-dirty" when tracked files differ from it, "unknown" outside git), and versions."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"device": device, "commit": _git_commit(), "torch": torch.__version__, "triton": triton_version,
            "cuda": str(torch.version.cuda), "python": platform.python_version()}
