"""Editing operations behind the command line, as functions returning numpy images and arrays.

Every function takes a :class:`~ssgan.model.generator.SemanticGenerator` (``generate``, ``render``,
``sample_latents``, ``change`` also a :class:`~ssgan.model.stylegan2.StyleGAN2Generator`, whose
renders have no masks) and works with *compact* W+ latents, (N, n_latent, D) with n_latent =
base + 2K: the base codes, then per class k a shape code (index base + 2k) and a texture code
(base + 2k + 1). A plain sample's compact code is its mapped,
truncated w repeated n_latent times, so a saved latent fed back with ``input_is_latent=True``
reproduces the image. All renders use the generator's stored noise buffers
(``randomize_noise=False``) so that an image depends on its codes only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from ssgan import visualize as V
from ssgan.model import latents as L
from ssgan.model.generator import SemanticGenerator, Synthesis


class Sample(NamedTuple):
    """One generated sample."""

    rgb: np.ndarray  # (H, W, 3) uint8
    seg: np.ndarray | None  # (H, W, 3) uint8 palette colours of the segmentation argmax; None: StyleGAN2
    latent: np.ndarray  # (n_latent, D) float32 compact W+


def _device(G: SemanticGenerator) -> torch.device:
    return next(G.parameters()).device


def as_latent(latent: np.ndarray | torch.Tensor, G: SemanticGenerator, name: str = "latent") -> torch.Tensor:
    """A compact W+ latent as a float tensor (N, n_latent, D) on G's device.

    Accepts (n_latent, D) or (N, n_latent, D); anything else raises ``ValueError`` saying which
    shape the model needs."""
    cfg = G.config
    t = torch.as_tensor(np.asarray(latent) if not isinstance(latent, torch.Tensor) else latent)
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[1:] != (cfg.n_latent, cfg.style_dim) or t.shape[0] < 1:
        raise ValueError(f"{name} has shape {tuple(np.shape(latent))} but this model needs "
                         f"({cfg.n_latent}, {cfg.style_dim}) (compact W+, optionally with a batch axis)")
    if not t.is_floating_point():
        raise ValueError(f"{name} has dtype {t.dtype} but a latent must be floating point")
    return t.to(device=_device(G), dtype=torch.float32)


@torch.no_grad()
def mean_w(G: SemanticGenerator, seed: int = 0, n: int = 4096) -> torch.Tensor:
    """The truncation centre w̄ = mean of mapping(z) over ``n`` z drawn with ``seed``, (1, D)."""
    gen = torch.Generator(_device(G)).manual_seed(seed)
    return G.mean_latent(n, generator=gen)


@torch.no_grad()
def sample_latents(G: SemanticGenerator, n: int, seed: int = 0, truncation: float = 1.0,
                   mean: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` compact W+ codes: z ~ N(0, I) (drawn on CPU with ``seed``, so the same on every
    device), w = mapping(z), w ← w̄ + ψ(w − w̄), then w repeated n_latent times."""
    z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(seed)).to(_device(G))
    if truncation < 1 and mean is None:
        mean = mean_w(G, seed)
    w = L.truncate([G.mapping(z)], truncation, mean)[0]
    return w[:, None].expand(-1, G.n_latent, -1).contiguous()


@torch.no_grad()
def render(G: SemanticGenerator, latent: torch.Tensor,
           composition_mask: torch.Tensor | None = None) -> Synthesis:
    """Compact W+ (N, n_latent, D) → :class:`Synthesis`, with the stored noise."""
    return G.synthesize(G.expand_latents(latent), randomize_noise=False, composition_mask=composition_mask)


def generate(G: SemanticGenerator, n: int, seed: int = 0, truncation: float = 1.0,
             device: str | torch.device | None = None, batch: int = 8,
             mean: torch.Tensor | None = None,
             progress: Callable[[int], Any] | None = None,
             colors: np.ndarray | None = None) -> Iterator[Sample]:
    """Yield ``n`` random samples (image, coloured mask, compact W+ latent), ``batch`` at a time.

    Sample i is the same whatever the batch size: all z are drawn at once with ``seed``.
    ``device`` moves G first when given; ``progress(k)`` is called after each batch of k;
    ``colors``: (K, 3) uint8 class colours of the masks (default :func:`ssgan.visualize.palette`)."""
    if n < 0 or batch < 1:
        raise ValueError("need n >= 0 and batch >= 1")
    if device is not None:
        G.to(device)
    with torch.no_grad():
        if truncation < 1 and mean is None:
            mean = mean_w(G, seed)
        codes = sample_latents(G, n, seed, truncation, mean)
        for start in range(0, n, batch):
            latent = codes[start:start + batch]
            out = render(G, latent)
            rgb = V.to_uint8(out.rgb)
            seg = None if out.seg is None else V.colorize(out.seg, colors)
            lat = latent.float().cpu().numpy()
            for i in range(latent.shape[0]):
                yield Sample(rgb[i], None if seg is None else seg[i], lat[i])
            if progress is not None:
                progress(latent.shape[0])


@torch.no_grad()
def mix(G: SemanticGenerator, source_latent: np.ndarray | torch.Tensor,
        reference_latent: np.ndarray | torch.Tensor, classes: Sequence[int], part: str,
        colors: np.ndarray | None = None) -> dict[str, Any]:
    """Copy ``classes``' ``part`` codes ('shape', 'texture' or 'all') from reference into source.

    Returns a dict of numpy arrays (first axis = batch): ``source``, ``reference``, ``result``
    (RGB uint8), ``source_mask``, ``reference_mask``, ``result_mask`` (palette colours), ``diff``
    (heat map of d = mean over RGB of |result − source|), ``latent`` (the result's compact W+) and
    the statistics ``inside`` / ``outside``: the mean of d (in 8-bit levels, 0–255) over the pixels
    in / outside the region R = {p : argmax seg_source(p) ∈ classes or argmax seg_result(p) ∈ classes}
    (NaN where that set is empty). Because only those classes' codes change, ``outside`` is
    typically much smaller than ``inside``: the edit stays local. ``colors``: as in :func:`generate`.
    """
    src = as_latent(source_latent, G, "source latent")
    ref = as_latent(reference_latent, G, "reference latent")
    if src.shape[0] != ref.shape[0]:
        if ref.shape[0] == 1:
            ref = ref.expand_as(src)
        elif src.shape[0] == 1:
            src = src.expand_as(ref)
        else:
            raise ValueError(f"source has {src.shape[0]} latents but reference has {ref.shape[0]}")
    classes = [int(c) for c in classes]
    result = L.replace_codes(src, ref, classes, part, G.config)
    outs = {name: render(G, lat) for name, lat in (("source", src), ("reference", ref), ("result", result))}
    images: dict[str, Any] = {}
    for name, out in outs.items():
        images[name] = V.to_uint8(out.rgb)
        images[f"{name}_mask"] = V.colorize(out.seg, colors)
    images.update(change(outs["source"], outs["result"], classes), latent=result.cpu().numpy())
    return images


def change(source: Synthesis, result: Synthesis, classes: Sequence[int]) -> dict[str, Any]:
    """How far an edit moved the image, and where: d = mean over RGB of |result − source| in 8-bit
    levels, (N, H, W); ``diff`` (its heat map), ``diff_values``, ``region`` R = {p : argmax
    seg_source(p) ∈ classes or argmax seg_result(p) ∈ classes} and the means ``inside`` /
    ``outside`` of d over R and its complement (NaN where empty). Renders without masks (StyleGAN2):
    R is the whole image."""
    d = (result.rgb.float().clamp(-1, 1) - source.rgb.float().clamp(-1, 1)).abs().mean(1) * 127.5
    chosen = torch.tensor([int(c) for c in classes], device=d.device)
    if source.seg is None:  # StyleGAN2: no masks, so the region is the whole image
        region = torch.ones_like(d, dtype=torch.bool)
    else:
        region = torch.isin(source.seg.argmax(1), chosen) | torch.isin(result.seg.argmax(1), chosen)
    inside = d[region].mean().item() if region.any() else float("nan")
    outside = d[~region].mean().item() if (~region).any() else float("nan")
    return dict(diff=V.heatmap(d), diff_values=d.cpu().numpy(), region=region.cpu().numpy(),
                inside=inside, outside=outside)


def mix_figure(result: dict[str, Any], index: int = 0) -> np.ndarray:
    """source | reference | result side by side, their masks beneath: one (H', W', 3) image."""
    tiles = [result[k][index] for k in ("source", "reference", "result",
                                        "source_mask", "reference_mask", "result_mask")]
    return V.grid(np.stack(tiles), ncol=3)


@torch.no_grad()
def composition_renders(G: SemanticGenerator, latent: np.ndarray | torch.Tensor) -> list[Synthesis]:
    """Renders j = 1 … K of one latent with the composition mask enabling classes 0 … j−1 only
    (background first, then the classes added one by one); the last one enables every class."""
    lat = as_latent(latent, G)[:1]
    K = G.config.seg_dim
    renders = []
    for j in range(1, K + 1):
        mask = torch.zeros(1, K, device=lat.device)
        mask[:, :j] = 1
        renders.append(render(G, lat, composition_mask=mask))
    return renders


def components(G: SemanticGenerator, latent: np.ndarray | torch.Tensor,
               colors: np.ndarray | None = None) -> np.ndarray:
    """The progressive composition figure of the first sample of ``latent``: K columns; column j
    shows the image composed of classes 0 … j, beneath it the pseudo-depth d_j of the class just
    added (grey, min–max normalised; the background's depth is 0) and the coloured coarse mask
    (``colors`` as in :func:`generate`)."""
    size = G.config.size
    renders = composition_renders(G, latent)
    rgb = [V.to_uint8(r.rgb)[0] for r in renders]
    depth = [V.resize_nearest(V.depth_image(r.depth[:, j]), size)[0] for j, r in enumerate(renders)]
    coarse = [V.resize_nearest(V.colorize(r.coarse, colors), size)[0] for r in renders]
    return V.grid(np.stack(rgb + depth + coarse), ncol=len(renders))


@torch.no_grad()
def interpolation_latents(G: SemanticGenerator, latent: np.ndarray | torch.Tensor, cls: int, part: str,
                          frames: int, seed: int = 0, truncation: float = 1.0,
                          mean: torch.Tensor | None = None) -> torch.Tensor:
    """(frames, n_latent, D): codes moving linearly, for t = 0 … 1 in ``frames`` steps, from the
    source's to a random target's (z drawn with ``seed``, mapped, truncated) for class ``cls``'s
    ``part`` codes only: latent_t = source + t · (replace(source, target) − source)."""
    if frames < 2:
        raise ValueError("frames must be >= 2")
    src = as_latent(latent, G)[:1]
    target = sample_latents(G, 1, seed, truncation, mean)
    end = L.replace_codes(src, target, [int(cls)], part, G.config)
    t = torch.linspace(0, 1, frames, device=src.device).view(-1, 1, 1)
    return src + t * (end - src)


def interpolate(G: SemanticGenerator, latent: np.ndarray | torch.Tensor, cls: int, part: str,
                frames: int = 16, seed: int = 0, truncation: float = 1.0,
                mean: torch.Tensor | None = None, batch: int = 8,
                progress: Callable[[int], Any] | None = None,
                colors: np.ndarray | None = None) -> list[np.ndarray]:
    """Frames (image | mask side by side, (H, 2W + 2, 3) uint8) of :func:`interpolation_latents`:
    one class's codes move to a random target while every other code stays fixed (``colors`` as
    in :func:`generate`)."""
    codes = interpolation_latents(G, latent, cls, part, frames, seed, truncation, mean)
    out = []
    for start in range(0, frames, batch):
        r = render(G, codes[start:start + batch])
        for rgb, seg in zip(V.to_uint8(r.rgb), V.colorize(r.seg, colors), strict=True):
            out.append(V.grid(np.stack([rgb, seg]), ncol=2))
        if progress is not None:
            progress(r.rgb.shape[0])
    return out
