"""The Triton depth-softmax fusion (ssgan::fuse) against the reference maths.

Without a GPU these run the kernels under Triton's interpreter on CPU tensors (conftest sets
TRITON_INTERPRET=1); with one, the same tests run the compiled kernels on CUDA tensors.
"""

import pytest
import torch

from ssgan.kernels import fuse, fuse_reference, fusion_weights, use_backend
from ssgan.kernels import fusion as fz

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _inputs(B, K, C, F, P, dtype, mask=None, transparent=False, device=DEVICE):
    """Fusion inputs at the scale the generator feeds them (unit activations, 1/sqrt(C) weights).
    mask: None, "some" (random 0/1 with class 0 kept) or "zeros" (some classes zeroed for every
    sample, and one sample whose mask is all zeros)."""
    h = torch.randn(B, K, P, C, device=device, dtype=dtype)
    depth = 2 * torch.randn(B, K, P, device=device, dtype=dtype)
    weight = torch.randn(K, F, C, device=device, dtype=dtype) / C**0.5
    bias = torch.randn(K, F, device=device, dtype=dtype)
    cm = None
    if mask is not None:
        cm = (torch.rand(B, K, device=device) > 0.4).to(dtype)
        cm[:, 0] = 1
        if mask == "zeros":
            cm[:, 1::2] = 0
            cm[-1] = 0
    t = (torch.arange(K, device=device) % 2 == 1).to(dtype) if transparent else None
    return h, depth, weight, bias, cm, t


def _ref_grads(h, depth, weight, bias, cm, t, g, gm):
    """Reference outputs and gradients in float64 (the ground truth for every dtype)."""
    xs = [x.detach().double().requires_grad_(True) for x in (h, depth, weight, bias)]
    cm64 = None if cm is None else cm.double()
    t64 = None if t is None else t.double()
    feature, m = fuse_reference(*xs, cm64, t64)
    grads = torch.autograd.grad((feature, m), xs, (g.double(), gm.double()))
    return feature, m, grads


def _triton_grads(h, depth, weight, bias, cm, t, g, gm):
    xs = [x.detach().clone().requires_grad_(True) for x in (h, depth, weight, bias)]
    with use_backend("triton"):
        feature, m = fuse(*xs, cm, t)
    grads = torch.autograd.grad((feature, m), xs, (g, gm))
    return feature, m, grads


def _err(actual, expected):
    """Max abs error relative to the expected tensor's scale (max |x|, floored at 1)."""
    scale = max(expected.abs().max().item(), 1.0)
    return (actual.double() - expected).abs().max().item() / scale


NAMES = ("feature", "m", "grad h", "grad depth", "grad feat_weight", "grad feat_bias")

# (B, K, F): K = 1 and B = 1 edge cases; F = 24 is not a power of two and below one F tile of 32
# on GPU, and two tiles (one a tail) of the interpreter's BLOCK_F = 16; P = 37 leaves a tail tile.
SHAPES = [(2, 1, 24), (1, 3, 32), (2, 3, 24), (2, 5, 32)]


@pytest.mark.parametrize("B,K,F", SHAPES)
@pytest.mark.parametrize("mask", [None, "zeros"])
@pytest.mark.parametrize("transparent", [False, True])
def test_fp32_forward_and_grads_match_reference(B, K, F, mask, transparent):
    # fp32 in, fp32 accumulation with IEEE dots: the only differences from the float64 truth are
    # fp32 roundings, with reductions of at most K·C + K = 85 terms (forward, grad w) or
    # B·P = 74 rows (grad V, grad e); n·eps ~ 85 · 6e-8 = 5e-6 bounds them relative to the output
    # scale, so 1e-5 is tight (TF32 would miss it by ~100x, a dropped class or tile by ~1e-1).
    C, P = 16, 37
    h, depth, weight, bias, cm, t = _inputs(B, K, C, F, P, torch.float32, mask, transparent)
    g = torch.randn(B, P, F, device=DEVICE)
    gm = torch.randn(B, K, P, device=DEVICE)
    out = _triton_grads(h, depth, weight, bias, cm, t, g, gm)
    ref = _ref_grads(h, depth, weight, bias, cm, t, g, gm)
    actual = (out[0], out[1], *out[2])
    expected = (ref[0], ref[1], *ref[2])
    for name, a, e in zip(NAMES, actual, expected, strict=True):
        assert a.dtype == torch.float32 and a.shape == e.shape, name
        assert _err(a, e) < 1e-5, f"{name}: {_err(a, e):.2e}"


@pytest.mark.parametrize("C,F", [(32, 40), (128, 24)])
def test_fp32_other_channel_counts(C, F):
    B, K, P = 2, 3, 37
    h, depth, weight, bias, cm, t = _inputs(B, K, C, F, P, torch.float32, "some", True)
    g = torch.randn(B, P, F, device=DEVICE)
    gm = torch.randn(B, K, P, device=DEVICE)
    out = _triton_grads(h, depth, weight, bias, cm, t, g, gm)
    ref = _ref_grads(h, depth, weight, bias, cm, t, g, gm)
    for name, a, e in zip(NAMES, (out[0], out[1], *out[2]), (ref[0], ref[1], *ref[2]), strict=True):
        assert _err(a, e) < 2e-5, f"{name}: {_err(a, e):.2e}"  # reductions up to K·C = 384 terms


@pytest.mark.parametrize("mask,transparent", [(None, False), ("zeros", True)])
def test_bf16_forward_and_grads(mask, transparent):
    # bf16 operands (8 bits of mantissa, eps 2^-8 = 3.9e-3) with fp32 accumulation: each product
    # carries ~1e-2 relative rounding (h, V, w·h, g rounded to bf16) and the errors of a sum of n
    # terms grow like sqrt(n), so against the float64 truth of the same (bf16) inputs the error
    # stays within ~1e-2 of the output scale. The plain-PyTorch reference run in bf16 is held to
    # the same bound, and the kernel must not be much worse than it.
    B, K, C, F, P = 2, 5, 16, 24, 37
    h, depth, weight, bias, cm, t = _inputs(B, K, C, F, P, torch.bfloat16, mask, transparent)
    g = torch.randn(B, P, F, device=DEVICE, dtype=torch.bfloat16)
    gm = torch.randn(B, K, P, device=DEVICE, dtype=torch.bfloat16)
    out = _triton_grads(h, depth, weight, bias, cm, t, g, gm)
    ref = _ref_grads(h, depth, weight, bias, cm, t, g, gm)
    xs = [x.detach().clone().requires_grad_(True) for x in (h, depth, weight, bias)]
    f16, m16 = fuse_reference(*xs, cm, t)
    ref16 = (f16, m16, *torch.autograd.grad((f16, m16), xs, (g, gm)))
    for name, a, e, r in zip(NAMES, (out[0], out[1], *out[2]), (ref[0], ref[1], *ref[2]), ref16, strict=True):
        assert a.dtype == torch.bfloat16, name
        assert _err(a, e) < 2e-2, f"{name}: {_err(a, e):.2e}"
        assert _err(a, e) < 2 * _err(r, e) + 4e-3, f"{name}: {_err(a, e):.2e} vs reference {_err(r, e):.2e}"


@pytest.mark.parametrize("splits", [1, 2, 3])
def test_split_k_grad_weight(splits):
    # The grad V / grad e reduction over B·P rows split into ranges that cross the sample boundary
    # (rows 0..73, sample 1 starts at row 37, ranges are multiples of 32 under the interpreter).
    B, K, C, F, P = 2, 3, 16, 24, 37
    h, depth, weight, bias, cm, t = _inputs(B, K, C, F, P, torch.float32, "some", True)
    g = torch.randn(B, P, F, device=DEVICE)
    gm = torch.randn(B, K, P, device=DEVICE)
    grads = fz._fuse_backward_triton(g, gm, h, depth, weight, bias, cm, t, splits=splits)
    ref = _ref_grads(h, depth, weight, bias, cm, t, g, gm)[2]
    for name, a, e in zip(NAMES[2:], grads, ref, strict=True):
        assert _err(a, e) < 1e-5, f"{name}: {_err(a, e):.2e}"


@pytest.mark.parametrize("mask", [None, "some", "zeros"])
@pytest.mark.parametrize("transparent", [False, True])
def test_fusion_weights_vjp_matches_autograd(mask, transparent):
    # The written-out chain rule the backward op uses, against autograd over fusion_weights.
    B, K, P = 2, 5, 11
    _, depth, _, _, cm, t = _inputs(B, K, 16, 16, P, torch.float64, mask, transparent)
    gw, gm = torch.randn(2, B, K, P, dtype=torch.float64, device=DEVICE)
    d = depth.clone().requires_grad_(True)
    w, m = fusion_weights(d, cm, t)
    (expected,) = torch.autograd.grad((w, m), (d,), (gw, gm))
    actual = fz._fusion_weights_vjp(depth, cm, t, gw, gm)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_gradcheck_and_gradgradcheck_float64():
    # First order: the Triton forward (finite differences) against the Triton backward. Second
    # order: finite differences of the Triton backward against the reference double backward.
    # fast_mode checks random projections of the Jacobians (few kernel launches).
    B, K, C, F, P = 1, 3, 16, 16, 5
    h, depth, weight, bias, _, _ = _inputs(B, K, C, F, P, torch.float64)
    cm = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64, device=DEVICE)
    t = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64, device=DEVICE)
    xs = tuple(x.requires_grad_(True) for x in (h, depth, weight, bias))

    def f(*args):
        return fuse(*args, cm, t)

    with use_backend("triton"):
        assert torch.autograd.gradcheck(f, xs, fast_mode=True)
        assert torch.autograd.gradgradcheck(f, xs, fast_mode=True)


def test_double_backward_matches_reference():
    # A path-length-style second-order gradient: d/dx of |d(feature·y)/dh|², through the Triton
    # first-order backward and its reference-maths backward, against pure reference autograd.
    B, K, C, F, P = 1, 3, 16, 24, 37
    h, depth, weight, bias, cm, t = _inputs(B, K, C, F, P, torch.float64, "some", True)
    y = torch.randn(B, P, F, dtype=torch.float64, device=DEVICE)
    results = []
    for backend in ("triton", "reference"):
        xs = [x.detach().clone().requires_grad_(True) for x in (h, depth, weight, bias)]
        with use_backend(backend):
            feature, m = fuse(*xs, cm, t)
        gh, gd = torch.autograd.grad((feature * y).sum() + m.square().sum(), xs[:2], create_graph=True)
        results.append(torch.autograd.grad(gh.square().sum() + gd.square().sum(), xs))
    for a, e in zip(*results, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_torch_compile_fullgraph():
    B, K, C, F, P = 2, 3, 16, 24, 37
    h, depth, weight, bias, cm, t = _inputs(B, K, C, F, P, torch.float32, "zeros", True)

    def step(h, depth, weight, bias, cm, t):
        feature, m = fuse(h, depth, weight, bias, cm, t)
        return feature.square().mean() + (2 * m - 1).mean()

    compiled = torch.compile(step, fullgraph=True)  # raises on any graph break
    grads = []
    for fn in (compiled, step):
        xs = [x.detach().clone().requires_grad_(True) for x in (h, depth, weight, bias)]
        with use_backend("triton" if fn is compiled else "reference"):
            loss = fn(*xs, cm, t)
        grads.append((loss, *torch.autograd.grad(loss, xs)))
    for a, e in zip(*grads, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)


def test_triton_op_used_and_fake_shapes():
    # The triton backend goes through ssgan::fuse (so the op, not the reference, is what is tested
    # above), and the fake functions give the shapes torch.compile plans with.
    from torch._subclasses.fake_tensor import FakeTensorMode

    B, K, C, F, P = 2, 3, 16, 24, 37
    args = _inputs(B, K, C, F, P, torch.float32, "some", True)
    with use_backend("triton"), torch.profiler.profile() as prof:
        fuse(*args)
    assert any(e.name == "ssgan::fuse" for e in prof.events())
    with FakeTensorMode() as mode:
        fake = [None if a is None else mode.from_tensor(a) for a in args]
        feature, m = torch.ops.ssgan.fuse(*fake)
        g, gm = torch.empty(B, P, F), torch.empty(B, K, P)
        grads = torch.ops.ssgan.fuse_backward(g, gm, *fake)
    assert feature.shape == (B, P, F) and m.shape == (B, K, P)
    assert [x.shape for x in grads] == [a.shape for a in args[:4]]


def test_fuse_flops():
    assert fz.fuse_flops(16, 13, 64, 512, 4096, backward=False) == 2 * 16 * 13 * 64 * 512 * 4096
    assert fz.fuse_flops(16, 13, 64, 512, 4096, backward=True) == 4 * 16 * 13 * 64 * 512 * 4096


_AOT_SCRIPT = r"""
import collections, re, sys
sys.path.insert(0, sys.argv[1])  # tests/
from aot_sm90 import compile_sm90, fusion_types
import ssgan.kernels.fusion as fz

def wgmma_and_async_copies(k):
    ops = collections.Counter(re.findall(r"(ttn?g\.[a-z_]+)", k.asm["ttgir"]))
    return ops["ttng.warp_group_dot"], ops["ttg.async_copy_global_to_local"]

for dt in ("bf16", "fp32"):
    types, common = fusion_types(dt)
    got = [compile_sm90(fz._fwd_kernel, types, {**common, "HAS_MASK": True, "HAS_T": True, "KP": 16,
                                                "BLOCK_P": 128, "BLOCK_F": 128}, 8, 3),
           compile_sm90(fz._bwd_h_kernel, types, {**common, "BLOCK_P": 128, "BLOCK_F": 64}, 4, 4),
           compile_sm90(fz._bwd_v_kernel, types, {**common, "BLOCK_F": 128, "BLOCK_R": 64}, 4, 4)]
    got = [wgmma_and_async_copies(k) for k in got]
    print(dt, got)
    for n_wgmma, n_async in got:
        assert n_async > 0, "operand loads are not software-pipelined"
        assert (n_wgmma > 0) == (dt == "bf16"), "bf16 must use wgmma, fp32 (IEEE) must not"
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU tests compile the kernels")
@pytest.mark.slow
def test_kernels_compile_for_sm90_without_gpu():
    # Without a GPU the tests above run the interpreter, which never lowers the kernels. Compile
    # them ahead of time for an H100 (sm_90) at paper-shape specialisation: bf16 must lower to
    # wgmma with pipelined (cp.async) operand loads; fp32 to IEEE FMA dots.
    import os
    import subprocess
    import sys

    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    tests = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", _AOT_SCRIPT, tests], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_paper_shapes_cuda(dtype):
    B, K, C, F, P = 16, 13, 64, 512, 4096
    h, depth, weight, bias, cm, t = _inputs(B, K, C, F, P, dtype, "some", True, device="cuda")
    t[:] = 0
    t[10:] = 1  # eyeglasses, hat and earrings transparent, as in CelebAMask-HQ
    g = torch.randn(B, P, F, device="cuda", dtype=dtype)
    gm = torch.randn(B, K, P, device="cuda", dtype=dtype)
    xs = [x.detach().clone().requires_grad_(True) for x in (h, depth, weight, bias)]
    xs32 = [x.detach().float().requires_grad_(True) for x in (h, depth, weight, bias)]

    def triton_path():
        with use_backend("triton"):
            feature, m = fuse(*xs, cm, t)
        return feature, m, torch.autograd.grad((feature, m), xs, (g, gm))

    def reference():
        feature, m = fuse_reference(*xs32, cm.float(), t.float())
        return feature, m, torch.autograd.grad((feature, m), xs32, (g.float(), gm.float()))

    def peak(fn):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        result = fn()
        torch.cuda.synchronize()
        return result, torch.cuda.max_memory_allocated() - base

    triton_path()  # autotuning (its benchmarks allocate an L2-flush buffer) outside the measurement
    out, mem_triton = peak(triton_path)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # an fp32 reference, whatever the global setting
    try:
        ref, mem_ref = peak(reference)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    # fp32: the kernel is IEEE fp32 and so is the reference; sums of K·C = 832 (forward) and
    # B·P = 65536 (grad V) terms. bf16: see test_bf16_forward_and_grads.
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    for name, a, e in zip(NAMES, (out[0], out[1], *out[2]), (ref[0], ref[1], *ref[2]), strict=True):
        scale = max(e.abs().max().item(), 1.0)
        err = (a.float() - e).abs().max().item() / scale
        assert err < tol, f"{name}: {err:.2e}"
    # One B x K x P x F tensor is 1.7 GB in fp32; the reference holds several, the kernels none:
    # only outputs and gradients the size of the inputs (h: 1/8 of it at C = 64) and small partials.
    kfp = B * K * P * F * torch.finfo(dtype).bits // 8
    assert mem_triton < 0.5 * kfp, (mem_triton, kfp)
    assert mem_triton < 0.25 * mem_ref, (mem_triton, mem_ref)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU tests run the kernels")
def test_autotune_configs_fit_sm90_shared_memory():
    # Every config the autotuner keeps at paper shapes, compiled for an H100 (sm_90) up to LLVM IR
    # without a GPU, needs at most the 227 KB of shared memory a block can have there; the fp32
    # forward keeps five of its eight configs (the three that need 232-272 KB are pruned).
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("triton.backends.nvidia")
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    proc = subprocess.run([sys.executable, str(root / "tests" / "aot_sm90.py")], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    too_big = [c for c in report["configs"] if c["shared"] > report["limit"]]
    assert not too_big, too_big
    kept = {(c["kernel"], c["dtype"]): 0 for c in report["configs"]}
    for c in report["configs"]:
        kept[(c["kernel"], c["dtype"])] += 1
    assert kept == {("fwd", "bf16"): 8, ("bwd_h", "bf16"): 8, ("bwd_v", "bf16"): 8,
                    ("fwd", "fp32"): 5, ("bwd_h", "fp32"): 8, ("bwd_v", "fp32"): 8}
