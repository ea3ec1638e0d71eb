"""Triton bias_act and upfirdn2d against the reference maths.

On CPU the kernels run under Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1
before anything imports triton), so shapes are small; with a GPU the same tests run on CUDA
tensors, and the cuda-marked tests repeat the parity checks at render-net shapes.

Tolerances (float32): bias_act performs exactly the reference's float32 operations in the same
order (x + w·noise, + bias, leaky ReLU, × gain), so outputs and grad x agree to an ulp or two
(a GPU may contract into FMAs): rtol 1e-6, atol 1e-6. Grad bias / noise_weight / noise are
sums over up to a few hundred elements in a different order: rtol 1e-5, atol 1e-5. upfirdn2d
sums its 16 taps in another order than cuDNN/ATen's conv: rtol 1e-5, atol 1e-6. bf16: the
kernels compute in float32 and round once; on a GPU (round to nearest) the result is within half
a bf16 ulp (2^-9 relative) of the float32 reference on the same bf16 inputs: rtol 2^-8. The
interpreter rounds float32 -> bf16 toward zero (it ignores fp_downcast_rounding), up to one ulp
(2^-8 relative, at most 2^-7 counting the ulp's binade): rtol 2^-7 on CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from ssgan.kernels import (
    TritonUnavailable,
    bias_act,
    bias_act_reference,
    upfirdn2d,
    upfirdn2d_reference,
    use_backend,
)

# CPU tensors under the interpreter; with a GPU the same tests run the compiled kernels on CUDA
# tensors (factory functions default to this device inside every test, see _on_device).
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(autouse=True)
def _on_device(monkeypatch):
    # the reference's depthwise conv must not run in TF32 on a GPU (it is the float32 truth)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    with DEVICE:
        yield


_ALLOW_FALLBACK = {"test_bias_act_reference_backend_is_the_reference",
                   "test_upfirdn2d_trainable_kernel_is_not_covered"}


@pytest.fixture(autouse=True)
def _no_silent_fallback(request, monkeypatch):
    """Under the triton backend the public ops must not quietly take the reference path: the
    reference functions the dispatchers would fall back to raise (the tests' own reference
    calls use the functions imported above, which stay intact)."""
    if request.function.__name__ in _ALLOW_FALLBACK:
        return

    def forbidden(*args, **kwargs):
        raise AssertionError("the triton backend fell back to the reference maths")

    monkeypatch.setattr(sys.modules["ssgan.kernels.bias_act"], "bias_act_reference", forbidden)
    monkeypatch.setattr(sys.modules["ssgan.kernels.upfirdn2d"], "upfirdn2d_reference", forbidden)


F32 = dict(rtol=1e-6, atol=1e-6)
F32_SUM = dict(rtol=1e-5, atol=1e-5)
F32_FIR = dict(rtol=1e-5, atol=1e-6)
BF16 = dict(rtol=2.0**-7, atol=1e-5)  # interpreter: truncation
BF16_GPU = dict(rtol=2.0**-8, atol=1e-5)  # round to nearest


def blur_kernel(scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=dtype)
    k = k[:, None] * k[None, :]
    return k / k.sum() * scale


def _grads(fn, inputs, g):
    inputs = [t.detach().clone().requires_grad_(t.is_floating_point()) if t is not None else None
              for t in inputs]
    y = fn(*inputs)
    leaves = [t for t in inputs if t is not None]
    return y, torch.autograd.grad(y, leaves, g)


# ------------------------------------------------------------------------------------------------
# bias_act
# ------------------------------------------------------------------------------------------------

def _bias_act_inputs(shape, channels_last=False, with_bias=True, noise="per-sample", dtype=torch.float32):
    x = torch.randn(shape, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    C = shape[1]
    b = torch.randn(C) if with_bias else None
    nz = nw = None
    if noise == "per-sample":
        nz, nw = torch.randn(shape[0], 1, *shape[2:], dtype=dtype), torch.randn(1)
    elif noise == "shared":
        nz, nw = torch.randn(1, 1, *shape[2:], dtype=dtype), torch.randn(1)
    return [x, b, nz, nw]


BIAS_ACT_CASES = [
    pytest.param((2, 5, 7, 9), False, True, "per-sample", id="nchw"),
    pytest.param((2, 5, 7, 9), True, True, "per-sample", id="channels_last"),
    pytest.param((1, 3, 7, 9), False, True, "shared", id="N1-shared-noise"),
    pytest.param((2, 3, 7, 9), True, False, "shared", id="cl-no-bias"),
    pytest.param((2, 5, 7, 9), False, True, None, id="no-noise"),
    pytest.param((3, 5), False, True, None, id="2d-linear"),
    pytest.param((2, 3, 2, 3, 5), False, True, None, id="5d"),
]


@pytest.mark.parametrize("shape,channels_last,with_bias,noise", BIAS_ACT_CASES)
def test_bias_act_matches_reference(shape, channels_last, with_bias, noise):
    inputs = _bias_act_inputs(shape, channels_last, with_bias, noise)
    g = torch.randn(shape)
    with use_backend("triton"):
        y, grads = _grads(bias_act, inputs, g)
    y_ref, grads_ref = _grads(bias_act_reference, inputs, g)
    torch.testing.assert_close(y, y_ref, **F32)
    if channels_last:  # the output keeps the input's layout
        assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(grads[0], grads_ref[0], **F32)
    for got, want in zip(grads[1:], grads_ref[1:], strict=True):
        torch.testing.assert_close(got, want, **F32_SUM)


def test_bias_act_non_dense_input_and_slope_variants():
    x = torch.randn(2, 4, 6, 10)[:, :, :, ::2]  # neither contiguous nor channels-last
    b = torch.randn(4)
    g = torch.randn(2, 4, 6, 5)
    for slope, gain in ((0.2, 2**0.5), (0.0, 1.0), (0.5, 3.0)):
        kw = dict(negative_slope=slope, gain=gain)
        with use_backend("triton"):
            y, (gx, gb) = _grads(lambda x, b, kw=kw: bias_act(x, b, **kw), [x, b], g)
        y_ref, (gx_ref, gb_ref) = _grads(lambda x, b, kw=kw: bias_act_reference(x, b, **kw), [x, b], g)
        torch.testing.assert_close(y, y_ref, **F32)
        torch.testing.assert_close(gx, gx_ref, **F32)
        torch.testing.assert_close(gb, gb_ref, **F32_SUM)


def test_bias_act_bf16():
    x, b, nz, nw = _bias_act_inputs((2, 5, 7, 9), channels_last=True, dtype=torch.bfloat16)
    g = torch.randn(2, 5, 7, 9, dtype=torch.bfloat16)
    with use_backend("triton"):
        y, (gx, gb, gn, gnw) = _grads(bias_act, [x, b, nz, nw], g)
    assert y.dtype == torch.bfloat16 and gx.dtype == torch.bfloat16 and gb.dtype == torch.float32
    up = [t.float() for t in (x, b, nz, nw)]
    y_ref, (gx_ref, gb_ref, gn_ref, gnw_ref) = _grads(bias_act_reference, up, g.float())
    torch.testing.assert_close(y.float(), y_ref, **BF16)
    torch.testing.assert_close(gx.float(), gx_ref, **BF16)
    # grad bias / noise_weight are float32 sums of the unrounded float32 grad x
    torch.testing.assert_close(gb, gb_ref, **F32_SUM)
    torch.testing.assert_close(gnw, gnw_ref, rtol=1e-5, atol=1e-4)
    # grad noise is Σ_c of the bf16 grad x: bf16-rounded terms
    torch.testing.assert_close(gn.float(), gn_ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.slow
def test_bias_act_gradgradcheck(channels_last):
    x, b, nz, nw = (t.double() for t in _bias_act_inputs((2, 3, 3, 4), channels_last))
    assert x.is_contiguous(memory_format=torch.channels_last) == channels_last
    inputs = tuple(t.requires_grad_() for t in (x, b, nz, nw))
    with use_backend("triton"):
        assert torch.autograd.gradcheck(bias_act, inputs)
        assert torch.autograd.gradgradcheck(bias_act, inputs, fast_mode=True)


def test_bias_act_double_backward_matches_reference():
    """R1-style penalty: grad of |d out / d x|² w.r.t. x and the parameters, vs the reference."""
    x, b, nz, nw = _bias_act_inputs((2, 3, 5, 4), channels_last=True)
    x = x.double()
    b, nz, nw = b.double(), nz.double(), nw.double()

    def penalty(fn):
        ins = [t.detach().clone().requires_grad_() for t in (x, b, nz, nw)]
        y = fn(*ins)
        (gx,) = torch.autograd.grad((y * y).sum(), ins[0], create_graph=True)
        return torch.autograd.grad(gx.square().sum() + gx.sum(), ins)

    with use_backend("triton"):
        got = penalty(bias_act)
    want = penalty(bias_act_reference)
    for a, w in zip(got, want, strict=True):
        torch.testing.assert_close(a, w, rtol=1e-10, atol=1e-10)


def test_bias_act_reference_backend_is_the_reference():
    x, b, nz, nw = _bias_act_inputs((1, 3, 4, 4))
    with use_backend("reference"):
        assert torch.equal(bias_act(x, b, nz, nw), bias_act_reference(x, b, nz, nw))


# ------------------------------------------------------------------------------------------------
# upfirdn2d
# ------------------------------------------------------------------------------------------------

# (shape, up, down, pad, kernel scale): the model's three uses, then general cases
UPFIRDN_CASES = [
    pytest.param((2, 3, 9, 11), 1, 1, (1, 1), 4.0, id="blur-after-transposed-conv3x3"),
    pytest.param((1, 5, 7, 9), 2, 1, (2, 1), 4.0, id="upsample-skip"),
    pytest.param((2, 3, 7, 9), 1, 1, (2, 2), 1.0, id="blur-before-stride2-conv3x3"),
    pytest.param((2, 5, 8, 8), 1, 1, (1, 1), 1.0, id="blur-before-stride2-conv1x1"),
    pytest.param((2, 3, 7, 9), 1, 2, (1, 1), 1.0, id="down2"),
    pytest.param((1, 3, 7, 9), 2, 2, (2, 1, -1, 0), 4.0, id="up2-down2-negative-pad"),
    pytest.param((2, 5, 7, 9), 1, 1, (-1, 2, 0, -2), 1.0, id="crop"),
]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("shape,up,down,pad,scale", UPFIRDN_CASES)
def test_upfirdn2d_matches_reference(shape, up, down, pad, scale, channels_last):
    x = torch.randn(shape)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    k = blur_kernel(scale)
    with use_backend("triton"):
        xt = x.clone().requires_grad_()
        y = upfirdn2d(xt, k, up, down, pad)
    xr = x.clone().requires_grad_()
    y_ref = upfirdn2d_reference(xr, k, up, down, pad)
    assert y.shape == y_ref.shape
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(y, y_ref, **F32_FIR)
    g = torch.randn_like(y_ref)
    with use_backend("triton"):
        (gx,) = torch.autograd.grad(y, xt, g)
    (gx_ref,) = torch.autograd.grad(y_ref, xr, g)
    torch.testing.assert_close(gx, gx_ref, **F32_FIR)


def test_upfirdn2d_model_padding_rules_give_expected_sizes():
    """The padding rules of the model's three blur uses produce the sizes the layers expect."""
    k = blur_kernel(4.0)
    x = torch.randn(1, 2, 9, 9)  # a 3×3 stride-2 transposed conv output of a 4×4 input
    p = (4 - 2) - (3 - 1)
    with use_backend("triton"):
        assert upfirdn2d(x, k, pad=((p + 1) // 2 + 1, p // 2 + 1)).shape[-2:] == (8, 8)
        p = 4 - 2
        y = upfirdn2d(torch.randn(1, 2, 4, 4), k, up=2, pad=((p + 1) // 2 + 1, p // 2))
        assert y.shape[-2:] == (8, 8)
        p = 4 - 2 + 3 - 1
        assert upfirdn2d(torch.randn(1, 2, 8, 8), k / 4, pad=((p + 1) // 2, p // 2)).shape[-2:] == (9, 9)


def test_upfirdn2d_bf16():
    x = torch.randn(2, 3, 7, 9).to(torch.bfloat16)
    k = blur_kernel(4.0)
    with use_backend("triton"):
        y = upfirdn2d(x, k, up=2, pad=(2, 1))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), upfirdn2d_reference(x.float(), k, up=2, pad=(2, 1)), **BF16)


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1)), (1, 2, (1, 1)), (1, 1, (2, 2, -1, 1))],
                         ids=["up2", "down2", "asym-pad"])
@pytest.mark.slow
def test_upfirdn2d_gradgradcheck(up, down, pad):
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    k = blur_kernel(up * up, torch.float64)
    with use_backend("triton"):
        fn = lambda t: upfirdn2d(t, k, up, down, pad)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


def test_upfirdn2d_trainable_kernel_is_not_covered():
    """A filter that requires grad is outside the kernels (they treat it as a constant): a forced
    triton backend refuses it (backend.py's fallback rule), the reference differentiates it."""
    x = torch.randn(1, 2, 5, 5)
    k = blur_kernel().requires_grad_()
    with use_backend("triton"), pytest.raises(TritonUnavailable, match="filter requires grad"):
        upfirdn2d(x, k, pad=(1, 2))
    with use_backend("reference"):
        y = upfirdn2d(x, k, pad=(1, 2))
    (gk,) = torch.autograd.grad(y.sum(), k)
    (gk_ref,) = torch.autograd.grad(upfirdn2d_reference(x, k, pad=(1, 2)).sum(), k)
    torch.testing.assert_close(gk, gk_ref)


@pytest.mark.slow
def test_model_layers_r1_style_penalty_matches_reference(monkeypatch):
    """The model's own layers (upsampling styled conv with noise, then a D residual block: all
    three blur paddings, bias_act with and without noise) under both backends, including the
    double backward of an R1-style gradient penalty."""
    from ssgan.model import layers

    conv = layers.FixedStyledConv(3, 5, 3, upsample=True)
    with torch.no_grad():
        conv.noise.weight.fill_(0.3)
        conv.activate.bias.normal_()
    block = layers.ResBlock(5, 4)
    x, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 1, 8, 8)
    params = list(conv.parameters()) + list(block.parameters())

    def run(backend):
        xi = x.clone().requires_grad_()
        with use_backend(backend):
            y = block(conv(xi, noise))
            (g,) = torch.autograd.grad(y.sum(), xi, create_graph=True)
            return (y, *torch.autograd.grad(g.square().sum(), [xi, *params]))

    got = run("triton")
    with monkeypatch.context() as m:  # the reference backend may use the reference (see the fixture)
        m.setattr(sys.modules["ssgan.kernels.bias_act"], "bias_act_reference", bias_act_reference)
        m.setattr(sys.modules["ssgan.kernels.upfirdn2d"], "upfirdn2d_reference", upfirdn2d_reference)
        want = run("reference")
    for a, w in zip(got, want, strict=True):
        torch.testing.assert_close(a, w, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# torch.compile
# ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_compile_fullgraph_forward_backward():
    """Both ops inside torch.compile(fullgraph=True) (a graph break raises), with autograd."""
    k = blur_kernel(4.0)

    def block(x, b, nz, nw):
        y = bias_act(x, b, nz, nw)
        return upfirdn2d(y, k, up=2, pad=(2, 1))

    def block_ref(x, b, nz, nw):
        return upfirdn2d_reference(bias_act_reference(x, b, nz, nw), k, up=2, pad=(2, 1))

    inputs = _bias_act_inputs((2, 3, 5, 6))
    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True)
    with use_backend("triton"):
        ins = [t.clone().requires_grad_() for t in inputs]
        y = compiled(*ins)
        grads = torch.autograd.grad(y.square().sum(), ins)
    ref = [t.clone().requires_grad_() for t in inputs]
    y_ref = block_ref(*ref)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), ref)
    torch.testing.assert_close(y, y_ref, **F32_FIR)
    for a, w in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, w, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------------------------------------
# GPU: render-net shapes
# ------------------------------------------------------------------------------------------------

RENDER_SHAPES = [(16, 512, 64, 64), (16, 256, 128, 128), (16, 128, 256, 256)]


@pytest.mark.cuda
@pytest.mark.parametrize("shape", RENDER_SHAPES, ids=lambda s: f"{s[1]}ch@{s[2]}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_cuda_bias_act_render_shapes(shape, dtype, channels_last):
    x, b, nz, nw = (t.cuda() if t is not None else None
                    for t in _bias_act_inputs(shape, channels_last, dtype=dtype))
    g = torch.randn(shape, device="cuda", dtype=dtype)
    with use_backend("triton"):
        y, (gx, gb, gn, gnw) = _grads(bias_act, [x, b, nz, nw], g)
    up = [t.float() for t in (x, b, nz, nw)]
    y_ref, (gx_ref, gb_ref, gn_ref, gnw_ref) = _grads(bias_act_reference, up, g.float())
    tol = BF16_GPU if dtype == torch.bfloat16 else dict(rtol=1e-5, atol=1e-5)  # FMA contraction
    torch.testing.assert_close(y.float(), y_ref, **tol)
    torch.testing.assert_close(gx.float(), gx_ref, **tol)
    # sums over N·H·W = up to 10^6 terms in another order
    torch.testing.assert_close(gb, gb_ref, rtol=1e-4, atol=1e-2)
    torch.testing.assert_close(gnw, gnw_ref, rtol=1e-4, atol=1e-1)


@pytest.mark.cuda
@pytest.mark.parametrize("shape", RENDER_SHAPES, ids=lambda s: f"{s[1]}ch@{s[2]}")
@pytest.mark.parametrize("op", ["blur-up", "upsample", "blur-down"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_cuda_upfirdn2d_render_shapes(shape, op, channels_last):
    N, C, H, W = shape
    if op == "blur-up":  # after a 3×3 stride-2 transposed conv of an (H/2)² map
        x, up, pad, k = torch.randn(N, C, H + 1, W + 1), 1, (1, 1), blur_kernel(4.0)
    elif op == "upsample":  # to_rgb / to_seg skip (few channels in the model; C here for load)
        x, up, pad, k = torch.randn(N, C, H // 2, W // 2), 2, (2, 1), blur_kernel(4.0)
    else:  # before a stride-2 3×3 conv in D
        x, up, pad, k = torch.randn(N, C, H, W), 1, (2, 2), blur_kernel()
    x = x.cuda()
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    k = k.cuda()
    xt = x.clone().requires_grad_()
    with use_backend("triton"):
        y = upfirdn2d(xt, k, up, 1, pad)
    xr = x.clone().requires_grad_()
    y_ref = upfirdn2d_reference(xr, k, up, 1, pad)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y_ref)
    with use_backend("triton"):
        (gx,) = torch.autograd.grad(y, xt, g)
    (gx_ref,) = torch.autograd.grad(y_ref, xr, g)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-5)
    xb = x.to(torch.bfloat16)
    with use_backend("triton"):
        yb = upfirdn2d(xb, k, up, 1, pad)
    torch.testing.assert_close(yb.float(), upfirdn2d_reference(xb.float(), k, up, 1, pad), **BF16_GPU)


# ------------------------------------------------------------------------------------------------
# Without a GPU: ahead-of-time compile for an H100, and the benchmark's refusal
# ------------------------------------------------------------------------------------------------

_AOT_SCRIPT = r"""
import sys
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import ssgan.kernels  # noqa: F401
ba = sys.modules["ssgan.kernels.bias_act"]
uf = sys.modules["ssgan.kernels.upfirdn2d"]

def compile_sm90(fn, types, consts, warps=4):
    sig = {n: types.get(n, "constexpr") for n in fn.arg_names}
    # the runtime's specialisation at render-net shapes: 16-aligned pointers and dimensions
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names)
             if sig[n].startswith("*") or n in ("R", "Q", "C", "P", "H", "W", "OH", "OW")}
    k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs),
                       target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    ptx = k.asm["ptx"]
    return ptx.count("ld.global.v"), ptx.count("st.global.v")

ints = {n: "i32" for n in ("R", "Q", "C", "P", "H", "W", "OH", "OW", "PX0", "PY0")}
for dt in ("bf16", "fp32"):
    acc = "*fp32"
    types = {**ints, **{n: "fp32" for n in ("slope", "gain", "slope_lo", "gain_lo")},
             "b_ptr": "*fp32", "nw_ptr": "*fp32", "f_ptr": "*fp32",
             "pb_ptr": acc, "pnw_ptr": acc,
             **{n: "*" + dt for n in ("x_ptr", "n_ptr", "y_ptr", "g_ptr", "gx_ptr")}}
    for cl in (False, True):
        common = dict(CL=cl, ACC=tl.float32, INT64=False, BQ=64 if cl else 1024, BLOCK=4096)
        v = compile_sm90(ba._bias_act_fwd_kernel, types, dict(common, HAS_BIAS=True, HAS_NOISE=True), 8)
        assert v[0] > 0 and v[1] > 0, ("bias_act forward not vectorised", dt, cl, v)
        v = compile_sm90(ba._bias_act_bwd_kernel, types, dict(common, NEED_GB=True, NEED_GNW=True), 8)
        assert v[0] > 0 and v[1] > 0, ("bias_act backward not vectorised", dt, cl, v)
    for up, down in ((1, 1), (2, 1)) if dt == "bf16" else ():
        fir = dict(UP=up, DOWN=down, KH=4, KW=4, ACC=tl.float32, INT64=False)
        v = compile_sm90(uf._upfirdn2d_nchw_kernel, types, dict(fir, BH=16, BW=64))
        assert v[1] > 0, ("upfirdn2d NCHW stores not vectorised", dt, up, down, v)
        v = compile_sm90(uf._upfirdn2d_nhwc_kernel, types, dict(fir, INT64=True, BW=16, BC=64))
        assert v[0] > 0 and v[1] > 0, ("upfirdn2d channels-last not vectorised", dt, up, down, v)
print("ok")
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU tests compile and run the kernels")
@pytest.mark.slow
def test_kernels_compile_for_sm90_without_gpu():
    """The interpreter never lowers the kernels: compile them ahead of time for an H100 (sm_90)
    at render-net specialisation, and check that element-wise loads/stores vectorise (bias_act
    both layouts; upfirdn2d's channel-contiguous loads and all its stores)."""
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    proc = subprocess.run([sys.executable, "-c", _AOT_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.cuda
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_cuda_int64_indexing(channels_last):
    """More than 2^31 elements (the kernels switch to 64-bit offsets): check the far end."""
    N, C, H, W = 2, 16, 8192, 8193  # 2.1e9 elements, 4 GiB in bf16
    x = _layout_as(torch.randn(N, C, H, W, device="cuda", dtype=torch.bfloat16), channels_last)
    b, nw = torch.randn(C, device="cuda"), torch.randn(1, device="cuda")
    nz = torch.randn(N, 1, H, W, device="cuda", dtype=torch.bfloat16)
    k = blur_kernel(1.0)
    with use_backend("triton"):
        y = bias_act(x, b, nz, nw)
        f = upfirdn2d(x, k, pad=(1, 2))  # same size as x
    end = (slice(N - 1, N), slice(None), slice(H - 64, H))
    want = bias_act_reference(x[end].float(), b, nz[end].float(), nw)
    torch.testing.assert_close(y[end].float(), want, **BF16_GPU)
    # output rows H-63.. need input rows H-64..H-1 (+ the bottom padding): rows 1.. of the slice's
    want = upfirdn2d_reference(x[end].float(), k, pad=(1, 2))[:, :, 1:]
    torch.testing.assert_close(f[N - 1:, :, H - 63:].float(), want, **BF16_GPU)


def _layout_as(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.to(memory_format=torch.channels_last) if channels_last else x
