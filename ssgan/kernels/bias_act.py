"""Bias, noise injection and scaled leaky ReLU in one element-wise pass.

    y = leaky_relu(x + noise_weight * noise + bias[c], 0.2) * gain,   gain = sqrt(2)

x: (N, C, ...); bias: (C,) or None; noise: broadcastable to x (N, 1, H, W) or None;
noise_weight: a one-element tensor (the learned NoiseInjection weight) or None.

Triton implementation
---------------------
Both memory layouts the model produces are seen by the kernels as one row-major matrix [R, Q]
whose columns are contiguous, so loads and stores vectorise without runtime strides:

* contiguous ``(N, C, *S)`` (P = prod(S) pixels): rows are (n, c) planes, R = N·C, Q = P;
  the channel of a row is ``row % C``, its noise offset ``(row // C)·P + col``;
* channels-last ``(N, C, H, W)`` and 2-D ``(N, C)``: rows are pixels, R = N·P, Q = C;
  the channel is the column, the noise offset the row.

Other strides are made contiguous first (one copy, deliberately). The output has x's layout
and dtype; arithmetic is in float32 (float64 for float64 inputs).

The kernels cover x with at least 2 dims in float16 / bfloat16 / float32 / float64, gain > 0 and
negative_slope >= 0, a one-element noise_weight and noise broadcastable to (N, 1, *S); other
inputs follow the fallback rule of :mod:`.backend` (reference maths, or an error if ``triton``
was forced).

The forward reads x (+ bias, + noise: 1/C of x) and writes y once. The backward uses only the
saved output y (gain > 0 and slope >= 0 keep the sign of the pre-activation, so the slope mask
is ``y > 0``): one kernel reads g and y, writes grad x and per-tile partial sums for grad bias
and grad noise_weight (reduced on the host over a few thousand partials, deterministically,
no atomics). grad noise — needed only when the noise itself requires grad — is
``noise_weight · Σ_c grad_x`` in PyTorch. The backward's own backward (R1, path length) is
again element-wise: d(grad x)/dg is the same slope mask and d/dy is zero almost everywhere; it
calls the backward op once more on ``ggx + ggb[c] + ggnw·noise``, so any order is differentiable.
"""


from __future__ import annotations

import math
import struct

import torch
import torch.nn.functional as F

from .backend import dtype_uncovered, interpreting, runs_triton, tl, triton
from .launch import accumulator, autotune, configs, grid, launch, layout, precision

SQRT2 = math.sqrt(2.0)


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    noise_weight: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    gain: float = SQRT2,
) -> torch.Tensor:
    """y = leaky_relu(x + noise_weight · noise + bias[c], negative_slope) · gain, on the backend
    chosen by :mod:`.backend` (the maths: :func:`bias_act_reference`).

    x: (N, C, ...); bias: (C,) or None; noise: broadcastable to (N, 1, *S) or None; noise_weight:
    one element or None. The Triton path returns x's dtype (the reference promotes a bf16 x with an
    fp32 bias to fp32); inputs its kernels do not cover (see the module docstring) follow the
    fallback rule of :mod:`.backend`."""
    shape = _noise_shape(x, noise)
    if not runs_triton("bias_act", x, _uncovered(x, noise, noise_weight, shape, negative_slope, gain)):
        return bias_act_reference(x, bias, noise, noise_weight, negative_slope, gain)
    if noise is not None:
        noise = noise.reshape(shape).expand(x.shape[0], 1, *x.shape[2:])
    if bias is not None and bias.shape != (x.shape[1],):
        bias = bias.reshape(x.shape[1])
    return torch.ops.ssgan.bias_act(x, bias, noise, noise_weight, float(negative_slope), float(gain))


def _noise_shape(x: torch.Tensor, noise: torch.Tensor | None) -> tuple[int, ...] | None:
    """noise's shape left-padded with ones to x's number of dims (None without noise)."""
    return None if noise is None else (1,) * (x.ndim - noise.ndim) + tuple(noise.shape)


def _uncovered(x, noise, noise_weight, shape, negative_slope, gain) -> str | None:
    """Why the kernels do not cover these inputs (None: they do)."""
    if x.ndim < 2:
        return "x needs a channel axis (at least 2 dims)"
    if not (gain > 0 and negative_slope >= 0):  # the backward reads the slope mask off the sign of y
        return f"gain {gain} must be > 0 and negative_slope {negative_slope} >= 0"
    if why := dtype_uncovered(x.dtype):
        return why
    if noise is not None:
        if noise_weight is None or noise_weight.numel() != 1:
            return "noise needs a one-element noise_weight"
        if len(shape) != x.ndim or shape[1] != 1 or any(
                s not in (1, t) for s, t in zip(shape, x.shape, strict=False)):
            return f"noise {tuple(noise.shape)} does not broadcast to (N, 1, *S) of x {tuple(x.shape)}"
    return None


def bias_act_reference(x: torch.Tensor, bias: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                       noise_weight: torch.Tensor | None = None, negative_slope: float = 0.2,
                       gain: float = SQRT2) -> torch.Tensor:
    """The op in plain PyTorch (the mathematical truth)."""
    if noise is not None:
        x = x + noise_weight * noise
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * gain


# ------------------------------------------------------------------------------------------------
# Triton kernels
# ------------------------------------------------------------------------------------------------

_MIN_BLOCK = 1024
# Under the interpreter: one fixed, large block (fewer simulated programs), no benchmarking.
_INTERPRET_BLOCK = 4096


def _split(v: float) -> tuple[float, float]:
    """v as float32 hi + lo (kernel scalars are float32; see ``_prologue``)."""
    hi = struct.unpack("f", struct.pack("f", v))[0]
    return hi, struct.unpack("f", struct.pack("f", v - hi))[0]


if triton is not None:
    _CONFIGS = configs(("BLOCK",), [(1024, 4), (2048, 4), (2048, 8), (4096, 8), (8192, 8)])

    @triton.jit
    def _prologue(a_ptr, R, Q, slope, slope_lo, gain, gain_lo, ACC: tl.constexpr, INT64: tl.constexpr,
                  BQ: tl.constexpr, BLOCK: tl.constexpr):
        """This program's [BR, BQ] tile of the [R, Q] matrix (ids, indices, masks, offsets), the
        float scalars and the tile of ``a_ptr``, both in ACC. Float scalars arrive as float32; for
        a float64 ACC, hi + lo restores them to ~2^-48 (see ``_split``)."""
        BR: tl.constexpr = BLOCK // BQ
        pid = tl.program_id(0)
        n_q = tl.cdiv(Q, BQ)
        pid_r = pid // n_q
        pid_q = pid % n_q
        rows = pid_r * BR + tl.arange(0, BR)
        cols = pid_q * BQ + tl.arange(0, BQ)
        if INT64:
            rows = rows.to(tl.int64)
        rmask = rows < R
        cmask = cols < Q
        offs = rows[:, None] * Q + cols[None, :]
        mask = rmask[:, None] & cmask[None, :]
        if ACC == tl.float64:
            slope = tl.cast(slope, tl.float64) + tl.cast(slope_lo, tl.float64)
            gain = tl.cast(gain, tl.float64) + tl.cast(gain_lo, tl.float64)
        a = tl.load(a_ptr + offs, mask=mask, other=0.0).to(ACC)
        return pid, pid_r, pid_q, rows, cols, rmask, cmask, offs, mask, slope, gain, a

    @triton.jit
    def _noise(n_ptr, rows, cols, rmask, mask, C, P, ACC: tl.constexpr, CL: tl.constexpr):
        """The tile's noise in ACC: (BR, 1) channels-last (one value a pixel row), else (BR, BQ)."""
        if CL:
            nz = tl.load(n_ptr + rows, mask=rmask, other=0.0).to(ACC)[:, None]
        else:
            nz = tl.load(n_ptr + (rows // C)[:, None] * P + cols[None, :], mask=mask, other=0.0).to(ACC)
        return nz

    @triton.jit
    def _bias_act_fwd_kernel(
        x_ptr, b_ptr, n_ptr, nw_ptr, y_ptr, R, Q, C, P, slope, slope_lo, gain, gain_lo,
        HAS_BIAS: tl.constexpr, HAS_NOISE: tl.constexpr, CL: tl.constexpr, ACC: tl.constexpr,
        INT64: tl.constexpr, BQ: tl.constexpr, BLOCK: tl.constexpr,
    ):
        pid, pid_r, pid_q, rows, cols, rmask, cmask, offs, mask, slope, gain, z = _prologue(
            x_ptr, R, Q, slope, slope_lo, gain, gain_lo, ACC, INT64, BQ, BLOCK)
        if HAS_NOISE:
            z = z + tl.load(nw_ptr).to(ACC) * _noise(n_ptr, rows, cols, rmask, mask, C, P, ACC, CL)
        if HAS_BIAS:
            if CL:
                b = tl.load(b_ptr + cols, mask=cmask, other=0.0).to(ACC)[None, :]
            else:
                b = tl.load(b_ptr + rows % C, mask=rmask, other=0.0).to(ACC)[:, None]
            z = z + b
        y = tl.where(z > 0, z, z * slope) * gain
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _bias_act_bwd_kernel(
        g_ptr, y_ptr, n_ptr, gx_ptr, pb_ptr, pnw_ptr, R, Q, C, P, slope, slope_lo, gain, gain_lo,
        NEED_GB: tl.constexpr, NEED_GNW: tl.constexpr, CL: tl.constexpr, ACC: tl.constexpr,
        INT64: tl.constexpr, BQ: tl.constexpr, BLOCK: tl.constexpr,
    ):
        pid, pid_r, pid_q, rows, cols, rmask, cmask, offs, mask, slope, gain, g = _prologue(
            g_ptr, R, Q, slope, slope_lo, gain, gain_lo, ACC, INT64, BQ, BLOCK)
        y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(ACC)
        gx = tl.where(y > 0, g * gain, g * (gain * slope))
        tl.store(gx_ptr + offs, gx.to(gx_ptr.dtype.element_ty), mask=mask)
        if NEED_GB:
            # partial sums of grad bias: one row of the partial buffer per tile of the summed axis
            if CL:
                tl.store(pb_ptr + pid_r * Q + cols, tl.sum(gx, axis=0), mask=cmask)
            else:
                tl.store(pb_ptr + pid_q * R + rows, tl.sum(gx, axis=1), mask=rmask)
        if NEED_GNW:
            nz = _noise(n_ptr, rows, cols, rmask, mask, C, P, ACC, CL)
            tl.store(pnw_ptr + pid, tl.sum(tl.sum(gx * nz, axis=1), axis=0))

    # Partial-sum buffers are sized for the smallest BLOCK and zeroed before every autotuning trial.
    _fwd_tuned = autotune(_bias_act_fwd_kernel, _CONFIGS, key=["R", "Q", "CL"])
    _bwd_tuned = autotune(_bias_act_bwd_kernel, _CONFIGS, key=["R", "Q", "CL", "NEED_GB", "NEED_GNW"],
                          reset_to_zero=["pb_ptr", "pnw_ptr"])


# ------------------------------------------------------------------------------------------------
# Launchers
# ------------------------------------------------------------------------------------------------

def _geometry(x: torch.Tensor, cl: bool) -> tuple[int, int, int, int, int]:
    N, C = x.shape[0], x.shape[1]
    P = x.numel() // max(N * C, 1)
    R, Q = (N * P, C) if cl else (N * C, P)
    BQ = min(triton.next_power_of_2(max(Q, 1)), _MIN_BLOCK)
    return R, Q, C, P, BQ


def _launch(tuned, R: int, Q: int, BQ: int, *args, **meta) -> None:
    """One program a [BLOCK // BQ, BQ] tile of the [R, Q] matrix (BQ divides BLOCK: both are
    powers of two, BQ <= _MIN_BLOCK <= BLOCK); under the interpreter one fixed, large BLOCK."""
    fixed = {"BLOCK": max(_INTERPRET_BLOCK, BQ)} if interpreting() else None
    launch(tuned, grid([(R * BQ, "BLOCK"), triton.cdiv(Q, BQ)]), *args, fixed=fixed, BQ=BQ, **meta)


def _noise_rows(noise: torch.Tensor, N: int, P: int) -> torch.Tensor:
    """The (N, 1, *S) noise as N·P contiguous values (a copy only if it was broadcast)."""
    return noise.reshape(N * P).contiguous()


# ------------------------------------------------------------------------------------------------
# Custom ops and autograd
# ------------------------------------------------------------------------------------------------

@torch.library.custom_op("ssgan::bias_act", mutates_args=())
def _bias_act_op(
    x: torch.Tensor, bias: torch.Tensor | None, noise: torch.Tensor | None,
    noise_weight: torch.Tensor | None, negative_slope: float, gain: float,
) -> torch.Tensor:
    x, cl = layout(x)
    y = torch.empty_like(x)
    if x.numel() == 0:
        return y
    R, Q, C, P, BQ = _geometry(x, cl)
    has_noise = noise is not None
    nz = _noise_rows(noise, x.shape[0], P) if has_noise else x
    b = bias.contiguous() if bias is not None else x
    nw = noise_weight if has_noise else x
    args = (x, b, nz, nw, y, R, Q, C, P, *_split(negative_slope), *_split(gain))
    _launch(_fwd_tuned, R, Q, BQ, *args, HAS_BIAS=bias is not None, HAS_NOISE=has_noise, CL=cl,
            **precision(x.dtype), INT64=x.numel() >= 2**31)
    return y


@_bias_act_op.register_fake
def _(x, bias, noise, noise_weight, negative_slope, gain):
    return torch.empty_like(layout(x)[0])


@torch.library.custom_op("ssgan::bias_act_backward", mutates_args=())
def _bias_act_backward_op(
    g: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None, negative_slope: float, gain: float,
    need_bias: bool, need_noise_weight: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad x, grad bias (C,) or empty, grad noise_weight (1,) or empty), sums in float32/64."""
    y, cl = layout(y)
    g = g.contiguous(memory_format=torch.channels_last) if cl and y.ndim == 4 else g.contiguous()
    gx = torch.empty_like(y)
    R, Q, C, P, BQ = _geometry(y, cl)
    acc = accumulator(y.dtype)
    need_nw = need_noise_weight and noise is not None
    n_q = triton.cdiv(Q, BQ)
    max_r_tiles = triton.cdiv(R, _MIN_BLOCK // BQ) if R else 0
    if need_bias:
        pb = torch.zeros((max_r_tiles, C) if cl else (n_q, R), device=y.device, dtype=acc)
    else:
        pb = torch.empty(0, device=y.device, dtype=acc)
    pnw = torch.zeros(max_r_tiles * n_q if need_nw else 0, device=y.device, dtype=acc)
    if y.numel():
        nz = _noise_rows(noise, y.shape[0], P) if need_nw else y
        args = (g, y, nz, gx, pb if need_bias else gx, pnw if need_nw else gx, R, Q, C, P,
                *_split(negative_slope), *_split(gain))
        _launch(_bwd_tuned, R, Q, BQ, *args, NEED_GB=need_bias, NEED_GNW=need_nw, CL=cl,
                **precision(y.dtype), INT64=y.numel() >= 2**31)
    if need_bias:
        gb = pb.sum(0) if cl else pb.sum(0).view(y.shape[0], C).sum(0)
    else:
        gb = torch.empty(0, device=y.device, dtype=acc)
    gnw = pnw.sum().reshape(1) if need_nw else torch.empty(0, device=y.device, dtype=acc)
    return gx, gb, gnw


@_bias_act_backward_op.register_fake
def _(g, y, noise, negative_slope, gain, need_bias, need_noise_weight):
    y = layout(y)[0]
    acc = accumulator(y.dtype)
    gb = y.new_empty((y.shape[1] if need_bias else 0,), dtype=acc)
    gnw = y.new_empty((1 if need_noise_weight and noise is not None else 0,), dtype=acc)
    return torch.empty_like(y), gb, gnw


def _bias_act_setup(ctx, inputs, output):
    x, bias, noise, noise_weight, slope, gain = inputs
    ctx.slope, ctx.gain = slope, gain
    ctx.need = (x.requires_grad, bias is not None and bias.requires_grad,
                noise is not None and noise.requires_grad,
                noise_weight is not None and noise is not None and noise_weight.requires_grad)
    ctx.bias_dtype = bias.dtype if bias is not None else None
    ctx.save_for_backward(output, noise, noise_weight)


def _bias_act_grad(ctx, gy):
    y, noise, noise_weight = ctx.saved_tensors
    need_x, need_b, need_n, need_nw = ctx.need
    gx, gb, gnw = torch.ops.ssgan.bias_act_backward(gy, y, noise, ctx.slope, ctx.gain, need_b, need_nw)
    grad_b = gb.to(ctx.bias_dtype) if need_b else None
    grad_nw = gnw.to(noise_weight.dtype).reshape(noise_weight.shape) if need_nw else None
    grad_n = (noise_weight * gx.sum(dim=1, keepdim=True)).to(noise.dtype) if need_n else None
    return (gx if need_x else None), grad_b, grad_n, grad_nw, None, None


_bias_act_op.register_autograd(_bias_act_grad, setup_context=_bias_act_setup)


def _bias_act_backward_setup(ctx, inputs, output):
    g, y, noise, slope, gain, need_bias, need_nw = inputs
    ctx.slope, ctx.gain = slope, gain
    ctx.need_noise = noise is not None and noise.requires_grad
    ctx.save_for_backward(y, noise if (need_nw or ctx.need_noise) else None, output[0])


def _bias_act_backward_grad(ctx, ggx, ggb, ggnw):
    """Grads of (grad x, grad bias, grad noise_weight) w.r.t. (g, y, noise): see the module doc."""
    y, noise, gx = ctx.saved_tensors
    C = y.shape[1]
    z = torch.zeros_like(y) if ggx is None else ggx
    if ggb is not None and ggb.numel():
        z = z + ggb.to(y.dtype).view(1, C, *([1] * (y.ndim - 2)))
    if ggnw is not None and ggnw.numel() and noise is not None:
        z = z + ggnw.to(y.dtype) * noise
    grad_g = torch.ops.ssgan.bias_act_backward(z, y, None, ctx.slope, ctx.gain, False, False)[0]
    grad_noise = None
    if ctx.need_noise and ggnw is not None and ggnw.numel():
        grad_noise = (ggnw.to(gx.dtype) * gx.sum(dim=1, keepdim=True)).to(noise.dtype)
    return grad_g, None, grad_noise, None, None, None, None


_bias_act_backward_op.register_autograd(_bias_act_backward_grad, setup_context=_bias_act_backward_setup)
