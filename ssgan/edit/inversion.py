"""Inversion of real images into the compact W+ latent space, with optional mask guidance and
generator tuning (the official ``visualize/invert.py``, batched).

**Latent search** (:func:`invert_latents`). The compact W+ codes w (N, n_latent, D) start at the
mean latent w̄ (the mean of mapping(z) over 10,000 z), or at given codes (e.g. an encoder's,
:func:`ssgan.edit.encoder.encode`: ``invert --encoder``), and are optimised with Adam for ``steps``
steps, the learning rate following the official ramp: lr(t) = lr · ½(1 − cos(π·min(1, (1−t)/0.25)))
· min(1, t/0.05), t = step/steps. Per image, with G(w) rendered with the stored noise buffers
(noise fixed, not optimised):

    loss = λ_p · P(pool(G(w)), pool(x)) + λ_mse · mean (G(w) − x)² + λ_mean · mean (w − w̄)²
           [+ λ_seg · mean_p CE(seg(w)_p, label_p)   with a label map: mask guidance]

P is the perceptual distance (:mod:`ssgan.edit.perceptual`: LPIPS-VGG from a weights file, else
1 − MS-SSIM), pool the average pool to 256 px (images of at most 256 px are left as they are).
Defaults (official): λ_p = 1, λ_mse = 0.1, λ_mean = 1, 400 steps, lr 0.1; λ_seg = 0.1 is ours.
The per-image losses are summed, so each image's codes get the gradient of their own loss:
a batch of N is N independent inversions run together.

**Generator tuning** (:func:`tune_generator`, pivotal tuning as in PTI and the official
``--finetune_step``): with the codes fixed, a copy of G is tuned with Adam (lr 1e-4) on
λ_p · P + λ_mse · MSE (+ λ_seg · CE with labels), summed over every image per step.

**Metrics** (:func:`measure`): PSNR = 10 log10(1 / MSE) on images scaled to [0, 1]; MS-SSIM;
LPIPS when a LPIPS distance is given; with labels, the pixel accuracy of argmax seg and the mIoU
= mean over the classes present in the label or the prediction of |pred ∩ label| / |pred ∪ label|.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ssgan import visualize as V
from ssgan.checkpoint import param_digest, save_checkpoint
from ssgan.edit import editing as E
from ssgan.edit.encoder import LatentEncoder, encode
from ssgan.edit.perceptual import LPIPSVGG, MSSSIMDistance, ScriptedLPIPS, ms_ssim
from ssgan.edit.photos import Photos
from ssgan.metrics.segmentation import iou_counts, mean_iou
from ssgan.model.compiled import Compiled
from ssgan.model.generator import SemanticGenerator, Synthesis
from ssgan.provenance import COMPOSITE, Provenance, Signer, save_image, software

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class InversionConfig:
    """The knobs of :func:`invert_latents` and :func:`tune_generator` (defaults: official invert.py)."""

    steps: int = 400
    lr: float = 0.1
    lambda_percept: float = 1.0
    lambda_mse: float = 0.1
    lambda_mean: float = 1.0
    lambda_seg: float = 0.1
    finetune_steps: int = 0
    finetune_lr: float = 1e-4
    percept_size: int = 256
    mean_samples: int = 10000
    seed: int = 0
    precision: str = "fp32"
    compile: bool = False  # the search's forward through inductor (:func:`search_loss`)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.finetune_steps < 0:
            raise ValueError("steps and finetune steps must be >= 0")
        if self.lr <= 0 or self.finetune_lr <= 0:
            raise ValueError("learning rates must be > 0")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")


def lr_at(t: float, lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The official schedule: cosine ramp-up over the first 5 %, cosine ramp-down over the last 25 %."""
    ramp = 0.5 - 0.5 * math.cos(min(1.0, (1 - t) / rampdown) * math.pi)
    return lr * ramp * min(1.0, t / rampup)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [−1, 1] (as [0, 1] images: 10 log10(4 / MSE)), (N,)."""
    mse = (x.float() - y.float()).square().mean((1, 2, 3))
    return 10 * torch.log10(4 / mse.clamp_min(1e-12))


def _pool(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.adaptive_avg_pool2d(x, size) if x.shape[-1] > size else x


def _synthesize(G: SemanticGenerator, latent: torch.Tensor, precision: str) -> Synthesis:
    amp = (torch.autocast(latent.device.type, dtype=torch.bfloat16) if precision == "bf16"
           else nullcontext())
    with amp:
        out = G.synthesize(G.expand_latents(latent), randomize_noise=False)
    return out._replace(rgb=out.rgb.float(), seg=None if out.seg is None else out.seg.float())


def image_losses(out: Synthesis, target: torch.Tensor, label: torch.Tensor | None,
                 perceptual: torch.nn.Module, cfg: InversionConfig) -> dict[str, torch.Tensor]:
    """The per-image terms (N,) ``percept``, ``mse`` (and ``seg`` with a label) and their weighted
    sum ``total`` (module docstring; the latent term is added by :func:`invert_latents`)."""
    terms = {"percept": perceptual(_pool(out.rgb, cfg.percept_size), _pool(target, cfg.percept_size)),
             "mse": (out.rgb - target).square().mean((1, 2, 3))}
    total = cfg.lambda_percept * terms["percept"] + cfg.lambda_mse * terms["mse"]
    if label is not None:
        terms["seg"] = F.cross_entropy(out.seg, label, reduction="none").mean((1, 2))
        total = total + cfg.lambda_seg * terms["seg"]
    terms["total"] = total
    return terms


def search_loss(G: SemanticGenerator, perceptual: torch.nn.Module, latent: torch.Tensor, mean: torch.Tensor,
                images: torch.Tensor, labels: torch.Tensor | None, cfg: InversionConfig
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One search step's forward: the per-image loss (N,) of the module docstring, latent term
    included, and the render G(w) (N, 3, S, S)."""
    out = _synthesize(G, latent, cfg.precision)
    terms = image_losses(out, images, labels, perceptual, cfg)
    return terms["total"] + cfg.lambda_mean * (latent - mean).square().mean((1, 2)), out.rgb


@functools.cache
def compiled_search_loss() -> Compiled:
    """:func:`search_loss` through inductor, one wrapper per process (its graphs are reused)."""
    return Compiled(search_loss, "the inversion step")


class _Frozen:
    """Within the block, none of ``module``'s parameters requires grad; the flags are restored after."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __enter__(self) -> None:
        self.flags = [p.requires_grad for p in self.module.parameters()]
        self.module.requires_grad_(False)

    def __exit__(self, *exc: object) -> None:
        for p, flag in zip(self.module.parameters(), self.flags):
            p.requires_grad_(flag)


def invert_latents(G: SemanticGenerator, images: torch.Tensor, labels: torch.Tensor | None = None,
                   perceptual: torch.nn.Module | None = None, cfg: InversionConfig = InversionConfig(),
                   mean: torch.Tensor | None = None, progress: bool | str = False,
                   callback: Callable[[int, torch.Tensor, torch.Tensor], Any] | None = None,
                   init: torch.Tensor | None = None) -> torch.Tensor:
    """Compact W+ codes (N, n_latent, D), fp32, of ``images`` (N, 3, S, S) in [−1, 1] (on G's device);
    ``labels`` (N, S, S) turn on mask guidance. ``progress``: a tqdm bar (a string is its label)
    showing the running loss and mean PSNR. ``callback(steps_done, loss, psnr)`` (per-image (N,)
    tensors) runs after every step; an exception it raises (a cancel) stops the search. ``init``
    (N, n_latent, D): the starting codes (default w̄); the latent term still pulls towards w̄.
    ``cfg.steps = 0`` returns the start."""
    device = next(G.parameters()).device
    perceptual = (perceptual or MSSSIMDistance()).to(device)
    images = images.to(device).contiguous()  # one memory layout: a compiled step's graph is reused
    labels = None if labels is None else labels.to(device)
    if mean is None:
        mean = E.mean_w(G, cfg.seed, cfg.mean_samples)
    mean = mean.to(device).view(1, 1, -1).expand(images.shape[0], G.n_latent, -1)
    start = mean if init is None else init.to(device=device, dtype=torch.float32)
    latent = start.clone().requires_grad_(True)
    optim = torch.optim.Adam([latent], lr=cfg.lr)
    bar = tqdm(range(cfg.steps), desc=progress if isinstance(progress, str) else "invert", unit="step",
               disable=not progress, leave=False)
    step_loss = compiled_search_loss() if cfg.compile else search_loss
    with _Frozen(G):
        for i in bar:
            optim.param_groups[0]["lr"] = lr_at(i / cfg.steps, cfg.lr)
            loss, rgb = step_loss(G, perceptual, latent, mean, images, labels, cfg)
            optim.zero_grad(set_to_none=True)
            loss.sum().backward()
            optim.step()
            if callback is not None:
                callback(i + 1, loss.detach(), psnr(rgb.detach(), images))
            if progress and (i % 10 == 0 or i == cfg.steps - 1):
                bar.set_postfix(loss=f"{loss.mean().item():.4f}",
                                psnr=f"{psnr(rgb.detach(), images).mean().item():.2f}")
    return latent.detach()


def tune_generator(G: SemanticGenerator, latents: torch.Tensor, images: torch.Tensor,
                   labels: torch.Tensor | None = None, perceptual: torch.nn.Module | None = None,
                   cfg: InversionConfig = InversionConfig(), batch: int = 8,
                   progress: bool = False) -> SemanticGenerator:
    """A copy of G tuned for ``cfg.finetune_steps`` Adam steps (lr ``cfg.finetune_lr``) so that
    G(latents) matches ``images``; each step sums the loss over every image, ``batch`` at a time."""
    device = next(G.parameters()).device
    perceptual = (perceptual or MSSSIMDistance()).to(device)
    tuned = copy.deepcopy(G).requires_grad_(True)
    optim = torch.optim.Adam(tuned.parameters(), lr=cfg.finetune_lr)
    bar = tqdm(range(cfg.finetune_steps), desc="tune generator", unit="step", disable=not progress)
    for i in bar:
        optim.zero_grad(set_to_none=True)
        total, quality = 0.0, []
        for s in range(0, latents.shape[0], batch):
            x = images[s:s + batch].to(device)
            y = None if labels is None else labels[s:s + batch].to(device)
            out = _synthesize(tuned, latents[s:s + batch].to(device), cfg.precision)
            loss = image_losses(out, x, y, perceptual, cfg)["total"].sum()
            loss.backward()
            if progress and (i % 10 == 0 or i == cfg.finetune_steps - 1):
                total += loss.item()
                quality.append(psnr(out.rgb.detach(), x))
        optim.step()
        if quality:
            bar.set_postfix(loss=f"{total / latents.shape[0]:.4f}", psnr=f"{torch.cat(quality).mean():.2f}")
    return tuned.eval().requires_grad_(False)


@torch.no_grad()
def measure(G: SemanticGenerator, latents: torch.Tensor, images: torch.Tensor,
            labels: torch.Tensor | None = None, lpips: torch.nn.Module | None = None,
            batch: int = 8) -> tuple[list[dict[str, float]], list[Synthesis]]:
    """Per image {psnr, ms_ssim[, lpips][, mask_accuracy, miou]} of G(latents) against ``images``,
    and the renders (on CPU). ``lpips``: a LPIPS distance (an MS-SSIM one is not reported twice)."""
    device = next(G.parameters()).device
    rows: list[dict[str, float]] = []
    renders = []
    for s in range(0, latents.shape[0], batch):
        out = E.render(G, latents[s:s + batch].to(device))
        x = images[s:s + batch].to(device)
        rgb = out.rgb.float().clamp(-1, 1)
        cols = {"psnr": psnr(rgb, x), "ms_ssim": ms_ssim(rgb, x)}
        if isinstance(lpips, (LPIPSVGG, ScriptedLPIPS)):
            cols["lpips"] = lpips.to(device)(_pool(rgb, 256), _pool(x, 256))
        if labels is not None:
            acc, iou = mask_scores(out.seg.argmax(1), labels[s:s + batch].to(device), G.config.seg_dim)
            cols.update(mask_accuracy=acc, miou=iou)
        rows += [{k: float(v[i]) for k, v in cols.items()} for i in range(x.shape[0])]
        renders.append(Synthesis(*(None if t is None else t.cpu() for t in out)))
    return rows, renders


def mask_scores(pred: torch.Tensor, label: torch.Tensor, seg_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel accuracy and mIoU (over classes present in either map) per image, each (N,)."""
    acc = (pred == label).float().mean((1, 2))
    return acc, mean_iou(iou_counts(pred, label, seg_dim)).float()


def recon_figure(image: np.ndarray, recon: np.ndarray, mask: np.ndarray | None,
                 label: np.ndarray | None = None) -> np.ndarray:
    """input | reconstruction | its mask (none from a StyleGAN2 generator) [| the given label],
    (H, W, 3) uint8 tiles side by side, small models shown enlarged (:func:`ssgan.visualize.enlarge`)."""
    tiles = np.stack([image, recon] + [t for t in (mask, label) if t is not None])
    return V.grid(V.enlarge(tiles), ncol=len(tiles))


def save_npy(array: np.ndarray, path: Path) -> Path:
    """``np.save`` atomically: a temporary file in the same folder, then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _mean_row(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def invert_photos(G: SemanticGenerator, photos: Photos, outdir: str | os.PathLike,
                  cfg: InversionConfig = InversionConfig(), perceptual: torch.nn.Module | None = None,
                  batch: int = 8, progress: bool = True, source: str | None = None,
                  encoder: LatentEncoder | None = None, encoder_source: str | None = None,
                  prov: Provenance | None = None, c2pa: Signer | None = None) -> dict[str, Any]:
    """Invert ``photos`` ``batch`` at a time and write, under ``outdir``: ``latent/<stem>.npy``
    (compact W+, float32 (n_latent, D)), ``recon/<stem>.png`` (input | reconstruction | mask [|
    label]), ``metrics.json`` (per image and mean, the seconds per phase) and, with
    ``cfg.finetune_steps`` > 0, the tuned generator as ``generator.safetensors`` (an ssgan
    checkpoint). With an ``encoder``, the search starts from its codes (``cfg.steps = 0``: the
    encoder's codes are the result). Every file is written only after all computing is done, each
    atomically. ``prov``: the pictures' record (default: a watermarked ``invert`` composite, key 0);
    its digest becomes the rendering (tuned) generator's; ``c2pa``: content credentials for each
    reconstruction, its photo the ingredient. Returns the metrics dict."""
    if batch < 1:
        raise ValueError("batch must be >= 1")
    out = Path(outdir)
    perceptual = perceptual or MSSSIMDistance()
    n = photos.images.shape[0]
    mean = E.mean_w(G, cfg.seed, cfg.mean_samples)
    seconds = {"encoder": 0.0, "search": 0.0, "tuning": 0.0}
    chunks = []
    for s in range(0, n, batch):
        y = None if photos.labels is None else photos.labels[s:s + batch]
        label = f"invert {s + 1}-{min(s + batch, n)}/{n}" if progress else False
        init = None
        if encoder is not None:
            t0 = time.perf_counter()
            init = encode(G, encoder, photos.images[s:s + batch], batch=batch)
            seconds["encoder"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        chunks.append(invert_latents(G, photos.images[s:s + batch], y, perceptual, cfg, mean, label,
                                     init=init))
        seconds["search"] += time.perf_counter() - t0
    latents = torch.cat(chunks)
    rows, renders = measure(G, latents, photos.images, photos.labels, perceptual, batch)
    final = G
    if cfg.finetune_steps:
        t0 = time.perf_counter()
        final = tune_generator(G, latents, photos.images, photos.labels, perceptual, cfg, batch, progress)
        seconds["tuning"] = time.perf_counter() - t0
        tuned_rows, renders = measure(final, latents, photos.images, photos.labels, perceptual, batch)
        rows = [{**t, **{f"{k}_before_tuning": v for k, v in r.items()}} for r, t in zip(rows, tuned_rows)]
        save_checkpoint(out / "generator.safetensors", G.config, g_ema=final,
                        meta={"tuned_by": "ssgan invert", "source": source,
                              "finetune_steps": cfg.finetune_steps, "images": photos.stems})
    rgb = V.to_uint8(torch.cat([r.rgb for r in renders]))
    masks = V.colorize(torch.cat([r.seg for r in renders])) if renders[0].seg is not None else None
    inputs = V.to_uint8(photos.images)
    given = None if photos.labels is None else V.colorize(photos.labels)
    prov = replace(prov or Provenance(COMPOSITE, "invert", software(), None, True, 0),
                   generator_digest=param_digest(final))
    for i, stem in enumerate(photos.stems):
        save_npy(latents[i].cpu().numpy().astype(np.float32), out / "latent" / f"{stem}.npy")
        save_image(recon_figure(inputs[i], rgb[i], None if masks is None else masks[i],
                                None if given is None else given[i]),
                   out / "recon" / f"{stem}.png", prov, c2pa=c2pa, ingredient=photos.files[i])
    metrics = {"perceptual": getattr(perceptual, "name", type(perceptual).__name__),
               "mask_guidance": photos.labels is not None, "config": asdict(cfg), "source": source,
               "encoder": None if encoder is None else {"path": encoder_source, "iters": encoder.cfg.iters},
               "seconds": seconds, "seconds_per_image": {k: v / n for k, v in seconds.items()},
               "images": {stem: row for stem, row in zip(photos.stems, rows)}, "mean": _mean_row(rows)}
    if cfg.finetune_steps:
        metrics["generator"] = str(out / "generator.safetensors")
    tmp = out / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    tmp.replace(out / "metrics.json")
    return metrics
