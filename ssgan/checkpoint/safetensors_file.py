"""The safetensors file: writing one, reading and checking its header, and verifying the sha256
stored in it.

Layout (safetensors' own): an 8-byte little-endian header length n, the JSON header (n bytes,
padded with spaces to a multiple of 8; ``__metadata__``: str → str, then per tensor its dtype,
shape and ``data_offsets``), then the tensors' bytes. A complete file is exactly
8 + n + max(end offset) bytes long.

Checksum: the metadata entry ``sha256`` (:data:`CHECKSUM_KEY`) is

    sha256( JSON(metadata without sha256, sorted keys) ‖ for each tensor in name order:
            JSON([name, dtype, shape]) ‖ its bytes )

computed from the tensors when writing (:func:`tensor_digest`) and from the file's bytes when
verifying (:func:`verify_checkpoint`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import safetensors
import torch

from ssgan.checkpoint.errors import CheckpointError, one_line

CHECKSUM_KEY = "sha256"  # header metadata: see tensor_digest
MAX_HEADER = 100 * 2**20  # safetensors' own limit

#: torch dtype → safetensors dtype name (the ones this torch has).
DTYPE_NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
               torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
               torch.uint8: "U8", torch.bool: "BOOL"}
for _name, _code in (("uint16", "U16"), ("uint32", "U32"), ("uint64", "U64"),
                     ("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2")):
    if hasattr(torch, _name):
        DTYPE_NAMES[getattr(torch, _name)] = _code

#: safetensors dtype name → bytes per element.
ITEM_SIZES = {code: dtype.itemsize for dtype, code in DTYPE_NAMES.items()}

_VERIFIED: dict[str, tuple[int, int, int, int]] = {}  # path → (dev, inode, size, mtime_ns) checked
_FAILED: dict[str, tuple[tuple[int, int, int, int], str]] = {}  # path → (that stat, the error)


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
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
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


def _digest_start(metadata: Mapping[str, str]) -> Any:
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in metadata.items() if k != CHECKSUM_KEY}, sort_keys=True).encode())
    return h


def tensor_digest(flat: Mapping[str, torch.Tensor], metadata: Mapping[str, str], path: Path) -> str:
    """sha256 of the metadata (but this digest) and of every tensor's name, dtype, shape and bytes,
    in name order: what :func:`verify_checkpoint` recomputes from the file."""
    h = _digest_start(metadata)
    for name in sorted(flat):
        t = flat[name]
        if t.dtype not in DTYPE_NAMES:
            raise CheckpointError(f"cannot save checkpoint {path}: tensor {name!r} has dtype {t.dtype}, "
                                  "which safetensors cannot store")
        h.update(json.dumps([name, DTYPE_NAMES[t.dtype], list(t.shape)]).encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def stat_key(path: Path) -> tuple[int, int, int, int]:
    """(device, inode, size, mtime in ns) of ``path``: a file with the same key is unchanged."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def remember_verified(path: Path) -> None:
    """Record ``path`` (as it is now) as verified, so that :func:`verify_checkpoint` does not hash
    it again in this process."""
    with contextlib.suppress(OSError):
        _VERIFIED[str(Path(path).resolve())] = stat_key(path)


def check_metadata(metadata: Any) -> None:
    """``__metadata__`` must map strings to strings (ValueError otherwise)."""
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise ValueError("__metadata__ must map strings to strings")


def tensor_extent(name: str, info: Any) -> int:
    """Where the tensor ``name`` of a header ends (its ``data_offsets``' end), after checking that
    its dtype is known and that its shape's elements × the dtype's size are exactly the bytes its
    offsets span: a header cannot claim more elements than the file holds (ValueError)."""
    if not isinstance(info, dict) or info.get("dtype") not in ITEM_SIZES:
        raise ValueError(f"tensor {name!r} has no known dtype")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if (not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape)
            or not isinstance(offsets, list) or len(offsets) != 2
            or not all(type(x) is int for x in offsets) or not 0 <= offsets[0] <= offsets[1]):
        raise ValueError(f"tensor {name!r} has a bad shape or data_offsets")
    if math.prod(shape) * ITEM_SIZES[info["dtype"]] != offsets[1] - offsets[0]:
        raise ValueError(f"tensor {name!r} of shape {shape} does not fill its "
                         f"{offsets[1] - offsets[0]} bytes")
    return offsets[1]


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The safetensors header of ``path`` and where its data starts, after checking that the
    file's size is exactly what the header describes and every tensor exactly fills its bytes
    (:func:`tensor_extent`), before anything is allocated (one line naming the file otherwise)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"checkpoint {path} is truncated: {size} bytes, shorter than a "
                                      "safetensors header")
            n = struct.unpack("<Q", head)[0]
            if n > MAX_HEADER or 8 + n > size:
                raise CheckpointError(f"checkpoint {path} is truncated or corrupt: its header length "
                                      f"says {n} bytes but the file has {size} bytes")
            raw = f.read(n)
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} cannot be read: {one_line(e)}") from None
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("not an object")
        end = 0
        for name, info in header.items():
            if name == "__metadata__":
                check_metadata(info)
                continue
            end = max(end, tensor_extent(name, info))
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise CheckpointError(f"checkpoint {path} has a corrupt safetensors header: {one_line(e)}") from None
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
    by :func:`ssgan.checkpoint.save.save_checkpoint`) is recomputed from the file's bytes; a file
    written before checksums existed must at least load every tensor. ``cache``: a file already
    verified in this process and unchanged since (same inode, size and mtime) is not hashed again."""
    path = Path(path)
    header, base = read_header(path)
    if not full:
        return
    key, stat = str(path.resolve()), stat_key(path)
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
            raise CheckpointError(f"checkpoint {path} cannot be read (corrupt?): {one_line(e)}") from None
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
        raise CheckpointError(f"checkpoint {path} cannot be read: {one_line(e)}") from None
    if h.hexdigest() != expected:
        raise CheckpointError(f"checkpoint {path} is corrupt: its sha256 does not match the one stored "
                              "when it was written")
