"""Turning tensors into pictures: the class palette, coloured masks, image grids, PNG files."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# One fixed colour per class (CelebAMask-HQ order for the first 13: background, skin, eyes, brows,
# mouth, nose, ears, hair, neck, cloth, eyeglasses, hat, earrings); more classes reuse the cycle.
PALETTE = np.array([
    [0, 0, 0], [239, 234, 90], [44, 105, 154], [4, 139, 168], [13, 179, 158], [131, 227, 119],
    [185, 231, 105], [107, 137, 198], [241, 196, 83], [242, 158, 76], [234, 114, 71], [215, 95, 155],
    [207, 113, 192], [159, 89, 165], [142, 82, 172], [158, 115, 200], [116, 95, 159],
], dtype=np.uint8)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [−1, 1] → (N, H, W, 3) uint8."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round()
    return x.permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()


def colorize(seg: torch.Tensor) -> np.ndarray:
    """Logits or one-hot (N, K, H, W), or labels (N, H, W) → (N, H, W, 3) uint8 palette colours."""
    labels = seg.argmax(1) if seg.ndim == 4 else seg
    labels = labels.detach().cpu().numpy() % len(PALETTE)
    return PALETTE[labels]


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


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an (H, W, 3) uint8 array as PNG atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png.tmp")
    os.close(fd)
    try:
        Image.fromarray(image).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
