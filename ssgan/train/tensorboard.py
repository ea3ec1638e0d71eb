"""TensorBoard event files for ``train.py --tensorboard`` (the official code logs to TensorBoard).

The same scalars as ``stats.jsonl`` (grouped as ``Loss/…``, ``Scores/…``, ``Reg/…``,
``Progress/…``) against the training step, the metrics of ``metrics.jsonl`` as ``Metrics/<name>``
when that file grows, and the sample grids as images. View with ``tensorboard --logdir OUT``.
Needs the optional ``tensorboard`` package (``pip install tensorboard``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ssgan.train.plot import METRICS, read_jsonl

INSTALL_HINT = "--tensorboard needs the tensorboard package: pip install tensorboard"
GROUPS = {
    "d": "Loss", "g": "Loss", "mask": "Loss",
    "real_score": "Scores", "fake_score": "Scores",
    "r1_img": "Reg", "r1_seg": "Reg", "path": "Reg", "path_length": "Reg", "mean_path_length": "Reg",
}


class TensorBoardMissing(ImportError):
    """``tensorboard`` is not installed; the message says how to install it."""


def tag(key: str) -> str:
    """The TensorBoard tag of a stats.jsonl key: ``Loss/d``, ``Reg/r1_img``, ``Progress/kimg`` …"""
    return f"{GROUPS.get(key, 'Progress')}/{key}"


class TensorBoardLog:
    """A ``SummaryWriter`` on ``folder`` fed with train.py's log records and sample grids."""

    def __init__(self, folder: str | os.PathLike):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TensorBoardMissing(INSTALL_HINT) from None
        self.folder = Path(folder)
        self.writer = SummaryWriter(log_dir=str(self.folder))
        metrics_path = self.folder / METRICS  # records already there (a resumed run) were logged before
        self._metrics_done = len(read_jsonl(metrics_path)) if metrics_path.is_file() else 0

    def scalars(self, record: dict[str, Any]) -> None:
        """Every numeric value of one stats.jsonl record at its ``step``; then any new records of
        ``metrics.jsonl``."""
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float):
                self.writer.add_scalar(tag(key), value, step)
        metrics_path = self.folder / METRICS
        if metrics_path.is_file():
            records = read_jsonl(metrics_path)
            for rec in records[self._metrics_done:]:
                if {"step", "metric", "value"} <= rec.keys():
                    self.writer.add_scalar(f"Metrics/{rec['metric']}", float(rec["value"]), int(rec["step"]))
            self._metrics_done = len(records)
        self.writer.flush()

    def image(self, png: str | os.PathLike, step: int, name: str = "samples") -> None:
        """A PNG written by the run (the sample grid) as an image event."""
        with Image.open(png) as im:
            pixels = np.asarray(im.convert("RGB"))
        self.writer.add_image(name, pixels, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
