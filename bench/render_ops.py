"""Microbenchmark of the render net's and discriminator's element-wise / FIR ops on CUDA.

Usage (from the repository root, on a CUDA machine)::

    python -m bench.render_ops --json OUT.json [--dtype bf16|fp32|both] [--layout channels_last|nchw|both]
                               [--ops bias_act,blur_up,upsample,blur_down] [--batch 16]
                               [--warmup 10 --repeats 50]

For each op, shape, dtype and memory layout, three implementations are timed:

* ``reference``: the plain-PyTorch reference maths, eager;
* ``compiled``: the same reference function under ``torch.compile(fullgraph=True, dynamic=False)``
  (default inductor), compiled afresh for every configuration;
* ``ssgan``: the Triton op (the ``triton`` backend of :mod:`ssgan.kernels`),

each as ``<op>_fwd`` (the forward, with autograd recording as in training: x and the parameters
require grad) and ``<op>_fwd_bwd`` (the forward and ``torch.autograd.grad`` of ``sum(y·g)`` for a
fixed random g). Timing: :func:`bench.timing.cuda_time_ms` (CUDA events, median of the repeats,
after warm-up, which also covers compilation and Triton autotuning). Peak memory:
:func:`bench.timing.peak_mib` (extra memory of one call beyond the resident inputs).

Before timing, each configuration checks the Triton forward and gradients against the eager
reference (a mismatch aborts the run). The ops and shapes (batch 16, render-net channels with
channel multiplier 2: 512 ch @ 64², 256 ch @ 128², 128 ch @ 256²):

* ``bias_act``: y = lrelu(x + w·noise + b)·√2 with per-pixel noise (N, 1, H, W) and bias (C,);
* ``blur_up``: the blur after the 3×3 stride-2 transposed conv, (R+1)² -> R², pad (1, 1), kernel ×4;
* ``upsample``: ×2 upsampling (up=2, pad (2, 1), kernel ×4) from (R/2)² to R², at the same channel
  counts (the model applies it to the 3-channel RGB and K-channel segmentation skips, which are
  small; those are added as ``upsample`` configs with C = 3 and 13);
* ``blur_down``: the blur before a stride-2 3×3 conv in D, R² -> (R+1)², pad (2, 2).

The JSON written with ``--json``::

    {device, commit, torch, triton, args,
     benchmarks: [{name, config, reference_ms, compiled_ms, ssgan_ms,
                   reference_peak_mib, compiled_peak_mib, ssgan_peak_mib,
                   speedup_vs_reference, speedup_vs_compiled}]}

The point is the decision "where torch.compile already produces code as fast as a hand kernel,
keep the simpler one": compare ``ssgan_ms`` with ``compiled_ms``. Without CUDA the command
prints why and exits with status 2; it never reports numbers it did not measure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.timing import cuda_time_ms, environment, peak_mib, require_cuda

RENDER_LEVELS = ((512, 64), (256, 128), (128, 256))  # (channels, resolution), channel multiplier 2
SKIP_CHANNELS = (3, 13)  # to_rgb and to_seg skips (RGB, K = 13 classes)
OPS = ("bias_act", "blur_up", "upsample", "blur_down")
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def blur_kernel(scale: float, device) -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device)
    k = k[:, None] * k[None, :]
    return k / k.sum() * scale


@dataclass
class Case:
    """One configuration: ``fn(impl)`` returns a closure computing the op's output from the
    fixed ``inputs`` (those with requires_grad are differentiated in the fwd_bwd variant)."""

    op: str
    config: dict
    inputs: list[torch.Tensor]
    make: Callable[[str], Callable[..., torch.Tensor]]


def _layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.to(memory_format=torch.channels_last) if layout == "channels_last" else x.contiguous()


def build_cases(ops, dtypes, layouts, batch: int, device) -> Iterator[Case]:
    """The configurations, one at a time (inputs are allocated when a case is produced)."""
    from ssgan.kernels import bias_act, bias_act_reference, upfirdn2d, upfirdn2d_reference

    for op in ops:
        shapes = [(c, r) for c, r in RENDER_LEVELS]
        if op == "upsample":
            shapes += [(c, r) for c in SKIP_CHANNELS for _, r in RENDER_LEVELS]
        for (C, R) in shapes:
            for dname in dtypes:
                dtype = DTYPES[dname]
                for layout in layouts:
                    config = dict(batch=batch, channels=C, resolution=R, dtype=dname, layout=layout)

                    def rand(*shape, grad=True, dtype=dtype, layout=layout):
                        t = torch.randn(*shape, device=device, dtype=dtype)
                        t = _layout(t, layout) if t.ndim == 4 else t
                        return t.requires_grad_(grad)

                    if op == "bias_act":
                        inputs = [rand(batch, C, R, R), torch.randn(C, device=device).requires_grad_(),
                                  rand(batch, 1, R, R, grad=False),
                                  torch.randn(1, device=device).requires_grad_()]

                        def make(impl, bias_act=bias_act, bias_act_reference=bias_act_reference):
                            return bias_act if impl == "ssgan" else bias_act_reference
                    else:
                        if op == "blur_up":
                            in_res, up, pad, scale = R + 1, 1, (1, 1), 4.0
                        elif op == "upsample":
                            in_res, up, pad, scale = R // 2, 2, (2, 1), 4.0
                        else:
                            in_res, up, pad, scale = R, 1, (2, 2), 1.0
                        config.update(up=up, pad=list(pad), input_resolution=in_res)
                        k = blur_kernel(scale, device)
                        inputs = [rand(batch, C, in_res, in_res)]

                        def make(impl, up=up, pad=pad, k=k):
                            fn = upfirdn2d if impl == "ssgan" else upfirdn2d_reference
                            return lambda x: fn(x, k, up, 1, pad)
                    yield Case(op, config, inputs, make)


def _check(case: Case) -> None:
    """The Triton forward and gradients against the eager reference, in float32 arithmetic."""
    from ssgan.kernels import use_backend

    ref, tri = case.make("reference"), case.make("ssgan")
    up = [t.detach().float().requires_grad_(t.requires_grad) for t in case.inputs]
    with use_backend("triton"):
        y = tri(*case.inputs)
    g = torch.randn(y.shape, device=y.device)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # the reference conv as the float32 truth
    try:
        y_ref = ref(*up)
        grads_ref = torch.autograd.grad(y_ref, [t for t in up if t.requires_grad], g)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    with use_backend("triton"):
        grads = torch.autograd.grad(y, [t for t in case.inputs if t.requires_grad], g.to(y.dtype))
    bf16 = case.inputs[0].dtype == torch.bfloat16
    tol = dict(rtol=2e-2, atol=2e-2) if bf16 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(y.float(), y_ref, **tol)
    for a, w in zip(grads, grads_ref, strict=True):
        scale = max(1.0, w.abs().max().item())  # reductions over up to 10^6 terms
        torch.testing.assert_close(a.float() / scale, w / scale, **tol)


def _runner(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], backward: bool):
    leaves = [t for t in inputs if t.requires_grad]
    g = None

    def fwd():
        return fn(*inputs)

    def fwd_bwd():
        nonlocal g
        y = fn(*inputs)
        if g is None:
            g = torch.randn_like(y)
        return torch.autograd.grad(y, leaves, g)

    return fwd_bwd if backward else fwd


def run_case(case: Case, warmup: int, repeats: int) -> list[dict]:
    from ssgan.kernels import use_backend

    _check(case)
    torch._dynamo.reset()
    impls = {
        "reference": case.make("reference"),
        "compiled": torch.compile(case.make("reference"), fullgraph=True, dynamic=False),
        "ssgan": case.make("ssgan"),
    }
    rows = []
    for backward in (False, True):
        row = {"name": f"{case.op}_{'fwd_bwd' if backward else 'fwd'}", "config": case.config}
        for impl, fn in impls.items():
            with use_backend("triton" if impl == "ssgan" else "reference"):
                run = _runner(fn, case.inputs, backward)
                row[f"{impl}_ms"] = cuda_time_ms(run, warmup, repeats)
                row[f"{impl}_peak_mib"] = peak_mib(run)
        row["speedup_vs_reference"] = row["reference_ms"] / row["ssgan_ms"]
        row["speedup_vs_compiled"] = row["compiled_ms"] / row["ssgan_ms"]
        rows.append(row)
        print(f"{row['name']:<18} {json.dumps(case.config):<100} ref {row['reference_ms']:8.3f} ms  "
              f"compiled {row['compiled_ms']:8.3f} ms  ssgan {row['ssgan_ms']:8.3f} ms  "
              f"peak MiB ref/compiled/ssgan {row['reference_peak_mib']:.0f}/"
              f"{row['compiled_peak_mib']:.0f}/{row['ssgan_peak_mib']:.0f}", flush=True)
    return rows


def _choices(value: str, allowed, name: str) -> list[str]:
    picked = list(allowed) if value in ("both", "all") else value.split(",")
    bad = [v for v in picked if v not in allowed]
    if bad:
        raise SystemExit(f"unknown {name}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    return picked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--dtype", default="bf16", help="bf16, fp32 or both (default bf16)")
    parser.add_argument("--layout", default="both", help="channels_last, nchw or both (default both)")
    parser.add_argument("--ops", default="all", help=f"comma-separated subset of {','.join(OPS)}")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    dtypes = _choices(args.dtype, tuple(DTYPES), "dtype")
    layouts = _choices(args.layout, ("channels_last", "nchw"), "layout")
    ops = _choices(args.ops, OPS, "op")
    require_cuda("python -m bench.render_ops")

    torch.manual_seed(0)
    report = dict(environment(), args=vars(args) | {"json": str(args.json) if args.json else None},
                  benchmarks=[])
    for case in build_cases(ops, dtypes, layouts, args.batch, torch.device("cuda")):
        report["benchmarks"].extend(run_case(case, args.warmup, args.repeats))
        del case
        torch.cuda.empty_cache()
        if args.json:  # keep partial results if a later configuration fails
            args.json.write_text(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
