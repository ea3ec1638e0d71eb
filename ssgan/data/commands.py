"""``ssgan data ACTION``: prepare and check training data (``python -m ssgan.data ACTION`` is the
same command). Actions: ``celebamask`` (:mod:`ssgan.data.celebamask`), ``synthetic``
(:mod:`ssgan.data.synthetic`), ``from-colors`` and ``inspect`` (:mod:`ssgan.data.tools`).
Registered by :func:`add_parser` (see :mod:`ssgan.cli`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ssgan import cliargs as A
from ssgan.classes import ClassesError
from ssgan.data import tools
from ssgan.data.base import DatasetError
from ssgan.data.celebamask import celebamask_labels
from ssgan.data.faces import FACE_CLASSES, export_faces
from ssgan.data.synthetic import SyntheticFaces, export_synthetic
from ssgan.provenance import DATA_FIGURE, Provenance, save_image, software

#: Errors of these commands that are bad input, reported as one line (see ssgan.cli).
ERRORS: tuple[type[Exception], ...] = (DatasetError, ClassesError)

DESCRIPTION = "Prepare and check training data."


def cmd_celebamask(args: argparse.Namespace) -> None:
    n = celebamask_labels(args.anno_dir, args.out_dir, args.size, not args.quiet, args.workers)
    print(f"wrote {n} labels to {args.out_dir}")


def cmd_synthetic(args: argparse.Namespace) -> None:
    try:
        if args.kind == "faces":
            if args.seg_dim not in (None, len(FACE_CLASSES)):
                raise ValueError(f"--seg-dim: --kind faces draws {len(FACE_CLASSES)} classes; drop --seg-dim")
            export_faces(args.out_dir, args.count, args.size, args.seed)
        else:
            export_synthetic(args.out_dir, args.count, args.size, args.seed,
                             SyntheticFaces.MIN_CLASSES if args.seg_dim is None else args.seg_dim)
    except ValueError as e:  # the dataset's own check of -n, --size and --seg-dim
        raise A.CLIError(str(e)) from None
    extra = ", classes.json and attributes.csv" if args.kind == "faces" else ""
    print(f"wrote {args.count} images and labels{extra} to {args.out_dir}")


def cmd_from_colors(args: argparse.Namespace) -> None:
    n = tools.from_colors(args.labels_dir, args.out_dir, args.colors, progress=not args.quiet)
    print(f"wrote {n} index labels to {args.out_dir}")


def cmd_inspect(args: argparse.Namespace) -> int:
    """The report; exit status 1 when it found files that would stop training."""
    try:
        report, ds = tools.inspect_folder(args.dir, args.size, args.seg_dim, progress=not args.quiet)
    except DatasetError:
        raise
    except ValueError as e:  # --seg-dim beyond what label PNGs hold
        raise A.CLIError(f"--seg-dim: {e}") from None
    print(tools.format_report(report))
    if ds is not None and report.good:
        prov = Provenance(DATA_FIGURE, "data-inspect", software(), None, False, 0)
        path = save_image(tools.preview(report, ds), Path(args.out or Path(args.dir) / "inspect.png"), prov)
        print(f"\n  preview: {path}")
    return 1 if report.problems else 0


def add_arguments(q: argparse.ArgumentParser) -> None:
    """The actions of ``ssgan data`` (and of ``python -m ssgan.data``)."""
    actions = q.add_subparsers(dest="data_command", required=True, metavar="ACTION",
                               help="celebamask, synthetic: write a labelled dataset; from-colors: "
                                    "colour labels to index labels; inspect: check a data folder")
    p = actions.add_parser("celebamask", help="CelebAMask-HQ part masks -> 13-class label PNGs")
    p.add_argument("anno_dir", metavar="ANNO_DIR",
                   help="the CelebAMask-HQ-mask-anno folder (subfolders 0 .. 14)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="where to write <id>.png labels (e.g. DATA/labels)")
    p.add_argument("--size", type=int, default=512, help="mask size in pixels")
    p.add_argument("--workers", type=int, default=0, help="parallel processes (0: this one)")
    A.add_quiet(p)
    p.set_defaults(func=cmd_celebamask)

    p = actions.add_parser("synthetic", help="write the built-in dataset as images/ and labels/ folders")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder for images/ and labels/")
    A.add_count(p, "images (and labels) to write", default=1000, deprecated=("--n",))
    p.add_argument("--size", type=int, default=64, help="image size in pixels")
    p.add_argument("--kind", choices=("basic", "faces"), default="basic",
                   help="basic: the 5-class shapes (--data synthetic); faces: 9-class portraits with "
                        "attributes.csv and classes.json (--data faces)")
    p.add_argument("--seg-dim", type=int, default=None,
                   help="number of classes of --kind basic (>= 5; default 5)")
    A.add_seed(p, help="seed of the images")
    p.set_defaults(func=cmd_synthetic)

    p = actions.add_parser("from-colors", help="colour-coded label maps -> index label PNGs")
    p.add_argument("labels_dir", metavar="LABELS_DIR",
                   help="folder of colour-coded label images (PNG; <stem> as the images)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="new folder for the index PNGs (e.g. DATA/labels)")
    p.add_argument("--colors", required=True, metavar="FILE",
                   help="classes.json with a colour per class, {name: [r, g, b]} or [[r, g, b], ...]")
    A.add_quiet(p)
    p.set_defaults(func=cmd_from_colors)

    p = actions.add_parser("inspect", help="counts, sizes, class frequencies and bad files of a data folder")
    p.add_argument("dir", metavar="DIR", help="data folder with images/ (and labels/, classes.json)")
    p.add_argument("--size", type=int, default=256, help="training resolution to read the data at")
    p.add_argument("--seg-dim", type=int, default=None, help="number of classes (default: classes.json's)")
    A.add_out(p, "preview picture (default: DIR/inspect.png)", deprecated=("--png",))
    A.add_quiet(p)
    p.set_defaults(func=cmd_inspect)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``data`` (actions ``celebamask``, ``synthetic``, ``from-colors``, ``inspect``)."""
    add_arguments(sub.add_parser("data", help="prepare and check training data", description=DESCRIPTION))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ssgan.data ACTION …``: the same as ``ssgan data ACTION …``."""
    return A.standalone("python -m ssgan.data", DESCRIPTION, add_arguments, argv, ERRORS)
