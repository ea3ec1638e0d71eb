"""``python -m ssgan.data``: prepare training data.

    python -m ssgan.data celebamask ANNO_DIR OUT_DIR [--size 512] [--workers N]
    python -m ssgan.data synthetic OUT_DIR [--n 1000] [--size 64] [--seg-dim 5] [--seed 0]
    python -m ssgan.data from-colors LABELS_DIR OUT_DIR --colors classes.json   (ssgan.data.tools)
    python -m ssgan.data inspect DIR [--size 256] [--png inspect.png]           (ssgan.data.tools)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ssgan.data import tools
from ssgan.data.base import DatasetError
from ssgan.data.celebamask import celebamask_labels
from ssgan.data.synthetic import export_synthetic


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ssgan.data {celebamask,synthetic,from-colors,inspect} ...``; returns the exit
    status (the last two live in :mod:`ssgan.data.tools`)."""
    parser = argparse.ArgumentParser(prog="python -m ssgan.data", description="Prepare training data.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("celebamask", help="CelebAMask-HQ part masks -> 13-class label PNGs")
    p.add_argument("anno_dir", help="the CelebAMask-HQ-mask-anno folder (subfolders 0 .. 14)")
    p.add_argument("out_dir", help="where to write <id>.png labels (e.g. DATA/labels)")
    p.add_argument("--size", type=int, default=512, help="mask size in pixels (default 512)")
    p.add_argument("--workers", type=int, default=0, help="parallel processes (default 0: this one)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    s = sub.add_parser("synthetic", help="write the built-in dataset as images/ and labels/ folders")
    s.add_argument("out_dir")
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--size", type=int, default=64)
    s.add_argument("--seg-dim", type=int, default=5)
    s.add_argument("--seed", type=int, default=0)
    tools.add_commands(sub)
    args = parser.parse_args(argv)
    try:
        if args.command in tools.COMMANDS:
            return tools.run(args)
        if args.command == "celebamask":
            n = celebamask_labels(args.anno_dir, args.out_dir, args.size, not args.quiet, args.workers)
            print(f"wrote {n} labels to {args.out_dir}")
        else:
            export_synthetic(args.out_dir, args.n, args.size, args.seed, args.seg_dim)
            print(f"wrote {args.n} images and labels to {args.out_dir}")
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
