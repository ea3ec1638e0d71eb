"""Triton grouped modulated MLP (kernels/local_mlp.py) against grouped_mlp_reference.

On CPU the kernels run under TRITON_INTERPRET=1 (set by conftest.py); tiny shapes keep the file
fast. P = 37 is not a multiple of the interpreter's 16-row tile (ragged tail), and the backward
splits each (b, k) over two programs, so per-program partial sums over several tiles are exercised.
"""

import math

import pytest
import torch

from ssgan.kernels import TritonUnavailable, local_mlp, use_backend
from ssgan.kernels.local_mlp import (
    grouped_mlp,
    grouped_mlp_flops,
    modulated_weights,
)


def make_inputs(B, K, L, C, P, shared_x=True, dtype=torch.float32, device="cpu"):
    """Realistic inputs: demodulated weights (unit-norm rows, as in the model), small biases."""
    Bx, Kx = (1, 1) if shared_x else (B, K)
    x = torch.randn(Bx, Kx, P, C, dtype=torch.float64, device=device)
    w = modulated_weights(torch.randn(K, L, C, C, dtype=torch.float64, device=device),
                          torch.randn(B, K, L, C, dtype=torch.float64, device=device))
    b = 0.1 * torch.randn(K, L, C, dtype=torch.float64, device=device)
    u = torch.randn(K, C, dtype=torch.float64, device=device) / C**0.5
    c = torch.randn(K, dtype=torch.float64, device=device)
    return [t.to(dtype).requires_grad_(True) for t in (x, w, b, u, c)]


def cotangents(h, d):
    """Fixed random incoming gradients for h and depth."""
    gen = torch.Generator(device=h.device).manual_seed(1)
    gh = torch.randn(h.shape, generator=gen, device=h.device).to(h.dtype)
    gd = torch.randn(d.shape, generator=gen, device=h.device).to(d.dtype)
    return gh, gd


def run(backend, inputs, depth_layer, detach):
    """h, depth and the grads of (x, w, b, u, c) for fixed random cotangents."""
    with use_backend(backend):
        h, d = grouped_mlp(*inputs, depth_layer, detach)
    gh, gd = cotangents(h, d)
    need = [t for t in inputs if t.requires_grad]
    gs = torch.autograd.grad((h, d), need, (gh, gd))
    return h, d, *gs


def assert_scaled_close(actual, expected, rel, name):
    """|actual - expected| <= rel * max|expected| (a tolerance relative to the tensor's scale)."""
    actual, expected = actual.double(), expected.double()
    scale = expected.abs().max().clamp_min(1.0)
    err = (actual - expected).abs().max()
    assert err <= rel * scale, f"{name}: max error {err.item():.3g} > {rel} * scale {scale.item():.3g}"


NAMES = ("h", "depth", "grad x", "grad weight", "grad bias", "grad depth_weight", "grad depth_bias")

# (B, K, L, depth_layer, shared_x, detach_texture): depth tap first and last layer, detach on and
# off (detach with depth_layer = L is a no-op by definition), broadcast and per-class x, B and K
# of 1 and more.
CASES = [
    (1, 1, 1, 1, True, False),
    (2, 3, 1, 1, False, True),
    (1, 3, 3, 1, True, False),
    (1, 3, 3, 1, True, True),
    (2, 3, 3, 1, False, True),
    (2, 3, 3, 3, True, False),
    (2, 3, 3, 3, False, True),
    (2, 1, 3, 2, True, True),
    (2, 3, 3, 2, False, False),
]


@pytest.mark.parametrize("B,K,L,depth_layer,shared_x,detach", CASES)
def test_fp32_forward_and_grads_match_reference(B, K, L, depth_layer, shared_x, detach):
    inputs = make_inputs(B, K, L, 16, 37, shared_x)
    got = run("triton", inputs, depth_layer, detach)
    want = run("reference", inputs, depth_layer, detach)
    # The kernel differs from torch.matmul only in fp32 summation order ("ieee" dots, fp32
    # accumulation): per element about sqrt(C * L) * 2^-24 relative to the terms' magnitude, and
    # the weight / bias / depth-head grads add up to B * P = 74 such terms. 2e-5 of the tensor's
    # scale is ~100x that bound yet far below any real bug (a wrong mask, layer or tile is O(1)).
    for name, g, w in zip(NAMES, got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        assert_scaled_close(g, w, 2e-5, name)


def test_grads_without_x_grad_and_unused_depth():
    """The model's usual call: x is a constant Fourier map (no grad x), and a loss on h only."""
    x, w, b, u, c = make_inputs(2, 3, 3, 16, 37)
    x.requires_grad_(False)
    outs = {}
    for backend in ("triton", "reference"):
        with use_backend(backend):
            h, _ = grouped_mlp(x, w, b, u, c, 2, False)
        outs[backend] = torch.autograd.grad(h.square().sum(), (w, b, u), allow_unused=True)
    assert outs["reference"][2] is None  # u does not reach h
    assert outs["triton"][2] is None or outs["triton"][2].abs().max() == 0
    for name, g, r in zip(("grad weight", "grad bias"), outs["triton"][:2], outs["reference"][:2],
                          strict=True):
        assert_scaled_close(g, r, 2e-5, name)


def bf16_pipeline(x, w, b, u, c, depth_layer, detach, gh, gd):
    """The bf16 kernels' arithmetic written out in fp32 torch (forward and hand-written backward):
    dot operands (activations, weights, pre-activation grads) are rounded to bf16, everything else
    (accumulation, bias, activation, depth head) is fp32, as on tensor cores."""
    def rb(t):
        return t.bfloat16().float()

    x, w, b, u, c, gh, gd = (t.detach().float() for t in (x, w, b, u, c, gh, gd))
    B, K, L = w.shape[:3]
    hs = [x.expand(B, K, *x.shape[2:])]
    for layer in range(L):
        a = rb(hs[-1]) @ w[:, :, layer].transpose(-1, -2) + b[None, :, layer, None, :]
        h = torch.where(a > 0, a * math.sqrt(2), a * 0.2 * math.sqrt(2))
        if layer == depth_layer - 1:
            d = (h * u[None, :, None, :]).sum(-1) + c[None, :, None]
        hs.append(rb(h))
    gw, gb = torch.zeros_like(w), torch.zeros_like(b)
    gu, gc = (gd[..., None] * hs[depth_layer]).sum((0, 2)), gd.sum((0, 2))
    g = gh
    for layer in range(L - 1, -1, -1):
        if layer == depth_layer - 1:
            if detach and depth_layer < L:  # classes k > 0 are detached, the background is not
                g = g * (torch.arange(K) == 0).float().view(1, K, 1, 1)
            g = g + gd[..., None] * u[None, :, None, :]
        gp = rb(g * torch.where(hs[layer + 1] > 0, math.sqrt(2), 0.2 * math.sqrt(2)))
        gw[:, :, layer] = gp.transpose(-1, -2) @ rb(hs[layer])
        gb[:, layer] = gp.sum((0, 2))
        g = gp @ w[:, :, layer]
    dims = tuple(i for i in (0, 1) if x.shape[i] == 1)
    gx = g.sum(dims, keepdim=True) if dims else g
    return h, d, gx, gw, gb, gu, gc


def check_bf16(B, K, L, C, P, depth_layer, detach, shared_x, device, rel_vs_fp32):
    inputs = make_inputs(B, K, L, C, P, shared_x, dtype=torch.bfloat16, device=device)
    got = run("triton", inputs, depth_layer, detach)
    gh, gd = cotangents(got[0], got[1])
    exact = bf16_pipeline(*inputs, depth_layer, detach, gh, gd)
    fp32 = run("reference", [t.detach().float().requires_grad_(True) for t in inputs], depth_layer, detach)
    for name, g, e, r in zip(NAMES, got, exact, fp32, strict=True):
        assert g.dtype == torch.bfloat16, name
        # Same roundings as the kernel: what is left is the final rounding of the outputs to bf16
        # (2^-9 relative) and fp32 summation order, so 1e-2 of the scale (a wrong layer, mask or
        # rounding point is O(1)).
        assert_scaled_close(g, e, 1e-2, name + " vs bf16 pipeline")
        # Against fp32 maths the bf16 rounding itself shows, mostly in the gradients: a
        # pre-activation within rounding of 0 takes the other leaky-ReLU slope (sqrt2 vs
        # 0.2 sqrt2), so compare in relative Frobenius norm with a tolerance for that.
        err = (g.double() - r.double()).norm() / r.double().norm().clamp_min(1e-12)
        assert err <= rel_vs_fp32, f"{name}: relative error vs fp32 {err.item():.3g} > {rel_vs_fp32}"


@pytest.mark.parametrize("shared_x,detach", [(False, False), (True, True)])
def test_bf16_matches_bf16_pipeline_and_fp32(shared_x, detach):
    # observed relative errors vs fp32 at this size: 3e-3 (h, depth) to 3e-2 (grads)
    check_bf16(2, 3, 3, 16, 37, 2, detach, shared_x, "cpu", rel_vs_fp32=6e-2)


class _Counter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("B,K,L,P,depth_layer,shared_x", [(1, 2, 2, 5, 1, False), (2, 1, 2, 3, 2, True)])
@pytest.mark.slow
def test_gradgradcheck_float64(monkeypatch, B, K, L, P, depth_layer, shared_x):
    """First-order grads from the fp64 kernels, second-order through the reference maths."""
    fwd = _Counter(local_mlp._grouped_mlp_triton)
    bwd = _Counter(local_mlp._grouped_mlp_backward_triton)
    monkeypatch.setattr(local_mlp, "_grouped_mlp_triton", fwd)
    monkeypatch.setattr(local_mlp, "_grouped_mlp_backward_triton", bwd)
    inputs = tuple(make_inputs(B, K, L, 16, P, shared_x, dtype=torch.float64))

    def f(*args):
        return grouped_mlp(*args, depth_layer, False)

    with use_backend("triton"):
        assert torch.autograd.gradcheck(f, inputs, fast_mode=True)
        assert torch.autograd.gradgradcheck(f, inputs, fast_mode=True)
    assert fwd.calls > 0 and bwd.calls > 0  # the numerical derivatives ran the kernels


def test_double_backward_with_detach_matches_reference():
    """With detach_texture the reference's own double backward treats the detached activations as
    constants (so no finite-difference check can pass, for the reference either); the Triton path
    must reproduce exactly those reference semantics."""
    base = make_inputs(1, 2, 3, 16, 7, shared_x=False, dtype=torch.float64)
    results = {}
    for backend in ("triton", "reference"):
        ins = [t.detach().clone().requires_grad_(True) for t in base]
        with use_backend(backend):
            h, d = grouped_mlp(*ins, 1, True)
        gen = torch.Generator().manual_seed(2)
        gh = torch.randn(h.shape, generator=gen, dtype=h.dtype, requires_grad=True)
        gd = torch.randn(d.shape, generator=gen, dtype=d.dtype, requires_grad=True)
        first = torch.autograd.grad((h, d), ins, (gh, gd), create_graph=True)
        vs = [torch.randn(f.shape, generator=gen, dtype=f.dtype) for f in first]
        second = torch.autograd.grad(first, [*ins, gh, gd], vs, allow_unused=True)
        results[backend] = [torch.zeros(()) if s is None else s for s in second]
    for i, (t, r) in enumerate(zip(results["triton"], results["reference"], strict=True)):
        assert_scaled_close(t, r, 1e-10, f"second-order grad {i}")


@pytest.mark.slow
def test_compile_fullgraph(monkeypatch):
    torch._dynamo.reset()
    bwd = _Counter(local_mlp._grouped_mlp_backward_triton)
    monkeypatch.setattr(local_mlp, "_grouped_mlp_backward_triton", bwd)
    inputs = make_inputs(2, 3, 3, 16, 37)

    def loss_fn(x, w, b, u, c):
        h, d = grouped_mlp(x, w, b, u, c, 2, True)
        return h.square().mean() + d.mean()

    with use_backend("triton"):
        compiled = torch.compile(loss_fn, fullgraph=True)
        loss = compiled(*inputs)
        grads = torch.autograd.grad(loss, inputs)
    assert bwd.calls == 1
    with use_backend("reference"):
        ref_loss = loss_fn(*inputs)
        ref_grads = torch.autograd.grad(ref_loss, inputs)
    assert_scaled_close(loss, ref_loss, 2e-5, "loss")
    for i, (g, r) in enumerate(zip(grads, ref_grads, strict=True)):
        assert_scaled_close(g, r, 2e-5, f"grad {i}")


def test_rejects_unsupported_channels():
    """C = 24 is no tl.dot tile: a forced triton backend says so (the fallback rule of backend.py)."""
    x, w, b, u, c = (t.detach() for t in make_inputs(1, 1, 1, 24, 8))
    with use_backend("triton"), pytest.raises(TritonUnavailable, match="power of two >= 16"):
        grouped_mlp(x, w, b, u, c, 1)


def test_flops():
    fwd = grouped_mlp_flops(16, 13, 10, 64, 4096, backward=False)
    assert fwd == 2 * 16 * 13 * 4096 * 10 * 64 * 64
    assert grouped_mlp_flops(16, 13, 10, 64, 4096, backward=True) == 3 * fwd


@pytest.mark.cuda
def test_cuda_paper_shapes_fp32():
    torch.backends.cuda.matmul.allow_tf32 = False
    B, K, L, C, P = 16, 13, 10, 64, 64 * 64
    inputs = make_inputs(B, K, L, C, P, shared_x=True, device="cuda")
    got = run("triton", inputs, 6, True)
    want = run("reference", inputs, 6, True)
    # ieee fp32 dots: only summation order differs; the weight / bias grads sum B * P = 65536
    # terms, so 1e-4 of the scale.
    for name, g, w in zip(NAMES, got, want, strict=True):
        assert g.dtype == torch.float32, name
        assert_scaled_close(g, w, 1e-4, name)


@pytest.mark.cuda
def test_cuda_paper_shapes_bf16():
    torch.backends.cuda.matmul.allow_tf32 = False
    # 10 layers: relative errors vs fp32 measured ~6e-2 on the grads at (2, 2, 10, 64, 300)
    check_bf16(16, 13, 10, 64, 64 * 64, 6, True, True, "cuda", rel_vs_fp32=1.2e-1)


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_detach_texture_spares_the_background(backend):
    """Official: only generators with a depth head (k > 0) are detached after the tap; the
    background's early layers keep the gradient of its texture layers."""
    torch.manual_seed(3)
    B, K, L, C, P, DL = 1, 3, 3, 16, 20, 1
    x = torch.randn(1, 1, P, C)
    w = (torch.randn(B, K, L, C, C) / 4).requires_grad_(True)
    b = torch.randn(K, L, C) / 10
    u = torch.randn(K, C)
    u[0] = 0  # the background has no depth head
    c = torch.zeros(K)
    grads = {}
    for detach in (False, True):
        with use_backend(backend):
            h, d = grouped_mlp(x, w, b, u, c, DL, detach)
        (gw,) = torch.autograd.grad((h.sum() + d.sum()), w)
        grads[detach] = gw[:, :, 0]  # the first layer: before the tap
    assert torch.allclose(grads[True][:, 0], grads[False][:, 0], rtol=1e-6, atol=1e-6)
    assert grads[True][:, 0].abs().sum() > 0
    assert not torch.allclose(grads[True][:, 1:], grads[False][:, 1:], rtol=1e-3, atol=1e-3)
