"""Classes that scale: what the local generators + fusion cost as the class count K grows.

Usage (from the repository root)::

    python -m bench.classes [--classes 5,13,32,64] [--batch 2] [--json bench/results/classes-cpu.json]
    python -m bench.classes --quick        # K = 3, 5 at the tiny preset's shapes: the plumbing only

The paper's own stated limitation is that one local generator per class "does not scale to
datasets with too many classes". This sweep measures that cost on both paths, at the
``celeba-256`` shapes with ``seg_dim`` = K (L = 10 layers of C = 64 channels, F = 512 feature
channels, S = 64, so P = 4096 pixels per class, depth tapped after layer 6). The transparent classes
are celeba-256's (10, 12) where they exist (none at K = 5). What is run is
``bench.kernels``' ``local_generators`` case, forward and backward: ``modulated_weights`` →
``grouped_mlp`` → ``fuse``, with gradients of every parameter (styles, raw weights, biases, the
depth and to_feat heads), fp32 on both paths:

* ``reference``: the reference maths (per-class feature maps, autograd through every layer);
* ``fused``: the Triton custom ops ``ssgan::grouped_mlp`` and ``ssgan::fuse`` with their backward
  ops (recomputation in the MLP backward, one GEMM over K·C in the fusion).

Two kinds of figures per (K, path):

* **counted** (no data, any K): FLOPs and bytes read + written of the forward and of forward +
  backward, with :mod:`bench.step_cost`'s dispatch-level counter on fake tensors (its method: the
  custom ops counted by their own inputs and outputs, FLOPs of matrix products only);
* **measured**: peak memory on this CPU, each point in a fresh subprocess (one torch thread;
  first a warm-up call at K = 2, batch 1, so that one-time costs stay out of the figures): the
  peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` just before the call)
  minus the resident set just before it, so the inputs already allocated are excluded. glibc is
  told to map every block over 64 KiB on its own (``MALLOC_MMAP_THRESHOLD_``: freed blocks go back
  to the system at once) and to fill each block it hands out (``MALLOC_PERTURB_``: every allocated
  page is resident, also one that is never written). Three figures: the peak of the forward, what
  the forward leaves held for the backward (outputs and the tensors autograd saved), and the peak
  of forward + backward.

On the fused path the Triton kernels are *not executed*: the tensors report ``is_cuda`` (as in
:func:`bench.step_cost.fake_device`), so :mod:`ssgan.kernels` runs its launchers with the GPU tile
configs, and :func:`bench.triton_launches.intercepted` records each launch instead of running it.
Every buffer the launchers allocate (outputs, recomputation scratch, split-K partial sums) is
allocated for real; no kernel body runs. Under ``TRITON_INTERPRET=1`` a kernel body would allocate
numpy temporaries that a GPU keeps in registers, and at K = 64 it would run for hours. The split
counts of the partial sums follow the SM count on a GPU (here: the launchers' CPU targets); the
``kernels`` stage of ``bench/gpu_session.sh`` measures the sweep on a GPU (``bench.kernels
--class-sweep``). The reference path runs for real.

From the sweep: memory per extra class, the least-squares slope of each peak over K (MiB per
class), and the ratio fused / reference of the slopes (target: ≤ 0.2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import torch

from bench.kernels import BenchConfig, build_inputs, make_cases
from bench.session import write_json
from bench.step_cost import Counter, fake_device, phase_summary
from bench.timing import environment
from ssgan.model.config import preset

SWEEP = (5, 13, 32, 64)
QUICK_SWEEP = (3, 5)
PATHS = ("reference", "fused")
BACKEND = {"reference": "reference", "fused": "triton"}
CASES = ("local_generators_fwd", "local_generators_fwd_bwd")
MEASURED = ("fwd_peak_mib", "held_for_backward_mib", "fwd_bwd_peak_mib")
NOTE = ("counted: bench.step_cost's counter on fake tensors; measured: peak resident set on CPU, one "
        "subprocess per point, fused path with its Triton kernels intercepted (allocations real, no kernel "
        "body run); see bench/classes.py")
#: the subprocess's allocator settings (module docstring): every block over 64 KiB its own mapping,
#: every allocated page filled (so resident)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_PERTURB_": "1"}


def bench_config(K: int, batch: int, config: str = "celeba-256") -> BenchConfig:
    """The shapes of preset ``config`` with K classes (its transparent classes below K stay
    transparent: :func:`bench.kernels.build_inputs` keeps those)."""
    cfg = preset(config)
    return BenchConfig(B=batch, K=K, L=cfg.local_layers, C=cfg.local_channel, F=cfg.coarse_channel,
                       S=cfg.coarse_size, depth_layer=cfg.depth_layers, transparent=cfg.transparent_dims)


# ------------------------------------------------------------------------------------------------
# Counted: FLOPs and bytes (fake tensors)
# ------------------------------------------------------------------------------------------------


def count(cfg: BenchConfig, path: str) -> dict[str, dict[str, float]]:
    """Counted ops, bytes and FLOPs of the forward and of forward + backward on ``path``, and the
    backward alone (their difference), with :class:`bench.step_cost.Counter` on fake tensors."""
    out = {}
    for case in CASES:
        counter = Counter(phase=case)
        with fake_device("fast" if path == "fused" else "reference"):
            fn = make_cases(cfg, build_inputs(cfg, "cpu"), BACKEND[path])[case]
            with counter:
                fn()
        s = phase_summary(counter.stats[case], 1.0)
        out[case.removeprefix("local_generators_")] = {k: s[k] for k in ("ops", "bytes", "flops")}
    out["bwd"] = {k: out["fwd_bwd"][k] - out["fwd"][k] for k in out["fwd"]}
    return out


# ------------------------------------------------------------------------------------------------
# Measured: peak memory (one subprocess per point)
# ------------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> int:
    """Reset the peak resident set (VmHWM) to the current one; returns the current one (KiB)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


def measure_point(cfg: BenchConfig, path: str) -> dict[str, float]:
    """Peak memory (MiB) of one point, in this process (run it in a fresh one: :func:`measure`)."""
    import contextlib
    import gc
    from unittest import mock

    from bench.triton_launches import intercepted

    torch.set_num_threads(1)
    with contextlib.ExitStack() as stack:
        if path == "fused":  # the launchers as on CUDA (GPU tile configs), their launches recorded only
            stack.enter_context(mock.patch.object(torch.Tensor, "is_cuda", property(lambda self: True)))
            stack.enter_context(intercepted(keep_args=False))
        # warm-up at K = 2, batch 1: one-time costs (lazy imports, library workspaces) stay out of the peaks
        small = dataclasses.replace(cfg, K=2, B=1)
        make_cases(small, build_inputs(small, "cpu"), BACKEND[path])["local_generators_fwd_bwd"]()
        cases = make_cases(cfg, build_inputs(cfg, "cpu"), BACKEND[path])
        base = _reset_peak()
        outs = cases["local_generators_fwd"]()
        fwd_peak, held = _status_kib("VmHWM") - base, _status_kib("VmRSS") - base
        del outs
        gc.collect()
        base = _reset_peak()
        cases["local_generators_fwd_bwd"]()
        peak = _status_kib("VmHWM") - base
    return {"fwd_peak_mib": fwd_peak / 1024, "held_for_backward_mib": held / 1024,
            "fwd_bwd_peak_mib": peak / 1024}


def measure(cfg: BenchConfig, path: str) -> dict[str, float]:
    """:func:`measure_point` in a fresh ``python -m bench.classes --point`` subprocess."""
    # no interpreter: the launchers then use the GPU tile configs (and their launches are intercepted)
    env = {**{k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}, **MALLOC_ENV,
           "OMP_NUM_THREADS": "1"}
    point = json.dumps({"config": vars(cfg), "path": path})
    proc = subprocess.run([sys.executable, "-m", "bench.classes", "--point", point], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.classes point K={cfg.K} {path} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def per_class(points: list[dict], value) -> float:
    """Slope over K of ``value(point)`` (units per extra class)."""
    return slope([p["K"] for p in points], [value(p) for p in points])


def path_slopes(points: list[dict], path: str) -> dict[str, float]:
    """Per extra class on ``path``: each measured peak (MiB) and the counted bytes and FLOPs of
    forward + backward."""
    out = {key: per_class(points, lambda p, k=key: p[path]["measured"][k]) for key in MEASURED}
    for key in ("bytes", "flops"):
        out[f"{key}_fwd_bwd"] = per_class(points, lambda p, k=key: p[path]["counted"]["fwd_bwd"][k])
    return out


def machine() -> dict[str, Any]:
    """CPU model, cores, torch threads and the load average when the sweep started."""
    model = "unknown"
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": 1, "load_avg": os.getloadavg(),
            "platform": platform.platform()}


def run(classes: Sequence[int], batch: int, config: str, log=print) -> dict[str, Any]:
    """The sweep: every K, both paths, counted and measured; the slopes and their ratios."""
    points = []
    for K in classes:
        cfg = bench_config(K, batch, config)
        point: dict[str, Any] = {"K": K, "config": vars(cfg)}
        for path in PATHS:
            point[path] = {"counted": count(cfg, path), "measured": measure(cfg, path)}
            m = point[path]["measured"]
            moved = point[path]["counted"]["fwd_bwd"]["bytes"] / 1e9
            log(f"K={K:3d} {path:9s} peak fwd+bwd {m['fwd_bwd_peak_mib']:9.1f} MiB, held for backward "
                f"{m['held_for_backward_mib']:9.1f} MiB, {moved:7.2f} GB moved")
        points.append(point)
    slopes = {path: path_slopes(points, path) for path in PATHS}
    ratio = {k: slopes["fused"][k] / slopes["reference"][k] for k in slopes["reference"]
             if slopes["reference"][k]}
    return {"points": points, "slope_per_class": slopes, "slope_ratio_fused_over_reference": ratio}


def markdown(report: dict[str, Any]) -> str:
    """The sweep as a table, the slopes and the target (for docs/performance.md)."""
    lines = ["| K | path | GFLOP fwd+bwd | GB moved fwd | GB moved fwd+bwd | peak fwd (MiB) "
             "| held for bwd (MiB) | peak fwd+bwd (MiB) |", "|---|---|---|---|---|---|---|---|"]
    for p in report["points"]:
        for path in PATHS:
            c, m = p[path]["counted"], p[path]["measured"]
            lines.append(f"| {p['K']} | {path} | {c['fwd_bwd']['flops'] / 1e9:.1f} "
                         f"| {c['fwd']['bytes'] / 1e9:.2f} | {c['fwd_bwd']['bytes'] / 1e9:.2f} "
                         + "".join(f"| {m[k]:.0f} " for k in MEASURED) + "|")
    s, r = report["slope_per_class"], report["slope_ratio_fused_over_reference"]
    lines += ["", "| per extra class (slope over K) | reference | fused | fused / reference |",
              "|---|---|---|---|"]
    for key, label, scale in (("fwd_bwd_peak_mib", "peak fwd+bwd (MiB)", 1.0),
                              ("held_for_backward_mib", "held for backward (MiB)", 1.0),
                              ("fwd_peak_mib", "peak fwd (MiB)", 1.0),
                              ("bytes_fwd_bwd", "bytes moved fwd+bwd (GB)", 1e-9),
                              ("flops_fwd_bwd", "GFLOP fwd+bwd", 1e-9)):
        lines.append(f"| {label} | {s['reference'][key] * scale:.2f} | {s['fused'][key] * scale:.2f} "
                     f"| {r.get(key, float('nan')):.3f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.classes", description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", default=",".join(map(str, SWEEP)), help="class counts K, comma-separated")
    p.add_argument("--batch", type=int, default=2, help="samples per call (memory grows linearly with it)")
    p.add_argument("--config", default="celeba-256", help="preset whose shapes are used (seg_dim = each K)")
    p.add_argument("--json", default="bench/results/classes-cpu.json")
    p.add_argument("--quick", action="store_true",
                   help=f"K = {QUICK_SWEEP} at the tiny preset's shapes, batch 1: the plumbing only")
    p.add_argument("--point", help=argparse.SUPPRESS)  # internal: one measurement, in a fresh process
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.point:
        point = json.loads(args.point)
        cfg = BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in point["config"].items()})
        print(json.dumps(measure_point(cfg, point["path"])))
        return 0
    if args.quick:
        args.classes, args.batch, args.config = ",".join(map(str, QUICK_SWEEP)), 1, "tiny"
    try:
        classes = [int(k) for k in args.classes.split(",") if k.strip()]
    except ValueError:
        classes = []
    if len(classes) < 2 or min(classes) < 1:
        print("ssgan: error: --classes needs at least two class counts >= 1, e.g. --classes 5,13,32,64",
              file=sys.stderr)
        return 2
    info = machine()
    report = {"env": environment(), "machine": info, "config": args.config, "batch": args.batch,
              "dtype": "fp32", "classes": classes, "note": NOTE,
              **run(classes, args.batch, args.config, log=lambda m: print(m, file=sys.stderr, flush=True))}
    write_json(report, args.json)
    print(markdown(report))
    r = report["slope_ratio_fused_over_reference"]["fwd_bwd_peak_mib"]
    print(f"fused / reference memory per extra class (peak fwd+bwd): {r:.3f} (target <= 0.2); "
          f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
