"""``ssgan video CKPT --out FILE.mp4``: one video that sweeps each class's shape and then its texture
code through random targets and back (:mod:`ssgan.edit.sweep`), as the official
``generate_video.py`` does, as H.264 marked as synthetic (:mod:`ssgan.provenance.video`).
Registered by :func:`add_parser` (see :mod:`ssgan.cli`)."""

from __future__ import annotations

import argparse

from ssgan import cliargs as A
from ssgan import visualize as V
from ssgan.edit import editing as E
from ssgan.edit import sweep as S
from ssgan.edit.commands import PART_HELP, write_video


def cmd_video(args: argparse.Namespace) -> None:
    out, signer = A.video_path(args, "--out"), A.c2pa_signer(args)
    if args.targets < 1 or args.frames < 1 or args.batch < 1:
        raise A.CLIError("--targets, --frames and --batch must be >= 1")
    G, classes = A.load_generator(args)
    A.require_semantic(G.config, args.ckpt, "ssgan video (class codes)")
    picked = classes.indices(A.classes_text(args.classes), "--classes") if args.classes else range(classes.k)
    picked = list(picked)
    parts = S.PARTS if args.part == "all" else (args.part,)
    mean = E.mean_w(G, args.seed, 4096) if args.truncation < 1 else None
    try:
        latent = (E.as_latent(A.load_npy(args.latent, "latent"), G, f"latent {args.latent}")[:1]
                  if args.latent else E.sample_latents(G, 1, args.seed, args.truncation, mean))
    except ValueError as e:
        raise A.CLIError(str(e)) from None
    frames = S.sweep_frames(G, latent, picked, classes.names, parts, args.targets, args.frames, args.seed,
                            args.truncation, mean, args.batch, V.palette(classes.k, classes.colors))
    total = S.sweep_count(picked, parts, args.targets, args.frames)
    write_video(out, frames, args, A.provenance(args, G, "video"), signer, total)
    print(f"wrote {out}: {total} frames at {args.fps:g} fps, {len(picked) * len(parts)} sweeps")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register video."""
    q = sub.add_parser(
        "video", help="an mp4 sweeping each class's shape and texture in turn (official generate_video.py)",
        description="Starting from one sample (or --latent), each chosen class's shape code and then its "
                    "texture code move along a smooth closed path through --targets random codes and back, "
                    "all other codes fixed; one captioned sweep after the other (image | mask) in one H.264 "
                    "video, whose metadata says it is synthetic.")
    A.add_common(q, outdir=False)
    A.add_out(q, "the .mp4 video to write (its folder must exist)", required=True)
    q.add_argument("--latent", metavar="FILE", help="latent .npy (default: a sample drawn with --seed)")
    A.add_classes(q, "the classes to sweep (default: all)")
    q.add_argument("--part", choices=("shape", "texture", "all"), default="all",
                   help=PART_HELP + "; all: shape then texture")
    q.add_argument("--targets", type=int, default=3,
                   help="random codes each sweep passes through before it returns (official: 9)")
    q.add_argument("--frames", type=int, default=20, help="frames from one code of a sweep to the next")
    q.add_argument("--batch", type=int, default=8, help="frames rendered together")
    A.add_fps(q, 20)
    A.add_watermark(q)
    A.add_c2pa(q)
    q.set_defaults(func=cmd_video)
