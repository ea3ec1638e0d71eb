"""The checkpoint subcommands of ``ssgan``: ``convert`` (official .pt -> ssgan .safetensors) and
``info`` (a checkpoint's configuration, classes and sections; see :mod:`ssgan.checkpoint`).
Registered by :func:`add_parser` (see :mod:`ssgan.cli`)."""

from __future__ import annotations

import argparse
import json

from ssgan import cliargs as A
from ssgan.checkpoint import convert_official, inspect_checkpoint
from ssgan.classes import ClassInfo


def cmd_convert(args: argparse.Namespace) -> None:
    out = convert_official(args.src, args.out)
    print(f"wrote {out}")


def cmd_info(args: argparse.Namespace) -> None:
    info = inspect_checkpoint(args.ckpt)
    print(f"checkpoint: {info['path']} ({info['source']} format)")
    print(f"sections: {', '.join(info['sections']) or 'none'}")
    for name, count in info["parameters"].items():
        print(f"  {name}: {count:,} numbers")
    if info["step"] is not None:
        print(f"step: {info['step']}")
    if info["extra_tensors"]:
        print(f"extra tensors: {', '.join(info['extra_tensors'])}")
    cfg = info["config"]
    classes = ClassInfo.from_meta(info["meta"], cfg.seg_dim, cfg.transparent_dims)
    print("classes: " + ", ".join(f"{i} {n}{' (transparent)' if i in classes.transparent else ''}"
                                  for i, n in enumerate(classes.names)))
    print("config:")
    for key, value in cfg.to_dict().items():
        print(f"  {key}: {value}")
    if info["meta"]:
        print(f"meta: {json.dumps(info['meta'], sort_keys=True)}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``convert`` and ``info``."""
    q = sub.add_parser("convert", help="official .pt -> ssgan .safetensors")
    q.add_argument("src", metavar="SRC", help="official checkpoint (.pt with g_ema/d/args)")
    A.add_out(q, "ssgan checkpoint to write (.safetensors)", required=True, positional="DST")
    q.set_defaults(func=cmd_convert)

    q = sub.add_parser("info", help="print a checkpoint's configuration and sections")
    A.add_checkpoint(q)
    q.set_defaults(func=cmd_info)
