"""Sweeps for ``ssgan video``: each class's shape code, then its texture code, moves through random
targets and back to the source while every other code stays fixed, the way the official
``generate_video.py`` shows what each local generator controls (it writes one video per code;
``ssgan video`` plays them one after the other, each captioned with its class and part, and sweeps
the classes' codes only, not the base codes).

A sweep of code c passes through the keys P_0 = the source, P_1 … P_n = n random samples'
code c (mapped, truncated), and returns to P_0 along a closed Catmull-Rom spline, which has no
kink at a key (the official script uses a cubic spline too).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ssgan import visualize as V
from ssgan.edit import editing as E
from ssgan.model import latents as L
from ssgan.model.generator import SemanticGenerator

#: The parts of a class that a sweep moves, in this order.
PARTS = ("shape", "texture")


def loop_spline(keys: torch.Tensor, steps: int) -> torch.Tensor:
    """Closed Catmull-Rom spline through ``keys`` (M, …) → (M·steps, …): leg i runs from key i to
    key i+1 (mod M) at t = j / steps, j = 0 … steps − 1, through

        q(t) = ½ [2P₁ + (P₂ − P₀) t + (2P₀ − 5P₁ + 4P₂ − P₃) t² + (−P₀ + 3P₁ − 3P₂ + P₃) t³]

    with P₀ … P₃ the keys i−1 … i+2; q(0) = P₁, q(1) = P₂, and the tangent at a key is half the
    difference of its neighbours, so the path is smooth through every key."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    m = keys.shape[0]
    t = torch.arange(steps, dtype=keys.dtype, device=keys.device) / steps
    t = t.view(-1, *([1] * (keys.ndim - 1)))
    legs = []
    for i in range(m):
        p0, p1, p2, p3 = (keys[(i + d) % m] for d in (-1, 0, 1, 2))
        legs.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                           + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    return torch.cat(legs)


@torch.no_grad()
def sweep_latents(G: SemanticGenerator, latent: torch.Tensor, cls: int, part: str, targets: int, steps: int,
                  seed: int = 0, truncation: float = 1.0, mean: torch.Tensor | None = None) -> torch.Tensor:
    """((targets + 1)·steps, n_latent, D): the compact code ``latent`` (1, n_latent, D) with class
    ``cls``'s ``part`` code moving along :func:`loop_spline` through ``targets`` random samples'
    (drawn with ``seed``) and back; every other code stays the source's."""
    if targets < 1:
        raise ValueError("targets must be >= 1")
    index = L.class_codes([cls], part, G.config)
    samples = E.sample_latents(G, targets, seed, truncation, mean)
    out = latent[:1].repeat((targets + 1) * steps, 1, 1)
    out[:, index] = loop_spline(torch.cat([latent[:1, index], samples[:, index]]), steps)
    return out


def caption(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` with a white strip below it that reads ``text`` (in 12 px type, smaller down to 6 px
    where the frame is too narrow for it)."""
    width = frame.shape[1]
    length = ImageFont.load_default(size=12).getlength(text)
    font = ImageFont.load_default(size=max(6, min(12, int(12 * (width - 6) / max(length, 1)))))
    strip = Image.new("RGB", (width, 16), "white")
    ImageDraw.Draw(strip).text((3, 1), text, fill="black", font=font)
    return np.concatenate([frame, np.asarray(strip)], 0)


def sweep_frames(G: SemanticGenerator, latent: torch.Tensor, classes: Sequence[int], names: Sequence[str],
                 parts: Sequence[str], targets: int, steps: int, seed: int = 0, truncation: float = 1.0,
                 mean: torch.Tensor | None = None, batch: int = 8,
                 colors: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """The frames of every sweep, class by class and part by part: image | mask, captioned
    "k name: part". Sweep s draws its targets with ``seed + 1 + s``."""
    for s, (cls, part) in enumerate((c, p) for c in classes for p in parts):
        codes = sweep_latents(G, latent, cls, part, targets, steps, seed + 1 + s, truncation, mean)
        for start in range(0, codes.shape[0], batch):
            r = E.render(G, codes[start:start + batch])
            for rgb, seg in zip(V.to_uint8(r.rgb), V.colorize(r.seg, colors), strict=True):
                yield caption(V.grid(np.stack([rgb, seg]), ncol=2), f"{cls} {names[cls]}: {part}")


def sweep_count(classes: Sequence[int], parts: Sequence[str], targets: int, steps: int) -> int:
    """How many frames :func:`sweep_frames` yields."""
    return len(classes) * len(parts) * (targets + 1) * steps
