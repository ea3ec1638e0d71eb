"""Training the ReStyle-style encoder (:mod:`ssgan.edit.encoder`) against a frozen generator.

**Targets.** Each step draws a batch from two sources:

* *generator samples* with known codes: z₁, z₂ ~ N(0, I), w₁,₂ = mapping(z₁,₂), laid out as
  compact W+ with style mixing (base codes from w₁; per class, (shape, texture) from (w₁, w₁),
  (w₁, w₂) or (w₂, w₂), as in training: :func:`ssgan.model.latents.mixing_choice`), the target
  x = G(w*) and its mask m* = argmax seg(w*), all with the stored noise;
* with ``data``, *real images* (``real_fraction`` of the batch, default ½; any dataset
  :func:`ssgan.data.open_dataset` reads, ``"synthetic"`` the built-in one): image losses only.

**Passes.** ReStyle trains every pass; to spend the CPU on the passes with gradients, each step
draws t ~ U{0 … N−1}, runs t passes without gradients (w_t, ŷ_t = G(w_t)), then one pass with
gradients through the encoder and the frozen G: w = w_t + σ_w ⊙ E(x ⊕ ŷ_t). In expectation every
pass depth is trained equally often.

**Loss** per image, summed over the batch's mean:

    λ_mse · mean (G(w) − x)² + λ_p · P(pool(G(w)), pool(x))
      [+ λ_lat · mean ((w − w*) / σ_w)² + λ_seg · mean_p CE(seg(w)_p, m*_p)    for generator samples]

P is the perceptual distance of :mod:`ssgan.edit.perceptual` (1 − MS-SSIM, or LPIPS-VGG from a
weights file), pool the average pool to 256 px, as :func:`ssgan.edit.inversion.image_losses`.
Adam (lr 1e-3 by default, β = (0.9, 0.999)).

**Budget.** ``cpu_minutes`` > 0 stops the run (saving everything) once the process has used that
much CPU time, counted across resumes: on a shared machine the CPU time, not the wall time, is
what the run cost.

**Reproducibility.** The batch of step s is drawn from generators seeded with (seed, s) only, so a
resumed run (``resume=True``: the encoder, its Adam state and the step from the output file)
continues exactly where the interrupted one would have.

**Outputs**: the encoder file (atomic, every ``ckpt_every`` steps and at the end), ``stats.jsonl``
(one line per ``log_every`` steps: every loss term, PSNR of the trained pass, s/step, the
process CPU seconds so far), and a
reconstruction grid PNG (rows: targets, the first half generator samples and the rest real
images; columns: target | w̄ | pass 1 | pass N).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ssgan import visualize as V
from ssgan.data import ItemDataset
from ssgan.edit import encoder as EN
from ssgan.edit.inversion import psnr
from ssgan.edit.perceptual import MSSSIMDistance
from ssgan.jsonl import JsonlLogger
from ssgan.model import latents as L
from ssgan.model.generator import SemanticGenerator
from ssgan.provenance import COMPOSITE, TRAINED, Provenance, save_image, software


@dataclass(frozen=True)
class EncoderTrainConfig:
    """The knobs of :func:`train_encoder` (module docstring)."""

    steps: int = 1000
    batch: int = 8
    lr: float = 1e-3
    lambda_mse: float = 1.0
    lambda_percept: float = 1.0
    lambda_latent: float = 1.0
    lambda_seg: float = 0.1
    real_fraction: float = 0.5
    percept_size: int = 256
    seed: int = 0
    log_every: int = 25
    sample_every: int = 250
    ckpt_every: int = 250
    cpu_minutes: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"--steps must be >= 0, got {self.steps}")
        if self.batch < 2:
            raise ValueError(f"--batch must be >= 2 (generator samples and real images share it), "
                             f"got {self.batch}")
        if self.lr <= 0:
            raise ValueError("--lr must be > 0")
        if not 0 <= self.real_fraction < 1:
            raise ValueError("real_fraction must lie in [0, 1)")
        if self.cpu_minutes < 0:
            raise ValueError("--cpu-minutes must be >= 0 (0: no limit)")
        if min(self.log_every, self.sample_every, self.ckpt_every) < 1:
            raise ValueError("log, sample and checkpoint intervals must be >= 1")


def step_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The RNG of one step: seeded with (seed, step) only (module docstring)."""
    return torch.Generator(device).manual_seed((seed * 1_000_003 + step) % (2 ** 63))


@torch.no_grad()
def sample_targets(G: SemanticGenerator, n: int, gen: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``n`` style-mixed compact codes w* (module docstring), their images G(w*) and masks argmax seg
    (a StyleGAN2 generator: codes mixed at its crossover points, no masks: None)."""
    cfg = G.config
    device = next(G.parameters()).device
    z = torch.randn(2, n, G.style_dim, generator=gen).to(device)
    w1, w2 = G.mapping(z[0]), G.mapping(z[1])
    if not cfg.semantic:
        latent = G.mix_with_choice(w1, w2, G.mixing_choice(n, gen, gen.device).to(device))
        return latent, EN.synthesize(G, latent).rgb.float().clamp(-1, 1), None
    choice = L.mixing_choice(n, cfg, gen).to(device)  # (n, K, 1) in {0, 1, 2}
    shape = torch.where(choice == 2, w2[:, None], w1[:, None])
    texture = torch.where(choice == 0, w1[:, None], w2[:, None])
    per_class = torch.stack([shape, texture], 2).reshape(n, 2 * cfg.seg_dim, -1)
    latent = torch.cat([w1[:, None].expand(-1, cfg.base_layers, -1), per_class], 1)
    out = EN.synthesize(G, latent)
    return latent, out.rgb.float().clamp(-1, 1), out.seg.argmax(1)


def real_batch(dataset: ItemDataset, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` images (n, 3, S, S) in [−1, 1] drawn with replacement from ``dataset``."""
    idx = torch.randint(0, len(dataset), (n,), generator=gen).tolist()
    return torch.stack([dataset[i]["image"] for i in idx])


def _pool(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.adaptive_avg_pool2d(x, size) if x.shape[-1] > size else x


def encoder_losses(G: SemanticGenerator, encoder: EN.LatentEncoder, x: torch.Tensor, start: torch.Tensor,
                   recon: torch.Tensor, w_true: torch.Tensor | None, mask: torch.Tensor | None,
                   n_known: int, perceptual: torch.nn.Module,
                   cfg: EncoderTrainConfig) -> dict[str, torch.Tensor]:
    """One pass with gradients from (w_t, ŷ_t) = (``start``, ``recon``): the loss terms (scalars,
    module docstring) and ``total``; the first ``n_known`` images have known codes ``w_true`` and
    masks ``mask``."""
    w = start + encoder(x, recon)
    out = EN.synthesize(G, w)
    rgb = out.rgb.float()
    terms = {"mse": (rgb - x).square().mean(),
             "percept": perceptual(_pool(rgb, cfg.percept_size), _pool(x, cfg.percept_size)).mean()}
    total = cfg.lambda_mse * terms["mse"] + cfg.lambda_percept * terms["percept"]
    if n_known and w_true is not None:
        terms["latent"] = ((w[:n_known] - w_true) / encoder.w_std).square().mean()
        total = total + cfg.lambda_latent * terms["latent"]
    if n_known and mask is not None:  # no masks from a StyleGAN2 generator
        terms["seg"] = F.cross_entropy(out.seg[:n_known].float(), mask)
        total = total + cfg.lambda_seg * terms["seg"]
    terms["total"] = total
    terms["psnr"] = psnr(rgb.detach().clamp(-1, 1), x).mean()
    return terms


@torch.no_grad()
def recon_grid(G: SemanticGenerator, encoder: EN.LatentEncoder, targets: torch.Tensor) -> np.ndarray:
    """Rows of target | G(w̄) | pass 1 | pass N (small models enlarged): one (H, W, 3) uint8 image."""
    passes = EN.encode(G, encoder, targets, every_pass=True)
    mean = EN.synthesize(G, encoder.mean_latent(targets.shape[0])).rgb
    cols = [targets.to(mean.device), mean, EN.synthesize(G, passes[0]).rgb, EN.synthesize(G, passes[-1]).rgb]
    tiles = [V.enlarge(V.to_uint8(c.float().clamp(-1, 1))) for c in cols]
    rows = [t for i in range(targets.shape[0]) for t in (c[i] for c in tiles)]
    return V.grid(np.stack(rows), ncol=len(cols))


def _frozen(G: SemanticGenerator) -> SemanticGenerator:
    G.eval().requires_grad_(False)
    return G


@torch.no_grad()
def passes_so_far(G: SemanticGenerator, encoder: EN.LatentEncoder, x: torch.Tensor, mean_rgb: torch.Tensor,
                  t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The codes and render after ``t`` of the encoder's passes on targets ``x`` from the mean latent
    (``mean_rgb``: its render), without gradients: where a training step's pass starts."""
    encoder.eval()
    w = encoder.mean_latent(x.shape[0])
    recon = mean_rgb.expand(x.shape[0], -1, -1, -1)
    for _ in range(t):
        w = w + encoder(x, recon)
        recon = EN.synthesize(G, w).rgb.float()
    encoder.train()
    return w, recon


def train_encoder(G: SemanticGenerator, out: str | Path, cfg: EncoderTrainConfig = EncoderTrainConfig(),
                  encoder: EN.LatentEncoder | None = None, data: ItemDataset | None = None,
                  perceptual: torch.nn.Module | None = None, resume: bool = False, progress: bool = True,
                  meta: dict[str, Any] | None = None, log_dir: str | Path | None = None,
                  say: Any = print, prov: Provenance | None = None) -> dict[str, Any]:
    """Train an encoder for the frozen G and write it to ``out`` (an encoder file); ``stats.jsonl``
    and ``recon.png`` go to ``log_dir`` (default: ``out``'s folder, prefixed with ``out``'s stem
    unless it is ``encoder``). ``resume``: continue from ``out``. ``prov``: recon.png's record
    (default: watermarked, key 0; a composite when ``data`` holds photos; G's digest). Returns
    {steps, seconds, last} (the last logged record)."""
    out = Path(out)
    log_dir = Path(log_dir) if log_dir is not None else out.parent
    prefix = "" if out.stem == "encoder" else f"{out.stem}."
    device = next(G.parameters()).device
    _frozen(G)
    perceptual = (perceptual or MSSSIMDistance()).to(device)
    digest = EN.generator_digest(G)
    prov = replace(prov or Provenance(TRAINED, "encoder-recon", software(), None, True, 0),
                   source_type=TRAINED if data is None else COMPOSITE, generator_digest=digest)
    start_step, optim_state, spent = 0, None, {"train_seconds": 0.0, "train_cpu_seconds": 0.0}
    if resume:
        if not out.is_file():
            raise EN.EncoderError(f"cannot resume: {out} does not exist; drop --resume to start a new "
                                  f"encoder")
        encoder, info = EN.load_encoder(out, G, digest)
        start_step, optim_state = info["step"], info["optim_state"]
        spent = {k: float(info["meta"].get(k, 0.0)) for k in spent}
        say(f"resuming {out} at step {start_step}")
    encoder = encoder or EN.LatentEncoder.from_generator(G)
    encoder.train().requires_grad_(True)
    optim = torch.optim.Adam(encoder.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    if optim_state is not None:
        optim.load_state_dict(optim_state)
    iters = encoder.cfg.iters
    n_real = int(round(cfg.batch * cfg.real_fraction)) if data is not None else 0
    n_syn = cfg.batch - n_real
    # fixed targets for the grid: generator samples drawn with a seed no training step uses
    show_gen = step_generator(cfg.seed + 7919, -1)
    shown = [sample_targets(G, 4, show_gen)[1]]
    if data is not None:
        shown.append(real_batch(data, 4, show_gen).to(device))
    shown_targets = torch.cat(shown)

    def write_recon() -> None:
        save_image(recon_grid(G, encoder, shown_targets), log_dir / f"{prefix}recon.png", prov)

    logger = JsonlLogger(log_dir / f"{prefix}stats.jsonl", resume_step=start_step)
    with torch.no_grad():
        mean_rgb = EN.synthesize(G, encoder.mean_latent(1)).rgb.float()
    file_meta = {"trained_by": "ssgan encoder train", "train": asdict(cfg), **(meta or {})}
    bar = tqdm(range(start_step, cfg.steps), desc="train encoder", unit="step", disable=not progress,
               initial=start_step, total=cfg.steps)
    t0, tick, cpu0 = time.perf_counter(), time.perf_counter(), time.process_time()

    def save(step_done: int) -> None:
        cost = {"train_seconds": spent["train_seconds"] + time.perf_counter() - t0,
                "train_cpu_seconds": spent["train_cpu_seconds"] + time.process_time() - cpu0}
        EN.save_encoder(out, encoder, G, optimizer=optim, step=step_done, meta={**file_meta, **cost},
                        digest=digest)

    last: dict[str, Any] = {}
    acc: dict[str, list[float]] = {}
    step = start_step
    try:
        for step in bar:
            gen = step_generator(cfg.seed, step)
            w_true, x_syn, mask = sample_targets(G, n_syn, gen)
            x = x_syn if not n_real else torch.cat([x_syn, real_batch(data, n_real, gen).to(device)])
            w, recon = passes_so_far(G, encoder, x, mean_rgb, int(torch.randint(0, iters, (), generator=gen)))
            terms = encoder_losses(G, encoder, x, w, recon, w_true, mask, n_syn, perceptual, cfg)
            if not torch.isfinite(terms["total"]):
                raise FloatingPointError(f"encoder training: non-finite loss at step {step} "
                                         f"({ {k: float(v) for k, v in terms.items()} }); lower --lr")
            optim.zero_grad(set_to_none=True)
            terms["total"].backward()
            optim.step()
            for k, v in terms.items():
                acc.setdefault(k, []).append(float(v.detach()))
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                now = time.perf_counter()
                last = {"step": done, **{k: float(np.mean(v)) for k, v in acc.items()},
                        "s_per_step": (now - tick) / len(acc["total"]),
                        "cpu_seconds": spent["train_cpu_seconds"] + time.process_time() - cpu0}
                logger.log(last)
                acc, tick = {}, now
                bar.set_postfix(loss=f"{last['total']:.4f}", psnr=f"{last['psnr']:.2f}")
            if done % cfg.sample_every == 0 or done == cfg.steps:
                write_recon()
                encoder.train()
            used = spent["train_cpu_seconds"] + time.process_time() - cpu0
            out_of_time = bool(cfg.cpu_minutes) and used >= 60 * cfg.cpu_minutes
            if out_of_time and done % cfg.log_every:
                logger.log({"step": done, **{k: float(np.mean(v)) for k, v in acc.items()},
                            "s_per_step": (time.perf_counter() - tick) / len(acc["total"]),
                            "cpu_seconds": used})
            if out_of_time and done % cfg.sample_every and done != cfg.steps:
                write_recon()
                encoder.train()
            if done % cfg.ckpt_every == 0 or done == cfg.steps or out_of_time:
                save(done)
            if out_of_time:
                say(f"stopped at step {done}: {used / 60:.1f} CPU-minutes used "
                    f"(--cpu-minutes {cfg.cpu_minutes:g})")
                break
    finally:
        logger.close()
    if cfg.steps <= start_step:  # nothing to do: still leave the files
        save(start_step)
        write_recon()
    encoder.eval()
    return {"steps": cfg.steps - start_step, "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - cpu0, "last": last,
            "encoder": encoder, "s_per_step": last.get("s_per_step", math.nan)}
