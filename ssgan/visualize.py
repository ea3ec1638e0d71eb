"""Turning tensors into pictures: the class palette, coloured masks, image grids (written by
:func:`ssgan.provenance.save_image`)."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# Fixed colours of the first classes (CelebAMask-HQ order for the first 13: background, skin, eyes,
# brows, mouth, nose, ears, hair, neck, cloth, eyeglasses, hat, earrings); see palette() for more.
PALETTE = np.array([
    [0, 0, 0], [239, 234, 90], [44, 105, 154], [4, 139, 168], [13, 179, 158], [131, 227, 119],
    [185, 231, 105], [107, 137, 198], [241, 196, 83], [242, 158, 76], [234, 114, 71], [215, 95, 155],
    [207, 113, 192], [159, 89, 165], [142, 82, 172], [158, 115, 200], [116, 95, 159],
], dtype=np.uint8)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [−1, 1] → (N, H, W, 3) uint8."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round()
    return x.permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()


GOLDEN = (math.sqrt(5) - 1) / 2


def palette(k: int, colors: Mapping[int, Sequence[int]] | None = None) -> np.ndarray:
    """(k, 3) uint8 colours of classes 0 … k−1, distinct for any k: :data:`PALETTE` for the first
    ones, then hue h_i = (i·φ) mod 1 (φ = (√5−1)/2, the golden ratio, which spreads any number of
    hues evenly) with saturation and value alternating between two levels; ``colors`` (class ->
    RGB, e.g. from classes.json) replaces single entries."""
    out = np.zeros((k, 3), np.uint8)
    for i in range(k):
        if i < len(PALETTE):
            out[i] = PALETTE[i]
        else:
            rgb = colorsys.hsv_to_rgb((i * GOLDEN) % 1, 0.85 - 0.3 * (i % 2), 0.95 - 0.25 * (i // 2 % 2))
            out[i] = np.round(np.array(rgb) * 255)
    for i, c in (colors or {}).items():
        if 0 <= i < k:
            out[i] = c
    return out


def colorize(seg: torch.Tensor, colors: np.ndarray | None = None) -> np.ndarray:
    """Logits or one-hot (N, K, H, W), or labels (N, H, W) → (N, H, W, 3) uint8 colours of
    ``colors`` ((K, 3) uint8; default :func:`palette`, extended where it is too short)."""
    labels = (seg.argmax(1) if seg.ndim == 4 else seg).detach().cpu().numpy()
    k = max(seg.shape[1] if seg.ndim == 4 else 0, int(labels.max(initial=0)) + 1)
    table = palette(k)
    if colors is not None:
        table[: min(k, len(colors))] = colors[:k]
    return table[labels]


def legend(names: Sequence[str], colors: np.ndarray, width: int, transparent: Sequence[int] = ()
           ) -> np.ndarray:
    """A white (h, ``width``, 3) uint8 strip: a colour swatch and the name of every class, in rows
    of as many entries as fit; ``transparent`` classes get a trailing '*' (explained at the end)."""
    font = ImageFont.load_default(size=12)
    labels = [f"{i} {n}{'*' if i in transparent else ''}" for i, n in enumerate(names)]
    labels += ["* transparent"] if any(i in transparent for i in range(len(names))) else []
    text_w = max(int(font.getlength(t)) for t in labels) if labels else 0
    cell_w, cell_h, sw = text_w + 24, 18, 12
    per_row = max(1, (width - 4) // cell_w)
    rows = math.ceil(len(labels) / per_row)
    strip = Image.new("RGB", (width, rows * cell_h + 6), "white")
    draw = ImageDraw.Draw(strip)
    for i, text in enumerate(labels):
        r, c = divmod(i, per_row)
        x, y = 4 + c * cell_w, 4 + r * cell_h
        if i < len(names):
            draw.rectangle([x, y + 1, x + sw, y + 1 + sw], fill=tuple(int(v) for v in colors[i]),
                           outline="grey")
            draw.text((x + sw + 5, y), text, fill="black", font=font)
        else:
            draw.text((x, y), text, fill="black", font=font)
    return np.asarray(strip)


def with_legend(image: np.ndarray, names: Sequence[str], colors: np.ndarray,
                transparent: Sequence[int] = ()) -> np.ndarray:
    """``image`` with a :func:`legend` of the classes below it."""
    return np.concatenate([image, legend(names, colors, image.shape[1], transparent)], 0)


def heatmap(values: torch.Tensor) -> np.ndarray:
    """(N, H, W) non-negative values → (N, H, W, 3) uint8, black (0) through red to yellow (max)."""
    v = values.detach().float().cpu()
    v = (v / v.amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)).numpy()
    rgb = np.stack([np.clip(2 * v, 0, 1), np.clip(2 * v - 1, 0, 1), np.zeros_like(v)], -1)
    return (rgb * 255).round().astype(np.uint8)


def depth_image(depth: torch.Tensor) -> np.ndarray:
    """(N, H, W) pseudo-depth → (N, H, W, 3) uint8 grey levels, min-max normalised per image."""
    d = depth.detach().float().cpu()
    lo, hi = d.amin(dim=(1, 2), keepdim=True), d.amax(dim=(1, 2), keepdim=True)
    g = ((d - lo) / (hi - lo).clamp_min(1e-8) * 255).round().to(torch.uint8).numpy()
    return np.repeat(g[..., None], 3, -1)


def grid(tiles: np.ndarray | Sequence[np.ndarray], ncol: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, H, W, 3) uint8 tiles → one (rows·H, ncol·W, 3) image with ``pad`` white pixels between."""
    tiles = np.asarray(tiles)
    n, h, w, c = tiles.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    out = np.full((nrow * (h + pad) - pad, ncol * (w + pad) - pad, c), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, q = divmod(i, ncol)
        out[r * (h + pad): r * (h + pad) + h, q * (w + pad): q * (w + pad) + w] = t
    return out


def resize_nearest(tiles: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w, 3) → (N, size, size, 3) by nearest neighbour (to show coarse masks beside images)."""
    return np.stack([np.asarray(Image.fromarray(t).resize((size, size), Image.NEAREST)) for t in tiles])


def enlarge(tiles: np.ndarray, min_size: int = 128) -> np.ndarray:
    """(N, h, w, 3) tiles, nearest-upscaled to ``min_size`` when smaller (to look at small models)."""
    return resize_nearest(tiles, min_size) if tiles.shape[1] < min_size else tiles
