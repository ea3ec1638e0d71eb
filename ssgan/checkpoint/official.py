"""The official release's ``.pt`` files (``torch.save`` of a dict with ``g_ema``, ``g``, ``d``,
``g_optim``, ``d_optim`` and the training ``args``), read safely.

They are read with ``torch.load(weights_only=True)`` allowing only ``argparse.Namespace`` besides
torch's own safe types; nothing else is ever unpickled.
"""

from __future__ import annotations

import argparse
import math
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ssgan.checkpoint.errors import CheckpointError, one_line
from ssgan.checkpoint.ssgan_format import MODULE_SECTIONS, OPTIM_SECTIONS, CheckpointContents
from ssgan.model.config import SSGANConfig

# Official ``args`` field → SSGANConfig field (the others keep their names).
_OFFICIAL_FIELDS = {
    "size": "size", "latent": "style_dim", "n_mlp": "n_mlp", "channel_multiplier": "channel_multiplier",
    "seg_dim": "seg_dim", "local_layers": "local_layers", "local_channel": "local_channel",
    "base_layers": "base_layers", "depth_layers": "depth_layers", "coarse_size": "coarse_size",
    "coarse_channel": "coarse_channel", "min_feat_size": "min_feat_size",
    "residual_refine": "residual_refine", "detach_texture": "detach_texture",
    "transparent_dims": "transparent_dims",
}


def config_from_official(args: argparse.Namespace | Mapping[str, Any]) -> SSGANConfig:
    """Map the official training ``args`` onto :class:`SSGANConfig` (lr_mlp 0.01, channel_max 512)."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    missing = [k for k in _OFFICIAL_FIELDS if k not in values]
    if missing:
        raise ValueError(f"its args lack {', '.join(missing)}")
    fields: dict[str, Any] = {ours: values[theirs] for theirs, ours in _OFFICIAL_FIELDS.items()}
    fields["transparent_dims"] = tuple(int(t) for t in (fields["transparent_dims"] or ()))
    for name in ("residual_refine", "detach_texture"):
        fields[name] = bool(fields[name])
    return SSGANConfig(**fields, lr_mlp=0.01, channel_max=512)


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return repr(value)


def read_official(path: Path) -> CheckpointContents:
    """The state dicts, optimiser states, configuration (:func:`config_from_official`) and step
    (from the name ``<iter>.pt``) of an official file; its ``args`` go to ``meta["official_args"]``.
    Anything unexpected is a :class:`CheckpointError` of one line."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)|unsupported GLOBAL (\S+)", str(e))
        if found:
            what = found.group(1) or found.group(2)
            raise CheckpointError(f"checkpoint {path} needs the pickled global {what}, which is not "
                                  "allowed (only argparse.Namespace and torch types are); refusing to "
                                  "unpickle it") from None
        raise CheckpointError(f"checkpoint {path} cannot be unpickled safely: {one_line(e)}") from None
    except (zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {one_line(e)}") from None
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} cannot be read as a PyTorch file (truncated or "
                              f"corrupt?): {one_line(e)}") from None
    if not isinstance(obj, Mapping) or "g_ema" not in obj and "g" not in obj:
        raise CheckpointError(f"checkpoint {path} is a PyTorch file but not a SemanticStyleGAN "
                              "checkpoint (no 'g_ema' or 'g' entry)")
    if "args" not in obj:
        raise CheckpointError(f"checkpoint {path} has no 'args' entry, so its configuration is unknown")
    try:
        config = config_from_official(obj["args"])
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} has unusable args: {one_line(e)}") from None
    states = {}
    for name in MODULE_SECTIONS:
        if obj.get(name) is None:
            continue
        sd = obj[name]
        if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise CheckpointError(f"checkpoint {path}: entry {name!r} is not a state dict of tensors")
        states[name] = dict(sd)
    optims = {}
    for name in OPTIM_SECTIONS:
        sd = obj.get(name)
        if sd is None:
            continue
        try:
            optims[name] = {"state": dict(sd["state"]),
                            "param_groups": [dict(g) for g in sd["param_groups"]]}
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"checkpoint {path}: entry {name!r} is not an optimiser state "
                                  "dict") from None
    args = obj["args"]
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    meta = {"official_args": {k: _json_safe(v) for k, v in values.items()}}
    step = int(path.stem) if path.stem.isdigit() else None  # official checkpoints are named <iter>.pt
    return CheckpointContents(config, states, optims, step, {}, meta, "official")
