"""Train SemanticStyleGAN.

    python train.py                                   # tiny preset, built-in data, a few CPU minutes
    python train.py --preset celeba-256 --data DIR --batch 32 --steps 150000
    torchrun --standalone --nproc_per_node=8 train.py --preset celeba-256 --data DIR --batch 32
    python train.py --out runs/tiny --resume          # continue from the newest checkpoint
    python train.py --init CelebAMask-HQ-512x512.pt --images metfaces/ --freeze-local --steps 2000
    python train.py --preset celeba-256 --data DIR --size 128 --seg-dim 8 --transparent 6,7  # any data

Model configuration: ``--preset`` (or a resumed / ``--init`` checkpoint's), then ``--config FILE``
(SSGANConfig fields as JSON), then ``DATA/classes.json`` (class names: the class count and the
transparent classes, see ``ssgan.classes``), then one flag per SSGANConfig field (``--size``,
``--seg-dim``, ``--transparent``, ``--local-layers`` …; ``ssgan.model.config.add_config_flags``).
classes.json and a flag that disagree, or anything that differs from a resumed / ``--init``
checkpoint's configuration, is a one-line error. The class names go into the checkpoints.

The whole loop is in :func:`main`; the pieces live in ``ssgan.train.steps`` (steps, EMA,
optimisers), ``ssgan.train.losses``, ``ssgan.data.loader`` (data order), ``ssgan.train.rng`` (RNG
capture), ``ssgan.distributed`` (DDP) and ``ssgan.train.rundir`` (logs, checkpoint rotation,
samples). One step ``i`` (0-based) is, as in the official script: D step; R1 when ``i % d_reg_every
== 0``; G step; path length when ``i % g_reg_every == 0``; EMA. The ``step`` in ``stats.jsonl`` and
in checkpoint names counts completed steps (step N is logged after index i = N − 1).

Outputs under ``--out``: ``stats.jsonl``, ``curves.png`` (the curves of ``ssgan.train.plot``,
redrawn at log steps as long as drawing stays under ~5 % of the run's time, and at the end),
``samples/<step>.png`` (G-EMA on fixed latents: image | mask | coarse mask),
``checkpoints/<step>.safetensors`` (G, D, G-EMA, optimisers, step, every rank's RNG states, mean
path length and last loss values; the newest ``--keep`` are kept).

Reproducibility: the batch of step s depends only on (seed, s, global batch) (see
``ssgan.data.loader.StepBatchSampler``), all other randomness comes from seeded torch generators
whose states are checkpointed, so ``--resume`` reproduces an uninterrupted run exactly on CPU with
the same world size. Ctrl-C finishes the current step (under torchrun: up to the next log step,
where the ranks agree to stop), writes a checkpoint and exits (a second Ctrl-C aborts at once). Non-
finite losses are tracked on the device every step without a host sync and checked at each log and
checkpoint step: the run then stops naming the first bad step and term, and no checkpoint is written
after it. DDP: gradients are all-reduced by hand after every backward (no DDP wrapper), so R1's and
path length's double backward need nothing special; rank 0 logs and saves.

Speed (``--compile``, ``--precision``; defaults: compiled bf16 on CUDA, eager fp32 on CPU): the D-
and G-step forwards (and so their backwards) run through ``torch.compile(fullgraph=True)`` under
bf16 autocast with fp32 weights and losses; R1 and path length (double backward) run the same
modules eagerly (see ``ssgan.train.steps.StepForwards``). Nothing in a step reads a value back to
the host; losses are read when logged.

Defaults that differ from the official script (see ``--help`` and the README): R1 weights scaled
with size²/batch except for the celeba presets (``ssgan.train.steps.r1_auto``), the G-EMA ramp-up
(``ssgan.train.steps.ema_beta``; ``--resume`` keeps the run's EMA schedule) and lr 0.004 for
``tiny``.

Image-only data (a folder without labels): D sees images only, no R1 on masks, no mask loss.
``--freeze-local`` (domain adaptation, as the official ``--freeze_local``): the local generators
(and the position embedding) stay fixed; the mapping network, the render net and D train.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from ssgan.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ssgan.classes import ClassInfo, classes_overrides, default_names, find_classes, read_classes
from ssgan.data import DatasetError, images_to_float, label_to_mask, open_dataset
from ssgan.data.loader import make_step_loader
from ssgan.distributed import (
    DistInfo,
    all_reduce_mean,
    broadcast_module,
    cleanup_distributed,
    gather_objects,
    init_distributed,
    sync_grads,
)
from ssgan.metrics import MetricError
from ssgan.model.config import PRESETS, add_config_flags, config_overrides, preset, resolve_config
from ssgan.model.discriminator import DualBranchDiscriminator
from ssgan.model.generator import SemanticGenerator
from ssgan.train import steps as T
from ssgan.train.metrics_hook import TrainingMetrics, default_metrics
from ssgan.train.plot import CurveWriter
from ssgan.train.rng import capture_rng, rank_seed, restore_rng, seed_everything
from ssgan.train.rundir import (
    JsonlLogger,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    peak_memory_mb,
    rotate_checkpoints,
    write_samples,
)
from ssgan.train.tensorboard import TensorBoardLog, TensorBoardMissing

# ----- defaults (the paper's hyper-parameters live in ssgan.train.steps.TrainConfig) -------------
DEFAULT_PRESET = "tiny"
DEFAULT_BATCH = 8  # global batch (the official --batch 4 is per GPU, 8 GPUs: 32)
DEFAULT_STEPS = 1200  # the default tiny run (9.6 kimg): about 5 minutes on two CPU cores
TINY_LR = 0.004  # the tiny preset's default --lr: twice the paper's, so that the default run learns
DEFAULT_LENGTH = 10000  # items of the built-in dataset
DEFAULT_EMA_RAMPUP = 0.05  # NVlabs' value; the official SemanticStyleGAN script has none (0)
TC = T.TrainConfig()


class TrainError(Exception):
    """A problem with the command line or the run folder; main() prints it and returns 2."""


class NonFiniteError(Exception):
    """A loss term or a parameter became NaN/inf; main() prints it and returns 1."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("run")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help=f"model configuration (default {DEFAULT_PRESET}; a resumed or --init "
                        f"checkpoint brings its own)")
    g.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="global batch, split across ranks")
    g.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="total optimisation steps")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default=None, help="run folder (default runs/<preset>)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default cuda if available)")
    g.add_argument("--threads", type=int, default=None,
                   help="intra-op CPU threads per process (default on CPU: 1, the fastest for the tiny "
                        "model and robust on a busy machine; otherwise torch's default)")
    g.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    g.add_argument("--init", default=None, metavar="CKPT",
                   help="start from these G / G-EMA / D weights (ours or an official .pt)")
    g.add_argument("--freeze-local", "--freeze_local", action="store_true",
                   help="domain adaptation: keep the local generators fixed")
    g = p.add_argument_group("model (on top of --preset; see the module doc)")
    add_config_flags(g)
    g = p.add_argument_group("speed")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the D- and G-step forwards/backwards (default: on CUDA only)")
    g.add_argument("--precision", choices=T.PRECISIONS, default=None,
                   help="bf16: autocast networks, fp32 weights and losses; tf32: TF32 matmuls; "
                        "fp32: exact (default bf16 on CUDA, fp32 on CPU)")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, help="folder with images/ and optionally labels/")
    g.add_argument("--images", default=None, help="image folder (overrides DATA/images)")
    g.add_argument("--labels", default=None, help="label folder (overrides DATA/labels)")
    g.add_argument("--classes", default=None, metavar="JSON",
                   help="class names (default: DATA/classes.json or LABELS/classes.json when present)")
    g.add_argument("--hflip", action="store_true", help="random horizontal flips (reproducible)")
    g.add_argument("--length", type=int, default=DEFAULT_LENGTH, help="size of the built-in dataset")
    g.add_argument("--cache", action="store_true",
                   help="decode a folder dataset once into memory (uint8; N·size²·4 bytes) to feed fast GPUs")
    g.add_argument("--workers", type=int, default=None,
                   help="loader processes per rank (default 0 on CPU, else min(8, cpus/ranks))")
    g = p.add_argument_group("outputs")
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--sample-every", type=int, default=100)
    g.add_argument("--ckpt-every", type=int, default=100)
    g.add_argument("--keep", type=int, default=3, help="checkpoints kept (0: all)")
    g.add_argument("--n-sample", type=int, default=8, help="latents in the sample grids")
    g.add_argument("--metrics", default=None,
                   help="G-EMA metrics logged to metrics.jsonl, e.g. fid10k,maskfd10k; 'none': off (default: "
                        "maskfd500 on CPU; maskfd10k, plus fid10k with Inception weights, on CUDA)")
    g.add_argument("--metrics-every", type=int, default=250, help="evaluate the metrics every N steps")
    g.add_argument("--inception", default=None, metavar="PATH",
                   help="FID Inception weights (see `ssgan metrics --help`) for fid/kid/pr/is")
    g.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to --out (needs: pip install tensorboard)")
    g = p.add_argument_group("objective (paper defaults, except R1, the EMA ramp-up and the tiny lr: "
                             "see their help)")
    g.add_argument("--lr", type=float, default=None,
                   help=f"default: {TINY_LR} for the tiny preset (its default run then shows faces with eyes "
                        f"and mouths in {DEFAULT_STEPS} steps), the paper's {TC.lr} otherwise")
    g.add_argument("--betas", type=float, nargs=2, default=list(TC.betas))
    g.add_argument("--r1-img", "--r1_img", type=float_or_auto, default="auto",
                   help="R1 weight on D's image gradients; auto: the paper's 10 for the celeba presets, "
                        f"{T.R1_PER_PIXEL}·size²/batch otherwise (tiny at batch 8: 0.16), because R1's "
                        "scale grows with the pixel count (ssgan.train.steps.r1_auto)")
    g.add_argument("--r1-seg", "--r1_seg", type=float_or_auto, default="auto",
                   help="R1 weight on D's mask gradients; auto: 100 × the auto --r1-img (the paper's "
                        "1000 for the celeba presets)")
    g.add_argument("--d-reg-every", "--d_reg_every", type=int, default=TC.d_reg_every)
    g.add_argument("--g-reg-every", "--g_reg_every", type=int, default=TC.g_reg_every)
    g.add_argument("--path-regularize", "--path_regularize", type=float, default=TC.path_regularize)
    g.add_argument("--path-batch-shrink", "--path_batch_shrink", type=int, default=TC.path_batch_shrink)
    g.add_argument("--path-decay", type=float, default=TC.path_decay)
    g.add_argument("--mixing", type=float, default=TC.mixing)
    g.add_argument("--lambda-mask", "--lambda_mask", type=float, default=TC.lambda_mask)
    g.add_argument("--ema-kimg", type=float, default=None,
                   help="G-EMA half-life in thousands of images (default 10·batch/32: the official "
                        "fixed per-step decay 0.5^(32/10⁴))")
    g.add_argument("--ema-rampup", type=float, default=None,
                   help=f"G-EMA ramp-up: the half-life is at most this fraction of the images seen so "
                        f"far, so early G-EMA follows G (NVlabs); 0: the official fixed decay "
                        f"(default {DEFAULT_EMA_RAMPUP} for new runs; --resume keeps the run's value)")
    return p.parse_args(argv)


def float_or_auto(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def param_digest(*modules: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer (for checking that ranks agree)."""
    h = hashlib.sha256()
    for m in modules:
        for name, t in list(m.named_parameters()) + list(m.named_buffers()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.batch % world:  # checked before any process group is set up
        print(f"error: --batch {args.batch} is not divisible by the world size {world}: the global "
              f"batch is split evenly across ranks", file=sys.stderr)
        return 2
    try:
        info = init_distributed(args.device)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    if args.threads is not None or info.device.type == "cpu":
        torch.set_num_threads(max(1, args.threads or 1))
    try:
        return train(args, info)
    except (TrainError, DatasetError, CheckpointError, MetricError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted (no checkpoint written)", file=sys.stderr)
        return 130
    finally:
        torch.set_num_threads(threads)
        cleanup_distributed()


def train(args: argparse.Namespace, info: DistInfo) -> int:
    device, rank, world = info.device, info.rank, info.world_size
    say = print if info.is_main else (lambda *a, **k: None)

    # ----- checks and the run folder -----------------------------------------------------------
    for name in ("batch", "steps", "log_every", "sample_every", "ckpt_every", "n_sample"):
        if getattr(args, name) < 1:
            raise TrainError(f"--{name.replace('_', '-')} must be >= 1")
    if args.batch % world:
        raise TrainError(f"--batch {args.batch} is not divisible by the world size {world}: the "
                         f"global batch is split evenly across ranks")
    per_rank = args.batch // world
    group = min(per_rank, DualBranchDiscriminator.stddev_group)
    if per_rank % group:
        raise TrainError(f"the per-rank batch {per_rank} must be divisible by {group} (the "
                         f"discriminator's minibatch-stddev group); pick another --batch")
    out = Path(args.out or f"runs/{args.preset or DEFAULT_PRESET}")
    ckpt_dir = out / "checkpoints"
    resume_path = latest_checkpoint(ckpt_dir) if args.resume else None
    if not args.resume and list_checkpoints(ckpt_dir):
        raise TrainError(f"{out} already holds checkpoints; pass --resume to continue that run or "
                         f"choose another --out")
    if args.resume and resume_path is None:
        say(f"--resume: no checkpoint in {ckpt_dir}, starting from scratch")

    # ----- model configuration and weights -----------------------------------------------------
    ck = load_checkpoint(resume_path) if resume_path else None
    init = load_checkpoint(args.init) if args.init and ck is None else None
    src = ck or init
    base = src.config if src is not None else preset(args.preset or DEFAULT_PRESET)
    config_name = f"{src.path.name}'s" if src is not None else args.preset or DEFAULT_PRESET
    if src is not None and args.preset and preset(args.preset) != base:
        say(f"note: using the configuration of {src.path}, not --preset {args.preset}")
    classes_path = Path(args.classes) if args.classes else find_classes(args.data, args.labels)
    try:
        file_classes = read_classes(classes_path) if classes_path else None
        known = file_classes or (src.classes if src is not None else None)
        changes = config_overrides(args, known.names if known else None)
        if file_classes is not None:
            changes = classes_overrides(file_classes, classes_path, changes)
        cfg = resolve_config(base, changes, locked=str(src.path) if src is not None else None)
    except ValueError as e:
        raise TrainError(str(e)) from None
    classes = known if known and known.k == cfg.seg_dim else ClassInfo(default_names(cfg.seg_dim))

    dataset = open_dataset(args.data, args.images, args.labels, cfg.size, cfg.seg_dim, hflip=False,
                           seed=0, length=args.length, cache=args.cache,
                           cache_workers=min(8, os.cpu_count() or 1) if info.is_main else 0)
    use_seg = bool(getattr(dataset, "has_labels", True))
    saved_tc = (ck.meta.get("train") or {}) if ck is not None else {}
    r1 = T.r1_auto(cfg, args.batch)
    r1_img, r1_seg = (r1[j] if v == "auto" else v for j, v in enumerate((args.r1_img, args.r1_seg)))
    # EMA schedule: a given flag wins; else a resumed run keeps its own (checkpoints from before
    # the ramp-up existed: fixed decay) and a new run gets the defaults
    ema = {}
    for k, default in (("ema_kimg", None), ("ema_rampup", DEFAULT_EMA_RAMPUP if ck is None else 0.0)):
        given, saved = getattr(args, k), saved_tc.get(k, default)
        ema[k] = saved if given is None else given
        if ck is not None and given is not None and given != saved:
            say(f"note: --{k.replace('_', '-')} {given} differs from {resume_path}'s {saved}; G-EMA "
                f"continues with {given}")
    try:
        lr = args.lr if args.lr is not None else TINY_LR if cfg == preset("tiny") else TC.lr
        tc = T.TrainConfig(lr=lr, betas=tuple(args.betas), r1_img=r1_img, r1_seg=r1_seg,
                           d_reg_every=args.d_reg_every, g_reg_every=args.g_reg_every,
                           path_regularize=args.path_regularize, path_batch_shrink=args.path_batch_shrink,
                           path_decay=args.path_decay, mixing=args.mixing,
                           lambda_mask=args.lambda_mask if use_seg else 0.0, **ema,
                           use_seg=use_seg, freeze_local=args.freeze_local)
    except ValueError as e:
        raise TrainError(str(e)) from None
    if not use_seg:
        say("image-only data: D sees images only; no R1 on masks; no mask loss")

    seed_everything(args.seed)  # identical initial weights on every rank
    G, D, G_ema = SemanticGenerator(cfg), DualBranchDiscriminator(cfg), SemanticGenerator(cfg)
    if src is not None:
        g_src = src.g if src.g is not None else src.g_ema
        if g_src is None:
            raise TrainError(f"{src.path} holds no generator weights")
        G.load_state_dict(g_src.state_dict())
        G_ema.load_state_dict((src.g_ema if src.g_ema is not None else g_src).state_dict())
        if src.d is not None:
            D.load_state_dict(src.d.state_dict())
        else:
            say(f"note: {src.path} holds no discriminator; D starts from random weights")
    else:
        G_ema.load_state_dict(G.state_dict())
    T.copy_buffers(G_ema, G)  # constants: once here, not every EMA step
    G, D, G_ema = G.to(device).train(), D.to(device).train(), G_ema.to(device).eval()
    T.requires_grad(G_ema, False)
    broadcast_module(G)
    broadcast_module(D)
    broadcast_module(G_ema)
    g_params = T.trainable_params(G, tc.freeze_local)
    ema_modules = T.ema_modules(tc.freeze_local)
    d_params = list(D.parameters())
    g_optim, d_optim = T.make_optimizers(G, D, tc, g_params)
    cuda = device.type == "cuda"
    precision = args.precision or ("bf16" if cuda else "fp32")
    T.configure_precision(precision)
    fwd = T.StepForwards(compile=cuda if args.compile is None else args.compile, precision=precision)

    # ----- training state: step, RNGs, running values ------------------------------------------
    start = 0
    gen = torch.Generator(device).manual_seed(rank_seed(args.seed, rank))
    decide = gen if device.type == "cpu" else torch.Generator().manual_seed(rank_seed(args.seed, rank) + 1)
    gens = {"z": gen} if decide is gen else {"z": gen, "decide": decide}
    seed_everything(rank_seed(args.seed + 1, rank))
    mean_path_length = torch.zeros((), device=device)
    losses = T.initial_losses(device)
    if ck is not None:
        if ck.g_optim_state is None or ck.d_optim_state is None or ck.step is None:
            raise TrainError(f"{resume_path} is not a training checkpoint (no optimiser states or step)")
        if "freeze_local" in saved_tc and bool(saved_tc["freeze_local"]) != tc.freeze_local:
            was = "with" if saved_tc["freeze_local"] else "without"
            raise TrainError(f"{resume_path} was trained {was} --freeze-local; resume {was} it too "
                             f"(or start a new run with --init)")
        try:
            g_optim.load_state_dict(ck.g_optim_state)
            d_optim.load_state_dict(ck.d_optim_state)
        except (ValueError, KeyError, RuntimeError) as e:
            raise TrainError(f"cannot load the optimiser states of {resume_path} (was it trained "
                             f"with other flags?): {e}") from None
        if T.apply_hparams(g_optim, d_optim, tc):
            say(f"note: --lr/--betas/--d-reg-every/--g-reg-every differ from {resume_path}'s; the "
                f"optimisers continue with the current values")
        start = int(ck.step)
        prefix = f"rank{rank}."
        saved_world = int(ck.meta.get("world_size", 1))
        if saved_world == world and any(k.startswith(prefix + "rng.") for k in ck.tensors):
            sub = {k[len(prefix):]: v for k, v in ck.tensors.items() if k.startswith(prefix)}
            restore_rng({k[4:]: v for k, v in sub.items() if k.startswith("rng.")}, gens)
            mean_path_length = sub["mean_path_length"].to(device)
            losses = {k: sub[f"loss.{k}"].to(device) for k in T.LOSS_KEYS}
        else:
            say(f"note: {resume_path} was written by {saved_world} ranks; RNGs reseeded, so the "
                f"continuation is not bit-identical to an uninterrupted run")
            gen.manual_seed(rank_seed(args.seed + start, rank))
            seed_everything(rank_seed(args.seed + start + 1, rank))
            mean_path_length = ck.tensors.get("rank0.mean_path_length", mean_path_length).to(device)
        say(f"resuming from {resume_path} at step {start}")
    del ck, init, src
    if start >= args.steps:
        say(f"nothing to do: the run is at step {start} and --steps is {args.steps}")
        return 0

    workers = args.workers if args.workers is not None else (
        0 if device.type == "cpu" else min(8, max(1, (os.cpu_count() or 1) // world)))
    loader = make_step_loader(dataset, args.batch, rank=rank, world_size=world, seed=args.seed,
                                start_step=start, hflip=args.hflip, workers=workers,
                                pin_memory=device.type == "cuda")
    batches = iter(loader)
    sample_z = torch.randn(args.n_sample, cfg.style_dim,
                           generator=torch.Generator().manual_seed(args.seed)).to(device)
    path_batch = max(1, per_rank // tc.path_batch_shrink)
    sync = sync_grads if info.enabled else None
    tracker = T.NonFiniteTracker(device)
    logger = JsonlLogger(out / "stats.jsonl", resume_step=start) if info.is_main else None
    curves = CurveWriter(out) if info.is_main else None  # out/curves.png, redrawn at log steps
    try:
        tb = TensorBoardLog(out) if args.tensorboard and info.is_main else None
    except TensorBoardMissing as e:
        raise TrainError(str(e)) from None
    names = args.metrics or default_metrics(device, args.inception, use_seg)
    metrics = None if names == "none" else TrainingMetrics(
        names, args.metrics_every, out, G_ema, dataset, device, 4 * per_rank, inception=args.inception,
        seed=args.seed, resume_step=start, is_main=info.is_main, say=tqdm.write)
    last_good = [latest_checkpoint(ckpt_dir)]
    meta = {"args": {k: v for k, v in vars(args).items()}, "train": tc.to_dict(), "world_size": world,
            "global_batch": args.batch, "seed": args.seed, "classes": classes.to_meta()}
    if metrics is not None:  # best-<metric> checkpoints carry the same metadata
        metrics.meta = meta

    def save(step: int) -> None:
        bad = tracker.first_bad(reduce_min=True)
        if bad is not None or not T.params_finite(G, D, G_ema):
            raise non_finite(bad)
        state = {"mean_path_length": mean_path_length.detach().cpu(),
                 **{f"loss.{k}": v.detach().cpu() for k, v in losses.items()},
                 **{f"rng.{k}": v for k, v in capture_rng(gens).items()}}
        per_rank_states = gather_objects(state)
        if info.is_main:
            tensors = {f"rank{r}.{k}": v for r, s in enumerate(per_rank_states) for k, v in s.items()}
            path = save_checkpoint(checkpoint_path(ckpt_dir, step), cfg, g_ema=G_ema, g=G, d=D,
                                   g_optim=g_optim, d_optim=d_optim, step=step, tensors=tensors,
                                   meta=meta)
            rotate_checkpoints(ckpt_dir, args.keep)
            last_good[0] = path

    def non_finite(bad: tuple[int, list[str]] | None) -> NonFiniteError:
        where = (f"loss term(s) {', '.join(bad[1])} became non-finite at step {bad[0]}" if bad
                 else "a parameter became non-finite")
        resume = (f"the last good checkpoint is {last_good[0]} (continue from it with --resume, "
                  f"e.g. with a lower --lr)" if last_good[0] else "no checkpoint was written before it")
        return NonFiniteError(f"{where}; stopped, {resume}")

    # ----- Ctrl-C: finish the step, save, exit --------------------------------------------------
    stop = {"requested": False}

    def on_sigint(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        when = "the next log step" if info.enabled else "this step"
        print(f"\nCtrl-C: finishing {when} and saving a checkpoint (again to abort)", file=sys.stderr)

    old_handler = None
    try:
        old_handler = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread
        pass

    say(f"training {config_name} config{' + changes' if changes else ''} at {cfg.size}px, {cfg.seg_dim} "
        f"classes ({', '.join(classes.names)}), on {device} x{world}, global batch {args.batch}, "
        f"steps {start}..{args.steps}, R1 γ {tc.r1_img:g} / {tc.r1_seg:g}, EMA ramp-up {tc.ema_rampup:g}, "
        f"{fwd} -> {out}")
    bar = tqdm(total=args.steps, initial=start, disable=not info.is_main, unit="step", dynamic_ncols=True)
    t_last, step_last = time.perf_counter(), start
    try:
        for i in range(start, args.steps):
            batch = next(batches)
            real_img = images_to_float(batch["image"].to(device, non_blocking=True))  # uint8 travels
            real_mask = (label_to_mask(batch["label"].to(device, non_blocking=True), cfg.seg_dim)
                         if use_seg else None)  # uint8 labels travel; the ±1 mask is built here

            # -- discriminator: logistic loss, then lazy R1 ----------------------------------------
            T.requires_grad(g_params, False)
            T.requires_grad(d_params, True)
            z = T.sample_z(per_rank, cfg.style_dim, tc.mixing, gen, decide)
            losses.update(T.d_step(G, D, d_optim, real_img, real_mask, z, tc, gen, sync, fwd))
            if i % tc.d_reg_every == 0:
                losses.update(T.r1_step(D, d_optim, real_img, real_mask, tc, sync))

            # -- generator: non-saturating + mask loss, then lazy path length ----------------------
            T.requires_grad(g_params, True)
            T.requires_grad(d_params, False)
            z = T.sample_z(per_rank, cfg.style_dim, tc.mixing, gen, decide)
            losses.update(T.g_step(G, D, g_optim, z, tc, gen, sync, fwd))
            if tc.path_regularize > 0 and i % tc.g_reg_every == 0:
                z = T.sample_z(path_batch, cfg.style_dim, tc.mixing, gen, decide)
                pl, mean_path_length = T.pl_step(G, g_optim, z, mean_path_length, tc, gen, sync)
                losses.update(pl)
            T.ema_update(G_ema, G, T.ema_beta(tc, args.batch, i * args.batch), ema_modules)

            step = i + 1
            tracker.update(losses, step)
            bar.update(1)
            last = step == args.steps

            if step % args.log_every == 0 or last:
                values = all_reduce_mean(torch.stack([losses[k].float() for k in T.LOSS_KEYS])).tolist()
                bad = tracker.first_bad(reduce_min=True)
                if bad is not None:
                    raise non_finite(bad)
                now = time.perf_counter()
                kimg_delta = (step - step_last) * args.batch / 1000
                rec = {"step": step, "kimg": step * args.batch / 1000,
                       **{k: v for k, v in zip(T.LOSS_KEYS, values, strict=True)},
                       "sec_per_kimg": (now - t_last) / kimg_delta,
                       "peak_mem_mb": peak_memory_mb(device)}
                if fwd.compile:  # must stay constant after the first step: no recompiles
                    rec["compiled_graphs"] = T.compiled_graphs()
                t_last, step_last = now, step
                if logger is not None:
                    logger.log(rec)
                    curves.update()
                if tb is not None:
                    tb.scalars(rec)
                bar.set_postfix_str(f"kimg {rec['kimg']:.2f} d {rec['d']:.3f} g {rec['g']:.3f} "
                                    f"mask {rec['mask']:.3f} {rec['sec_per_kimg']:.0f} s/kimg")
            if info.is_main and (step % args.sample_every == 0 or last):
                png = write_samples(G_ema, sample_z, out / "samples" / f"{step:07d}.png",
                                      colors=classes.palette())
                if tb is not None:
                    tb.image(png, step)
            if info.enabled and (step % args.log_every == 0 or last):
                # all ranks must stop at the same step: agree at log steps, which sync anyway
                flag = torch.tensor([float(stop["requested"])], device=device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                stop["requested"] = bool(flag.item())
            if step % args.ckpt_every == 0 or last or stop["requested"]:
                save(step)
            if metrics is not None:
                metrics.maybe_evaluate(step, args.batch, last)
            if stop["requested"]:
                say(f"stopped at step {step}; checkpoint {last_good[0]}; continue with --resume")
                return 130
    finally:
        bar.close()
        if logger is not None:
            logger.close()
            curves.update(final=True)
        if tb is not None:
            tb.close()
        if metrics is not None:
            metrics.close()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)

    digest_dir = os.environ.get("SSGAN_DEBUG_PARAM_HASH")
    if digest_dir:
        Path(digest_dir).mkdir(parents=True, exist_ok=True)
        (Path(digest_dir) / f"rank{rank}.json").write_text(json.dumps(
            {"rank": rank, "world_size": world, "g": param_digest(G), "d": param_digest(D),
             "g_ema": param_digest(G_ema)}))
    say(f"done: {args.steps} steps; newest checkpoint {last_good[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
