"""A run's checkpoints folder: ``<step>.safetensors`` (7-digit step), ``latest.safetensors`` and
``best-<metric>.safetensors`` (see :mod:`ssgan.train.rundir`): naming, listing, finding the
newest one that verifies, moving ``latest``, and resolving what a user names (a run folder, a
checkpoints folder, ``…/checkpoints/latest``) to one file.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from ssgan.checkpoint.atomic_write import fsync_dir, remove_stale_temps, temp_path
from ssgan.checkpoint.errors import CheckpointError
from ssgan.checkpoint.safetensors_file import stat_key, verify_checkpoint

STEP_RE = re.compile(r"^(\d+)\.safetensors$")
LATEST = "latest.safetensors"  # relative symlink to the newest verified step checkpoint
LATEST_TXT = "latest.txt"  # its stand-in where links are unsupported: that file's name
_WARNED: set[tuple[str, tuple[int, int, int, int]]] = set()


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
                seen = (str(p.resolve()), stat_key(p))
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
        fsync_dir(folder)
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
    fsync_dir(folder)
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
