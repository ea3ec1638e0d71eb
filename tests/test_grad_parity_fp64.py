"""Whole-generator gradients of the fast path (Triton grouped MLP and fusion, interpreter) against
a float64 reference, with a tolerance that float32 cancellation cannot trip but a wrong kernel does.

A parameter's gradient may be ill-conditioned: a render-net noise weight's gradient is one scalar
sum over every pixel and channel of dL/dpre · noise whose terms cancel (Σ|terms| / |Σ| is 1e2 to
3e4 on the official-layout 64 px model), so any rounding upstream moves it by up to cond · eps32.
Comparing the Triton path with the float32 reference, or with float64 at a fixed tolerance, then
reports rounding as a regression. Here each gradient's bound is a small multiple of what float32
costs the *reference* maths on that gradient: its own error against float64, the spread of
reference runs with every parameter perturbed by ~1 ulp, and cond · eps32 for the noise weights
(see :mod:`bench.grad_parity`, which runs the same check on the official-layout 64 px model).
"""

import pytest

import ssgan.kernels.fusion as fusion_module
from bench.grad_parity import EPS32, compare, table
from ssgan import SemanticGenerator
from ssgan.model.config import SSGANConfig

# Small enough for the interpreter (~8 s a run), with everything the path has: several classes,
# a transparent one, residual refinement, three render-net stages (six noisy convs).
CFG = SSGANConfig(size=16, style_dim=32, n_mlp=2, channel_max=32, seg_dim=4, local_layers=4,
                  local_channel=16, base_layers=1, depth_layers=2, coarse_size=8, coarse_channel=16,
                  min_feat_size=2, transparent_dims=(3,))


def test_fast_path_gradients_within_float32_rounding_of_float64():
    result = compare(CFG, seed=0, batch=2, floor_runs=3)
    rows = {r["name"]: r for r in result["rows"]}
    assert len(rows) == sum(1 for _ in SemanticGenerator(CFG).parameters())
    # every gradient, the scalar noise weights included, within the rounding-scaled bound
    assert result["ok"], "\n" + table(result)
    # the cancellation measure is the gradient's own reduction: its terms sum to the float64 gradient
    noise = [r for r in rows.values() if "cond" in r]
    assert len(noise) == 6
    for r in noise:
        assert r["sum"] == pytest.approx(r["value64"], rel=1e-9, abs=1e-12)
        assert r["cond"] >= 1
    # the bounds stay tight where the maths is well-conditioned: a real error shows
    assert max(r["bound"] for r in rows.values() if "cond" not in r) < 1e-4
    assert max(r["cond"] for r in noise) * EPS32 * 4 > 1e-5  # the noise weights do cancel here


def test_check_flags_a_slightly_wrong_kernel(monkeypatch):
    """A 1e-4 relative error in one output of the fusion kernel's backward (grad depth) fails the
    check, although it is far below the per-tensor errors cancellation produces on large models."""
    original = fusion_module._fuse_backward_triton

    def wrong(*args, **kwargs):
        grad_h, grad_d, grad_v, grad_e = original(*args, **kwargs)
        return grad_h, grad_d * (1 + 1e-4), grad_v, grad_e

    monkeypatch.setattr(fusion_module, "_fuse_backward_triton", wrong)
    result = compare(CFG, seed=0, batch=2, floor_runs=1)
    failed = [r["name"] for r in result["rows"] if not r["ok"]]
    assert failed, "\n" + table(result)
