"""Converting an official release ``.pt`` into an ssgan ``.safetensors`` checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

from ssgan.checkpoint.errors import CheckpointError
from ssgan.checkpoint.load import build_module, file_kind
from ssgan.checkpoint.official import read_official
from ssgan.checkpoint.save import save_checkpoint


def convert_official(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Official release ``.pt`` → ssgan ``.safetensors`` with every section the source has.

    The state dicts are checked against freshly built modules (strict names and shapes) before
    anything is written."""
    src, dst = Path(src), Path(dst)
    if file_kind(src) == "safetensors":
        raise CheckpointError(f"checkpoint {src} is already a safetensors file, not an official .pt")
    raw = read_official(src)
    for name, state in raw.states.items():
        build_module(src, name, raw.config, state)
    return save_checkpoint(dst, raw.config, **raw.states, **raw.optims, step=raw.step,
                           tensors=raw.tensors, meta=raw.meta)
