"""upfirdn2d: upsample by zero insertion, pad, FIR-filter, downsample.

For input x (N, C, H, W), a 2-D filter f (kh, kw), factors ``up`` and ``down`` and padding
(x0, x1, y0, y1) (negative values crop):

    u[n, c, i, j] = x[n, c, i / up, j / up] if up divides i and j, else 0
    v             = pad(u, x0, x1, y0, y1)
    y[n, c, i, j] = sum_{a,b} v[n, c, i·down + a, j·down + b] · f[kh - 1 - a, kw - 1 - b]

i.e. a true convolution with f (the filter flipped, as the official op does) sampled every
``down`` pixels. Output size: (H·up + y0 + y1 - kh) // down + 1, likewise for the width.

Triton implementation
---------------------
One kernel does all four steps: every output pixel gathers its kh×kw taps straight from x
(the tap at padded/upsampled row ``q = i·down + a - y0`` exists only when ``q >= 0``,
``up`` divides q and ``q/up < H``), so neither the zero-inserted nor the padded image is
ever stored. Two layouts: contiguous NCHW (one program per (n, c) plane tile [BH, BW]) and
channels-last (one program per output row tile [BW pixels, BC channels], channels
vectorised). The output keeps x's layout and dtype; sums are in float32 (float64 for float64).

Backward: upfirdn2d is linear in x and its adjoint is again an upfirdn2d — the flipped filter,
``up`` and ``down`` swapped, and the pads (per axis, k taps, input size n, output size m)

    before' = k - before - 1,    after' = n·up - m·down + before - up + 1

(the after-pad makes the adjoint's output exactly n long). The backward calls the same custom
op, so double backward (R1, path length) comes for free.

The kernels cover 4-D float16 / bfloat16 / float32 / float64 x, a 2-D filter that is constant
(no gradient wanted) and up, down >= 1; other inputs follow the fallback rule of :mod:`.backend`
(reference maths, or an error if ``triton`` was forced).
"""


from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .backend import dtype_uncovered, interpreting, runs_triton, tl, triton
from .launch import accumulator, autotune, configs, grid, launch, layout, precision, prune_blocks


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: Sequence[int] = (0, 0)
) -> torch.Tensor:
    """Upsample x (N, C, H, W) by ``up``, pad by ``pad`` ((x0, x1) for both axes or (x0, x1, y0,
    y1); negative values crop), convolve with ``kernel`` (kh, kw) and keep every ``down``-th pixel
    (the module docstring has the formula), on the backend chosen by :mod:`.backend` (the maths:
    :func:`upfirdn2d_reference`). Inputs the kernels do not cover (a filter that requires grad,
    see the module docstring) follow the fallback rule of :mod:`.backend`."""
    x0, x1, y0, y1 = _pad4(pad)
    if not runs_triton("upfirdn2d", x, _uncovered(x, kernel, up, down)):
        return upfirdn2d_reference(x, kernel, up, down, (x0, x1, y0, y1))
    return torch.ops.ssgan.upfirdn2d(x, kernel, int(up), int(down), int(x0), int(x1), int(y0), int(y1))


def _uncovered(x: torch.Tensor, kernel: torch.Tensor, up: int, down: int) -> str | None:
    """Why the kernels do not cover these inputs (None: they do)."""
    if x.ndim != 4 or kernel.ndim != 2:
        return f"x must be 4-D and the filter 2-D, got {x.ndim}-D and {kernel.ndim}-D"
    if up < 1 or down < 1:
        return f"up {up} and down {down} must be >= 1"
    if why := dtype_uncovered(x.dtype):
        return why
    if kernel.requires_grad and torch.is_grad_enabled():
        return "the filter requires grad (the kernels treat it as a constant)"
    return None


def _pad4(pad: Sequence[int]) -> tuple[int, int, int, int]:
    if len(pad) == 2:
        return (pad[0], pad[1], pad[0], pad[1])
    if len(pad) == 4:
        return tuple(pad)  # type: ignore[return-value]
    raise ValueError(f"pad must have 2 or 4 entries, got {pad!r}")


def upfirdn2d_reference(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: Sequence[int] = (0, 0)
) -> torch.Tensor:
    """The op in plain PyTorch (the mathematical truth)."""
    x0, x1, y0, y1 = _pad4(pad)
    N, C, H, W = x.shape
    if up > 1:
        x = F.pad(x.reshape(N, C, H, 1, W, 1), [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(N, C, H * up, W * up)
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    f = kernel.flip([0, 1]).to(x.dtype)[None, None].expand(C, 1, *kernel.shape)
    return F.conv2d(x, f, stride=down, groups=C)


# ------------------------------------------------------------------------------------------------
# Triton kernels
# ------------------------------------------------------------------------------------------------


if triton is not None:
    @triton.jit
    def _rows(q, H, UP: tl.constexpr):
        """(valid, index) of upsampled/padded coordinates q in an axis of length H before upsampling."""
        if UP == 1:
            valid = (q >= 0) & (q < H)
            idx = q
        else:
            valid = (q >= 0) & (q % UP == 0) & (q < H * UP)
            idx = q // UP
        return valid, idx

    @triton.jit
    def _unravel(n0, n1):
        """This program's (i0, i1, rest) with program id = (rest · n1 + i1) · n0 + i0."""
        pid = tl.program_id(0)
        t = pid // n0
        return pid % n0, t % n1, t // n1

    @triton.jit
    def _taps(x_ptr, f_ptr, oi, oj, cc, cmask, n, C, H, W, PX0, PY0, UP: tl.constexpr, DOWN: tl.constexpr,
              KH: tl.constexpr, KW: tl.constexpr, ACC: tl.constexpr, NHWC: tl.constexpr,
              S0: tl.constexpr, S1: tl.constexpr):
        """The [S0, S1] tile of y = Σ_{a,b} v[i·down + a, j·down + b] · f[kh-1-a, kw-1-b], gathered
        from x. NCHW: x_ptr is the (n, c) plane, rows oi (S0) × columns oj (S1) (cc, cmask, n, C
        unused). NHWC: one output row; pixels oj (S0, oi their row as a vector) × channels cc (S1)
        of sample n. Sums in ACC."""
        acc = tl.zeros([S0, S1], dtype=ACC)
        for a in tl.static_range(KH):
            rv, r = _rows(oi * DOWN + (a - PY0), H, UP)
            for b in tl.static_range(KW):
                cv, c = _rows(oj * DOWN + (b - PX0), W, UP)
                w = tl.load(f_ptr + ((KH - 1 - a) * KW + (KW - 1 - b))).to(ACC)
                if NHWC:
                    pix = (n * H + r) * W + c
                    v = tl.load(x_ptr + pix[:, None] * C + cc[None, :],
                                mask=(rv & cv)[:, None] & cmask[None, :], other=0.0)
                else:
                    v = tl.load(x_ptr + r[:, None] * W + c[None, :], mask=rv[:, None] & cv[None, :],
                                other=0.0)
                acc += v.to(ACC) * w
        return acc

    @triton.jit
    def _upfirdn2d_nchw_kernel(
        x_ptr, f_ptr, y_ptr, H, W, OH, OW, PX0, PY0,
        UP: tl.constexpr, DOWN: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
        ACC: tl.constexpr, INT64: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
    ):
        tw, th, plane = _unravel(tl.cdiv(OW, BW), tl.cdiv(OH, BH))
        if INT64:
            plane = plane.to(tl.int64)
        oi = th * BH + tl.arange(0, BH)
        oj = tw * BW + tl.arange(0, BW)
        acc = _taps(x_ptr + plane * H * W, f_ptr, oi, oj, oj, oj < OW, 0, 1, H, W, PX0, PY0,
                    UP, DOWN, KH, KW, ACC, False, BH, BW)
        omask = (oi < OH)[:, None] & (oj < OW)[None, :]
        tl.store(y_ptr + plane * OH * OW + oi[:, None] * OW + oj[None, :], acc.to(y_ptr.dtype.element_ty),
                 mask=omask)

    @triton.jit
    def _upfirdn2d_nhwc_kernel(
        x_ptr, f_ptr, y_ptr, C, H, W, OH, OW, PX0, PY0,
        UP: tl.constexpr, DOWN: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
        ACC: tl.constexpr, INT64: tl.constexpr, BW: tl.constexpr, BC: tl.constexpr,
    ):
        tc, tw, t = _unravel(tl.cdiv(C, BC), tl.cdiv(OW, BW))
        oi = t % OH
        n = t // OH
        if INT64:
            n = n.to(tl.int64)
        oj = tw * BW + tl.arange(0, BW)
        cc = tc * BC + tl.arange(0, BC)
        cmask = cc < C
        # the output row as a vector over the tile's pixels: keeps every mask a tensor (the Triton
        # interpreter mis-types tensor & scalar-bool masks)
        oi_v = oi + tl.zeros([BW], dtype=oi.dtype)
        acc = _taps(x_ptr, f_ptr, oi_v, oj, cc, cmask, n, C, H, W, PX0, PY0,
                    UP, DOWN, KH, KW, ACC, True, BW, BC)
        omask = (oj < OW)[:, None] & cmask[None, :]
        tl.store(y_ptr + ((n * OH + oi) * OW + oj[:, None]) * C + cc[None, :], acc.to(y_ptr.dtype.element_ty),
                 mask=omask)

    _nchw_tuned = autotune(
        _upfirdn2d_nchw_kernel,
        configs(("BH", "BW"), [(4, 16, 2), (8, 16, 4), (8, 32, 4), (16, 32, 4), (8, 64, 4), (16, 64, 4),
                               (32, 64, 8), (32, 32, 4)]),
        key=["H", "W", "OH", "OW", "UP", "DOWN", "KH", "KW"],
        prune=prune_blocks(("BH", "OH", 4), ("BW", "OW", 16)),
    )
    _nhwc_tuned = autotune(
        _upfirdn2d_nhwc_kernel,
        configs(("BW", "BC"), [(4, 16, 2), (8, 32, 4), (16, 32, 4), (32, 32, 4), (8, 64, 4), (16, 64, 4),
                               (4, 128, 4), (8, 128, 8), (32, 16, 4)]),
        key=["C", "H", "W", "OH", "OW", "UP", "DOWN", "KH", "KW"],
        prune=prune_blocks(("BW", "OW", 4), ("BC", "C", 16)),
    )


# ------------------------------------------------------------------------------------------------
# Launchers
# ------------------------------------------------------------------------------------------------

def _out_size(n: int, k: int, up: int, down: int, p0: int, p1: int) -> int:
    m = (n * up + p0 + p1 - k) // down + 1
    if m <= 0:
        raise ValueError(f"upfirdn2d: empty output (size {n}, kernel {k}, up {up}, down {down}, "
                         f"pad {p0, p1})")
    return m


def _empty_out(x: torch.Tensor, f: torch.Tensor, up, down, px0, px1, py0, py1) -> tuple[torch.Tensor, bool]:
    x, cl = layout(x)
    N, C, H, W = x.shape
    OH = _out_size(H, f.shape[0], up, down, py0, py1)
    OW = _out_size(W, f.shape[1], up, down, px0, px1)
    fmt = torch.channels_last if cl else torch.contiguous_format
    return torch.empty((N, C, OH, OW), dtype=x.dtype, device=x.device, memory_format=fmt), cl


# ------------------------------------------------------------------------------------------------
# Custom ops and autograd
# ------------------------------------------------------------------------------------------------

@torch.library.custom_op("ssgan::upfirdn2d", mutates_args=())
def _upfirdn2d_op(x: torch.Tensor, f: torch.Tensor, up: int, down: int,
                  px0: int, px1: int, py0: int, py1: int) -> torch.Tensor:
    y, cl = _empty_out(x, f, up, down, px0, px1, py0, py1)
    x = layout(x)[0]
    if y.numel() == 0:
        return y
    f = f.to(device=x.device, dtype=accumulator(x.dtype)).contiguous()
    N, C, H, W = x.shape
    OH, OW = y.shape[2:]
    KH, KW = f.shape
    meta = dict(UP=up, DOWN=down, KH=KH, KW=KW, **precision(x.dtype),
                INT64=max(x.numel(), y.numel()) >= 2**31)
    np2 = triton.next_power_of_2
    if cl:  # one program per (n, output row, BW pixels, BC channels)
        tuned, args = _nhwc_tuned, (x, f, y, C, H, W, OH, OW, px0, py0)
        programs = grid([N * OH, (OW, "BW"), (C, "BC")])
        fixed = {"BW": min(np2(OW), 32), "BC": min(np2(C), 64)}
    else:  # one program per (n, c) plane tile [BH, BW]
        tuned, args = _nchw_tuned, (x, f, y, H, W, OH, OW, px0, py0)
        programs = grid([N * C, (OH, "BH"), (OW, "BW")])
        fixed = {"BH": min(np2(OH), 32), "BW": min(np2(OW), 64)}
    # fixed blocks under the interpreter: it would time every config in Python
    launch(tuned, programs, *args, fixed=fixed if interpreting() else None, **meta)
    return y


@_upfirdn2d_op.register_fake
def _(x, f, up, down, px0, px1, py0, py1):
    return _empty_out(x, f, up, down, px0, px1, py0, py1)[0]


def _upfirdn2d_setup(ctx, inputs, output):
    x, f, up, down, px0, px1, py0, py1 = inputs
    ctx.save_for_backward(f)  # a constant filter (a trainable one takes the reference path)
    ctx.args = (up, down, px0, px1, py0, py1, x.shape[2], x.shape[3], output.shape[2], output.shape[3])


def _upfirdn2d_grad(ctx, gy):
    up, down, px0, px1, py0, py1, H, W, OH, OW = ctx.args
    (f,) = ctx.saved_tensors
    kh, kw = f.shape
    gx = torch.ops.ssgan.upfirdn2d(
        gy, f.flip([0, 1]), down, up,
        kw - px0 - 1, W * up - OW * down + px0 - up + 1,
        kh - py0 - 1, H * up - OH * down + py0 - up + 1,
    )
    return gx, None, None, None, None, None, None, None


_upfirdn2d_op.register_autograd(_upfirdn2d_grad, setup_context=_upfirdn2d_setup)
