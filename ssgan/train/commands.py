"""``ssgan train``: the same command as ``python train.py``, with the same flags and help (one
declaration: :func:`ssgan.train.spec.add_arguments`) and the same exit statuses
(:func:`ssgan.train.loop.main`)."""

from __future__ import annotations

import argparse

from ssgan.train.loop import main
from ssgan.train.spec import DESCRIPTION, add_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``ssgan train`` (see ``ssgan.cli``)."""
    q = sub.add_parser("train", help="train a model (the same as python train.py)", description=DESCRIPTION)
    add_arguments(q)
    q.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Run the training loop on the parsed arguments; its exit status (it reports its own errors)."""
    return main(parsed=args)
