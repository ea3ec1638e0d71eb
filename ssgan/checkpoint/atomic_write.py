"""Writing a checkpoint file without ever losing the previous one: a temporary file next to the
target, fsync, read-back against its sha256, rename over the target, fsync of the folder; and
cleaning up the temporary files that killed writers leave behind.

Temporary names are ``.<name>.<host>.<pid>.<random>.tmp`` (:func:`temp_path`): a leftover whose
process is gone (same host) or that is older than :data:`STALE_TEMP_SECONDS` (another host, e.g.
a shared file system) is a killed write's and is deleted by :func:`remove_stale_temps`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from ssgan.checkpoint.errors import CheckpointError, one_line
from ssgan.checkpoint.safetensors_file import remember_verified, verify_checkpoint, write_safetensors

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_RE = re.compile(r"^\.(?P<final>.+)\.(?P<host>[0-9a-f]{8})\.(?P<pid>\d+)\.[0-9a-z_]+\.tmp$")
STALE_TEMP_SECONDS = 3600  # a temporary file from another host is stale after an hour


def write_checkpoint_file(path: Path, flat: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
    """Write ``flat`` (CPU, contiguous tensors, no shared storage) and ``metadata`` (with its
    ``sha256``) to ``path`` as safetensors, atomically and verified.

    The bytes go to a temporary file in the same folder (:func:`temp_path`), which is fsynced,
    read back from the disk and checked against the stored sha256 (:func:`verify_checkpoint`),
    renamed over ``path``; then the folder is fsynced. An existing file of that name survives any
    failure and a file under ``path`` is always complete. Every failure is a
    :class:`CheckpointError` of one line; a full disk or an unwritable folder names the folder, the
    space needed and the space free; the temporary file is removed."""
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
        verify_checkpoint(tmp, cache=False)  # read back from disk: header, size, sha256
        os.replace(tmp, path)
        tmp = None
        fsync_dir(folder)
        remember_verified(path)
    except CheckpointError as e:  # from the read-back
        raise CheckpointError(f"cannot save checkpoint {path}: reading it back failed ({e}); the disk "
                              "may be failing; the previous checkpoints are untouched") from None
    except OSError as e:
        raise CheckpointError(_write_error(path, e, need)) from None
    except Exception as e:
        raise CheckpointError(f"cannot save checkpoint {path}: {one_line(e)}") from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


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
    return f"cannot save checkpoint {path}: {one_line(e)}"


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def fsync_dir(folder: Path) -> None:
    """fsync ``folder`` so that a rename or a new link in it survives a power cut (best effort:
    where a folder cannot be opened or synced, nothing happens)."""
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
