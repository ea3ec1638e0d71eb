"""Whole-generator gradient parity against float64: is a gradient's error float32 rounding
(cancellation in a reduction) or a wrong kernel?

For one seed, the generator's forward + backward of ``sum(rgb · g_rgb) + sum(seg · g_seg)`` (fixed
random upstream weights, fixed render-net noise, fixed z; noise weights and biases drawn at random
too, as in a trained model, not left at their zero init) runs three ways:

    ref32   the reference ops in float32
    fast32  the ops in ``ops`` (default: the local generators' grouped MLP and the fusion) on the
            Triton backend (``TRITON_INTERPRET=1`` on CPU), the others on the reference backend
    ref64   the reference ops with the model, inputs and upstream weights in float64

and every parameter gradient of ref32 and fast32 is compared with ref64 by
e = ||x − x64|| / ||x64||. Two measures of how much float32 rounding alone moves each gradient:

* ``floor``: the RMS of e over ``floor_runs`` ref32 runs with every parameter perturbed by a random
  ~1 ulp (relative ``eps32 · N(0, 1)``). That is the size of the perturbation a different
  summation order anywhere upstream makes; an ill-conditioned gradient moves a lot.
* ``cond``, for each render-net noise weight: its gradient is one scalar reduction,
  dL/dw = Σ_{b,c,y,x} dL/dpre · noise (pre: bias_act's pre-activation input), whose terms cancel;
  cond = Σ|terms| / |Σ terms| (computed in float64). Any relative perturbation δ of the terms
  moves the sum by up to δ · cond relative.

A gradient passes when e(fast32) <= ``factor`` · max(floor, e(ref32), cond · eps32) + 1e-6: the
fast path may not be further from float64 than a small multiple of what float32 rounding costs the
reference maths on the same gradient; a wrong kernel is orders of magnitude out.

    TRITON_INTERPRET=1 OMP_NUM_THREADS=1 python -m bench.grad_parity [--batch 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence

import torch

from ssgan import SemanticGenerator
from ssgan.kernels import use_backend
from ssgan.model.config import SSGANConfig
from ssgan.model.layers import FixedStyledConv

# The official (CelebAMask-HQ) layer layout at 64 px: K = 13 classes, L = 10 layers, C = 64,
# F = 512, style 512, 8 mapping layers, channel_max 512, transparent classes 10 and 12. coarse_size
# and min_feat_size are scaled down (32 and 8) so that the render net has three stages, convs 0..5.
OFFICIAL_64 = SSGANConfig(size=64, coarse_size=32, min_feat_size=8)
EPS32 = torch.finfo(torch.float32).eps
FACTOR = 4.0
FAST_OPS = ("grouped_mlp", "fuse")


def build(cfg: SSGANConfig, seed: int, batch: int):
    """(G, z, noise, g_rgb, g_seg) for ``seed``: G in float32 with random noise weights and
    render-net / local biases (0.1 · N(0, 1)), one noise tensor per render-net conv."""
    torch.manual_seed(seed)
    G = SemanticGenerator(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(("noise.weight", "activate.bias")):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    z = torch.randn(batch, cfg.style_dim, generator=gen)
    sizes = [cfg.min_feat_size * 2 ** (i // 2 + 1) for i in range(G.render_net.n_layers)]
    noise = [torch.randn(batch, 1, s, s, generator=gen) for s in sizes]
    g_rgb = torch.randn(batch, 3, cfg.size, cfg.size, generator=gen)
    g_seg = torch.randn(batch, cfg.seg_dim, cfg.size, cfg.size, generator=gen)
    return G, z, noise, g_rgb, g_seg


@contextlib.contextmanager
def capture_noise_terms(noise: Sequence[torch.Tensor], into: dict[int, torch.Tensor]) -> Iterator[None]:
    """While active, the render-net convs' bias_act calls record dL/dpre · noise (the terms of
    the noise weight's gradient) into ``into[i]`` for the conv fed ``noise[i]``."""
    layers = sys.modules[FixedStyledConv.__module__]
    original = layers.bias_act

    def recording(x, bias, nz=None, weight=None, *args, **kwargs):
        for i, n in enumerate(noise):
            if nz is n and x.requires_grad:  # pre = x + b + w·noise: dL/dpre = dL/dx
                x.register_hook(lambda g, n=n, i=i: into.__setitem__(i, (g * n).detach()))
        return original(x, bias, nz, weight, *args, **kwargs)

    layers.bias_act = recording
    try:
        yield
    finally:
        layers.bias_act = original


def gradients(G: SemanticGenerator, z, noise, g_rgb, g_seg, dtype: torch.dtype, backend: str,
              ops: Sequence[str] | None = None, terms: dict[int, torch.Tensor] | None = None
              ) -> dict[str, torch.Tensor]:
    """Parameter gradients (as float64) of the loss with G cast to ``dtype`` (in place) and the
    ``ops`` on ``backend`` (all ops when None); ``terms`` collects the noise-weight terms."""
    G.to(dtype).zero_grad(set_to_none=True)
    noise = [n.to(dtype) for n in noise]
    capture = capture_noise_terms(noise, terms) if terms is not None else contextlib.nullcontext()
    with use_backend(backend, ops), capture:
        rgb, seg = G([z.to(dtype)], noise=noise, randomize_noise=False)
        ((rgb * g_rgb.to(dtype)).sum() + (seg * g_seg.to(dtype)).sum()).backward()
    return {n: p.grad.detach().double().clone() for n, p in G.named_parameters() if p.grad is not None}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    d = b.norm().item()
    return (a - b).norm().item() / d if d else (a - b).norm().item()


def compare(cfg: SSGANConfig, seed: int = 0, batch: int = 2, ops: Sequence[str] = FAST_OPS,
            floor_runs: int = 3, factor: float = FACTOR, log=None) -> dict:
    """Run ref32, fast32, ref64 and ``floor_runs`` perturbed ref32 runs; returns {"rows": one dict
    per parameter (name, ref32, fast32, fast32_vs_ref32, floor, cond (noise weights), bound, ok),
    sorted worst first by fast32 / bound, "ok", "seconds"}."""
    log = log or (lambda s: None)
    G, z, noise, g_rgb, g_seg = build(cfg, seed, batch)
    state = {k: v.clone() for k, v in G.state_dict().items()}
    seconds = {}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        seconds[name] = time.perf_counter() - t
        log(f"{name}: {seconds[name]:.1f} s")
        G.float().load_state_dict(state)
        return out

    terms: dict[int, torch.Tensor] = {}
    g64 = timed("ref64", lambda: gradients(G, z, noise, g_rgb, g_seg, torch.float64, "reference",
                                           terms=terms))
    g32 = timed("ref32", lambda: gradients(G, z, noise, g_rgb, g_seg, torch.float32, "reference"))
    fast = timed("fast32", lambda: gradients(G, z, noise, g_rgb, g_seg, torch.float32, "triton", ops))

    gen = torch.Generator().manual_seed(seed + 2)
    sq = dict.fromkeys(g64, 0.0)
    for r in range(floor_runs):
        def perturbed():
            with torch.no_grad():
                for p in G.parameters():
                    p.mul_(1 + EPS32 * torch.randn(p.shape, generator=gen))
            return gradients(G, z, noise, g_rgb, g_seg, torch.float32, "reference")
        g = timed(f"floor {r}", perturbed)
        for k in g64:
            sq[k] += rel(g[k], g64[k]) ** 2
    cond = {}
    for i, t in terms.items():
        s, a = t.sum().item(), t.abs().sum().item()
        cond[f"render_net.convs.{i}.noise.weight"] = {"sum": s, "abs_sum": a, "cond": a / max(abs(s), 1e-300)}

    rows = []
    for name in g64:
        row = {"name": name, "ref32": rel(g32[name], g64[name]), "fast32": rel(fast[name], g64[name]),
               "fast32_vs_ref32": rel(fast[name], g32[name]),
               "floor": (sq[name] / floor_runs) ** 0.5 if floor_runs else 0.0}
        scale = max(row["floor"], row["ref32"])
        if name in cond:
            row.update(cond[name], value64=g64[name].item())
            scale = max(scale, row["cond"] * EPS32)
        row["bound"] = factor * scale + 1e-6
        row["ok"] = row["fast32"] <= row["bound"]
        rows.append(row)
    rows.sort(key=lambda r: -r["fast32"] / r["bound"])
    return {"rows": rows, "ok": all(r["ok"] for r in rows), "seconds": seconds}


def table(result: dict, top: int = 10) -> str:
    rows = result["rows"]
    shown = rows[:top] + [r for r in rows[top:] if "noise.weight" in r["name"]]
    lines = [f"{'parameter':46s} {'ref32':>8s} {'fast32':>8s} {'fast-ref':>8s} {'floor':>8s} "
             f"{'bound':>8s} {'cond':>8s}"]
    for r in shown:
        c = f"{r['cond']:8.3g}" if "cond" in r else ""
        lines.append(f"{r['name']:46s} {r['ref32']:8.2e} {r['fast32']:8.2e} {r['fast32_vs_ref32']:8.2e} "
                     f"{r['floor']:8.2e} {r['bound']:8.2e} {c}" + ("" if r["ok"] else "  FAIL"))
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ops", default=",".join(FAST_OPS), help="ops on the Triton backend")
    ap.add_argument("--floor-runs", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        print("note: on CPU the Triton ops need TRITON_INTERPRET=1")
    ops = tuple(o for o in args.ops.split(",") if o)
    result = compare(OFFICIAL_64, args.seed, args.batch, ops, args.floor_runs, log=print)
    print(table(result))
    for r in result["rows"]:
        if "cond" in r:
            print(f"{r['name']}: sum {r['sum']:.4e}, sum|terms| {r['abs_sum']:.4e}, cond {r['cond']:.3g}")
    print("ok" if result["ok"] else "FAIL")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": OFFICIAL_64.to_dict(), **vars(args), **result}, f, indent=1)
    return result


if __name__ == "__main__":
    main()
