"""The ``ssgan`` command: convert checkpoints, prepare data, generate samples, mix parts, show the
composition, invert photographs, fit and apply attribute directions, evaluate metrics, serve the
editor, train, plot training curves.

Subcommands (``ssgan <command> --help`` shows each one's arguments and their defaults):
``convert``, ``info`` (:mod:`ssgan.checkpoint_commands`); ``data`` (:mod:`ssgan.data.commands`:
``python -m ssgan.data``); ``generate``, ``mix``, ``components``, ``interpolate``, ``invert``,
``direction``, ``edit`` (:mod:`ssgan.edit.commands`); ``video`` (:mod:`ssgan.edit.video_commands`);
``encoder`` (:mod:`ssgan.edit.encoder_commands`);
``metrics`` (:mod:`ssgan.metrics.commands`); ``serve`` (:mod:`ssgan.serve.commands`:
``python -m ssgan.serve``); ``train`` (:mod:`ssgan.train.commands`: ``python train.py``); ``plot``
(:mod:`ssgan.train.plot`: ``python -m ssgan.train.plot``); ``detect``
(:mod:`ssgan.provenance_commands`). Every flag has one meaning in all of
them (docs/cli.md, checked by tests/test_cli_flags.py).

Adding a subcommand
-------------------
1. Beside the code it runs, write a module (e.g. ``ssgan/train/commands.py``) with
   ``add_parser(sub: argparse._SubParsersAction) -> None``. It calls ``sub.add_parser(name, help=…)``
   (the parser class, one-line errors and the help formatter that shows defaults come with ``sub``),
   declares the common arguments with the helpers of :mod:`ssgan.cliargs` (``add_checkpoint``,
   ``add_generator``, ``add_device``, ``add_outdir``, ``add_seed``, ``add_truncation``,
   ``add_quiet``, ``add_classes``, or ``add_common`` for all of them) instead of spelling them again,
   gives every other argument a help text, and sets ``func`` (``q.set_defaults(func=cmd_name)``);
   ``func(args)`` returns None on success, or an exit status (e.g. a training loop's ``main``
   that already reported a failure and returns 2).
2. Bad input is reported by raising :class:`ssgan.cliargs.CLIError` (or an error class listed in the
   module's ``ERRORS`` tuple, e.g. ``ERRORS = (DatasetError,)``): it becomes one line
   ``ssgan: error: …`` and exit status 2. Anything else is a bug and keeps its traceback.
3. Add the module to ``COMMANDS`` below; the order there is the order of ``ssgan --help``.

4. A ``python -m ssgan.…`` form of the command calls :func:`ssgan.cliargs.standalone` with the same
   arguments (see :func:`ssgan.data.commands.main`): the same parser, errors and exit statuses.

A flag name means one thing in every command: a file the command writes is ``--out FILE``
(:func:`ssgan.cliargs.add_out`), a folder ``--outdir DIR``, how many things it makes ``-n/--count N``
(``add_count``), classes ``--classes CLASS ...``, a label folder ``--labels DIR``. Renamed spellings
keep working one release, hidden from ``--help``, with one warning line:
``cliargs.add_argument(q, "--new", deprecated=("--old",), …)``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from ssgan import checkpoint_commands, provenance_commands
from ssgan.cliargs import COMMON_ERRORS, CLIError, Parser, run
from ssgan.data import commands as data_commands
from ssgan.edit import commands as edit_commands
from ssgan.edit import encoder_commands, video_commands
from ssgan.metrics import commands as metrics_commands
from ssgan.serve import commands as serve_commands
from ssgan.train import commands as train_commands
from ssgan.train import plot

__all__ = ["COMMANDS", "CLIError", "build_parser", "expected_errors", "main"]

#: The modules that register subcommands, in the order of ``ssgan --help``.
COMMANDS: tuple[ModuleType, ...] = (checkpoint_commands, data_commands, edit_commands, video_commands,
                                    encoder_commands, metrics_commands, serve_commands, train_commands, plot,
                                    provenance_commands)

def expected_errors() -> tuple[type[Exception], ...]:
    """The errors reported as one line: :data:`ssgan.cliargs.COMMON_ERRORS` and each command
    module's ``ERRORS``."""
    out = list(COMMON_ERRORS)
    for module in COMMANDS:
        out += [e for e in getattr(module, "ERRORS", ()) if e not in out]
    return tuple(out)


def build_parser() -> argparse.ArgumentParser:
    """The ``ssgan`` parser with every subcommand of :data:`COMMANDS`."""
    p = Parser(prog="ssgan",
               description="SemanticStyleGAN: checkpoints, sampling, editing, metrics, serving, training")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ssgan`` console script; returns 0 on success (or the status the command
    returned), exits 2 on bad input (one line on stderr, :func:`ssgan.cliargs.run`). Any other
    exception is a bug and propagates with its traceback."""
    return run(build_parser(), argv, expected_errors())


if __name__ == "__main__":
    sys.exit(main())
