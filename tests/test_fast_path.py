"""The fast training step (``ssgan.train.steps.StepForwards``): compiled without graph breaks or
recompiles, bf16 autocast wiring, no host synchronisation, and one full training iteration with
the Triton ops (interpreter) against the reference backend.

On CPU, ``torch.compile`` uses ``backend="aot_eager"`` (dynamo + AOT autograd, which is what
proves fullgraph capture and the recompile behaviour; inductor's CPU compile alone takes minutes).
The Triton interpreter is slow for the FIR op (about 25 ms per program), so the tests that run the
whole model with the Triton backend use ``MICRO``, the smallest configuration the model accepts.
"""

import inspect
import re

import pytest
import torch
import torch._dynamo

from ssgan import DualBranchDiscriminator, SemanticGenerator, preset
from ssgan.kernels import fuse, use_backend
from ssgan.model.config import SSGANConfig
from ssgan.model.latents import mix_with_choice
from ssgan.train import losses
from ssgan.train import steps as T

TINY = preset("tiny")
MICRO = SSGANConfig(size=8, style_dim=32, n_mlp=2, channel_max=8, seg_dim=3, local_layers=3,
                    local_channel=16, base_layers=1, depth_layers=2, coarse_size=4, coarse_channel=16,
                    min_feat_size=2, transparent_dims=(2,))


def build(cfg, batch, seed=0):
    torch.manual_seed(seed)
    G, D, G_ema = SemanticGenerator(cfg), DualBranchDiscriminator(cfg), SemanticGenerator(cfg)
    G_ema.load_state_dict(G.state_dict())
    T.requires_grad(G_ema, False)
    g = torch.Generator().manual_seed(seed + 1)
    real = torch.randn(batch, 3, cfg.size, cfg.size, generator=g).clamp(-1, 1)
    mask = torch.randn(batch, cfg.seg_dim, cfg.size, cfg.size, generator=g).clamp(-1, 1)
    return G, D, G_ema, real, mask


def main_steps(G, D, d_optim, g_optim, real, mask, z, tc, gen, fwd):
    T.requires_grad(G, False)
    T.requires_grad(D, True)
    out = T.d_step(G, D, d_optim, real, mask, z, tc, gen, None, fwd)
    T.requires_grad(G, True)
    T.requires_grad(D, False)
    out.update(T.g_step(G, D, g_optim, z, tc, gen, None, fwd))
    return out


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# ------------------------------------------------------------------------------------------------
# torch.compile: fullgraph, and no recompiles after the warm-up iteration
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_compiled_steps_fullgraph_no_recompiles(fresh_dynamo):
    """Reference backend here; the Triton backend is compiled (fullgraph, two graphs) in
    :func:`test_full_iteration_triton_matches_reference`: its ops are opaque custom ops, so the
    graph structure and guards are the same."""
    backend, cfg, iters, batch = "reference", TINY, 4, 4
    G, D, _, real, mask = build(cfg, batch)
    tc = T.TrainConfig(d_reg_every=2, g_reg_every=2)
    g_optim, d_optim = T.make_optimizers(G, D, tc)
    fwd = T.StepForwards(compile=True, precision="fp32", backend="aot_eager")
    gen = torch.Generator().manual_seed(3)
    start = T.compiled_graphs()
    graphs = []
    with use_backend(backend):
        for i in range(iters):
            z = [torch.randn(batch, cfg.style_dim, generator=gen) for _ in range(1 + i % 2)]  # mix on odd i
            out = main_steps(G, D, d_optim, g_optim, real, mask, z, tc, gen, fwd)
            if i % 2 == 0:  # eager regularisation between compiled steps
                T.requires_grad(G, False)
                T.requires_grad(D, True)
                out.update(T.r1_step(D, d_optim, real, mask, tc))
                T.requires_grad(G, True)
                out.update(T.pl_step(G, g_optim, [z[0][:2]], torch.zeros(()), tc, gen)[0])
            assert all(torch.isfinite(v).all() for v in out.values())
            graphs.append(T.compiled_graphs() - start)
    # fullgraph=True raises on any graph break; two graphs (D step, G step) built in the first
    # iteration, none afterwards (mixing, regularisation steps and new RNG draws included)
    assert graphs == [2] * iters


@pytest.mark.slow
def test_compiled_steps_match_eager():
    """aot_eager runs the same ops as eager: the compiled step reproduces the eager losses and
    parameter updates (mixed batch, seg branch, mask loss)."""
    results = []
    for compile_ in (False, True):
        torch._dynamo.reset()
        G, D, _, real, mask = build(TINY, 4)
        tc = T.TrainConfig()
        g_optim, d_optim = T.make_optimizers(G, D, tc)
        fwd = T.StepForwards(compile=compile_, backend="aot_eager")
        gen = torch.Generator().manual_seed(5)
        torch.manual_seed(7)
        z = [torch.randn(4, TINY.style_dim, generator=gen) for _ in range(2)]
        with use_backend("reference"):
            out = main_steps(G, D, d_optim, g_optim, real, mask, z, tc, gen, fwd)
        results.append((out, [p.detach().clone() for p in [*G.parameters(), *D.parameters()]]))
    torch._dynamo.reset()
    (eager, p_eager), (comp, p_comp) = results
    for k in eager:
        torch.testing.assert_close(comp[k], eager[k], rtol=1e-5, atol=1e-6)
    for a, b in zip(p_comp, p_eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_mixing_inputs_reproduce_generate():
    """The compiled path's (z, z, zeros) / (z1, z2, choice) form gives the latents of the eager
    ``generate`` and draws the same random numbers."""
    G = SemanticGenerator(TINY)
    z1, z2 = torch.randn(3, TINY.style_dim), torch.randn(3, TINY.style_dim)
    for z in ([z1], [z1, z2]):
        g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
        want = G.mix_styles([G.mapping(x) for x in z], g1)
        zz, choice = T.mixing_inputs(G, z, g2)
        w1, w2 = G.mapping(zz.flatten(0, 1)).chunk(2)
        torch.testing.assert_close(mix_with_choice(w1, w2, choice, TINY), want)
        assert torch.equal(g1.get_state(), g2.get_state())


# ------------------------------------------------------------------------------------------------
# Precision
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bf16_autocast_step_fp32_losses_and_weights(fresh_dynamo):
    G, D, _, real, mask = build(TINY, 4)
    tc = T.TrainConfig()
    g_optim, d_optim = T.make_optimizers(G, D, tc)
    gen = torch.Generator().manual_seed(3)
    z = [torch.randn(4, TINY.style_dim, generator=gen)]
    ref = {}
    with torch.no_grad():
        fake = T.synthesize_mixed(G, *T.mixing_inputs(G, z, None))
        ref["g"] = losses.g_nonsaturating_loss(D(fake.rgb, fake.seg))
    fwd = T.StepForwards(compile=True, precision="bf16", backend="aot_eager")
    graphs = []
    with use_backend("reference"):
        total, g_loss, m_loss = fwd.g_forward(G, D, *T.mixing_inputs(G, z, None), True, 100.0, fwd.amp)
        assert total.dtype == g_loss.dtype == m_loss.dtype == torch.float32
        torch.testing.assert_close(g_loss, ref["g"], rtol=3e-2, atol=3e-2)  # bf16 forward, fp32 loss
        for _ in range(2):
            out = main_steps(G, D, d_optim, g_optim, real, mask, z, tc, gen, fwd)
            graphs.append(T.compiled_graphs())
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in out.values())
    assert all(p.dtype == torch.float32 for p in [*G.parameters(), *D.parameters()])
    assert all(s["exp_avg_sq"].dtype == torch.float32 for s in g_optim.state.values())
    assert graphs[0] == graphs[1]  # no recompile in the second iteration


@pytest.mark.slow
def test_local_features_under_autocast_triton_matches_reference():
    """Custom ops do not see autocast: the generator casts the grouped MLP's operands itself (bf16
    operands, fp32 accumulation) and keeps the softmax in fp32; Triton and reference agree."""
    G = SemanticGenerator(TINY)
    lat = G.mix_styles([G.mapping(torch.randn(2, TINY.style_dim))])
    out = {}
    for backend in ("reference", "triton"):
        with use_backend(backend), torch.autocast("cpu", dtype=torch.bfloat16):
            h, depth = G.local_features(lat)
            feat_w = torch.stack([n.to_feat.conv.effective_weight().flatten(1) for n in G.local_nets])
            feat_b = torch.stack([n.to_feat.bias.flatten() for n in G.local_nets])
            feat, m = fuse(h, depth.float(), feat_w, feat_b, None, G.transparent)
        # Triton: bf16 activations; the reference promotes to fp32 at the fp32 bias add
        assert h.dtype == (torch.bfloat16 if backend == "triton" else torch.float32)
        assert m.dtype == torch.float32
        out[backend] = (h.float(), depth.float(), feat.float(), m)
    with torch.no_grad():
        h32, d32 = G.local_features(lat)
    torch.testing.assert_close(out["reference"][0], h32, rtol=5e-2, atol=5e-2)
    for a, b in zip(out["triton"], out["reference"], strict=True):
        torch.testing.assert_close(a, b, rtol=3e-2, atol=3e-2)


def test_precision_flags():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        T.configure_precision("tf32")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        T.configure_precision("fp32")
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        with pytest.raises(ValueError, match="precision"):
            T.configure_precision("fp16")
        with pytest.raises(ValueError, match="precision"):
            T.StepForwards(precision="int8")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
    assert T.StepForwards(precision="bf16").amp == torch.bfloat16
    assert T.StepForwards(precision="tf32").amp is None


# ------------------------------------------------------------------------------------------------
# No host synchronisation in the step path
# ------------------------------------------------------------------------------------------------

STEP_PATH = [T.d_step, T.r1_step, T.g_step, T.pl_step, T.ema_update, T._apply, T.mixing_inputs,
             T.synthesize_mixed, T.d_forward, T.g_forward, losses.d_logistic_loss, losses.r1_penalty,
             losses.g_nonsaturating_loss, losses.mask_loss, losses.path_length_penalty]
# reading a tensor back: .item() / .cpu() / .tolist() / .numpy() / .nonzero(), or Python float(),
# bool(), int() of a tensor (a tensor's .float() cast is fine), or printing one
SYNCS = [r"\.item\(", r"\.cpu\(", r"\.tolist\(", r"\.numpy\(", r"\.nonzero\(", r"(?<![.\w])float\(",
         r"(?<![.\w])bool\(", r"(?<![.\w])int\(", r"(?<![.\w])print\("]


def test_sync_patterns_catch_reads():
    body = "x = loss.item()\ny = float(t)\nif bool(m): pass\nz = t.float()"
    assert [p for p in SYNCS if re.search(p, body)] == [SYNCS[0], SYNCS[5], SYNCS[6]]


@pytest.mark.parametrize("fn", STEP_PATH, ids=lambda f: f.__name__)
def test_step_path_has_no_host_sync(fn):
    code = inspect.getsource(fn).split('"""')
    body = "".join(code[::2])  # outside docstrings
    found = [p for p in SYNCS if re.search(p, body)]
    assert not found, f"{fn.__name__} reads values back to the host: {found}"


@pytest.mark.cuda
def test_cuda_compiled_bf16_steps_no_sync_no_recompile(fresh_dynamo):
    dev = torch.device("cuda")
    G, D, G_ema, real, mask = build(TINY, 4)
    G, D, G_ema, real, mask = G.to(dev), D.to(dev), G_ema.to(dev), real.to(dev), mask.to(dev)
    tc = T.TrainConfig(d_reg_every=2, g_reg_every=2)
    g_optim, d_optim = T.make_optimizers(G, D, tc)
    fwd = T.StepForwards(compile=True, precision="bf16")
    gen = torch.Generator(dev).manual_seed(0)
    decide = torch.Generator().manual_seed(1)
    mpl = torch.zeros((), device=dev)

    def iteration(i):
        nonlocal mpl
        z = T.sample_z(4, TINY.style_dim, 0.5, gen, decide)
        out = main_steps(G, D, d_optim, g_optim, real, mask, z, tc, gen, fwd)
        if i % 2 == 0:
            T.requires_grad(G, False)
            T.requires_grad(D, True)
            out.update(T.r1_step(D, d_optim, real, mask, tc))
            T.requires_grad(G, True)
            pl, mpl = T.pl_step(G, g_optim, T.sample_z(2, TINY.style_dim, 0.5, gen, decide), mpl, tc, gen)
            out.update(pl)
        T.ema_update(G_ema, G, T.ema_beta(tc, 4, 4 * i))
        return out

    for i in range(4):  # warm-up: compiles, autotunes
        iteration(i)
    graphs = T.compiled_graphs()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(4, 10):
            out = iteration(i)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert T.compiled_graphs() == graphs
    assert all(torch.isfinite(v).all() for v in out.values())


# ------------------------------------------------------------------------------------------------
# One full training iteration: Triton ops (interpreter, compiled) vs the reference backend
# ------------------------------------------------------------------------------------------------


def full_iteration(backend, compile_):
    """D step, R1, G step, path length, EMA (d_reg_every = g_reg_every = 1), with a mixed batch.
    Returns the losses, each step's gradients and the parameters after the iteration."""
    B = 2
    G, D, G_ema, real, mask = build(MICRO, B)
    tc = T.TrainConfig(d_reg_every=1, g_reg_every=1)
    g_optim, d_optim = T.make_optimizers(G, D, tc)
    fwd = T.StepForwards(compile=compile_, backend="aot_eager")
    gen = torch.Generator().manual_seed(11)
    torch.manual_seed(12)  # render-net noise, path-length noise
    grads = {}

    def keep(name, module):
        grads[name] = [p.grad.detach().clone() for p in module.parameters() if p.grad is not None]

    with use_backend(backend):
        T.requires_grad(G, False)
        T.requires_grad(D, True)
        z = T.sample_z(B, MICRO.style_dim, 1.0, gen)  # a mixed batch
        out = T.d_step(G, D, d_optim, real, mask, z, tc, gen, None, fwd)
        keep("d", D)
        out.update(T.r1_step(D, d_optim, real, mask, tc))
        keep("r1", D)
        T.requires_grad(G, True)
        T.requires_grad(D, False)
        z = T.sample_z(B, MICRO.style_dim, 0.0, gen)
        out.update(T.g_step(G, D, g_optim, z, tc, gen, None, fwd))
        keep("g", G)
        pl, _ = T.pl_step(G, g_optim, T.sample_z(B, MICRO.style_dim, 0.0, gen), torch.zeros(()), tc, gen)
        out.update(pl)
        keep("pl", G)
        T.ema_update(G_ema, G, T.ema_beta(tc, B, 0))
    params = {n: [p.detach().clone() for p in m.parameters()]
              for n, m in (("G", G), ("D", D), ("G_ema", G_ema))}
    return out, grads, params


@pytest.mark.slow
def test_full_iteration_triton_matches_reference(fresh_dynamo):
    """Tolerances: the Triton kernels compute in fp32 with IEEE dots (no TF32), so they differ from
    the reference matmuls / convolutions by summation order only: ~1e-6 relative per op, a few
    1e-5 after the backward and double backward chains. Gradients are compared relative to each
    step's largest gradient entry (1e-4; per tensor, a
    tensor whose gradients nearly cancel, e.g. ~1e-6 against ~1 elsewhere, can show a few % of
    rounding noise); losses at rtol 1e-4. Parameters after Adam: its first
    steps are nearly sign(g)·lr, so an entry whose gradient is ~0 (relative to its tensor) may move
    by a different fraction of lr in the two runs; parameters must agree within 1e-2·lr except on
    at most 0.1 % of entries, and within 2·lr everywhere."""
    ref_out, ref_grads, ref_params = full_iteration("reference", False)
    start = T.compiled_graphs()
    tri_out, tri_grads, tri_params = full_iteration("triton", True)  # compiled, fullgraph
    assert T.compiled_graphs() - start == 2
    assert set(ref_out) == set(tri_out)
    for k in ref_out:
        torch.testing.assert_close(tri_out[k], ref_out[k], rtol=1e-4, atol=1e-6, msg=k)
    for step in ref_grads:
        assert len(tri_grads[step]) == len(ref_grads[step]) > 0
        a = torch.cat([g.flatten() for g in tri_grads[step]])
        b = torch.cat([g.flatten() for g in ref_grads[step]])
        err = ((a - b).abs().max() / b.abs().max()).item()
        assert err < 1e-4, (step, err)
    lr = T.TrainConfig(d_reg_every=1, g_reg_every=1).lr
    for name in ref_params:
        diffs = torch.cat([(a - b).abs().flatten() for a, b in zip(tri_params[name], ref_params[name],
                                                                     strict=True)])
        assert diffs.max() <= 2 * lr, name
        assert (diffs > 1e-2 * lr).float().mean() <= 1e-3, name
