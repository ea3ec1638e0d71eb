"""What a training run writes to its folder: ``stats.jsonl`` (:class:`JsonlLogger`), step-named
checkpoints and their rotation (the writing itself is :func:`ssgan.checkpoint.save_checkpoint`),
sample grids (:func:`write_samples`), and the peak memory that the logs report.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssgan.model.generator import SemanticGenerator
from ssgan.visualize import colorize, grid, resize_nearest, save_png, to_uint8


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
