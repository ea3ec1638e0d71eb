"""What every ``ssgan`` subcommand shares: the parser class, the spelling of the common arguments,
and loading a checkpoint's generator and ``.npy`` files with one-line errors.

One place per argument: a subcommand that takes a checkpoint, a device, a seed … calls the helper
here instead of declaring the argument itself, so that the flag, its type, its default and its help
text are the same in every command. See :mod:`ssgan.cli` for how a subcommand is added.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssgan.checkpoint import inspect_checkpoint, load_checkpoint
from ssgan.classes import ClassInfo


class CLIError(Exception):
    """An error reported as one line ``ssgan: error: …``, exit status 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: …)`` after every option that has a default; options whose default is
    ``None`` or ``False`` (flags) say in their own help what happens without them."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" in text or action.required or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS):
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text
        return f"{text} (default: %(default)s)"

    def _format_action_invocation(self, action: argparse.Action) -> str:
        """Without the deprecated spellings of a :class:`DeprecatedAlias` (they work, unlisted)."""
        if isinstance(action, DeprecatedAlias):
            action = copy.copy(action)
            action.option_strings = [o for o in action.option_strings if o not in action.deprecated]
        return super()._format_action_invocation(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``CLIError``) and whose help shows defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]  # one line, exit 2
        raise CLIError(message)


class DeprecatedAlias(argparse.Action):
    """Stores like ``store``; given under one of ``deprecated`` option strings, it also prints a
    warning naming the new spelling (the old one keeps working)."""

    def __init__(self, option_strings: Sequence[str], dest: str, deprecated: Sequence[str] = (),
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.deprecated = tuple(deprecated)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if option_string in self.deprecated:
            current = next(o for o in self.option_strings if o not in self.deprecated)
            print(f"ssgan: warning: {option_string} is deprecated here; use {current}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_argument(q: argparse.ArgumentParser, name: str, *aliases: str, deprecated: Sequence[str] = (),
                 **kwargs: Any) -> argparse.Action:
    """``q.add_argument(name, *aliases, *deprecated, …)``; the ``deprecated`` spellings still work and
    print a warning when used."""
    if deprecated:
        kwargs.update(action=DeprecatedAlias, deprecated=tuple(deprecated))
    return q.add_argument(name, *aliases, *deprecated, **kwargs)


# ----- the common arguments -----------------------------------------------------------------------
def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_type(text: str) -> str:
    """A torch device name that exists here (argparse ``type``)."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: no CUDA device here; use --device cpu")
    return text


def add_checkpoint(q: argparse.ArgumentParser,
                   help: str = "checkpoint: ssgan .safetensors or official .pt; a run folder or "
                               "RUN/checkpoints/latest: the newest valid step checkpoint") -> None:
    q.add_argument("ckpt", metavar="CKPT", help=help)


def add_generator(q: argparse.ArgumentParser) -> None:
    q.add_argument("--generator", metavar="CKPT",
                   help="render with this checkpoint's generator instead of CKPT's (e.g. "
                        "OUTDIR/generator.safetensors written by invert --finetune-steps; same "
                        "configuration); default: CKPT's G-EMA, else its G")


def add_device(q: argparse.ArgumentParser) -> None:
    q.add_argument("--device", type=device_type, default=default_device(),
                   help="torch device; cuda when available, else cpu")


def add_outdir(q: argparse.ArgumentParser, help: str = "folder for the output files", required: bool = True,
               deprecated: Sequence[str] = ()) -> None:
    """``--outdir DIR``: the one spelling of a folder that a command writes (``deprecated``, e.g.
    ``("--out",)``: the old spellings of commands that spelled it otherwise before)."""
    add_argument(q, "--outdir", deprecated=deprecated, dest="outdir", metavar="DIR", required=required,
                 help=help)


def add_seed(q: argparse.ArgumentParser, help: str = "random seed (samples and the mean w)") -> None:
    q.add_argument("--seed", type=int, default=0, help=help)


def add_truncation(q: argparse.ArgumentParser) -> None:
    q.add_argument("--truncation", type=float, default=1.0,
                   help="truncation psi (< 1 pulls w towards the mean of 4096 mapped z)")


def add_quiet(q: argparse.ArgumentParser) -> None:
    q.add_argument("--quiet", action="store_true", help="no progress bar (default: shown)")


def add_classes(q: argparse.ArgumentParser, help: str, required: bool = False,
                aliases: Sequence[str] = ()) -> None:
    """``--classes NAME|INDEX [...]``: one or more class names or indices, separated by spaces or
    commas (``hair eyes``, ``hair,eyes``, ``7 2``); ``args.classes`` is their comma-joined text, or
    ``None`` when not given. Read it with :meth:`ssgan.classes.ClassInfo.indices`."""
    q.add_argument("--classes", *aliases, dest="classes", nargs="+", metavar="CLASS", required=required,
                   type=str, help=help + " (names or indices, see ssgan info)")


def classes_text(values: Sequence[str] | None) -> str | None:
    """``--classes`` values as ``ClassInfo.indices`` reads them: ``["hair", "7,2"]`` -> ``"hair,7,2"``."""
    return None if values is None else ",".join(values)


def add_common(q: argparse.ArgumentParser, outdir: bool = True, generator: bool = True) -> None:
    """The arguments of a command that renders with a checkpoint's generator: CKPT, ``--outdir``,
    ``--seed``, ``--device``, ``--truncation``, ``--quiet`` and ``--generator``."""
    add_checkpoint(q)
    if outdir:
        add_outdir(q)
    add_seed(q)
    add_device(q)
    add_truncation(q)
    add_quiet(q)
    if generator:
        add_generator(q)


# ----- loading and saving ---------------------------------------------------------------------------
def load_generator(args: argparse.Namespace) -> tuple[Any, ClassInfo]:
    """CKPT's generator (G-EMA, else G) and its classes (names, colours; see ssgan.classes); with
    ``--generator``, that checkpoint's generator (e.g. one tuned by ``invert``), which must have
    CKPT's configuration, with CKPT's classes."""
    path, config, classes = args.ckpt, None, None
    if getattr(args, "generator", None):
        info = inspect_checkpoint(args.ckpt)
        path, config = args.generator, info["config"]
        classes = ClassInfo.from_meta(info["meta"], config.seg_dim, config.transparent_dims)
    ck = load_checkpoint(path, args.device, config=config)
    classes = classes or ck.classes
    if ck.g_ema is None:
        if ck.g is None:
            raise CLIError(f"checkpoint {path} holds no generator (sections: {', '.join(ck.sections)})")
        ck.g.eval()
        return ck.g, classes
    return ck.g_ema, classes


def load_npy(path: str | Path, what: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A .npy array (of ``shape`` when given), or a one-line error naming the file."""
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"{what} file {p} does not exist")
    try:
        array = np.load(p, allow_pickle=False)
    except Exception as e:
        raise CLIError(f"{what} file {p} is not a .npy array: {e}") from None
    if shape is not None and array.shape != shape:
        raise CLIError(f"{what} {p} has shape {array.shape} but this model needs {shape}")
    return array


def save_npy(array: np.ndarray, path: Path) -> None:
    """``array`` as float32 ``.npy`` at ``path`` (its folder made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(array, dtype=np.float32))
