"""The optimisation pieces that ``train.py`` composes: hyper-parameters, optimisers, EMA, latent
sampling, the four optimisation steps, their compiled forwards and precision, and the bookkeeping
of losses and non-finite values. The rest of the loop lives in :mod:`ssgan.data.loader` (data order),
:mod:`ssgan.train.rng` (seeding, RNG capture), :mod:`ssgan.distributed` (DDP helpers) and
:mod:`ssgan.train.rundir` (logs, checkpoint rotation, sample grids).

Behaviour follows the official ``train.py`` of SemanticStyleGAN (docs/training.md, "Objective" to "EMA"):

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
* DDP: no ``DistributedDataParallel`` wrapper; each step function takes a ``sync``
  called after every backward (:func:`ssgan.distributed.sync_grads`, see there).
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ssgan.model.config import DEFAULT_ARCH, PRESETS, SSGANConfig
from ssgan.model.generator import SemanticGenerator, Synthesis
from ssgan.train import losses
from ssgan.train.options import flag_of, option

#: Gradient synchronisation called after each backward (e.g. :func:`ssgan.distributed.sync_grads`),
#: or None.
GradSync = Callable[[nn.Module], None] | None

#: The loss terms logged every step (and checked for non-finite values).
LOSS_KEYS: tuple[str, ...] = ("d", "real_score", "fake_score", "r1_img", "r1_seg", "g", "mask",
                              "path", "path_length", "mean_path_length")


# ------------------------------------------------------------------------------------------------
# Hyper-parameters
# ------------------------------------------------------------------------------------------------

#: The section of ``train.py --help`` that lists the objective's flags.
OBJECTIVE = "objective"


@dataclass
class TrainConfig:
    """Every optimisation hyper-parameter, with the paper's (official ``train.py``) defaults. Each
    field but ``use_seg`` is a flag of ``train.py`` (:func:`ssgan.train.options.option`: its help
    and spelling); where a new run departs from the paper's default, see
    :data:`ssgan.train.spec.DEPARTURES`."""

    lr: float = option(0.002, "Adam learning rate", group=OBJECTIVE)
    betas: tuple[float, float] = option((0.0, 0.99), "Adam betas", group=OBJECTIVE)
    r1_img: float = option(10.0, "R1 weight on D's image gradients", group=OBJECTIVE, official=True)
    r1_seg: float = option(1000.0, "R1 weight on D's mask gradients", group=OBJECTIVE, official=True)
    d_reg_every: int = option(16, "lazy R1 interval", group=OBJECTIVE, official=True)
    g_reg_every: int = option(4, "lazy path-length interval", group=OBJECTIVE, official=True)
    path_regularize: float = option(0.5, "path-length weight", group=OBJECTIVE, official=True)
    path_batch_shrink: int = option(2, "path-length batch divisor", group=OBJECTIVE, official=True)
    path_decay: float = option(0.01, "mean path length decay", group=OBJECTIVE)
    mixing: float = option(0.3, "style-mixing probability", group=OBJECTIVE)
    lambda_mask: float = option(100.0, "mask loss weight", group=OBJECTIVE, official=True)
    ema_kimg: float | None = option(  # None: 10·batch/32 (see ema_beta)
        None, "G-EMA half-life in thousands of images (default 10·batch/32: the official fixed per-step "
              "decay 0.5^(32/10⁴))", group=OBJECTIVE)
    ema_rampup: float = option(  # 0: the official fixed decay; NVlabs use 0.05 (see ema_beta)
        0.0, "G-EMA ramp-up: the half-life is at most this fraction of the images seen so far, so early "
             "G-EMA follows G (NVlabs); 0: the official fixed decay", group=OBJECTIVE)
    use_seg: bool = True  # False for image-only data: D(img) only, no R1 on seg, no mask loss
    freeze_local: bool = option(False, "domain adaptation: keep the local generators fixed (default: all of "
                                       "G trains)", group="run", official=True)

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        def named(*fields: str) -> str:  # "a and b (--a, --b)": the fields and train.py's flags
            return f"{' and '.join(fields)} ({', '.join(flag_of(TrainConfig, f) for f in fields)})"

        problems = []
        if not self.lr >= 0:
            problems.append(f"{named('lr')} must be >= 0, got {self.lr}")
        if not all(0 <= b < 1 for b in self.betas):
            problems.append(f"{named('betas')} must lie in [0, 1), got {self.betas[0]} {self.betas[1]}")
        if not (self.r1_img >= 0 and self.r1_seg >= 0):
            problems.append(f"{named('r1_img', 'r1_seg')} must be >= 0, got {self.r1_img} and {self.r1_seg}")
        if self.d_reg_every < 1 or self.g_reg_every < 1:
            problems.append(f"{named('d_reg_every', 'g_reg_every')} must be >= 1")
        if self.path_batch_shrink < 1:
            problems.append(f"{named('path_batch_shrink')} must be >= 1")
        if not 0 <= self.mixing <= 1:
            problems.append(f"{named('mixing')} must lie in [0, 1], got {self.mixing}")
        if self.ema_kimg is not None and not self.ema_kimg > 0:
            problems.append(f"{named('ema_kimg')} must be > 0, got {self.ema_kimg}")
        if not self.ema_rampup >= 0:
            problems.append(f"{named('ema_rampup')} must be >= 0, got {self.ema_rampup}")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


#: The paper's R1 weights (γ_img, γ_seg), set for CelebAMask-HQ at 256–512 px and global batch 32
#: (TrainConfig's defaults).
R1_PAPER: tuple[float, float] = (TrainConfig.r1_img, TrainConfig.r1_seg)
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
      eyes or mouths (docs/training.md, "The default run").
    """
    if any(cfg.replace(arch=DEFAULT_ARCH) == PRESETS[name] for name in ("celeba-256", "celeba-512")):
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
        return torch.stack([z[0], z[0]]), torch.zeros(n, G.mixing_groups, 1, dtype=torch.long,
                                                      device=z[0].device)
    if len(z) != 2:
        raise ValueError(f"expected one or two z tensors, got {len(z)}")
    return torch.stack(list(z)), G.mixing_choice(n, generator, z[0].device)


def synthesize_mixed(G: SemanticGenerator, zz: torch.Tensor, choice: torch.Tensor) -> Synthesis:
    """Mapping of both codes zz (2, B, D) in one batched call, mixing by ``choice``, synthesis."""
    w1, w2 = G.mapping(zz.flatten(0, 1)).chunk(2)
    return G.synthesize(G.mix_with_choice(w1, w2, choice))


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
    m_loss = (losses.mask_loss(fake.coarse.float(), fake.seg.float()) if fake.coarse is not None
              else torch.zeros((), device=g_loss.device))  # StyleGAN2: no masks
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
    loss = tc.path_regularize * tc.g_reg_every * penalty + 0 * out.rgb[0, 0, 0, 0]
    if out.seg is not None:
        loss = loss + 0 * out.seg[0, 0, 0, 0]
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
