"""What a training run writes to its folder besides its logs (``stats.jsonl``:
:class:`ssgan.jsonl.JsonlLogger`): checkpoint naming, the ``latest`` link and rotation, sample
grids (:func:`write_samples`), and the peak memory that the logs report.

``OUT/checkpoints/`` holds ``<step>.safetensors`` (7-digit step: a full training state; the newest
``--keep`` are kept), ``latest.safetensors`` (relative symlink to the newest verified one; see
:func:`update_latest` for the link-less fallbacks) and ``best-<metric>.safetensors`` (G-EMA at the
best value of a metric, ``ssgan.train.metrics_hook``). Writing and verifying a file, the step names
and finding the newest valid one are :mod:`ssgan.checkpoint`'s (:func:`checkpoint_path`,
:func:`list_checkpoints`, :func:`latest_checkpoint`, :func:`update_latest`, re-exported here).
"""

from __future__ import annotations

import math
import os
import resource
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ssgan.checkpoint import (
    STEP_RE,
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    param_digest,
    update_latest,
    verify_checkpoint,
)
from ssgan.model.generator import SemanticGenerator
from ssgan.provenance import TRAINED, Provenance, save_image, software
from ssgan.visualize import colorize, grid, resize_nearest, to_uint8

__all__ = ["SAMPLE_MIN_PIXELS", "checkpoint_path", "latest_checkpoint", "list_checkpoints",
           "peak_memory_mb", "rotate_checkpoints", "update_latest", "write_samples"]


def rotate_checkpoints(folder: str | os.PathLike, keep: int,
                       warn: Callable[[str], None] | None = None) -> list[Path]:
    """After a step checkpoint is saved: point ``latest`` at the newest step checkpoint that
    verifies (:func:`latest_checkpoint`; the one just saved was read back by ``save_checkpoint``,
    so this hashes nothing again), then delete the step checkpoints older than it except the
    ``keep`` − 1 newest whose header and size check out (``keep <= 0``: delete none). Nothing is
    deleted unless a newer checkpoint verified; newer files that do not verify are left alone.
    Returns the deleted paths."""
    newest = latest_checkpoint(folder, warn)
    if newest is None:
        return []
    update_latest(folder, newest)
    if keep <= 0:
        return []
    older = [p for p in list_checkpoints(folder) if _step_of(p) < _step_of(newest)]
    kept = 1
    deleted = []
    for p in reversed(older):
        if kept < keep:
            try:
                verify_checkpoint(p, full=False)
                kept += 1
                continue
            except CheckpointError:
                pass  # corrupt: does not count as kept, and goes
        p.unlink(missing_ok=True)
        deleted.append(p)
    return deleted


def _step_of(path: Path) -> int:
    m = STEP_RE.match(path.name)
    return int(m.group(1)) if m else -1


SAMPLE_MIN_PIXELS = 128


@torch.no_grad()
def write_samples(g_ema: SemanticGenerator, z: torch.Tensor, path: str | os.PathLike,
                  batch: int = 16, colors: np.ndarray | None = None, watermark: bool = True,
                  key_id: int = 0) -> Path:
    """One PNG of fixed latents: per sample, image | coloured fine mask | coloured coarse mask (the
    image alone for a generator without masks, the StyleGAN2 baseline), nearest-upscaled to at
    least SAMPLE_MIN_PIXELS (``colors``: (K, 3) class colours, default
    :func:`ssgan.visualize.palette`), samples laid out ⌈√n⌉ per row, with its provenance record
    and (``watermark``) the watermark of ``key_id``. Fixed noise buffers, no RNG consumed."""
    was_training = g_ema.training
    g_ema.eval()
    tiles = []
    for chunk in z.split(batch):
        out = g_ema.synthesize(g_ema.mix_styles([g_ema.mapping(chunk)]), randomize_noise=False)
        show = max(out.rgb.shape[-1], SAMPLE_MIN_PIXELS)  # small models are shown enlarged
        parts = [resize_nearest(to_uint8(out.rgb), show)]
        if out.seg is not None:
            parts += [resize_nearest(colorize(m, colors), show) for m in (out.seg, out.coarse)]
        tiles += [t for group in zip(*parts, strict=True) for t in group]
    g_ema.train(was_training)
    per_row = max(1, math.ceil(math.sqrt(len(z))))
    prov = Provenance(TRAINED, "train-sample", software(), param_digest(g_ema), watermark, key_id)
    return save_image(grid(np.stack(tiles), ncol=(len(tiles) // len(z)) * per_row), path, prov)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated on ``device``, else this process's peak RSS, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10
