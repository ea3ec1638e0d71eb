"""Loading a checkpoint, ours or an official ``.pt``, into fully built modules; reading what it
holds without building them.

Loading never half-succeeds: every problem raises :class:`CheckpointError` with one line naming
the file and the reason, and modules are built and filled completely before they are returned.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssgan.checkpoint.errors import CheckpointError, one_line
from ssgan.checkpoint.official import read_official
from ssgan.checkpoint.run_folder import resolve_checkpoint
from ssgan.checkpoint.safetensors_file import CHECKSUM_KEY, read_header, verify_checkpoint
from ssgan.checkpoint.ssgan_format import (
    FORMAT,
    MODULE_SECTIONS,
    OPTIM_SECTIONS,
    CheckpointContents,
    read_ssgan_file,
)
from ssgan.classes import ClassesError, ClassInfo
from ssgan.model.config import SSGANConfig
from ssgan.model.discriminator import DualBranchDiscriminator
from ssgan.model.networks import build_generator


@dataclass
class Checkpoint:
    """A loaded checkpoint. Modules are fully built on the requested device, or None when absent."""

    config: SSGANConfig
    g_ema: nn.Module | None = None  # SemanticGenerator (StyleGAN2Generator for arch stylegan2), eval()
    g: nn.Module | None = None  # SemanticGenerator or StyleGAN2Generator
    d: nn.Module | None = None  # DualBranchDiscriminator
    g_optim_state: dict[str, Any] | None = None  # ready for optimizer.load_state_dict
    d_optim_state: dict[str, Any] | None = None
    step: int | None = None
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = FORMAT  # 'ssgan' or 'official'
    path: Path | None = None

    @property
    def classes(self) -> ClassInfo:
        """Class names (``meta["classes"]``, written by train.py from the data's classes.json; the
        defaults of :func:`ssgan.classes.default_names` when absent), transparent classes, colours."""
        return ClassInfo.from_meta(self.meta, self.config.seg_dim, self.config.transparent_dims)

    @property
    def sections(self) -> list[str]:
        """Names of the sections present (g_ema, g, d, g_optim, d_optim)."""
        present = [s for s in MODULE_SECTIONS if getattr(self, s) is not None]
        present += [s for s in OPTIM_SECTIONS if getattr(self, f"{s}_state") is not None]
        return present


def file_kind(path: Path) -> str:
    """'safetensors', 'zip' (torch.save) or 'pickle' (legacy torch.save), from the magic bytes."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty")
    # Safetensors first: its 8-byte length may itself start with 0x80 or "PK".
    if len(head) == 9 and head[8:9] == b"{":
        n = struct.unpack("<Q", head[:8])[0]
        if n + 8 > size:
            raise CheckpointError(f"checkpoint {path} is truncated: its safetensors header says "
                                  f"{n} header bytes but the file has {size} bytes")
        return "safetensors"
    if head[:2] == b"PK":
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    kind = "safetensors" if path.suffix == ".safetensors" else "PyTorch" if path.suffix in (
        ".pt", ".pth", ".ckpt") else "checkpoint"
    raise CheckpointError(f"checkpoint {path} is not a {kind} file: it is neither safetensors "
                          "(8-byte header length then '{') nor a torch.save zip or pickle")


def _read_contents(path: Path, header_only: bool = False) -> CheckpointContents:
    if file_kind(path) != "safetensors":
        return read_official(path)
    if not header_only:  # a checksummed file is checked before it is used
        header, _ = read_header(path)
        if CHECKSUM_KEY in (header.get("__metadata__") or {}):
            verify_checkpoint(path)
    return read_ssgan_file(path, header_only)


def _check_config(path: Path, found: SSGANConfig, wanted: SSGANConfig | None) -> None:
    if wanted is None or wanted == found:
        return
    a, b = dataclasses.asdict(found), dataclasses.asdict(wanted)
    diff = [k for k in a if a[k] != b[k]]

    def show(d: dict[str, Any]) -> str:
        return ", ".join(f"{k}={tuple(d[k]) if isinstance(d[k], list) else d[k]}" for k in diff)

    raise CheckpointError(f"checkpoint {path} was trained with {show(a)} but the model asks for {show(b)}")


def wider_than_state(widths: dict[str, int], count: dict[str, int],
                     state: dict[str, torch.Tensor]) -> str | None:
    """Why a module of these widths (each the size of some dimension of a tensor of a matching
    state) and this least number of tensors cannot match ``state``, or None: checked before the
    module is built, so that a file's configuration cannot make us allocate a model it does not
    hold (its tensors, in turn, are bounded by the file's size)."""
    largest = max((max(t.shape, default=1) for t in state.values()), default=0)
    for name, width in widths.items():
        if width > largest:
            return f"{name}={width} is wider than any of its tensors (at most {largest})"
    for name, n in count.items():
        if n > len(state):
            return f"{name} needs at least {n} tensors but it holds {len(state)}"
    return None


def module_bounds(section: str, config: SSGANConfig) -> tuple[dict[str, int], dict[str, int]]:
    """(widths, least tensor count) of :func:`wider_than_state` for ``section``'s module."""
    lowest = config.coarse_size if config.semantic else 4  # the StyleGAN2 baseline synthesises from 4 px
    widths = {"the widest render-net layer": max(config.channels(2 ** r) for r in range(
        lowest.bit_length() - 1, config.size.bit_length()))}
    if section == "d":
        return widths, {}
    if not config.semantic:
        return {**widths, "style_dim": config.style_dim}, {"n_mlp": config.n_mlp}
    widths.update(style_dim=config.style_dim, local_channel=config.local_channel,
                  coarse_channel=config.coarse_channel)
    return widths, {"n_mlp + seg_dim * local_layers": config.n_mlp + config.seg_dim * config.local_layers}


def build_module(path: Path, section: str, config: SSGANConfig, state: dict[str, torch.Tensor]) -> nn.Module:
    """A new module of ``section`` (``d``: the discriminator; else the generator of ``config.arch``)
    for ``config``,
    on CPU, filled with ``state`` (strict: names and shapes must match exactly; otherwise one line
    naming ``path``, the section and the first differing names). A configuration wider than the
    state (:func:`wider_than_state`) is refused before the module is built."""
    why = wider_than_state(*module_bounds(section, config), state)
    if why is not None:
        raise CheckpointError(f"checkpoint {path}: state dict {section!r} does not match the model of its "
                              f"configuration: {why}")
    try:
        module = DualBranchDiscriminator(config) if section == "d" else build_generator(config)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path}: its configuration does not build a model: "
                              f"{one_line(e)}") from None
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shaped = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shaped:
        def few(names: list[str]) -> str:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            return ", ".join(names[:3]) + more

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({few(unexpected)})")
        if shaped:
            shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                      for k in shaped]
            parts.append(f"{len(shaped)} mis-shaped ({few(shapes)})")
        raise CheckpointError(f"checkpoint {path}: state dict {section!r} does not match the model: "
                              + "; ".join(parts))
    try:
        module.load_state_dict(state, strict=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path}: state dict {section!r} does not load: "
                              f"{one_line(e)}") from None
    return module


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    config: SSGANConfig | None = None) -> Checkpoint:
    """Read an ssgan ``.safetensors`` checkpoint or an official release ``.pt``.

    ``path`` may also be a run folder, a checkpoints folder or ``…/checkpoints/latest``
    (:func:`resolve_checkpoint`); a checkpoint with a stored sha256 is verified first.
    The format is recognised from the file's magic bytes (a renamed file still loads or fails
    clearly). With ``config`` given, a checkpoint trained with another configuration is refused
    with the differing fields. Modules are built on CPU, filled strictly, then moved to ``device``;
    ``g_ema`` is put in eval mode. Optimiser states stay on CPU (``load_state_dict`` moves them).
    """
    path = resolve_checkpoint(path)
    raw = _read_contents(path)
    _check_config(path, raw.config, config)
    try:
        ClassInfo.from_meta(raw.meta, raw.config.seg_dim, raw.config.transparent_dims)
    except ClassesError as e:
        raise CheckpointError(f"checkpoint {path} has unusable class names in its meta: {e}") from None
    modules = {name: build_module(path, name, raw.config, state) for name, state in raw.states.items()}
    for name, module in modules.items():
        module.to(device)
        if name == "g_ema":
            module.eval()
    return Checkpoint(config=raw.config, g_ema=modules.get("g_ema"), g=modules.get("g"), d=modules.get("d"),
                      g_optim_state=raw.optims.get("g_optim"), d_optim_state=raw.optims.get("d_optim"),
                      step=raw.step, tensors=raw.tensors, meta=raw.meta, source=raw.source, path=path)


def inspect_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint holds without building modules: config, sections, step, meta, source,
    numbers per module (for safetensors only the header is read)."""
    path = resolve_checkpoint(path)
    raw = _read_contents(path, header_only=True)
    return {"path": str(path), "source": raw.source, "config": raw.config,
            "sections": list(raw.states) + list(raw.optims), "step": raw.step, "meta": raw.meta,
            "extra_tensors": sorted(raw.tensors),
            "parameters": {k: int(sum(t.numel() for t in v.values())) for k, v in raw.states.items()}}
