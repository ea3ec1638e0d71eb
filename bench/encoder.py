"""Reconstruction benchmark of the encoder against optimisation, on held-out built-in images.

Usage (from the repository root)::

    python -m bench.encoder --ckpt G.safetensors --encoder enc.safetensors [--n 16] [--json OUT.json]
    python -m bench.encoder --dry-run [--json OUT.json]      # tiny random model, seconds, for tests

Targets: ``--n`` items of the built-in dataset (:class:`ssgan.data.SyntheticFaces`) drawn with
``--data-seed`` (default 1; ``train.py`` and ``ssgan encoder train --data synthetic`` use seed 0,
so these images were seen by neither the generator nor the encoder; they are not generator
samples). Each method inverts all of them, ``--batch`` at a time, and is scored with
:func:`ssgan.edit.inversion.measure` (PSNR on [0, 1] images, MS-SSIM; MSE = 10^(−PSNR/10) per
image, on [0, 1]); time per image = wall seconds of the method / n, with the mean latent w̄
computed once beforehand and shared (rendering for the scores is not timed). Methods:

* ``mean latent``: w̄ everywhere (no search);
* ``encoder ×1``, ``encoder ×5``: :func:`ssgan.edit.encoder.encode` with 1 and 5 passes;
* ``optimisation 100`` / ``400``: :func:`ssgan.edit.inversion.invert_latents` from w̄ (the
  ``ssgan invert`` defaults: MS-SSIM perceptual + 0.1 MSE + 1.0 mean-latent term, lr 0.1);
* ``encoder ×5 + 100``: the same search started from the encoder's codes;
* ``encoder ×5 + 100 + PTI``: then ``--pti-steps`` steps of pivotal tuning
  (:func:`ssgan.edit.inversion.tune_generator`) on all n images (0 skips it).

The JSON also holds the edit locality of the generator (:func:`ssgan.edit.locality.locality`,
``--locality-n`` latents, mix of each class's codes, all and texture only, with the baseline),
the FLOPs of one encoder pass and of one generator forward at this model's
size and, unless ``--no-flops-256``, for the ``celeba-256`` configuration (random weights), the
encoder's training cost from its file, the machine and the versions. On a shared CPU the times
are wall times of this process among others: compare them with each other, not across machines.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from bench.session import fmt, write_json
from bench.timing import environment
from ssgan.checkpoint import load_checkpoint
from ssgan.data import SyntheticFaces
from ssgan.edit import editing as E
from ssgan.edit import encoder as EN
from ssgan.edit import inversion as I
from ssgan.edit.locality import locality
from ssgan.model.config import preset
from ssgan.model.generator import SemanticGenerator

DEFAULT_JSON = Path("bench/results/encoder-cpu.json")


def score(G: SemanticGenerator, latents: torch.Tensor, images: torch.Tensor) -> dict[str, float]:
    """Mean MSE ([0, 1] images), PSNR and MS-SSIM of G(latents) against ``images``."""
    rows, _ = I.measure(G, latents, images)
    return {"mse": float(np.mean([10 ** (-r["psnr"] / 10) for r in rows])),
            "psnr": float(np.mean([r["psnr"] for r in rows])),
            "ms_ssim": float(np.mean([r["ms_ssim"] for r in rows]))}


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, tuple[float, float]]:
    """fn's result and its (wall, process CPU) seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, (time.perf_counter() - t0, time.process_time() - c0)


def run(G: SemanticGenerator, get_encoder: Callable[[], EN.LatentEncoder], images: torch.Tensor, batch: int,
        steps: Sequence[int], refine: int, pti_steps: int, progress: bool = True,
        say: Callable[[str], None] = print) -> list[dict]:
    """Every method of the module docstring on ``images``: one row each {method, mse, psnr,
    ms_ssim, seconds, s_per_image, cpu_seconds, cpu_s_per_image}. The optimisation from w̄ runs
    first, then ``get_encoder()`` is called (so a run may start while the encoder still trains);
    the rows come back in the table's order."""
    n = images.shape[0]
    mean = E.mean_w(G, 0, 10000)
    rows = []

    def add(method: str, latents: torch.Tensor, cost: tuple[float, float],
            generator: SemanticGenerator = G) -> None:
        row = {"method": method, **score(generator, latents, images), "seconds": cost[0],
               "s_per_image": cost[0] / n, "cpu_seconds": cost[1], "cpu_s_per_image": cost[1] / n}
        rows.append(row)
        say(f"  {method:28s} PSNR {row['psnr']:6.2f} dB  MS-SSIM {row['ms_ssim']:.4f}  "
            f"{row['s_per_image']:.4f} s/img  {row['cpu_s_per_image']:.4f} CPU-s/img")

    def search(k: int, init_of: Callable[[int], torch.Tensor | None]) -> torch.Tensor:
        cfg = I.InversionConfig(steps=k)
        return torch.cat([I.invert_latents(G, images[s:s + batch], cfg=cfg, mean=mean,
                                           init=init_of(s), progress=f"search {k} {s + 1}/{n}" if progress
                                           else False)
                          for s in range(0, n, batch)])

    def plus(*costs: tuple[float, float]) -> tuple[float, float]:
        return sum(c[0] for c in costs), sum(c[1] for c in costs)

    add("mean latent", mean.view(1, 1, -1).expand(n, G.n_latent, -1), (0.0, 0.0))
    for k in steps:
        lat, t = timed(lambda k=k: search(k, lambda s: None))
        add(f"optimisation {k}", lat, t)
    encoder = get_encoder()
    enc1, t1 = timed(lambda: EN.encode(G, encoder, images, iters=1, batch=batch))
    add("encoder x1", enc1, t1)
    enc5, t5 = timed(lambda: EN.encode(G, encoder, images, iters=5, batch=batch))
    add("encoder x5", enc5, t5)
    lat, t = timed(lambda: search(refine, lambda s: enc5[s:s + batch]))
    add(f"encoder x5 + {refine}", lat, plus(t, t5))
    if pti_steps:
        cfg = I.InversionConfig(finetune_steps=pti_steps)
        tuned, tp = timed(lambda: I.tune_generator(G, lat, images, cfg=cfg, batch=batch, progress=progress))
        add(f"encoder x5 + {refine} + PTI {pti_steps}", lat, plus(t, t5, tp), tuned)
    order = ["mean latent", "encoder x1", "encoder x5"] + [f"optimisation {k}" for k in steps]
    return sorted(rows, key=lambda r: order.index(r["method"]) if r["method"] in order else len(order))


def flops_256() -> dict[str, float]:
    """One encoder pass vs one generator forward at the celeba-256 configuration (random weights)."""
    cfg = preset("celeba-256")
    G = SemanticGenerator(cfg).eval()
    enc = EN.LatentEncoder(cfg, EN.EncoderConfig.for_generator(cfg))
    return EN.pass_flops(G, enc)


def table(rows: Sequence[dict]) -> str:
    lines = ["| method | MSE | PSNR (dB) | MS-SSIM | s / image (wall) | CPU-s / image |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {fmt(r['mse'], '.5f')} | {fmt(r['psnr'], '.2f')} | "
                     f"{fmt(r['ms_ssim'], '.4f')} | {fmt(r['s_per_image'], '.4f')} | "
                     f"{fmt(r['cpu_s_per_image'], '.4f')} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.encoder", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", help="generator checkpoint (required unless --dry-run)")
    p.add_argument("--encoder", help="encoder file from 'ssgan encoder train' (required unless --dry-run)")
    p.add_argument("--n", type=int, default=16, help="held-out built-in images")
    p.add_argument("--data-seed", type=int, default=1, help="seed of the held-out built-in images")
    p.add_argument("--batch", type=int, default=8, help="images per batch, every method")
    p.add_argument("--steps", default="100,400", help="optimisation steps from the mean latent")
    p.add_argument("--refine", type=int, default=100, help="optimisation steps after the encoder")
    p.add_argument("--pti-steps", type=int, default=100, help="pivotal tuning steps after that (0: skip)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--threads", type=int, default=1, help="CPU threads")
    p.add_argument("--no-flops-256", action="store_true", help="skip the FLOPs at the celeba-256 "
                                                                    "configuration")
    p.add_argument("--json", default=None, help=f"output JSON (default {DEFAULT_JSON}; a dry run: none)")
    p.add_argument("--dry-run", action="store_true",
                   help="random tiny model and encoder, 2 images, a few steps: checks the plumbing in "
                        "seconds")
    p.add_argument("--locality-n", type=int, default=64, help="latents of the locality measure (0: skip)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    if args.dry_run:
        torch.manual_seed(0)
        G = SemanticGenerator(preset("tiny")).eval().requires_grad_(False).to(args.device)
        small = EN.EncoderConfig.for_generator(G.config, mean_samples=64)
        fresh = EN.LatentEncoder.from_generator(G, small)
        meta: dict = {"note": "dry run: random generator and encoder"}

        def get_encoder() -> EN.LatentEncoder:
            return fresh
        args.n, steps, args.refine, args.pti_steps = 2, [2, 4], 2, min(args.pti_steps, 1)
        args.no_flops_256 = True
        args.locality_n = min(args.locality_n, 2)
    else:
        if not args.ckpt or not args.encoder:
            print("error: --ckpt and --encoder are required (or --dry-run)", file=sys.stderr)
            return 2
        G = load_checkpoint(args.ckpt, args.device).g_ema.requires_grad_(False)
        try:
            EN.load_encoder(args.encoder, G)  # refused now rather than after the searches
        except EN.EncoderError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        meta = {}
        loaded: list[EN.LatentEncoder] = []

        def get_encoder() -> EN.LatentEncoder:
            """The encoder file as it is when the encoder rows start (its step is recorded), read once."""
            if loaded:
                return loaded[0]
            encoder, info = EN.load_encoder(args.encoder, G)
            loaded.append(encoder)
            meta.update({k: info["meta"].get(k) for k in ("train", "train_seconds", "train_cpu_seconds",
                                                           "data")}, step=info["step"])
            return encoder
    cfg = G.config
    data = SyntheticFaces(cfg.size, args.n, seed=args.data_seed, seg_dim=cfg.seg_dim)
    images = torch.stack([data[i]["image"] for i in range(args.n)]).to(args.device)
    say = (lambda s: None) if args.quiet else print
    say(f"{args.n} held-out built-in images (seed {args.data_seed}) at {cfg.size} px, batch {args.batch}")
    t0, c0 = time.perf_counter(), time.process_time()
    rows = run(G, get_encoder, images, args.batch, steps, args.refine, args.pti_steps, not args.quiet, say)
    flops = {"this_model": EN.pass_flops(G, get_encoder())}
    local = {}
    for part in ("all", "texture") if args.locality_n else ():
        local[part] = locality(G, n=args.locality_n, part=part, progress=not args.quiet)
        r = local[part]
        say(f"locality (mix, {part}): share {r['share']:.3f}, baseline {r['baseline_share']:.3f}, area "
            f"{r['area']:.3f}; per class share/baseline " + ", ".join(
                f"{k}: {v['share']:.2f}/{v['baseline_share']:.2f}" for k, v in r["per_class"].items()))
    if not args.no_flops_256:
        flops["celeba-256"] = flops_256()
    report = {"name": "encoder", "dry_run": args.dry_run,
              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(),
              "environment": environment(), "cpu_count": os.cpu_count(),
              "load_average": os.getloadavg(), "threads": args.threads,
              "checkpoint": args.ckpt, "encoder": args.encoder, "encoder_info": meta,
              "targets": {"dataset": "SyntheticFaces", "seed": args.data_seed, "n": args.n, "size": cfg.size},
              "batch": args.batch, "rows": rows, "flops": flops, "locality": local,
              "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    say(table(rows))
    say(f"FLOPs per pass: encoder {flops['this_model']['encoder_flops'] / 1e6:.1f} M vs generator "
        f"{flops['this_model']['generator_flops'] / 1e6:.1f} M ({flops['this_model']['ratio']:.3f}x)"
        + ("" if "celeba-256" not in flops else
           f"; celeba-256: {flops['celeba-256']['encoder_flops'] / 1e9:.2f} G vs "
           f"{flops['celeba-256']['generator_flops'] / 1e9:.1f} G ({flops['celeba-256']['ratio']:.3f}x)"))
    out = args.json or (None if args.dry_run else DEFAULT_JSON)
    if out:
        write_json(report, out)
        say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
