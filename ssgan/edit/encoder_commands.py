"""``ssgan encoder train``: train the ReStyle-style encoder (:mod:`ssgan.edit.encoder_train`) for a
checkpoint's generator; ``ssgan invert --encoder FILE`` then starts from it. Registered by
:func:`add_parser` (see :mod:`ssgan.cli`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssgan import cliargs as A
from ssgan.data import DatasetError, open_dataset
from ssgan.edit.encoder import EncoderConfig, EncoderError, LatentEncoder
from ssgan.edit.encoder_train import EncoderTrainConfig, train_encoder
from ssgan.edit.perceptual import PerceptualWeightsError, load_perceptual
from ssgan.model.compiled import DEFAULTS as COMPILED_BY_DEFAULT

#: Errors of these commands that are bad input, reported as one line (see ssgan.cli).
ERRORS: tuple[type[Exception], ...] = (EncoderError, DatasetError, PerceptualWeightsError)


def cmd_train(args: argparse.Namespace) -> None:
    if (args.outdir is None) == (args.out is None):
        raise A.CLIError("give the encoder's place: --outdir DIR (writes DIR/encoder.safetensors) or "
                         "--out FILE.safetensors, not both")
    out = Path(args.out) if args.out else Path(args.outdir) / "encoder.safetensors"
    try:
        cfg = EncoderTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                                 lambda_latent=args.lambda_latent, lambda_seg=args.lambda_seg,
                                 cpu_minutes=args.cpu_minutes, log_every=args.log_every,
                                 sample_every=args.sample_every, ckpt_every=args.ckpt_every)
        enc_cfg = None
        if not args.resume:
            enc_cfg = EncoderConfig(iters=args.iters)  # checked before the generator is loaded
    except ValueError as e:
        raise A.CLIError(str(e)) from None
    if args.resume and not out.is_file():
        raise A.CLIError(f"cannot resume: {out} does not exist; drop --resume to start a new encoder")
    if not args.resume and out.exists() and not args.overwrite:
        raise A.CLIError(f"{out} exists; pass --resume to continue it or --overwrite to start again")
    G, _ = A.load_generator(args)
    A.prepare_inference(args, G)
    data = None
    if args.data:
        data = open_dataset(args.data, None, None, G.config.size, G.config.seg_dim, seed=0)
    perceptual = load_perceptual(args.lpips_weights)
    encoder = None
    if enc_cfg is not None:
        encoder = LatentEncoder.from_generator(G, EncoderConfig.for_generator(G.config, iters=enc_cfg.iters))
    where = "generator samples" + (f" and {len(data)} images of {args.data}" if data is not None else "")
    passes = args.iters if encoder else "resumed"
    print(f"training an encoder ({passes} passes) on {where}: {cfg.steps} steps of batch {cfg.batch}, "
          f"lr {cfg.lr}; perceptual loss: {perceptual.name}"
          + (f"; stops after {cfg.cpu_minutes:g} CPU-minutes" if cfg.cpu_minutes else ""), file=sys.stderr)
    res = train_encoder(G, out, cfg, encoder=encoder, data=data, perceptual=perceptual, resume=args.resume,
                        progress=not args.quiet, say=lambda s: print(s, file=sys.stderr),
                        meta={"generator": str(args.ckpt), "data": args.data},
                        prov=A.provenance(args, None, "encoder-recon"))
    last = res["last"]
    if last:
        print(f"step {last['step']}: loss {last['total']:.4f}, PSNR {last['psnr']:.2f} dB (trained pass); "
              f"{res['seconds']:.0f} s, {res['cpu_seconds'] / 60:.1f} CPU-minutes this run")
    prefix = "" if out.stem == "encoder" else f"{out.stem}."
    print(f"wrote {out}, {out.parent / f'{prefix}stats.jsonl'}, {out.parent / f'{prefix}recon.png'}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``encoder`` (action ``train``)."""
    q = sub.add_parser("encoder", help="a ReStyle-style encoder for a generator (then: invert --encoder)",
                       description="Encoders that map a photo to compact W+ codes in a few passes; "
                                   "'ssgan invert CKPT --encoder FILE' uses one.")
    actions = q.add_subparsers(dest="encoder_command", required=True, metavar="ACTION",
                               help="train: train an encoder for CKPT's generator")
    t = actions.add_parser(
        "train", help="train an encoder against CKPT's frozen generator",
        description="Train on the generator's own samples (known codes: latent L2 and mask cross-entropy "
                    "besides the image losses) mixed, with --data, with real images (image losses only). "
                    "Each step trains one pass of the refinement, at a random depth. Writes the encoder "
                    "(atomically, every --ckpt-every steps), stats.jsonl and recon.png (target | mean | "
                    "pass 1 | pass N).")
    A.add_checkpoint(t)
    A.add_outdir(t, help="folder for encoder.safetensors, stats.jsonl and recon.png (default: none; give "
                         "it or --out)", required=False)
    t.add_argument("--out", metavar="FILE", help="the encoder file instead of OUTDIR/encoder.safetensors "
                                                 "(<stem>.stats.jsonl and <stem>.recon.png beside it; "
                                                 "default: none)")
    t.add_argument("--data", metavar="DIR", help="real images (DIR/images, or 'synthetic' / 'faces': a "
                                                 "built-in dataset) for half of each batch; default: none")
    t.add_argument("--steps", type=int, default=EncoderTrainConfig.steps, help="training steps")
    t.add_argument("--batch", type=int, default=EncoderTrainConfig.batch, help="images per step")
    t.add_argument("--iters", type=int, default=EncoderConfig.iters, help="refinement passes")
    t.add_argument("--lr", type=float, default=EncoderTrainConfig.lr, help="Adam learning rate")
    t.add_argument("--lambda-latent", type=float, default=EncoderTrainConfig.lambda_latent,
                   help="weight of the latent L2 on generator samples")
    t.add_argument("--lambda-seg", type=float, default=EncoderTrainConfig.lambda_seg,
                   help="weight of the mask cross-entropy on generator samples")
    t.add_argument("--cpu-minutes", type=float, default=0.0,
                   help="stop (saving) after this much process CPU time; 0: no limit")
    t.add_argument("--lpips-weights", nargs="+", metavar="FILE",
                   help="LPIPS-VGG weights as for invert; default: 1 - MS-SSIM, no weights")
    t.add_argument("--log-every", type=int, default=EncoderTrainConfig.log_every, help="stats.jsonl interval")
    t.add_argument("--sample-every", type=int, default=EncoderTrainConfig.sample_every,
                   help="recon.png interval")
    t.add_argument("--ckpt-every", type=int, default=EncoderTrainConfig.ckpt_every, help="save interval")
    t.add_argument("--resume", action="store_true",
                   help="continue the encoder file (weights, Adam, step); default: a new encoder")
    t.add_argument("--overwrite", action="store_true",
                   help="replace an existing encoder file (default: refuse)")
    A.add_compile(t, COMPILED_BY_DEFAULT["encoder train"], "the generator's renders (G is frozen)")
    A.add_device(t)
    A.add_seed(t, help="seed of the training batches (and of the mean latent)")
    A.add_quiet(t)
    A.add_watermark(t)
    t.set_defaults(func=cmd_train)
