"""``ssgan train``: the same command as ``python train.py``, with the same flags (one parser:
:func:`ssgan.train.spec.build_parser`) and the same exit statuses (:func:`ssgan.train.loop.main`)."""

from __future__ import annotations

import argparse

from ssgan.train.loop import main
from ssgan.train.spec import build_parser


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``ssgan train`` (see ``ssgan.cli``)."""
    q = sub.add_parser("train", help="train a model (the same as python train.py)",
                       description="Train SemanticStyleGAN: the same flags and behaviour as python train.py.",
                       parents=[build_parser(add_help=False)])
    q.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Run the training loop on the parsed arguments; its exit status (it reports its own errors)."""
    return main(parsed=args)
