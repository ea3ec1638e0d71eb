"""Checkpoints: one safetensors file per save, and the official release ``.pt`` files.

Our format (``format=ssgan``, ``format_version=1``) is a single safetensors file whose tensor
keys are prefixed by section:

* ``g_ema.<name>``, ``g.<name>``, ``d.<name>``: module state dicts (buffers included), names
  identical to the official ones;
* ``g_optim.state.<param index>.<key>`` / ``d_optim.…``: the tensors of an optimiser state (Adam's
  ``exp_avg``, ``exp_avg_sq`` and ``step``, dtypes kept); tensor-valued hyper-parameters, if any,
  as ``g_optim.param_groups.<group>.<key>``;
* ``extra.<name>``: free tensors (the trainer stores RNG states there as uint8 tensors).

The header metadata (str → str) holds ``format``, ``format_version``, ``config`` (JSON of
:meth:`SSGANConfig.to_dict`), ``sections`` (comma-separated), ``step``, ``meta`` (JSON; train.py puts
the class names there, ``meta["classes"]``, see :mod:`ssgan.classes`) and, per optimiser, the JSON of
its non-tensor parts (``param_groups`` and non-tensor per-parameter state).

Loading never half-succeeds: every problem raises :class:`CheckpointError` with one line naming
the file and the reason, and modules are built and filled completely before they are returned.
Official ``.pt`` files are read with ``torch.load(weights_only=True)`` allowing only
``argparse.Namespace`` besides torch's own safe types; nothing else is ever unpickled.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import re
import struct
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from ssgan.classes import ClassInfo
from ssgan.model.config import SSGANConfig

FORMAT = "ssgan"
FORMAT_VERSION = "1"
MODULE_SECTIONS = ("g_ema", "g", "d")
OPTIM_SECTIONS = ("g_optim", "d_optim")

# Official ``args`` field → SSGANConfig field (the others keep their names).
_OFFICIAL_FIELDS = {
    "size": "size", "latent": "style_dim", "n_mlp": "n_mlp", "channel_multiplier": "channel_multiplier",
    "seg_dim": "seg_dim", "local_layers": "local_layers", "local_channel": "local_channel",
    "base_layers": "base_layers", "depth_layers": "depth_layers", "coarse_size": "coarse_size",
    "coarse_channel": "coarse_channel", "min_feat_size": "min_feat_size",
    "residual_refine": "residual_refine", "detach_texture": "detach_texture",
    "transparent_dims": "transparent_dims",
}


class CheckpointError(Exception):
    """A checkpoint could not be read or written; the message is one line naming the file."""


@dataclass
class Checkpoint:
    """A loaded checkpoint. Modules are fully built on the requested device, or None when absent."""

    config: SSGANConfig
    g_ema: nn.Module | None = None  # SemanticGenerator, in eval() mode
    g: nn.Module | None = None  # SemanticGenerator
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


@dataclass
class _Raw:
    """A checkpoint's content before modules are built: state dicts as plain tensors."""

    config: SSGANConfig
    states: dict[str, dict[str, torch.Tensor]]  # module section → state dict
    optims: dict[str, dict[str, Any]]  # optimiser section → optimiser state dict
    step: int | None
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    source: str


# ----------------------------------------------------------------------------------------------
# saving
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


def save_checkpoint(path: str | os.PathLike, config: SSGANConfig, *, g_ema: Any = None, g: Any = None,
                    d: Any = None, g_optim: Any = None, d_optim: Any = None, step: int | None = None,
                    tensors: Mapping[str, torch.Tensor] | None = None,
                    meta: Mapping[str, Any] | None = None) -> Path:
    """Write one safetensors checkpoint atomically and return its path.

    ``g_ema``, ``g``, ``d``: modules or state dicts; ``g_optim``, ``d_optim``: optimisers or their
    state dicts; ``tensors``: extra tensors (stored as ``extra.<name>``); ``meta``: a JSON-able dict.
    The file is written to a temporary file in the same folder, fsynced, then renamed over
    ``path``, so an existing checkpoint survives any failure.
    """
    path = Path(path)
    if not isinstance(config, SSGANConfig):
        raise CheckpointError(f"cannot save checkpoint {path}: config must be an SSGANConfig, "
                              f"not {type(config).__name__}")
    flat: dict[str, torch.Tensor] = {}
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "config": json.dumps(config.to_dict())}
    sections = []
    for name, obj in (("g_ema", g_ema), ("g", g), ("d", d)):
        if obj is None:
            continue
        sections.append(name)
        for key, value in _state_of(obj, name, path).items():
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(f"cannot save checkpoint {path}: {name}.{key} is not a tensor")
            flat[f"{name}.{key}"] = value
    for name, obj in (("g_optim", g_optim), ("d_optim", d_optim)):
        if obj is None:
            continue
        sections.append(name)
        metadata[name] = _flatten_optim(name, _state_of(obj, name, path), path, flat)
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

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        safetensors.torch.save_file(flat, tmp, metadata=metadata)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"cannot save checkpoint {path}: {_one_line(e)}") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def _sniff(path: Path) -> str:
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


def _read_safetensors(path: Path, header_only: bool = False) -> _Raw:
    """Read and validate our format; ``header_only`` gives shape-only ('meta' device) tensors."""
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
                              f"{_one_line(e)}") from None
    try:
        config = SSGANConfig.from_dict(json.loads(metadata["config"]))
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} has an unreadable config: {_one_line(e)}") from None
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
                                  f"{_one_line(e)}") from None
    try:
        step = int(metadata["step"]) if "step" in metadata else None
        meta = json.loads(metadata.get("meta", "{}"))
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} has unreadable step/meta: {_one_line(e)}") from None
    return _Raw(config, states, optims, step, extras, meta, FORMAT)


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


def _read_official(path: Path) -> _Raw:
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
        raise CheckpointError(f"checkpoint {path} cannot be unpickled safely: {_one_line(e)}") from None
    except (zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {_one_line(e)}") from None
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} cannot be read as a PyTorch file (truncated or "
                              f"corrupt?): {_one_line(e)}") from None
    if not isinstance(obj, Mapping) or "g_ema" not in obj and "g" not in obj:
        raise CheckpointError(f"checkpoint {path} is a PyTorch file but not a SemanticStyleGAN "
                              "checkpoint (no 'g_ema' or 'g' entry)")
    if "args" not in obj:
        raise CheckpointError(f"checkpoint {path} has no 'args' entry, so its configuration is unknown")
    try:
        config = config_from_official(obj["args"])
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} has unusable args: {_one_line(e)}") from None
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
        if not isinstance(sd, Mapping) or "state" not in sd or "param_groups" not in sd:
            raise CheckpointError(f"checkpoint {path}: entry {name!r} is not an optimiser state dict")
        optims[name] = {"state": dict(sd["state"]), "param_groups": [dict(g) for g in sd["param_groups"]]}
    args = obj["args"]
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    meta = {"official_args": {k: _json_safe(v) for k, v in values.items()}}
    step = int(path.stem) if path.stem.isdigit() else None  # official checkpoints are named <iter>.pt
    return _Raw(config, states, optims, step, {}, meta, "official")


def _read_raw(path: str | os.PathLike, header_only: bool = False) -> _Raw:
    path = Path(path)
    kind = _sniff(path)
    return _read_safetensors(path, header_only) if kind == "safetensors" else _read_official(path)


def _check_config(path: Path, found: SSGANConfig, wanted: SSGANConfig | None) -> None:
    if wanted is None or wanted == found:
        return
    a, b = found.to_dict(), wanted.to_dict()
    diff = [k for k in a if a[k] != b[k]]

    def show(d: dict[str, Any]) -> str:
        return ", ".join(f"{k}={tuple(d[k]) if isinstance(d[k], list) else d[k]}" for k in diff)

    raise CheckpointError(f"checkpoint {path} was trained with {show(a)} but the model asks for {show(b)}")


def _build(path: Path, section: str, module: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Fill ``module`` with ``state`` (strict: names and shapes must match exactly)."""
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
                              f"{_one_line(e)}") from None
    return module


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    config: SSGANConfig | None = None) -> Checkpoint:
    """Read an ssgan ``.safetensors`` checkpoint or an official release ``.pt``.

    The format is recognised from the file's magic bytes (a renamed file still loads or fails
    clearly). With ``config`` given, a checkpoint trained with another configuration is refused
    with the differing fields. Modules are built on CPU, filled strictly, then moved to ``device``;
    ``g_ema`` is put in eval mode. Optimiser states stay on CPU (``load_state_dict`` moves them).
    """
    from ssgan.model.discriminator import DualBranchDiscriminator
    from ssgan.model.generator import SemanticGenerator

    path = Path(path)
    raw = _read_raw(path)
    _check_config(path, raw.config, config)
    cfg = raw.config
    modules: dict[str, nn.Module] = {}
    for name, state in raw.states.items():
        module = DualBranchDiscriminator(cfg) if name == "d" else SemanticGenerator(cfg)
        modules[name] = _build(path, name, module, state)
    for name, module in modules.items():
        module.to(device)
        if name == "g_ema":
            module.eval()
    return Checkpoint(config=cfg, g_ema=modules.get("g_ema"), g=modules.get("g"), d=modules.get("d"),
                      g_optim_state=raw.optims.get("g_optim"), d_optim_state=raw.optims.get("d_optim"),
                      step=raw.step, tensors=raw.tensors, meta=raw.meta, source=raw.source, path=path)


def inspect_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint holds without building modules: config, sections, step, meta, source,
    numbers per module (for safetensors only the header is read)."""
    path = Path(path)
    raw = _read_raw(path, header_only=True)
    return {"path": str(path), "source": raw.source, "config": raw.config,
            "sections": list(raw.states) + list(raw.optims), "step": raw.step, "meta": raw.meta,
            "extra_tensors": sorted(raw.tensors),
            "parameters": {k: int(sum(t.numel() for t in v.values())) for k, v in raw.states.items()}}


def convert_official(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Official release ``.pt`` → ssgan ``.safetensors`` with every section the source has.

    The state dicts are checked against freshly built modules (strict names and shapes) before
    anything is written."""
    from ssgan.model.discriminator import DualBranchDiscriminator
    from ssgan.model.generator import SemanticGenerator

    src, dst = Path(src), Path(dst)
    if _sniff(src) == "safetensors":
        raise CheckpointError(f"checkpoint {src} is already a safetensors file, not an official .pt")
    raw = _read_official(src)
    for name, state in raw.states.items():
        module = DualBranchDiscriminator(raw.config) if name == "d" else SemanticGenerator(raw.config)
        _build(src, name, module, state)
    return save_checkpoint(dst, raw.config, **raw.states, **raw.optims, step=raw.step,
                           tensors=raw.tensors, meta=raw.meta)
