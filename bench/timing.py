"""Shared timing helpers for the CUDA microbenchmarks in :mod:`bench`.

* :func:`cuda_time_ms` — median wall time of a callable on the current CUDA stream, measured
  with CUDA events around each call after warm-up (warm-up also absorbs Triton autotuning and
  torch.compile compilation);
* :func:`peak_mib` — the extra device memory one call needs at its peak, in MiB;
* :func:`environment` — what the numbers were measured on (device, git commit, torch, triton);
* :func:`require_cuda` — exit with a clear message (status 2) when there is no GPU: the
  benchmarks never produce numbers without one;
* :func:`cpu_time_ms` / :func:`time_ms` — the same median on the host clock (the CPU dry runs of
  ``bench/gpu_session.sh --dry-run``), or dispatching on the device;
* :class:`PhaseClock` — consecutive phase boundaries on one timeline (CUDA events, or the host
  clock on CPU), for per-phase breakdowns that add up to the whole;
* :func:`copy_gbps` / :func:`matmul_tflops` — the two ceilings every figure is judged against:
  device-to-device copy bandwidth and dense matrix-product rate, measured.

All functions take a zero-argument callable; build it with the inputs already on the device so
that only the op is timed.
"""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["cuda_time_ms", "cpu_time_ms", "time_ms", "peak_mib", "environment", "require_cuda", "PhaseClock",
           "copy_gbps", "matmul_tflops"]

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


def cpu_time_ms(fn: Callable[[], object], warmup: int = 1, repeats: int = 3) -> float:
    """Median host wall time of ``fn()`` in milliseconds (CPU work is synchronous)."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def time_ms(fn: Callable[[], object], device: torch.device | str, warmup: int, repeats: int) -> float:
    """:func:`cuda_time_ms` on a CUDA device, :func:`cpu_time_ms` otherwise."""
    timer = cuda_time_ms if torch.device(device).type == "cuda" else cpu_time_ms
    return timer(fn, warmup, repeats)


class PhaseClock:
    """Marks where each phase starts on one timeline; :meth:`intervals` gives each named phase's
    length up to the next mark.

    On CUDA a mark records an event on the current stream (no host synchronisation, so marking
    does not change what is measured): consecutive intervals partition the GPU's timeline, launch
    gaps included, and add up to the wall time of the marked region. On CPU a mark reads the host
    clock (the work is synchronous)."""

    def __init__(self, device: torch.device | str):
        self.cuda = torch.device(device).type == "cuda"
        self.marks: list[tuple[str | None, object]] = []

    def mark(self, phase: str | None) -> None:
        """The phase starting now (None: the end of the marked region)."""
        if self.cuda:
            stamp = torch.cuda.Event(enable_timing=True)
            stamp.record()
        else:
            stamp = time.perf_counter()
        self.marks.append((phase, stamp))

    def intervals(self) -> list[tuple[str, float]]:
        """(phase, milliseconds) for every named mark followed by another mark."""
        if self.cuda:
            torch.cuda.synchronize()
        out = []
        for (phase, a), (_, b) in zip(self.marks, self.marks[1:]):
            if phase is not None:
                out.append((phase, a.elapsed_time(b) if self.cuda else (b - a) * 1e3))
        return out


def copy_gbps(nbytes: int, device: torch.device | str, warmup: int = 3, repeats: int = 20) -> dict:
    """Device-to-device copy bandwidth in GB/s, counting the bytes read plus the bytes written, of
    one ``nbytes`` buffer into another (random bytes, not zeros)."""
    src = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), device, warmup, repeats)
    return {"gb_per_s": 2 * nbytes / (ms * 1e-3) / 1e9, "bytes": nbytes, "ms": ms}


def matmul_tflops(n: int, dtype: torch.dtype, device: torch.device | str, warmup: int = 3,
                  repeats: int = 20) -> dict:
    """Rate of an n x n x n matrix product (2n³ FLOPs) on random data, in TFLOP/s; float32 without
    TF32 (the CUDA-core rate)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        ms = time_ms(lambda: a @ b, device, warmup, repeats)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return {"tflops": 2.0 * n**3 / (ms * 1e-3) / 1e12, "n": n, "dtype": str(dtype).removeprefix("torch."),
            "ms": ms}


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
