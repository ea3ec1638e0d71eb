"""Bytes, FLOPs and kernel launches of one amortised training iteration, counted (no GPU needed).

Usage (from the repository root)::

    python -m bench.step_cost [--preset celeba-256] [--batch 16] [--json bench/results/step_cost.json]
                              [--doc docs/performance_step_cost.md]
    python -m bench.step_cost --quick      # tiny preset, batch 4: the plumbing, in seconds

One training iteration of ``ssgan.train`` (``TrainState.train_step``) is replayed phase by phase
with the step functions of :mod:`ssgan.train.steps` on *fake* tensors (``FakeTensorMode``:
shapes, dtypes and devices, no data; see :func:`fake_device` for how they stand in for CUDA
tensors), so the paper's configuration runs at full size on a CPU-only machine:

* ``D``: :func:`~ssgan.train.steps.d_step` (fake batch under no_grad, D on fake and real, backward,
  Adam);
* ``R1``: :func:`~ssgan.train.steps.r1_step` (double backward), every ``d_reg_every`` iterations;
* ``G``: :func:`~ssgan.train.steps.g_step`;
* ``PL``: :func:`~ssgan.train.steps.pl_step` (batch / ``path_batch_shrink``, double backward),
  every ``g_reg_every`` iterations;
* ``EMA``: :func:`~ssgan.train.steps.ema_update`.

The amortised iteration is D + G + EMA + R1 / d_reg_every + PL / g_reg_every (16 and 4, the
paper's). Two paths:

* ``reference``: every op on the reference maths (``use_backend("reference")``), fp32, eager —
  the official implementation's way;
* ``fast``: the Triton custom ops (the default on CUDA tensors), bf16 autocast for the D and G
  forwards (``precision bf16``; R1 and PL run fp32, as in training), eager. The training default
  also compiles the D- and G-step forwards with inductor, which fuses the remaining element-wise
  aten ops; that fusion is NOT modelled here, so the fast path's aten part is counted as eager.

Counting (a ``TorchDispatchMode`` under the fake mode sees every operator autograd and the
optimiser issue):

* bytes: per op, the bytes of its distinct tensor inputs (read) and outputs (written), a tensor's
  bytes being those of its distinct elements (a broadcast stride-0 view counts its storage once);
  write-only ops (``copy_``, ``fill_``, ``zero_``, random fills) do not read their destination.
  Views, allocations and metadata ops (``prim::device``, sizes) move nothing and launch nothing;
* FLOPs: matrix products and convolutions (``torch.utils.flop_counter``'s formulas), and the
  Triton ops' own model FLOPs (:data:`CUSTOM_FLOPS`); element-wise arithmetic is not counted (those
  ops are bandwidth-bound, their bytes are);
* the Triton custom ops (``ssgan::*``) count at the op level: their own inputs and outputs, not
  their internals (the kernel's reads of a tile twice, the backward's fp32 partial sums);
* launches: reference path, one per op (a ``_foreach_`` op counts one, though it launches one
  kernel per ~100 tensors); fast path, one per aten op and, per ``ssgan::`` op call, the Triton
  kernels plus the aten ops its launcher runs, counted by running that launcher once on CPU
  tensors of the same shapes with the Triton launches intercepted (:mod:`bench.triton_launches`).

From them, LOWER BOUNDS on an H100 SXM's time (never measurements): per op max(bytes / 3.35 TB/s,
FLOPs / 989 TFLOP/s dense bf16), summed over the ops of a phase (``lower_bound_ms``), and the two
terms separately (``bytes_bound_ms``, ``flops_bound_ms``). ``bench/gpu_session.sh`` puts measured
times beside them. The headline is the ratio of bytes moved, fast over reference.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from bench.session import write_json
from bench.timing import environment
from ssgan.kernels import use_backend
from ssgan.kernels.fusion import fuse_flops
from ssgan.kernels.local_mlp import grouped_mlp_flops
from ssgan.model.config import preset
from ssgan.model.discriminator import DualBranchDiscriminator
from ssgan.model.generator import SemanticGenerator
from ssgan.train import steps as T

DOC = "docs/performance_step_cost.md"  # the page the report is written to
HBM_BYTES_PER_S = 3.35e12  # H100 SXM HBM3
BF16_FLOPS_PER_S = 989e12  # H100 SXM dense bf16 tensor cores
PATHS = ("reference", "fast")
PHASES = ("D", "R1", "G", "PL", "EMA")
WRITE_ONLY = {"copy_", "fill_", "zero_", "normal_", "uniform_", "bernoulli_", "random_", "exponential_"}
FREE = {"_unsafe_view", "alias",
        "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "_local_scalar_dense",
        "lift_fresh", "lift_fresh_copy", "sym_size", "sym_stride", "sym_numel", "is_same_size",
        "_has_compatible_shallow_copy_type", "set_", "resize_", "record_stream", "_to_copy_noop"}


def _mlp_flops(x: torch.Tensor, weight: torch.Tensor, *_: Any) -> float:
    B, K, L, C = weight.shape[:4]
    return grouped_mlp_flops(B, K, L, C, x.shape[2])


def _mlp_bwd_flops(grad_h: torch.Tensor, grad_depth: torch.Tensor, x: torch.Tensor,
                   weight: torch.Tensor, *_: Any) -> float:
    """The kernel recomputes the forward: 3× the forward's matmuls, executed."""
    return grouped_mlp_flops(*weight.shape[:4], x.shape[2], backward=True)


def _fuse_flops(h: torch.Tensor, depth: torch.Tensor, feat_weight: torch.Tensor, *_: Any) -> float:
    B, K, P, C = h.shape
    return fuse_flops(B, K, C, feat_weight.shape[1], P)


def _fuse_bwd_flops(g: torch.Tensor, gm: torch.Tensor, h: torch.Tensor, depth: torch.Tensor,
                    feat_weight: torch.Tensor, *_: Any) -> float:
    B, K, P, C = h.shape
    return fuse_flops(B, K, C, feat_weight.shape[1], P, backward=True)


def _fir_flops(x: torch.Tensor, f: torch.Tensor, up: int, down: int, *pads: int) -> float:
    """2 FLOPs per filter tap per output element (computed as an upfirdn2d shape would be)."""
    N, C, H, W = x.shape
    kh, kw = f.shape
    px0, px1, py0, py1 = pads
    oh = (H * up + py0 + py1 - kh) // down + 1
    ow = (W * up + px0 + px1 - kw) // down + 1
    return 2.0 * N * C * oh * ow * kh * kw


#: Model FLOPs of the Triton custom ops, from their arguments (element-wise ops: none counted).
CUSTOM_FLOPS: dict[str, Callable[..., float]] = {
    "ssgan::grouped_mlp": _mlp_flops, "ssgan::grouped_mlp_backward": _mlp_bwd_flops,
    "ssgan::fuse": _fuse_flops, "ssgan::fuse_backward": _fuse_bwd_flops,
    "ssgan::upfirdn2d": _fir_flops,
}


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements of ``t`` (stride-0 broadcast dims count once)."""
    n = math.prod(s for s, st in zip(t.shape, t.stride(), strict=True) if st != 0) if t.dim() else 1
    return n * t.element_size() if t.numel() else 0


def _tensors(tree: Any) -> list[torch.Tensor]:
    seen, out = set(), []
    for t in tree_flatten(tree)[0]:
        if isinstance(t, torch.Tensor) and id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


@dataclass
class OpStats:
    calls: int = 0
    launches: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    flops: float = 0.0
    bound_s: float = 0.0  # Σ per call max(bytes / HBM, flops / bf16 peak)


@dataclass
class CustomCall:
    """One ``ssgan::`` op call, kept for replay on CPU: the op and its arguments as CPU
    stand-ins (tensors of the same shape, dtype and strides)."""

    op: Any
    args: tuple
    kwargs: dict


@dataclass
class Counter(TorchDispatchMode):
    """Per-phase, per-op bytes, FLOPs and launches of the ops dispatched inside it."""

    phase: str = "setup"
    stats: dict[str, dict[str, OpStats]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(OpStats)))
    custom: dict[tuple, CustomCall] = field(default_factory=dict)
    custom_calls: dict[str, dict[tuple, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int)))

    def __post_init__(self) -> None:
        super().__init__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func._schema.name.split("::")[-1]
        ns = func.namespace
        if func.is_view or name in FREE or ns in ("prim", "profiler") or self.phase == "setup":
            return out
        full = f"{ns}::{name}"
        ins = _tensors((args, kwargs))
        if name in WRITE_ONLY and args and isinstance(args[0], torch.Tensor):
            ins = [t for t in ins if t is not args[0]]
        read = sum(tensor_bytes(t) for t in ins)
        written = sum(tensor_bytes(t) for t in _tensors(out))
        if ns == "ssgan":
            flops = CUSTOM_FLOPS.get(full, lambda *a, **k: 0.0)(*args, **kwargs)
            key = _call_key(func, args, kwargs)
            self.custom.setdefault(key, CustomCall(func, args, kwargs))
            self.custom_calls[self.phase][key] += 1
            launches = 0  # added after the run, from a replay of the call (count_path)
        else:
            packet = func._overloadpacket
            count = flop_registry.get(packet)
            flops = float(count(*args, **kwargs, out_val=out)) if count else 0.0
            launches = 1
        s = self.stats[self.phase][full]
        s.calls += 1
        s.launches += launches
        s.bytes_read += read
        s.bytes_written += written
        s.flops += flops
        s.bound_s += max((read + written) / HBM_BYTES_PER_S, flops / BF16_FLOPS_PER_S)
        return out


def _call_key(func, args, kwargs) -> tuple:
    """A hashable description of a call: the op, and each argument's shape/dtype/stride or value."""
    def desc(a):
        if isinstance(a, torch.Tensor):
            return ("T", tuple(a.shape), tuple(a.stride()), str(a.dtype))
        if isinstance(a, (list, tuple)):
            return tuple(desc(x) for x in a)
        return a
    return (str(func), tuple(desc(a) for a in args), tuple(sorted((k, desc(v)) for k, v in kwargs.items())))


def cpu_standin(a: Any) -> Any:
    """A CPU tensor shaped like the (fake) tensor ``a`` (uninitialised), other values unchanged."""
    if isinstance(a, torch.Tensor):
        return torch.empty_strided(tuple(a.shape), tuple(a.stride()), dtype=a.dtype)
    if isinstance(a, (list, tuple)):
        return type(a)(cpu_standin(x) for x in a)
    return a


class _AtenLaunches(TorchDispatchMode):
    """Counts the launch-worthy aten ops run inside it (views and allocations excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        if not (func.is_view or name in FREE or func.namespace in ("prim", "profiler")):
            self.n += 1
        return func(*args, **(kwargs or {}))


def replay_launches(call: CustomCall) -> int:
    """Kernel launches of one ``ssgan::`` op call: its Triton kernels plus the aten ops its
    launcher runs, counted by running it on CPU stand-ins with the Triton launches intercepted."""
    from torch._library.custom_ops import OPDEFS  # the op's Python implementation, undispatched

    from bench.triton_launches import intercepted

    impl = OPDEFS[_op_name((str(call.op),))]._init_fn
    args, kwargs = cpu_standin(call.args), cpu_standin(call.kwargs)
    with intercepted(keep_args=False) as launches, torch.no_grad():
        inner = _AtenLaunches()
        with inner:
            impl(*args, **kwargs)
    return len(launches) + inner.n


@contextlib.contextmanager
def fake_device(path: str) -> Iterator[FakeTensorMode]:
    """Fake CPU tensors (a CPU-only torch cannot even index a fake CUDA tensor: its device guard
    needs CUDA). On the fast path they report ``is_cuda`` so that :mod:`ssgan.kernels` picks its
    Triton custom ops as it does on a GPU (their fake functions run: nothing is launched); the
    bf16 autocast is then CPU autocast, whose casts of convolutions and matrix products match
    CUDA's."""
    with FakeTensorMode(allow_non_fake_inputs=True) as mode, contextlib.ExitStack() as stack:
        if path == "fast":
            stack.enter_context(mock.patch.object(torch.Tensor, "is_cuda", property(lambda self: True)))
        yield mode


def run_iteration(counter: Counter, config: str, batch: int, path: str) -> dict[str, Any]:
    """One iteration of each phase under ``counter`` (fake CUDA tensors), on ``path``."""
    cfg = preset(config)
    tc = T.TrainConfig()
    fwd = T.StepForwards(precision="bf16" if path == "fast" else "fp32")
    backend = "reference" if path == "reference" else None
    dev = "cpu"
    with torch.device("meta"):  # no data: materialised as fake tensors below
        G, G_ema, D = SemanticGenerator(cfg), SemanticGenerator(cfg), DualBranchDiscriminator(cfg)
    with fake_device(path), use_backend(backend):
        for m in (G, G_ema, D):
            m.to_empty(device=dev)
        g_optim, d_optim = T.make_optimizers(G, D, tc)
        for opt in (g_optim, d_optim):  # as on CUDA: one _foreach_ op per update
            for group in opt.param_groups:
                group.update(foreach=True)
        real_img = torch.randn(batch, 3, cfg.size, cfg.size, device=dev)
        real_mask = torch.randn(batch, cfg.seg_dim, cfg.size, cfg.size, device=dev)
        mean_pl = torch.zeros((), device=dev)

        def z(n):
            return [torch.randn(n, cfg.style_dim, device=dev)]

        with counter:
            counter.phase = "D"
            T.requires_grad(G, False)
            T.requires_grad(D, True)
            T.d_step(G, D, d_optim, real_img, real_mask, z(batch), tc, fwd=fwd)
            counter.phase = "R1"
            T.r1_step(D, d_optim, real_img, real_mask, tc)
            counter.phase = "G"
            T.requires_grad(G, True)
            T.requires_grad(D, False)
            T.g_step(G, D, g_optim, z(batch), tc, fwd=fwd)
            counter.phase = "PL"
            T.pl_step(G, g_optim, z(batch // tc.path_batch_shrink), mean_pl, tc)
            counter.phase = "EMA"
            T.ema_update(G_ema, G, T.ema_beta(tc, batch, batch))
            counter.phase = "setup"
    return {"d_reg_every": tc.d_reg_every, "g_reg_every": tc.g_reg_every,
            "path_batch": batch // tc.path_batch_shrink, "precision": fwd.precision}


def phase_summary(stats: dict[str, OpStats], weight: float) -> dict[str, Any]:
    """Totals of one phase (per occurrence) and its weight in the amortised iteration."""
    tot = OpStats()
    for s in stats.values():
        for f in ("calls", "launches", "bytes_read", "bytes_written", "flops", "bound_s"):
            setattr(tot, f, getattr(tot, f) + getattr(s, f))
    moved = tot.bytes_read + tot.bytes_written
    return {"weight": weight, "ops": tot.calls, "launches": tot.launches, "bytes_read": tot.bytes_read,
            "bytes_written": tot.bytes_written, "bytes": moved, "flops": tot.flops,
            "bytes_bound_ms": moved / HBM_BYTES_PER_S * 1e3,
            "flops_bound_ms": tot.flops / BF16_FLOPS_PER_S * 1e3,
            "lower_bound_ms": tot.bound_s * 1e3}


def count_path(config: str, batch: int, path: str) -> dict[str, Any]:
    """Per-phase and amortised counts of one path; the fast path's ``ssgan::`` calls are replayed
    on CPU to count their launches (:func:`replay_launches`)."""
    counter = Counter()
    meta = run_iteration(counter, config, batch, path)
    custom_launches = {key: replay_launches(call) for key, call in counter.custom.items()}
    for phase, calls in counter.custom_calls.items():
        for key, n in calls.items():
            counter.stats[phase][_op_name(key)].launches += n * custom_launches[key]
    weights = {"D": 1.0, "R1": 1.0 / meta["d_reg_every"], "G": 1.0, "PL": 1.0 / meta["g_reg_every"],
               "EMA": 1.0}
    phases = {p: phase_summary(counter.stats[p], weights[p]) for p in PHASES}
    amort = {k: sum(ph[k] * ph["weight"] for ph in phases.values())
             for k in ("ops", "launches", "bytes_read", "bytes_written", "bytes", "flops", "bytes_bound_ms",
                       "flops_bound_ms", "lower_bound_ms")}
    top = sorted(((p, n, s) for p in PHASES for n, s in counter.stats[p].items()),
                 key=lambda t: -(t[2].bytes_read + t[2].bytes_written) * weights[t[0]])[:15]
    return {**meta, "phases": phases, "amortised": amort,
            "top_ops_by_bytes": [{"phase": p, "op": n, "calls": s.calls,
                                  "bytes": s.bytes_read + s.bytes_written, "flops": s.flops}
                                 for p, n, s in top],
            "custom_op_launches": _launches_by_op(custom_launches)}


def _op_name(key: tuple) -> str:
    """"ssgan::fuse" from a call key (whose first item is the overload's name, "ssgan.fuse.default")."""
    ns, name = key[0].split(".")[:2]
    return f"{ns}::{name}"


def _launches_by_op(launches: dict[tuple, int]) -> dict[str, list[int]]:
    """The distinct launch counts per op (one op's calls differ by flags, e.g. with or without noise)."""
    out: dict[str, set[int]] = defaultdict(set)
    for key, n in launches.items():
        out[_op_name(key)].add(n)
    return {k: sorted(v) for k, v in sorted(out.items())}





def _gb(b: float) -> str:
    return f"{b / 1e9:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as the page docs/performance_step_cost.md."""
    ref, fast = report["paths"]["reference"], report["paths"]["fast"]
    lines = [
        "# Bytes, FLOPs and launches per training iteration (counted, not measured)", "",
        f"Configuration `{report['preset']}`, batch {report['batch']}; written by "
        f"`python -m bench.step_cost` (commit `{report['env']['commit']}`, torch {report['env']['torch']}). "
        "No GPU was used: one iteration is run on fake tensors and every operator is counted (method: the "
        "docstring of `bench/step_cost.py`). "
        "Times are LOWER BOUNDS for an H100 SXM (per op max(bytes / 3.35 TB/s, FLOPs / 989 TFLOP/s), "
        "summed), not measurements.", "",
        f"**Headline: the fast path moves {report['headline']['bytes_ratio_fast_over_reference']:.2f}× the "
        f"reference path's bytes per amortised iteration** ({_gb(fast['amortised']['bytes'])} GB vs "
        f"{_gb(ref['amortised']['bytes'])} GB), with {fast['amortised']['launches']:.0f} vs "
        f"{ref['amortised']['launches']:.0f} kernel launches.", "",
        "| phase | weight | path | ops | launches | GB read | GB written | GFLOP | bytes bound (ms) "
        "| FLOPs bound (ms) | lower bound (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in (*PHASES, "amortised"):
        for name in PATHS:
            p = report["paths"][name]
            ph = p["amortised"] if phase == "amortised" else p["phases"][phase]
            w = "" if phase == "amortised" else f"{ph['weight']:.4g}"
            lines.append(f"| {phase} | {w} | {name} | {ph['ops']:.0f} | {ph['launches']:.0f} | "
                         f"{_gb(ph['bytes_read'])} | {_gb(ph['bytes_written'])} | {ph['flops'] / 1e9:.0f} | "
                         f"{ph['bytes_bound_ms']:.2f} | {ph['flops_bound_ms']:.2f} | "
                         f"{ph['lower_bound_ms']:.2f} |")
    lines += ["", "Phase rows are one occurrence; the amortised row weights R1 by 1/d_reg_every and PL by "
              "1/g_reg_every. Fast path: Triton custom ops, bf16 autocast for the D and G forwards, eager "
              "(inductor's fusion of the remaining element-wise ops, on by default in training, is not "
              "modelled: the fast path's aten bytes and launches are those of eager execution).", "",
              "Launches per `ssgan::` op call (its Triton kernels plus the aten ops of its launcher; the "
              "values differ with the call's flags):", ""]
    lines += [f"- `{op}`: {', '.join(map(str, n))}" for op, n in fast["custom_op_launches"].items()]
    for name in PATHS:
        lines += ["", f"Largest byte movers, {name} path (amortised weight applied in the ranking only):", "",
                  "| phase | op | calls | GB | GFLOP |", "|---|---|---|---|---|"]
        lines += [f"| {t['phase']} | `{t['op']}` | {t['calls']} | {_gb(t['bytes'])} | "
                  f"{t['flops'] / 1e9:.0f} |"
                  for t in report["paths"][name]["top_ops_by_bytes"]]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.step_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="celeba-256")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--json", default="bench/results/step_cost.json")
    p.add_argument("--doc", default=DOC, help="markdown page ('' for none)")
    p.add_argument("--quick", action="store_true", help="tiny preset, batch 4, no page: the plumbing only")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.preset, args.batch, args.doc = "tiny", 4, ""
    paths = {name: count_path(args.preset, args.batch, name) for name in PATHS}
    fast, ref = paths["fast"]["amortised"], paths["reference"]["amortised"]
    ratio = fast["bytes"] / ref["bytes"]
    report = {"env": environment(), "preset": args.preset, "batch": args.batch,
              "ceilings": {"hbm_bytes_per_s": HBM_BYTES_PER_S, "bf16_flops_per_s": BF16_FLOPS_PER_S,
                           "device": "H100 SXM (datasheet)"},
              "note": "counted on fake tensors; *_bound_ms are lower bounds, not measurements",
              "headline": {"bytes_ratio_fast_over_reference": ratio,
                           "launch_ratio_fast_over_reference": fast["launches"] / ref["launches"],
                           "lower_bound_ratio_fast_over_reference":
                               fast["lower_bound_ms"] / ref["lower_bound_ms"]},
              "paths": paths}
    write_json(report, args.json)
    if args.doc:
        Path(args.doc).write_text(markdown(report))
    print(f"{args.preset} batch {args.batch}: fast/reference bytes per amortised iteration = {ratio:.3f} "
          f"({fast['bytes'] / 1e9:.2f} / {ref['bytes'] / 1e9:.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
