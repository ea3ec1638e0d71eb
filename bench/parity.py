"""Smoke parity of every Triton op against its reference maths in float64, forward and backward.

For each op (``grouped_mlp``, ``fuse``, ``bias_act``, ``upfirdn2d``) and each dtype (fp32, bf16):
random inputs in that dtype run through the ``triton`` backend; the same values, upcast to
float64, run through the ``reference`` backend; the outputs, and the gradients of ``sum(out · g)``
for a random upstream ``g`` (the same rounded values on both sides), are compared by

    e = ||triton − reference64|| / ||reference64||        (per tensor, computed in float64)

The bound is :data:`bench.kernels.CHECK_RTOL` for the dtype, or :data:`bench.kernels.CHECK_FACTOR`
times the error of the reference maths run eagerly in the same dtype if that is larger (bf16
rounding through ten chained layers legitimately costs percents on some gradients; a wrong
kernel costs O(1)). Both errors are in the JSON, so a reader sees how far from the dtype's own
rounding each kernel is.

Shapes: the paper's (:class:`bench.kernels.BenchConfig`: B=16, K=13, L=10, C=64, F=512, P=64²;
render-net ``bias_act`` on (16, 256, 128, 128) with per-pixel noise and ``upfirdn2d`` ×2
upsampling of (16, 256, 64, 64) with the [1, 3, 3, 1] filter), or toy ones for CPU dry runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.kernels import (
    CHECK_FACTOR,
    CHECK_RTOL,
    DTYPES,
    TOY,
    BenchConfig,
    build_inputs,
    cast_inputs,
    make_cases,
    rel_error,
)
from ssgan.kernels import bias_act, upfirdn2d, use_backend

OPS = ("grouped_mlp", "fuse", "bias_act", "upfirdn2d")
PARITY_DTYPES = ("fp32", "bf16")
# Render-net shapes: (batch, channels, size) of bias_act's input and of upfirdn2d's (pre-upsampling).
PAPER_RENDER = {"bias_act": (16, 256, 128), "upfirdn2d": (16, 256, 64)}
TOY_RENDER = {"bias_act": (2, 8, 8), "upfirdn2d": (2, 4, 8)}

Case = Callable[[str, torch.dtype, torch.device], tuple[Callable[[str, dict], tuple], dict]]


def _render_inputs(op: str, shape: tuple[int, int, int], device: torch.device, seed: int = 0) -> dict:
    N, C, S = shape
    gen = torch.Generator(device=device).manual_seed(seed)

    def rand(*s):
        return torch.randn(*s, device=device, generator=gen)

    if op == "bias_act":
        return {"x": rand(N, C, S, S), "bias": rand(C) * 0.1, "noise": rand(N, 1, S, S),
                "noise_weight": rand(()) * 0.1, "up": rand(N, C, S, S)}
    return {"x": rand(N, C, S, S), "up": rand(N, C, 2 * S, 2 * S)}


_FIR = torch.tensor([1.0, 3.0, 3.0, 1.0])


def _render_run(op: str, values: dict, backend: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(outputs, gradients) of one render op on ``values`` (leaves requiring grad)."""
    with use_backend(backend):
        if op == "bias_act":
            wrt = [values[k] for k in ("x", "bias", "noise_weight")]
            y = bias_act(values["x"], values["bias"], values["noise"], values["noise_weight"])
        else:
            f = torch.outer(_FIR, _FIR).to(values["x"].device)
            wrt = [values["x"]]
            y = upfirdn2d(values["x"], f / f.sum() * 4, up=2, pad=(2, 1))
    return [y], list(torch.autograd.grad(y, wrt, values["up"]))


def _leaves(values: dict, dtype: torch.dtype, no_grad: tuple[str, ...] = ("noise", "up")) -> dict:
    return {k: v.detach().to(dtype).clone().requires_grad_(k not in no_grad) for k, v in values.items()}


def run_op(op: str, dtype_name: str, device: torch.device, cfg: BenchConfig,
           render: dict[str, tuple[int, int, int]]) -> dict:
    """Relative errors of one op in one dtype: {"fwd": [...], "bwd": [...], "reference_same_dtype":
    {"fwd", "bwd"}, "bound", "max_error", "ok"}."""
    dtype = DTYPES[dtype_name]
    if op in ("grouped_mlp", "fuse"):
        name = "grouped_mlp_fwd_bwd" if op == "grouped_mlp" else "fusion_fwd_bwd"
        base = build_inputs(cfg, device, torch.float32)
        low = cast_inputs(base, dtype)
        del base

        def run(values, backend):
            outs, grads = make_cases(cfg, values, backend, upstream_dtype=dtype)[name]()
            return list(outs), list(grads)

        tri = run(low, "triton")
        ref = run(cast_inputs(low, torch.float64), "reference")
        same = run(low, "reference") if dtype != torch.float32 else None
    else:
        values = _leaves(_render_inputs(op, render[op], device), dtype)
        tri = _render_run(op, values, "triton")
        ref = _render_run(op, _leaves(values, torch.float64), "reference")
        same = _render_run(op, values, "reference") if dtype != torch.float32 else None

    def errors(got):
        return {part: [rel_error(a, b) for a, b in zip(got[i], ref[i], strict=True)]
                for i, part in enumerate(("fwd", "bwd"))}

    err = errors(tri)
    base_err = errors(same) if same is not None else {"fwd": [0.0], "bwd": [0.0]}
    bound = max(CHECK_RTOL[dtype_name], CHECK_FACTOR * max(base_err["fwd"] + base_err["bwd"]))
    worst = max(err["fwd"] + err["bwd"])
    return {**err, "reference_same_dtype": base_err if same is not None else None, "bound": bound,
            "max_error": worst, "ok": worst <= bound}


def run_all(device: torch.device, toy: bool, on_result: Callable[[dict], None] | None = None,
            log: Callable[[str], None] | None = None) -> dict:
    """{op: {dtype: run_op(...)}} for every op and dtype; ``on_result(results)`` after each."""
    cfg, render = (TOY, TOY_RENDER) if toy else (BenchConfig(), PAPER_RENDER)
    results: dict = {}
    for op in OPS:
        for dt in PARITY_DTYPES:
            try:
                r = run_op(op, dt, device, cfg, render)
            except Exception as e:  # one broken op must not hide the others' results
                r = {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            results.setdefault(op, {})[dt] = r
            if log:
                log(f"parity {op:12s} {dt}: " + (f"max error {r['max_error']:.2e} (bound {r['bound']:.1e})"
                                                  if "max_error" in r else r["error"]))
            if on_result:
                on_result(results)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return results


def shapes(toy: bool) -> dict:
    """The shapes :func:`run_all` uses, for the JSON."""
    cfg, render = (TOY, TOY_RENDER) if toy else (BenchConfig(), PAPER_RENDER)
    return {"local": cfg.record("-"), "render": {k: list(v) for k, v in render.items()}}
