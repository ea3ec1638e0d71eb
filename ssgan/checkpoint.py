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
its non-tensor parts (``param_groups`` and non-tensor per-parameter state), and ``sha256``: a digest
of the other metadata and of every tensor's name, dtype, shape and bytes.

Writing never loses a checkpoint: :func:`save_checkpoint` writes a temporary file next to the
target (:func:`temp_path`), fsyncs it, reads it back against ``sha256`` (:func:`verify_checkpoint`),
renames it over the target and fsyncs the folder. A run's checkpoints folder (``<step>.safetensors``,
``latest.safetensors``, ``best-<metric>.safetensors``; see :mod:`ssgan.train.rundir`) is read with
:func:`list_checkpoints`, :func:`latest_checkpoint` (the newest that verifies; corrupt ones are
skipped with a warning, killed writes' temporary files removed) and :func:`resolve_checkpoint`
(a run folder or ``…/checkpoints/latest`` → a file; every loading function accepts them).

Loading never half-succeeds: every problem raises :class:`CheckpointError` with one line naming
the file and the reason, and modules are built and filled completely before they are returned.
Official ``.pt`` files are read with ``torch.load(weights_only=True)`` allowing only
``argparse.Namespace`` besides torch's own safe types; nothing else is ever unpickled.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import math
import os
import pickle
import re
import secrets
import shutil
import socket
import struct
import sys
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import safetensors
import torch
from torch import nn

from ssgan.classes import ClassInfo
from ssgan.model.config import SSGANConfig

FORMAT = "ssgan"
FORMAT_VERSION = "1"
MODULE_SECTIONS = ("g_ema", "g", "d")
OPTIM_SECTIONS = ("g_optim", "d_optim")
CHECKSUM_KEY = "sha256"  # header metadata: see _tensor_digest

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
    """Write one safetensors checkpoint atomically, verified, and return its path.

    ``g_ema``, ``g``, ``d``: modules or state dicts; ``g_optim``, ``d_optim``: optimisers or their
    state dicts; ``tensors``: extra tensors (stored as ``extra.<name>``); ``meta``: a JSON-able dict.
    The file is written to a temporary file in the same folder (:func:`temp_path`), fsynced, read
    back and checked against the sha256 stored in its header (:func:`verify_checkpoint`), renamed
    over ``path``, and the folder is fsynced: an existing file of that name survives any failure
    and a file under ``path`` is always complete. A full disk or an unwritable folder is one line
    naming the folder, the space needed and the space free; the temporary file is removed.
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
    metadata[CHECKSUM_KEY] = _tensor_digest(flat, metadata, path)
    need = sum(t.numel() * t.element_size() for t in flat.values()) + 4096 + sum(
        len(k) + len(v) for k, v in metadata.items())

    folder = path.parent
    tmp: Path | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
        if free < need:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        tmp = temp_path(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            write_safetensors(f, flat, metadata)
            f.flush()
            os.fsync(f.fileno())
            if hasattr(os, "posix_fadvise"):  # the read-back then comes from the disk
                with contextlib.suppress(OSError):
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        _debug_pause("written")
        verify_checkpoint(tmp, cache=False)  # read back from disk: header, size, sha256
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(folder)
        _debug_pause("replaced")
        _remember_verified(path)
    except CheckpointError as e:  # from the read-back
        raise CheckpointError(f"cannot save checkpoint {path}: reading it back failed ({e}); the disk "
                              "may be failing; the previous checkpoints are untouched") from None
    except OSError as e:
        raise CheckpointError(_write_error(path, e, need)) from None
    except Exception as e:
        raise CheckpointError(f"cannot save checkpoint {path}: {_one_line(e)}") from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return path


def _write_error(path: Path, e: OSError, need: int) -> str:
    """One line for a failed write: a full disk names the space needed and free, an unwritable
    folder says so; both say what to do."""
    folder = path.parent
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f"{_size(shutil.disk_usage(folder).free)} free"
        except OSError:
            free = "free space unknown"
        return (f"cannot save checkpoint {path}: no space left in {folder} (needs about {_size(need)} "
                f"for the tensors, {free}); free some space or save elsewhere (train.py --out); the "
                f"previous checkpoints are untouched")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"cannot save checkpoint {path}: {folder} is not writable ({e.strerror}); fix its "
                f"permissions or save elsewhere (train.py --out); the previous checkpoints are untouched")
    return f"cannot save checkpoint {path}: {_one_line(e)}"


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def write_safetensors(f: BinaryIO, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
    """Write ``tensors`` (CPU, contiguous) and ``metadata`` to the open binary file ``f`` in the
    safetensors format: 8-byte little-endian header length, the JSON header padded with spaces to a
    multiple of 8, then the tensors' bytes, largest dtypes first (so every tensor is aligned), then
    by name. Written here rather than by ``safetensors.torch.save_file`` so that the caller owns the
    file (a temporary name it can clean up, fsync on the same descriptor, plain ``OSError``s)."""
    order = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for name in order:
        t = tensors[name]
        size = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for name in order:
        t = tensors[name]
        if t.numel():
            f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))


def _debug_pause(where: str) -> None:
    """Tests only (tests/test_faults.py): ``SSGAN_DEBUG_SAVE_PAUSE=<seconds>`` sleeps inside every
    checkpoint write (after the temporary file is written, and after the rename) so that a kill
    can land there."""
    pause = os.environ.get("SSGAN_DEBUG_SAVE_PAUSE")
    if pause:
        time.sleep(float(pause))


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
# verification: header, size and sha256
# ----------------------------------------------------------------------------------------------
_DTYPE_NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                torch.uint8: "U8", torch.bool: "BOOL"}
for _name, _code in (("uint16", "U16"), ("uint32", "U32"), ("uint64", "U64"),
                     ("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2")):
    if hasattr(torch, _name):
        _DTYPE_NAMES[getattr(torch, _name)] = _code
_MAX_HEADER = 100 * 2**20  # safetensors' own limit
_VERIFIED: dict[str, tuple[int, int, int, int]] = {}  # path → (dev, inode, size, mtime_ns) checked
_FAILED: dict[str, tuple[tuple[int, int, int, int], str]] = {}  # path → (that stat, the error)
_WARNED: set[tuple[str, tuple[int, int, int, int]]] = set()


def _digest_start(metadata: Mapping[str, str]) -> Any:
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in metadata.items() if k != CHECKSUM_KEY}, sort_keys=True).encode())
    return h


def _tensor_digest(flat: Mapping[str, torch.Tensor], metadata: Mapping[str, str], path: Path) -> str:
    """sha256 of the metadata (but this digest) and of every tensor's name, dtype, shape and bytes,
    in name order: what :func:`verify_checkpoint` recomputes from the file."""
    h = _digest_start(metadata)
    for name in sorted(flat):
        t = flat[name]
        if t.dtype not in _DTYPE_NAMES:
            raise CheckpointError(f"cannot save checkpoint {path}: tensor {name!r} has dtype {t.dtype}, "
                                  "which safetensors cannot store")
        h.update(json.dumps([name, _DTYPE_NAMES[t.dtype], list(t.shape)]).encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def _stat_key(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _remember_verified(path: Path) -> None:
    with contextlib.suppress(OSError):
        _VERIFIED[str(Path(path).resolve())] = _stat_key(path)


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The safetensors header of ``path`` and where its data starts, after checking that the
    file's size is exactly what the header describes (one line naming the file otherwise)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"checkpoint {path} is truncated: {size} bytes, shorter than a "
                                      "safetensors header")
            n = struct.unpack("<Q", head)[0]
            if n > _MAX_HEADER or 8 + n > size:
                raise CheckpointError(f"checkpoint {path} is truncated or corrupt: its header length "
                                      f"says {n} bytes but the file has {size} bytes")
            raw = f.read(n)
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} cannot be read: {_one_line(e)}") from None
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("not an object")
        end = 0
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, stop = (int(x) for x in info["data_offsets"])
            if not 0 <= start <= stop:
                raise ValueError(f"bad offsets for {name!r}")
            end = max(end, stop)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} has a corrupt safetensors header: {_one_line(e)}") from None
    if size != 8 + n + end:
        what = "truncated" if size < 8 + n + end else "longer than its header says (corrupt)"
        raise CheckpointError(f"checkpoint {path} is {what}: {size} bytes, its header describes "
                              f"{8 + n + end}")
    return header, 8 + n


def verify_checkpoint(path: str | os.PathLike, *, full: bool = True, cache: bool = True) -> None:
    """Check that ``path`` is a complete safetensors checkpoint, or raise :class:`CheckpointError`
    (one line naming it and what is wrong).

    Always: the header parses and the file's size is exactly what it describes (cheap: a
    truncated or cut file fails here). ``full``: the sha256 stored in the header (``sha256``, written
    by :func:`save_checkpoint`) is recomputed from the file's bytes; a file written before checksums
    existed must at least load every tensor. ``cache``: a file already verified in this process and
    unchanged since (same inode, size and mtime) is not hashed again."""
    path = Path(path)
    header, base = _read_header(path)
    if not full:
        return
    key, stat = str(path.resolve()), _stat_key(path)
    if cache:
        if _VERIFIED.get(key) == stat:
            return
        if key in _FAILED and _FAILED[key][0] == stat:
            raise CheckpointError(_FAILED[key][1])
    try:
        _check_contents(path, header, base)
    except CheckpointError as e:
        if cache:
            _FAILED[key] = (stat, str(e))
        raise
    if cache:
        _VERIFIED[key] = stat


def _check_contents(path: Path, header: dict[str, Any], base: int) -> None:
    metadata = header.get("__metadata__") or {}
    expected = metadata.get(CHECKSUM_KEY)
    if expected is None:  # written before checksums: every tensor must load
        try:
            with safetensors.safe_open(str(path), framework="pt", device="cpu") as f:
                for name in f.keys():
                    f.get_tensor(name)
        except Exception as e:
            raise CheckpointError(f"checkpoint {path} cannot be read (corrupt?): {_one_line(e)}") from None
        return
    h = _digest_start(metadata)
    try:
        with open(path, "rb") as f:
            for name in sorted(k for k in header if k != "__metadata__"):
                info = header[name]
                h.update(json.dumps([name, info["dtype"], list(info["shape"])]).encode())
                start, stop = info["data_offsets"]
                f.seek(base + start)
                left = stop - start
                while left:
                    chunk = f.read(min(left, 2**24))
                    if not chunk:
                        raise CheckpointError(f"checkpoint {path} is truncated")
                    h.update(chunk)
                    left -= len(chunk)
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} cannot be read: {_one_line(e)}") from None
    if h.hexdigest() != expected:
        raise CheckpointError(f"checkpoint {path} is corrupt: its sha256 does not match the one stored "
                              "when it was written")


# ----------------------------------------------------------------------------------------------
# temporary files
# ----------------------------------------------------------------------------------------------
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_RE = re.compile(r"^\.(?P<final>.+)\.(?P<host>[0-9a-f]{8})\.(?P<pid>\d+)\.[0-9a-z_]+\.tmp$")
STALE_TEMP_SECONDS = 3600  # a temporary file from another host is stale after an hour


def temp_path(final: str | os.PathLike) -> Path:
    """A fresh hidden temporary name next to ``final``: ``.<name>.<host>.<pid>.<random>.tmp``, so
    that :func:`remove_stale_temps` can tell a killed writer's leftovers from a live write."""
    final = Path(final)
    return final.parent / f".{final.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def is_temp(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like one of :func:`temp_path`'s temporary files."""
    return _TEMP_RE.match(Path(path).name) is not None


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that a killed write left in ``folder`` (their process, on this
    host, is gone; from another host: older than an hour); returns them. Live writes are left alone."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for p in entries:
        m = _TEMP_RE.match(p.name)
        if m is None:
            continue
        try:
            if m["host"] == _HOST:
                stale = not _pid_alive(int(m["pid"]))
            else:
                stale = time.time() - p.lstat().st_mtime > STALE_TEMP_SECONDS
            if stale:
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------------------------
# a run's checkpoints folder: <step>.safetensors, latest, best-<metric>
# ----------------------------------------------------------------------------------------------
STEP_RE = re.compile(r"^(\d+)\.safetensors$")
LATEST = "latest.safetensors"  # relative symlink to the newest verified step checkpoint
LATEST_TXT = "latest.txt"  # its stand-in where links are unsupported: that file's name


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    """``folder/<step, 7 digits>.safetensors``: the name of a training step's checkpoint."""
    return Path(folder) / f"{step:07d}.safetensors"


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The step-named checkpoints in ``folder``, oldest first (not ``latest``, ``best-*``, nor
    temporary files); unverified."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def latest_checkpoint(folder: str | os.PathLike, warn: Callable[[str], None] | None = None) -> Path | None:
    """The newest step checkpoint in ``folder`` that verifies (:func:`verify_checkpoint`), or None.

    A newer one that is truncated or corrupt (bad header, wrong size, checksum mismatch) is
    reported through ``warn`` (default: a ``warning:`` line on stderr) naming it, and skipped.
    Temporary files of killed writes are ignored and deleted (:func:`remove_stale_temps`), and a
    ``latest`` left behind by a kill after a save's rename is moved forward to it. Only
    the header of each candidate is read until one passes; only that one is hashed (once per
    process while it does not change)."""
    warn = warn or _warn
    remove_stale_temps(folder)
    for p in reversed(list_checkpoints(folder)):
        try:
            verify_checkpoint(p)
        except CheckpointError as e:
            with contextlib.suppress(OSError):
                seen = (str(p.resolve()), _stat_key(p))
                if seen not in _WARNED:  # once per file and state in a process
                    _WARNED.add(seen)
                    warn(f"{e}; skipped, using an older checkpoint")
            continue
        with contextlib.suppress(OSError):  # a kill between a save's rename and its link update
            if _latest_behind(Path(folder), p):
                update_latest(folder, p)
        return p
    return None


def update_latest(folder: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Point ``folder/latest.safetensors`` at ``target`` (a step checkpoint in ``folder``),
    atomically: a relative symlink made under a temporary name, then renamed over the old one.
    Where symlinks are unsupported, a hard link of the same name; where neither is, ``latest.txt``
    holding the file's name (written atomically; :func:`resolve_checkpoint` reads it). Returns the
    file written."""
    folder, target = Path(folder), Path(target)
    link, txt = folder / LATEST, folder / LATEST_TXT
    for make in (lambda tmp: os.symlink(target.name, tmp), lambda tmp: os.link(target, tmp)):
        tmp = temp_path(link)
        try:
            make(tmp)
            os.replace(tmp, link)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            continue
        with contextlib.suppress(OSError):
            txt.unlink()  # a stand-in from an earlier, link-less attempt
        _fsync_dir(folder)
        return link
    tmp = temp_path(txt)
    try:
        tmp.write_text(target.name + "\n", encoding="utf-8")
        os.replace(tmp, txt)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    with contextlib.suppress(OSError):
        link.unlink()  # would name an older checkpoint
    _fsync_dir(folder)
    return txt


def _latest_behind(folder: Path, newest: Path) -> bool:
    """Whether an existing ``latest`` (link or latest.txt) names a step older than ``newest``."""
    link, txt = folder / LATEST, folder / LATEST_TXT
    if link.is_symlink():
        named = Path(os.readlink(link)).name
    elif link.is_file():  # a hard link: which step file is it?
        named = next((p.name for p in list_checkpoints(folder) if os.path.samefile(p, link)), "")
    elif txt.is_file():
        named = txt.read_text(encoding="utf-8").strip()
    else:
        return False  # none yet: only a run creates it
    m = STEP_RE.match(named)
    return m is None or int(m.group(1)) < int(STEP_RE.match(newest.name).group(1))


def resolve_checkpoint(path: str | os.PathLike, warn: Callable[[str], None] | None = None) -> Path:
    """The checkpoint file that ``path`` names: a file as is; a run folder (``OUT``) or a
    checkpoints folder: its newest valid step checkpoint; ``…/checkpoints/latest`` (or
    ``latest.safetensors``): the ``latest`` link, its ``latest.txt`` stand-in, else the newest
    valid step checkpoint there. Anything else is returned unchanged (and fails when read)."""
    p = Path(path)
    if p.is_dir():
        folder = p / "checkpoints" if (p / "checkpoints").is_dir() else p
        found = latest_checkpoint(folder, warn)
        if found is None:
            raise CheckpointError(f"checkpoint folder {folder} holds no valid step checkpoint "
                                  "(<step>.safetensors); pass a checkpoint file")
        return found
    if p.name in ("latest", LATEST) and not p.is_file():
        folder = p.parent
        if (folder / LATEST).is_file():
            return folder / LATEST
        txt = folder / LATEST_TXT
        if txt.is_file():
            named = folder / txt.read_text(encoding="utf-8").strip()
            if STEP_RE.match(named.name) and named.is_file():
                return named
        found = latest_checkpoint(folder, warn)
        if found is None:
            raise CheckpointError(f"checkpoint {p} does not exist and {folder} holds no valid step "
                                  "checkpoint (<step>.safetensors)")
        return found
    return p


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


def _read_raw(path: Path, header_only: bool = False) -> _Raw:
    kind = _sniff(path)
    if kind != "safetensors":
        return _read_official(path)
    if not header_only:  # a checksummed file is checked before it is used
        header, _ = _read_header(path)
        if CHECKSUM_KEY in (header.get("__metadata__") or {}):
            verify_checkpoint(path)
    return _read_safetensors(path, header_only)


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

    ``path`` may also be a run folder, a checkpoints folder or ``…/checkpoints/latest``
    (:func:`resolve_checkpoint`); a checkpoint with a stored sha256 is verified first.
    The format is recognised from the file's magic bytes (a renamed file still loads or fails
    clearly). With ``config`` given, a checkpoint trained with another configuration is refused
    with the differing fields. Modules are built on CPU, filled strictly, then moved to ``device``;
    ``g_ema`` is put in eval mode. Optimiser states stay on CPU (``load_state_dict`` moves them).
    """
    from ssgan.model.discriminator import DualBranchDiscriminator
    from ssgan.model.generator import SemanticGenerator

    path = resolve_checkpoint(path)
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
    path = resolve_checkpoint(path)
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
