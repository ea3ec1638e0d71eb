"""The pieces that ``train.py`` composes: hyper-parameters, optimisers, EMA, latent sampling, the
four optimisation steps, reproducible data order, RNG capture, DDP helpers, logging, checkpoint
rotation and sample grids.

Behaviour follows the official ``train.py`` of SemanticStyleGAN (SPEC.md, "Training"):

* step ``i`` (0-based) runs the logistic D step, then R1 when ``i % d_reg_every == 0`` (so at
  ``i = 0`` too), then the G step, then path-length regularisation when
  ``i % g_reg_every == 0``, then the EMA update;
* R1 is ``(γ_img/2·R1_img + γ_seg/2·R1_seg)·d_reg_every + 0·D(real)[0]``; path length is
  ``path_regularize·g_reg_every·penalty + 0·img[0,0,0,0] + 0·seg[0,0,0,0]`` on
  ``batch // path_batch_shrink`` samples, with gradients w.r.t. the expanded latents;
* Adam's lr and betas are corrected for lazy regularisation (lr·r, β^r, r = every/(every+1));
* G-EMA decay ``0.5 ** (32 / (10 * 1000))`` per step (:func:`ema_beta` with ``ema_rampup=0``);
  style mixing with probability 0.3.

Differences from the official script, all deliberate:

* Randomness goes through ``torch.Generator`` objects (never Python's ``random``), so runs are
  reproducible and resumable bit for bit on CPU.
* The fake images of the D step are generated under ``no_grad`` (the official script builds a
  graph that nothing back-propagates through; the values are identical).
* G-EMA ramp-up (``ema_rampup > 0``, as NVlabs' stylegan2-ada; train.py's default for new
  runs): early in training the EMA horizon grows with the images seen (:func:`ema_beta`), so
  G-EMA follows G instead of holding on to the random initial weights for thousands of steps.
* G-EMA's buffers (noise maps, blur kernels: constants) are G's, copied once at set-up
  (:func:`copy_buffers`); the per-step update lerps parameters only.
* DDP: no ``DistributedDataParallel`` wrapper. Every backward is followed by one all-reduce of
  the flattened gradients (:func:`sync_grads`), which works unchanged for R1's and path length's
  double backward and keeps parameters identical on every rank by construction. The global batch
  is split across ranks (the official ``--batch`` is per GPU). As in the official script, the
  mean path length is a per-rank running value (logs show its mean over ranks); checkpoints hold
  every rank's value and RNG states.
* ``freeze_local``: the parameters outside the mapping network and the render net (local
  generators, position embedding) are frozen in G itself and left out of its optimiser (the
  official adaptation script keeps training them in G). As there, G-EMA averages only ``style``
  and ``render_net`` (:data:`EMA_FREEZE_LOCAL`): G-EMA's local generators and position embedding
  stay exactly as loaded, even where they differ from G's.

No function here calls ``.item()`` on a loss: the step functions return detached loss tensors,
which the loop reads back only when it logs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import resource
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ssgan import latents as L
from ssgan import losses
from ssgan.config import PRESETS, SSGANConfig
from ssgan.data import DatasetError, _ItemDataset, _to_item
from ssgan.generator import SemanticGenerator, Synthesis
from ssgan.visualize import colorize, grid, resize_nearest, save_png, to_uint8

#: The loss terms logged every step (and checked for non-finite values).
#: Gradient synchronisation called after each backward (e.g. :func:`sync_grads`), or None.
GradSync = Callable[[nn.Module], None] | None

LOSS_KEYS: tuple[str, ...] = ("d", "real_score", "fake_score", "r1_img", "r1_seg", "g", "mask",
                              "path", "path_length", "mean_path_length")


# ------------------------------------------------------------------------------------------------
# Hyper-parameters
# ------------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Every optimisation hyper-parameter, with the paper's (official ``train.py``) defaults."""

    lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    r1_img: float = 10.0
    r1_seg: float = 1000.0
    d_reg_every: int = 16
    g_reg_every: int = 4
    path_regularize: float = 0.5
    path_batch_shrink: int = 2
    path_decay: float = 0.01
    mixing: float = 0.3
    lambda_mask: float = 100.0
    ema_kimg: float | None = None  # G-EMA half-life in kimg; None: 10·batch/32 (see ema_beta)
    ema_rampup: float = 0.0  # 0: the official fixed decay; NVlabs use 0.05 (see ema_beta)
    use_seg: bool = True  # False for image-only data: D(img) only, no R1 on seg, no mask loss
    freeze_local: bool = False

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        problems = []  # each names the field and train.py's flag for it
        if not self.lr >= 0:
            problems.append(f"lr (--lr) must be >= 0, got {self.lr}")
        if not all(0 <= b < 1 for b in self.betas):
            problems.append(f"betas (--betas) must lie in [0, 1), got {self.betas[0]} {self.betas[1]}")
        if not (self.r1_img >= 0 and self.r1_seg >= 0):
            problems.append(f"r1_img and r1_seg (--r1-img, --r1-seg) must be >= 0, got {self.r1_img} "
                            f"and {self.r1_seg}")
        if self.d_reg_every < 1 or self.g_reg_every < 1:
            problems.append("d_reg_every and g_reg_every (--d-reg-every, --g-reg-every) must be >= 1")
        if self.path_batch_shrink < 1:
            problems.append("path_batch_shrink (--path-batch-shrink) must be >= 1")
        if not 0 <= self.mixing <= 1:
            problems.append(f"mixing (--mixing) must lie in [0, 1], got {self.mixing}")
        if self.ema_kimg is not None and not self.ema_kimg > 0:
            problems.append(f"ema_kimg (--ema-kimg) must be > 0, got {self.ema_kimg}")
        if not self.ema_rampup >= 0:
            problems.append(f"ema_rampup (--ema-rampup) must be >= 0, got {self.ema_rampup}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


#: The paper's R1 weights (γ_img, γ_seg), set for CelebAMask-HQ at 256–512 px and global batch 32.
R1_PAPER: tuple[float, float] = (10.0, 1000.0)
#: γ_img per (pixel² / image of the batch) for the configurations without paper values (see r1_auto).
R1_PER_PIXEL: float = 0.00125


def r1_auto(cfg: SSGANConfig, batch: int) -> tuple[float, float]:
    """R1 weights (γ_img, γ_seg) that fit the resolution and the global batch (train.py's
    ``--r1-img auto --r1-seg auto``).

    * The celeba presets (``celeba-256``, ``celeba-512``): the paper's 10 and 1000.
    * Any other configuration (``tiny``, custom sizes), as NVlabs' "auto" config scales γ::

          γ_img = R1_PER_PIXEL · size² / batch,   γ_seg = 100 · γ_img

      R1 penalises ‖∇D‖², whose scale grows with the pixel count, and a larger batch averages
      the penalty over more samples (NVlabs: γ = 0.0002·size²/batch). The ratio γ_seg/γ_img =
      1000/10 is the paper's. R1_PER_PIXEL = 0.00125 (γ = 0.16 / 16 for 32 px at batch 8) was
      chosen by experiment on the tiny preset: with the paper's 10 / 1000 its masks never grew
      eyes or mouths (README, "Training").
    """
    if any(cfg == PRESETS[name] for name in ("celeba-256", "celeba-512")):
        return R1_PAPER
    img = R1_PER_PIXEL * cfg.size**2 / batch
    return img, img * R1_PAPER[1] / R1_PAPER[0]


def lazy_ratio(every: int) -> float:
    """r = every / (every + 1): the fraction of minibatches that are not regularisation passes."""
    return every / (every + 1)


def make_optimizers(G: nn.Module, D: nn.Module, tc: TrainConfig,
                    g_params: Sequence[nn.Parameter] | None = None
                    ) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G and D with the lazy-regularisation corrections lr·r and β^r.

    ``g_params``: the generator parameters to train (default: all; see :func:`trainable_params`)."""
    g_hp, d_hp = optimizer_hparams(tc)
    g_optim = torch.optim.Adam(list(G.parameters()) if g_params is None else list(g_params), **g_hp)
    d_optim = torch.optim.Adam(D.parameters(), **d_hp)
    return g_optim, d_optim


def optimizer_hparams(tc: TrainConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (lr, betas) of G's and D's Adam under ``tc`` (see :func:`make_optimizers`)."""
    out = []
    for r in (lazy_ratio(tc.g_reg_every), lazy_ratio(tc.d_reg_every)):
        out.append({"lr": tc.lr * r, "betas": (tc.betas[0] ** r, tc.betas[1] ** r)})
    return out[0], out[1]


def apply_hparams(g_optim: torch.optim.Optimizer, d_optim: torch.optim.Optimizer,
                  tc: TrainConfig) -> bool:
    """Set the optimisers' lr and betas to ``tc``'s (e.g. after loading states saved under other
    values); True when anything changed."""
    changed = False
    for optim, hp in zip((g_optim, d_optim), optimizer_hparams(tc), strict=True):
        for group in optim.param_groups:
            for k, v in hp.items():
                cur = tuple(group[k]) if isinstance(v, tuple) else group[k]
                if cur != v:
                    group[k] = v
                    changed = True
    return changed


def trainable_params(G: SemanticGenerator, freeze_local: bool) -> list[nn.Parameter]:
    """G's parameters to optimise. With ``freeze_local`` (domain adaptation) only the mapping
    network (``style``) and the render net train; the rest (local generators, position
    embedding) gets ``requires_grad=False`` for good."""
    if not freeze_local:
        return list(G.parameters())
    keep = {id(p) for m in (G.style, G.render_net) for p in m.parameters()}
    out = []
    for p in G.parameters():
        if id(p) in keep:
            out.append(p)
        else:
            p.requires_grad_(False)
    return out


def requires_grad(module: nn.Module | Iterable[nn.Parameter], flag: bool) -> None:
    """Set ``requires_grad`` on a module's parameters (or on the given parameters)."""
    params = module.parameters() if isinstance(module, nn.Module) else module
    for p in params:
        p.requires_grad_(flag)


#: The generator submodules that G-EMA averages under ``freeze_local`` (as the official
#: ``train_adaptation.py``): the mapping network and the render net.
EMA_FREEZE_LOCAL: tuple[str, ...] = ("style", "render_net")


def ema_modules(freeze_local: bool) -> tuple[str, ...] | None:
    """The submodule names :func:`ema_update` averages: all of G (None), or with ``freeze_local``
    only :data:`EMA_FREEZE_LOCAL`."""
    return EMA_FREEZE_LOCAL if freeze_local else None


def ema_beta(tc: TrainConfig, batch: int, cur_nimg: int) -> float:
    """G-EMA's decay β for a step of ``batch`` images taken after ``cur_nimg`` images (as NVlabs'
    ``training_loop.py``)::

        ema_nimg = ema_kimg · 1000,   ema_kimg = 10 · batch / 32 when unset (NVlabs' "auto")
        ema_nimg = min(ema_nimg, cur_nimg · ema_rampup)      only when ema_rampup > 0
        β = 0.5 ** (batch / ema_nimg)                          (β = 0 when ema_nimg = 0)

    so G-EMA's weights halve their distance to G every ``ema_nimg`` images. Without ramp-up and
    with ``ema_kimg`` unset β = 0.5^(32/10⁴) ≈ 0.99778 at every batch: the official fixed
    per-step decay. With ramp-up the horizon is a fraction ``ema_rampup`` of the images seen so
    far (the first step copies G, β = 0) until it reaches ``ema_kimg``: early G-EMA follows G
    instead of keeping the random initial weights for thousands of steps."""
    ema_nimg = (10 * batch / 32 if tc.ema_kimg is None else tc.ema_kimg) * 1000
    if tc.ema_rampup > 0:
        ema_nimg = min(ema_nimg, cur_nimg * tc.ema_rampup)
    return 0.5 ** (batch / ema_nimg) if ema_nimg > 0 else 0.0


@torch.no_grad()
def ema_update(g_ema: nn.Module, g: nn.Module, decay: float,
               modules: Sequence[str] | None = None) -> None:
    """g_ema ← decay·g_ema + (1 − decay)·g for parameters (one fused ``_foreach_lerp_``).

    Buffers (noise maps, blur kernels) never change during training: they are copied once, when
    G-EMA is set up (:func:`copy_buffers`), not here.

    ``modules``: names of the submodules to average (e.g. :data:`EMA_FREEZE_LOCAL`); the rest of
    g_ema is left alone. None: the whole module."""
    pairs = [(g_ema, g)] if modules is None else [(g_ema.get_submodule(n), g.get_submodule(n))
                                                  for n in modules]
    ema_p = [p for m, _ in pairs for p in m.parameters()]
    p = [q for _, m in pairs for q in m.parameters()]
    if len(ema_p) != len(p):
        raise ValueError("ema_update: the two generators have different parameter lists")
    torch._foreach_lerp_(ema_p, p, 1.0 - decay)


@torch.no_grad()
def copy_buffers(dst: nn.Module, src: nn.Module) -> None:
    """dst's buffers ← src's (G-EMA's constant noise maps and blur kernels ← G's, once)."""
    d, s = list(dst.buffers()), list(src.buffers())
    if len(d) != len(s):
        raise ValueError("copy_buffers: the two modules have different buffer lists")
    if d:
        torch._foreach_copy_(d, s)


# ------------------------------------------------------------------------------------------------
# Latents and forward passes (kept apart so they can be compiled)
# ------------------------------------------------------------------------------------------------


def sample_z(batch: int, dim: int, mixing_prob: float, generator: torch.Generator,
             decide: torch.Generator | None = None) -> list[torch.Tensor]:
    """Latent codes for one batch: ``[z]``, or ``[z1, z2]`` (style mixing) with probability
    ``mixing_prob``, all drawn from ``generator`` (on its device).

    The mixing decision is drawn from ``decide`` (default ``generator``); pass a CPU generator
    when ``generator`` lives on a GPU so that deciding does not synchronise with the device."""
    decide = generator if decide is None else decide
    n = 1
    if mixing_prob > 0:
        u = torch.rand((), generator=decide, device=decide.device)
        n = 2 if float(u) < mixing_prob else 1
    device = generator.device
    return list(torch.randn(n, batch, dim, generator=generator, device=device).unbind(0))


def mixing_inputs(G: SemanticGenerator, z: Sequence[torch.Tensor], generator: torch.Generator | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``[z]`` or ``[z1, z2]`` → (zz, choice) for :func:`synthesize_mixed`: zz (2, B, D) holds
    both codes, and the mixing choices are drawn exactly as ``G.mix_styles`` draws them (same
    generator call, same values). An unmixed batch becomes zz = (z, z) with choice = 0: the same
    latents, so mixed and unmixed batches share one compiled graph (one fresh tensor, so no
    aliasing guard either) and no random draw happens inside it."""
    n = z[0].shape[0]
    if len(z) == 1:
        return torch.stack([z[0], z[0]]), torch.zeros(n, G.config.seg_dim, 1, dtype=torch.long,
                                                      device=z[0].device)
    if len(z) != 2:
        raise ValueError(f"expected one or two z tensors, got {len(z)}")
    return torch.stack(list(z)), L.mixing_choice(n, G.config, generator, z[0].device)


def synthesize_mixed(G: SemanticGenerator, zz: torch.Tensor, choice: torch.Tensor) -> Synthesis:
    """Mapping of both codes zz (2, B, D) in one batched call, mixing by ``choice``, synthesis."""
    w1, w2 = G.mapping(zz.flatten(0, 1)).chunk(2)
    return G.synthesize(L.mix_with_choice(w1, w2, choice, G.config))


# ------------------------------------------------------------------------------------------------
# The fast path: the main steps' forwards as pure functions, compiled and/or under bf16 autocast
# ------------------------------------------------------------------------------------------------

PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16")


def _amp(device_type: str, dtype: torch.dtype | None):
    return torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def d_forward(G: SemanticGenerator, D: nn.Module, zz: torch.Tensor, choice: torch.Tensor,
              real_img: torch.Tensor, real_mask: torch.Tensor | None,
              use_seg: bool, amp: torch.dtype | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The D step's forward: fake batch (no grad), D on fake and real, logistic loss.
    Networks under autocast ``amp`` (None: off); the loss in fp32.
    Returns (loss, real_pred, fake_pred)."""
    dev = real_img.device.type
    with torch.no_grad(), _amp(dev, amp):
        fake = synthesize_mixed(G, zz, choice)
    with _amp(dev, amp):
        fake_pred = D(fake.rgb, fake.seg if use_seg else None)
        real_pred = D(real_img, real_mask if use_seg else None)
    real_pred, fake_pred = real_pred.float(), fake_pred.float()
    return losses.d_logistic_loss(real_pred, fake_pred), real_pred, fake_pred


def g_forward(G: SemanticGenerator, D: nn.Module, zz: torch.Tensor, choice: torch.Tensor,
              use_seg: bool, lambda_mask: float, amp: torch.dtype | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The G step's forward: fake batch, D on it, non-saturating loss + λ_mask·mask loss.
    Networks under autocast ``amp`` (None: off); the losses in fp32.
    Returns (total, g_loss, mask_loss)."""
    with _amp(zz.device.type, amp):
        fake = synthesize_mixed(G, zz, choice)
        fake_pred = D(fake.rgb, fake.seg if use_seg else None)
    g_loss = losses.g_nonsaturating_loss(fake_pred.float())
    m_loss = losses.mask_loss(fake.coarse.float(), fake.seg.float())
    total = g_loss + lambda_mask * m_loss if lambda_mask else g_loss
    return total, g_loss, m_loss


def compiled_graphs() -> int:
    """Graphs torch.compile has built in this process so far (dynamo's ``unique_graphs``): a
    number that must stop growing after the warm-up steps."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class StepForwards:
    """How the D and G steps run their forward (and so their backward):

    * ``precision``: ``fp32`` (exact), ``tf32`` (fp32 storage, TF32 matmuls/convolutions on
      CUDA), ``bf16`` (the networks under bf16 autocast: fp32 master weights, fp32 losses;
      the Triton ops get bf16 operands with fp32 accumulation, softmax/mask maths stay fp32);
    * ``compile``: :func:`d_forward` and :func:`g_forward` go through
      ``torch.compile(fullgraph=True)`` (``backend``: inductor on GPU; aot_eager in CPU tests).

    The functions are compiled, not the modules: R1 and path length (double backward) run the
    same modules eagerly, in fp32 (TF32 allowed unless ``precision`` is fp32). Graphs: the
    D-step and G-step forwards, one each (mixing or not: :func:`mixing_inputs`); nothing that
    varies per step (step index, mixing, regularisation) is a Python value inside them, so
    after the first iteration nothing recompiles (:func:`compiled_graphs` tells)."""

    def __init__(self, compile: bool = False, precision: str = "fp32", backend: str = "inductor",
                 options: dict | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        self.compile, self.precision, self.backend = compile, precision, backend
        self.amp = torch.bfloat16 if precision == "bf16" else None
        if compile:
            kw: dict[str, Any] = {"fullgraph": True, "backend": backend}
            if options:
                kw["options"] = options
            self.d_forward = torch.compile(d_forward, **kw)
            self.g_forward = torch.compile(g_forward, **kw)
        else:
            self.d_forward, self.g_forward = d_forward, g_forward

    def __repr__(self) -> str:
        return (f"StepForwards(compile={self.compile}, precision={self.precision!r}"
                + (f", backend={self.backend!r})" if self.compile else ")"))


EAGER = StepForwards()


def configure_precision(precision: str) -> None:
    """Global matmul / cuDNN precision for ``precision``: TF32 allowed for ``tf32`` and ``bf16``
    (what autocast leaves in fp32, and the eager regularisation steps), off for ``fp32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    tf32 = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


# ------------------------------------------------------------------------------------------------
# The four optimisation steps
# ------------------------------------------------------------------------------------------------


def _apply(loss: torch.Tensor, module: nn.Module, optim: torch.optim.Optimizer,
           sync: GradSync = None) -> None:
    module.zero_grad(set_to_none=True)
    loss.backward()
    if sync is not None:
        sync(module)
    optim.step()


def d_step(G: SemanticGenerator, D: nn.Module, d_optim: torch.optim.Optimizer, real_img: torch.Tensor,
           real_mask: torch.Tensor | None, z: Sequence[torch.Tensor], tc: TrainConfig,
           generator: torch.Generator | None = None, sync: GradSync = None,
           fwd: StepForwards = EAGER) -> dict[str, torch.Tensor]:
    """Logistic D loss on a fresh fake batch and the real batch; one D update.

    Expects D's parameters to require grad. ``fwd``: eager fp32 (default) or the fast path.
    Returns d, real_score, fake_score (detached)."""
    zz, choice = mixing_inputs(G, z, generator)
    loss, real_pred, fake_pred = fwd.d_forward(G, D, zz, choice, real_img, real_mask, tc.use_seg, fwd.amp)
    _apply(loss, D, d_optim, sync)
    return {"d": loss.detach(), "real_score": real_pred.detach().mean(),
            "fake_score": fake_pred.detach().mean()}


def r1_step(D: nn.Module, d_optim: torch.optim.Optimizer, real_img: torch.Tensor,
            real_mask: torch.Tensor | None, tc: TrainConfig,
            sync: GradSync = None) -> dict[str, torch.Tensor]:
    """Lazy R1 on the real image (and mask): (γ_img/2·R1_img + γ_seg/2·R1_seg)·d_reg_every
    + 0·D(real)[0]; one D update. Returns r1_img, r1_seg (0 without seg)."""
    img = real_img.detach().requires_grad_(True)
    inputs = [img]
    mask = None
    if tc.use_seg and real_mask is not None:
        mask = real_mask.detach().requires_grad_(True)
        inputs.append(mask)
    real_pred = D(img, mask)
    pens = losses.r1_penalty(real_pred, inputs)
    r1_img = pens[0]
    r1_seg = pens[1] if len(pens) > 1 else torch.zeros((), device=img.device)
    loss = (tc.r1_img / 2 * r1_img + tc.r1_seg / 2 * r1_seg) * tc.d_reg_every + 0 * real_pred.reshape(-1)[0]
    _apply(loss, D, d_optim, sync)
    return {"r1_img": r1_img.detach(), "r1_seg": r1_seg.detach()}


def g_step(G: SemanticGenerator, D: nn.Module, g_optim: torch.optim.Optimizer, z: Sequence[torch.Tensor],
           tc: TrainConfig, generator: torch.Generator | None = None,
           sync: GradSync = None, fwd: StepForwards = EAGER) -> dict[str, torch.Tensor]:
    """Non-saturating G loss plus λ_mask·mask loss; one G update. Expects G's trainable
    parameters to require grad and D's not to. ``fwd``: eager fp32 (default) or the fast path.
    Returns g, mask."""
    zz, choice = mixing_inputs(G, z, generator)
    total, g_loss, m_loss = fwd.g_forward(G, D, zz, choice, tc.use_seg, tc.lambda_mask, fwd.amp)
    _apply(total, G, g_optim, sync)
    return {"g": g_loss.detach(), "mask": m_loss.detach()}


def pl_step(G: SemanticGenerator, g_optim: torch.optim.Optimizer, z: Sequence[torch.Tensor],
            mean_path_length: torch.Tensor, tc: TrainConfig, generator: torch.Generator | None = None,
            sync: GradSync = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Lazy path-length regularisation w.r.t. the expanded latents of ``z`` (a shrunk batch);
    one G update. Returns ({path, path_length, mean_path_length}, the new mean path length)."""
    with torch.no_grad():
        latents = G.mix_styles([G.mapping(x) for x in z], generator).clone()
    latents.requires_grad_(True)
    out = G.synthesize(latents)
    penalty, new_mean, lengths = losses.path_length_penalty(out.rgb, latents, mean_path_length,
                                                            tc.path_decay)
    loss = (tc.path_regularize * tc.g_reg_every * penalty
            + 0 * out.rgb[0, 0, 0, 0] + 0 * out.seg[0, 0, 0, 0])
    _apply(loss, G, g_optim, sync)
    return ({"path": penalty.detach(), "path_length": lengths.detach().mean(),
             "mean_path_length": new_mean}, new_mean)


def initial_losses(device: torch.device | str) -> dict[str, torch.Tensor]:
    """Every logged term at zero (r1 / path keep their last value between regularisation steps)."""
    return {k: torch.zeros((), device=device) for k in LOSS_KEYS}


class NonFiniteTracker:
    """Remembers, per loss term, the first step at which it was non-finite, on the device and
    without a host synchronisation per step (one stack + isfinite + where). Read it with
    :meth:`first_bad` when the loop synchronises anyway (logging, checkpointing).

    Trade-off: the loop stops at the next log or checkpoint step rather than immediately, but
    names the exact first bad step and term, and never saves a checkpoint after it."""

    NONE = 2**62

    def __init__(self, device: torch.device | str, keys: Sequence[str] = LOSS_KEYS):
        self.keys = tuple(keys)
        self.first = torch.full((len(self.keys),), self.NONE, dtype=torch.long, device=device)

    def update(self, values: dict[str, torch.Tensor], step: int) -> None:
        v = torch.stack([values[k].float() for k in self.keys])
        self.first = torch.where(~torch.isfinite(v) & (self.first == self.NONE),
                                 torch.full_like(self.first, step), self.first)

    def first_bad(self, reduce_min: bool = False) -> tuple[int, list[str]] | None:
        """(first bad step, the terms bad at that step), or None. ``reduce_min``: over all ranks."""
        first = self.first.clone()
        if reduce_min and dist.is_available() and dist.is_initialized():
            dist.all_reduce(first, op=dist.ReduceOp.MIN)
        values = first.tolist()
        step = min(values)
        if step == self.NONE:
            return None
        return step, [k for k, s in zip(self.keys, values, strict=True) if s == step]


def params_finite(*modules: nn.Module) -> bool:
    """Whether every parameter of the modules is finite (one host synchronisation)."""
    params = [p for m in modules for p in m.parameters()]
    if not params:
        return True
    norms = torch._foreach_norm([p.detach() for p in params])
    return bool(torch.isfinite(torch.stack(norms)).all())


# ------------------------------------------------------------------------------------------------
# Reproducible data order
# ------------------------------------------------------------------------------------------------


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


class StepBatchSampler(Sampler[list[int]]):
    """Per-rank batch indices for steps ``start_step, start_step + 1, …`` forever.

    Epoch e is a permutation of the dataset (and one horizontal-flip bit per item) drawn from
    ``(seed, e)`` only; step s reads global batch number ``s mod steps_per_epoch`` of epoch
    ``s // steps_per_epoch`` (incomplete tail dropped), and rank r takes its slice
    ``[r·b, (r+1)·b)`` of it. So the data order depends on (seed, step, global batch) only —
    not on the number of ranks, worker processes or on where a run was resumed.

    Indices are encoded as ``index + n·flip`` for :class:`FlipIndexed`."""

    def __init__(self, n: int, global_batch: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 start_step: int = 0, hflip: bool = False):
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by world size {world_size}")
        if n < global_batch:
            raise DatasetError(f"dataset has {n} images but one batch needs {global_batch}; "
                               f"lower --batch or add data")
        self.n, self.global_batch, self.rank, self.world_size = n, global_batch, rank, world_size
        self.per_rank = global_batch // world_size
        self.seed, self.start_step, self.hflip = seed, start_step, hflip
        self.steps_per_epoch = n // global_batch
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def batch(self, step: int) -> list[int]:
        """The encoded indices of this rank's batch at ``step``."""
        epoch, within = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = _epoch_generator(self.seed, epoch)
            perm = torch.randperm(self.n, generator=g)
            if self.hflip:
                perm = perm + self.n * (torch.rand(self.n, generator=g) < 0.5).long()
            self._epoch, self._perm = epoch, perm
        lo = within * self.global_batch + self.rank * self.per_rank
        return self._perm[lo: lo + self.per_rank].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


class FlipIndexed(Dataset):
    """Wraps a dataset for :class:`StepBatchSampler`: index ``i + n·f`` is item i, flipped
    horizontally when f = 1 (image and label alike).

    Items hold a uint8 ``image`` (3, H, W) and, with labels, a uint8 ``label`` (H, W) only: no
    float image (4× the bytes) and no one-hot ``mask`` (K×H×W float32, 13.6 MB at 512 px); the
    training loop makes both on the device with :func:`ssgan.data.images_to_float` and
    :func:`ssgan.data.label_to_mask`. (Datasets other than those of :mod:`ssgan.data`, or with
    their own random flip, ship their items' float image, which ``images_to_float`` passes.)"""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.n = len(dataset)  # type: ignore[arg-type]
        seg_dim = getattr(dataset, "seg_dim", 0)
        if seg_dim > 256:
            raise ValueError(f"FlipIndexed: uint8 labels hold at most 256 classes, not {seg_dim}")

    def __len__(self) -> int:
        return 2 * self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        flip, i = divmod(int(index), self.n)
        ds = self.dataset
        if isinstance(ds, _ItemDataset) and not ds.hflip:  # no mask is built at all
            image, label = ds._load(i)
            return _to_item(image, label, ds.seg_dim, bool(flip), masks=False)
        item = {k: v for k, v in ds[i].items() if k != "mask"}
        if "label" in item:
            item["label"] = item["label"].to(torch.uint8)
        if flip:
            item = {k: v.flip(-1) for k, v in item.items()}
        return item


def make_step_loader(dataset: Dataset, global_batch: int, *, rank: int = 0, world_size: int = 1,
                     seed: int = 0, start_step: int = 0, hflip: bool = False, workers: int = 0,
                     pin_memory: bool = False) -> DataLoader:
    """An endless DataLoader whose k-th batch is the one of step ``start_step + k`` (see
    :class:`StepBatchSampler`). The dataset's own random flip must be off; ``hflip`` here flips
    reproducibly. The loader has its own generator, so creating it leaves the global RNG alone."""
    sampler = StepBatchSampler(len(dataset), global_batch, rank, world_size, seed,  # type: ignore[arg-type]
                               start_step, hflip)
    extra: dict[str, Any] = {"prefetch_factor": 4} if workers > 0 else {}
    return DataLoader(FlipIndexed(dataset), batch_sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed), **extra)


# ------------------------------------------------------------------------------------------------
# RNG state capture / restore
# ------------------------------------------------------------------------------------------------


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def capture_rng(generators: dict[str, torch.Generator] | None = None) -> dict[str, torch.Tensor]:
    """Every RNG state that the training loop depends on, as uint8 tensors (safetensors-ready):
    torch CPU, every initialised CUDA device, NumPy's and Python's global RNGs and the named
    ``torch.Generator`` objects (``gen.<name>``)."""
    out: dict[str, torch.Tensor] = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            out[f"cuda.{i}"] = torch.cuda.get_rng_state(i)
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    if kind != "MT19937":
        raise RuntimeError(f"unexpected NumPy RNG kind {kind}")
    out["numpy.keys"] = _bytes_tensor(np.asarray(keys, dtype=np.uint32).tobytes())
    out["numpy.extra"] = _bytes_tensor(np.array([pos, has_gauss], dtype=np.int64).tobytes()
                                       + np.array([gauss], dtype=np.float64).tobytes())
    version, internal, gauss_next = random.getstate()
    out["python.state"] = _bytes_tensor(np.asarray(internal, dtype=np.uint64).tobytes())
    out["python.extra"] = _bytes_tensor(
        np.array([version, gauss_next is not None], dtype=np.int64).tobytes()
        + np.array([0.0 if gauss_next is None else gauss_next], dtype=np.float64).tobytes())
    for name, g in (generators or {}).items():
        out[f"gen.{name}"] = g.get_state()
    return out


def restore_rng(states: dict[str, torch.Tensor], generators: dict[str, torch.Generator] | None = None
                ) -> None:
    """Inverse of :func:`capture_rng`. Missing CUDA states (e.g. a CPU checkpoint) are skipped;
    a missing named generator raises ``KeyError``."""
    torch.set_rng_state(states["torch_cpu"].cpu())
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"cuda.{i}" in states:
                torch.cuda.set_rng_state(states[f"cuda.{i}"].cpu(), i)
    keys = np.frombuffer(states["numpy.keys"].numpy().tobytes(), dtype=np.uint32)
    extra = states["numpy.extra"].numpy().tobytes()
    pos, has_gauss = np.frombuffer(extra[:16], dtype=np.int64)
    (gauss,) = np.frombuffer(extra[16:], dtype=np.float64)
    np.random.set_state(("MT19937", keys.copy(), int(pos), int(has_gauss), float(gauss)))
    internal = tuple(int(x) for x in np.frombuffer(states["python.state"].numpy().tobytes(), np.uint64))
    pextra = states["python.extra"].numpy().tobytes()
    version, has_next = (int(x) for x in np.frombuffer(pextra[:16], dtype=np.int64))
    (gnext,) = np.frombuffer(pextra[16:], dtype=np.float64)
    random.setstate((version, internal, float(gnext) if has_next else None))
    for name, g in (generators or {}).items():
        g.set_state(states[f"gen.{name}"].cpu())


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), NumPy and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rank_seed(seed: int, rank: int) -> int:
    """A distinct, well-mixed seed per (seed, rank)."""
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, dtype=np.uint64)[0] >> 1)


# ------------------------------------------------------------------------------------------------
# Distributed training
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistInfo:
    """Set up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK): NCCL on CUDA, gloo on
    CPU. Without those variables (or WORLD_SIZE=1): a single process on ``device`` (default
    CUDA when available)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over all ranks (``t`` itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / dist.get_world_size()


def sync_grads(module: nn.Module) -> None:
    """Average the gradients of ``module`` over all ranks with one all-reduce of a flat buffer.
    Parameters without a gradient are skipped (the same on every rank: the graphs agree)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset: offset + n].view_as(g))
        offset += n


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (a list of one when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


# ------------------------------------------------------------------------------------------------
# Outputs: stats.jsonl, checkpoints, samples
# ------------------------------------------------------------------------------------------------


class JsonlLogger:
    """Appends one JSON object per line to ``path`` (flushed each line)."""

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self.truncate_after(resume_step)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def truncate_after(self, step: int) -> None:
        """Drop the lines logged after ``step`` (a run resumed from an earlier checkpoint)."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            if int(rec.get("step", 0)) <= step:
                keep.append(line)
        self.path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


_CKPT_RE = re.compile(r"^(\d+)\.safetensors$")


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    return Path(folder) / f"{step:07d}.safetensors"


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The step-named checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(folder)
    return ckpts[-1] if ckpts else None


def rotate_checkpoints(folder: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints (keep <= 0: keep all); returns the deleted."""
    if keep <= 0:
        return []
    old = list_checkpoints(folder)[:-keep]
    for p in old:
        p.unlink(missing_ok=True)
    return old


SAMPLE_MIN_PIXELS = 128


@torch.no_grad()
def write_samples(g_ema: SemanticGenerator, z: torch.Tensor, path: str | os.PathLike,
                  batch: int = 16, colors: np.ndarray | None = None) -> Path:
    """One PNG of fixed latents: per sample, image | coloured fine mask | coloured coarse mask
    (nearest-upscaled to at least SAMPLE_MIN_PIXELS; ``colors``: (K, 3) class colours, default
    :func:`ssgan.visualize.palette`), samples laid out ⌈√n⌉ per row. Fixed noise buffers, no RNG
    consumed."""
    was_training = g_ema.training
    g_ema.eval()
    tiles = []
    for chunk in z.split(batch):
        out = g_ema.synthesize(g_ema.mix_styles([g_ema.mapping(chunk)]), randomize_noise=False)
        show = max(out.rgb.shape[-1], SAMPLE_MIN_PIXELS)  # small models are shown enlarged
        img, seg = resize_nearest(to_uint8(out.rgb), show), resize_nearest(colorize(out.seg, colors), show)
        coarse = resize_nearest(colorize(out.coarse, colors), show)
        tiles += [t for trio in zip(img, seg, coarse, strict=True) for t in trio]
    g_ema.train(was_training)
    per_row = max(1, math.ceil(math.sqrt(len(z))))
    return save_png(grid(np.stack(tiles), ncol=3 * per_row), path)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated on ``device``, else this process's peak RSS, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10
