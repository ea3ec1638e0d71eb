"""The ssgan checkpoint format (``format=ssgan``, ``format_version=1``): what each tensor key and
metadata entry of the safetensors file holds; a checkpoint's parts packed into (tensors, metadata)
and read back.

Tensor keys are prefixed by section:

* ``g_ema.<name>``, ``g.<name>``, ``d.<name>``: module state dicts (buffers included), names
  identical to the official ones;
* ``g_optim.state.<param index>.<key>`` / ``d_optim.…``: the tensors of an optimiser state (Adam's
  ``exp_avg``, ``exp_avg_sq`` and ``step``, dtypes kept); tensor-valued hyper-parameters, if any,
  as ``g_optim.param_groups.<group>.<key>``;
* ``extra.<name>``: free tensors (the trainer stores RNG states there as uint8 tensors).

The header metadata (str → str) holds ``format``, ``format_version``, ``config`` (JSON of
:meth:`SSGANConfig.to_dict`), ``sections`` (comma-separated), ``step``, ``meta`` (JSON; train.py puts
the class names there, ``meta["classes"]``, see :mod:`ssgan.classes`) and, per optimiser, the JSON of
its non-tensor parts (``param_groups`` and non-tensor per-parameter state), and ``sha256``
(:mod:`ssgan.checkpoint.safetensors_file`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import torch
from torch import nn

from ssgan.checkpoint.errors import CheckpointError, one_line
from ssgan.checkpoint.safetensors_file import CHECKSUM_KEY, tensor_digest
from ssgan.model.config import SSGANConfig

FORMAT = "ssgan"
FORMAT_VERSION = "1"
MODULE_SECTIONS = ("g_ema", "g", "d")
OPTIM_SECTIONS = ("g_optim", "d_optim")


@dataclass
class CheckpointContents:
    """A checkpoint's content before modules are built: state dicts as plain tensors."""

    config: SSGANConfig
    states: dict[str, dict[str, torch.Tensor]]  # module section → state dict
    optims: dict[str, dict[str, Any]]  # optimiser section → optimiser state dict
    step: int | None
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    source: str  # 'ssgan' or 'official'


# ----------------------------------------------------------------------------------------------
# packing
# ----------------------------------------------------------------------------------------------
def _state_of(obj: Any, what: str, path: Path) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict())
    if isinstance(obj, torch.optim.Optimizer):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        return dict(obj)
    raise CheckpointError(f"cannot save checkpoint {path}: {what} must be a module, an optimiser or "
                          f"a state dict, not {type(obj).__name__}")


def _plain(value: Any, where: str, path: Path) -> Any:
    """Make an optimiser hyper-parameter JSON-safe; tuples are tagged so they come back as tuples."""
    if isinstance(value, tuple):
        return {"__tuple__": [_plain(v, where, path) for v in value]}
    if isinstance(value, list):
        return [_plain(v, where, path) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, where, path) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"cannot save checkpoint {path}: {where} holds a {type(value).__name__}, "
                          "which is neither a tensor nor JSON data")


def _unplain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_unplain(v) for v in value["__tuple__"])
        return {k: _unplain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value


def _flatten_optim(name: str, state: dict[str, Any], path: Path,
                   tensors: dict[str, torch.Tensor]) -> str:
    """Put an optimiser state dict's tensors into ``tensors``; return the JSON of the rest."""
    if "state" not in state or "param_groups" not in state:
        raise CheckpointError(f"cannot save checkpoint {path}: {name} is not an optimiser state dict "
                              "(needs 'state' and 'param_groups')")
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}.state.{int(index)}.{key}"] = value
            else:
                scalars.setdefault(str(int(index)), {})[key] = _plain(value, f"{name} state {key}", path)
    groups = []
    for g, group in enumerate(state["param_groups"]):
        plain = {}
        for key, value in group.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}.param_groups.{g}.{key}"] = value
            else:
                plain[key] = _plain(value, f"{name} param_groups {key}", path)
        groups.append(plain)
    return json.dumps({"param_groups": groups, "scalars": scalars, "indices": sorted(
        int(i) for i in state["state"])})


def _storage_safe(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, detached tensors, none sharing storage with another (safetensors refuses
    shared or partial storages): a tensor is cloned when its storage was seen already or is larger
    than the tensor itself."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in seen or storage.nbytes() != t.numel() * t.element_size() or t.storage_offset():
            t = t.clone()
            ptr = t.untyped_storage().data_ptr()
        if t.numel():
            seen.add(ptr)
        out[name] = t
    return out


def pack_checkpoint(path: Path, config: SSGANConfig, parts: Mapping[str, Any], step: int | None,
                    tensors: Mapping[str, torch.Tensor] | None,
                    meta: Mapping[str, Any] | None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (storage-safe, section-prefixed) and the metadata (with its ``sha256``) of a
    checkpoint. ``parts``: section name (:data:`MODULE_SECTIONS`, :data:`OPTIM_SECTIONS`) → a
    module, an optimiser or a state dict, or None when absent. ``path`` only names the file in
    errors (:class:`CheckpointError`, one line)."""
    if not isinstance(config, SSGANConfig):
        raise CheckpointError(f"cannot save checkpoint {path}: config must be an SSGANConfig, "
                              f"not {type(config).__name__}")
    flat: dict[str, torch.Tensor] = {}
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "config": json.dumps(config.to_dict())}
    sections = []
    for name in MODULE_SECTIONS:
        if parts.get(name) is None:
            continue
        sections.append(name)
        for key, value in _state_of(parts[name], name, path).items():
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(f"cannot save checkpoint {path}: {name}.{key} is not a tensor")
            flat[f"{name}.{key}"] = value
    for name in OPTIM_SECTIONS:
        if parts.get(name) is None:
            continue
        sections.append(name)
        metadata[name] = _flatten_optim(name, _state_of(parts[name], name, path), path, flat)
    for key, value in (tensors or {}).items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"cannot save checkpoint {path}: extra {key!r} is a "
                                  f"{type(value).__name__}, not a tensor")
        flat[f"extra.{key}"] = value
    metadata["sections"] = ",".join(sections)
    if step is not None:
        metadata["step"] = str(int(step))
    try:
        metadata["meta"] = json.dumps(dict(meta or {}))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"cannot save checkpoint {path}: meta is not JSON data ({e})") from None
    flat = _storage_safe(flat)
    metadata[CHECKSUM_KEY] = tensor_digest(flat, metadata, path)
    return flat, metadata


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def read_ssgan_file(path: Path, header_only: bool = False) -> CheckpointContents:
    """Read and validate our format (the checksum is not checked here);
    ``header_only`` gives shape-only ('meta' device) tensors."""
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise CheckpointError(f"checkpoint {path} is a safetensors file but not an ssgan "
                                      "checkpoint (no format=ssgan in its metadata)")
            version = metadata.get("format_version")
            if version != FORMAT_VERSION:
                raise CheckpointError(f"checkpoint {path} has format version {version!r}; this ssgan "
                                      f"reads version {FORMAT_VERSION}")
            if header_only:
                flat = {key: torch.empty(f.get_slice(key).get_shape(), device="meta") for key in f.keys()}
            else:
                flat = {key: f.get_tensor(key) for key in f.keys()}
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} cannot be read (truncated or corrupt?): "
                              f"{one_line(e)}") from None
    try:
        config = SSGANConfig.from_dict(json.loads(metadata["config"]))
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} has an unreadable config: {one_line(e)}") from None
    sections = [s for s in metadata.get("sections", "").split(",") if s]
    unknown = [s for s in sections if s not in MODULE_SECTIONS + OPTIM_SECTIONS]
    if unknown:
        raise CheckpointError(f"checkpoint {path} lists unknown sections {unknown}")
    states: dict[str, dict[str, torch.Tensor]] = {s: {} for s in sections if s in MODULE_SECTIONS}
    optim_tensors: dict[str, dict[str, torch.Tensor]] = {s: {} for s in sections if s in OPTIM_SECTIONS}
    extras: dict[str, torch.Tensor] = {}
    for key, value in flat.items():
        prefix, _, rest = key.partition(".")
        if prefix in states:
            states[prefix][rest] = value
        elif prefix in optim_tensors:
            optim_tensors[prefix][rest] = value
        elif prefix == "extra":
            extras[rest] = value
        else:
            raise CheckpointError(f"checkpoint {path} holds tensor {key!r} outside any listed section")
    optims = {}
    for name, tensors in optim_tensors.items():
        try:
            optims[name] = _unflatten_optim(json.loads(metadata[name]), tensors)
        except Exception as e:
            raise CheckpointError(f"checkpoint {path} has an unreadable {name} section: "
                                  f"{one_line(e)}") from None
    try:
        step = int(metadata["step"]) if "step" in metadata else None
        meta = json.loads(metadata.get("meta", "{}"))
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} has unreadable step/meta: {one_line(e)}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path} has unreadable meta: a JSON {type(meta).__name__}, "
                              "not an object")
    return CheckpointContents(config, states, optims, step, extras, meta, FORMAT)


def _unflatten_optim(info: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): {} for i in info.get("indices", [])}
    groups = [_unplain(g) for g in info["param_groups"]]
    for index, per_param in info.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(_unplain(per_param))
    for key, value in tensors.items():
        kind, _, rest = key.partition(".")
        a, _, b = rest.partition(".")
        if kind == "state":
            state.setdefault(int(a), {})[b] = value
        elif kind == "param_groups":
            groups[int(a)][b] = value
        else:
            raise ValueError(f"unexpected optimiser tensor {key!r}")
    return {"state": dict(sorted(state.items())), "param_groups": groups}
