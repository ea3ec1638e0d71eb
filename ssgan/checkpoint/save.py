"""Saving a checkpoint: its parts packed in the ssgan format (:mod:`.ssgan_format`) and written
atomically, read back against its sha256 (:mod:`.atomic_write`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ssgan.checkpoint.atomic_write import write_checkpoint_file
from ssgan.checkpoint.ssgan_format import pack_checkpoint
from ssgan.model.config import SSGANConfig


def save_checkpoint(path: str | os.PathLike, config: SSGANConfig, *, g_ema: Any = None, g: Any = None,
                    d: Any = None, g_optim: Any = None, d_optim: Any = None, step: int | None = None,
                    tensors: Mapping[str, torch.Tensor] | None = None,
                    meta: Mapping[str, Any] | None = None) -> Path:
    """Write one safetensors checkpoint atomically, verified, and return its path.

    ``g_ema``, ``g``, ``d``: modules or state dicts; ``g_optim``, ``d_optim``: optimisers or their
    state dicts; ``tensors``: extra tensors (stored as ``extra.<name>``); ``meta``: a JSON-able dict.
    The file is written to a temporary file in the same folder
    (:func:`~ssgan.checkpoint.atomic_write.temp_path`), fsynced, read back and checked against the
    sha256 stored in its header (:func:`~ssgan.checkpoint.safetensors_file.verify_checkpoint`),
    renamed over ``path``, and the folder is fsynced: an existing file of that name survives any
    failure and a file under ``path`` is always complete. A full disk or an unwritable folder is one
    line naming the folder, the space needed and the space free; the temporary file is removed.
    """
    path = Path(path)
    parts = {"g_ema": g_ema, "g": g, "d": d, "g_optim": g_optim, "d_optim": d_optim}
    flat, metadata = pack_checkpoint(path, config, parts, step, tensors, meta)
    write_checkpoint_file(path, flat, metadata)
    return path
