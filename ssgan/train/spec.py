"""What a training run is asked to do: :class:`RunSpec`, parsed and checked from the command line
by :meth:`RunSpec.from_args` without building a model or touching a device.

Every default of a run is here, once: the run-level defaults below (preset, batch, steps …) are
:class:`RunSpec`'s field defaults, which ``--help`` shows; the objective's defaults are the
paper's (:class:`ssgan.train.steps.TrainConfig`'s field defaults) except the three departures
that :meth:`RunSpec.train_config` resolves: R1 ``auto`` (:func:`ssgan.train.steps.r1_auto`), the
tiny preset's lr (:data:`TINY_LR`) and the G-EMA ramp-up of new runs (:data:`DEFAULT_EMA_RAMPUP`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssgan.checkpoint import CheckpointError, resolve_checkpoint
from ssgan.cliargs import HelpFormatter, add_device, add_outdir, default_device
from ssgan.model.config import PRESETS, SSGANConfig, add_config_flags, preset
from ssgan.model.discriminator import DualBranchDiscriminator
from ssgan.train import steps as T
from ssgan.train.rundir import latest_checkpoint, list_checkpoints

# ----- run defaults (the paper's hyper-parameters: ssgan.train.steps.TrainConfig) ----------------
DEFAULT_PRESET = "tiny"
DEFAULT_BATCH = 8  # global batch (the official --batch 4 is per GPU, 8 GPUs: 32)
DEFAULT_STEPS = 1200  # the default tiny run (9.6 kimg): about 5 minutes on two CPU cores
DEFAULT_LENGTH = 10000  # items of the built-in dataset
TINY_LR = 0.004  # the tiny preset's default --lr: twice the paper's, so that the default run learns
DEFAULT_EMA_RAMPUP = 0.05  # NVlabs' value; the official SemanticStyleGAN script has none (0)
PAPER = T.TrainConfig()  # the paper's objective (official train.py defaults)


class TrainError(Exception):
    """A problem with the command line or the run folder; main() prints it and returns 2."""


def float_or_auto(text: str) -> float | str:
    """argparse type: a number, or the word ``auto``."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


@dataclass(frozen=True)
class RunSpec:
    """One training run's request: every flag of ``python train.py`` (same names), checked, plus
    what follows from them and the environment (``world_size``, ``resume_path``)."""

    # run
    preset: str | None = None  # None: DEFAULT_PRESET, or a resumed / --init checkpoint's configuration
    batch: int = DEFAULT_BATCH
    steps: int = DEFAULT_STEPS
    seed: int = 0
    outdir: Path | None = None  # None: runs/<preset>
    device: str = field(default_factory=default_device)  # cuda when available (ssgan.cliargs)
    threads: int | None = None
    resume: str = "auto"  # auto | never | a checkpoint file (see checked())
    init: str | None = None
    freeze_local: bool = False
    # model flags (add_config_flags: only the given ones, as {dest: value})
    model_flags: dict[str, Any] = field(default_factory=dict)
    # speed
    compile: bool | None = None
    precision: str | None = None
    # data
    data: str | None = None
    images: str | None = None
    labels: str | None = None
    classes: str | None = None
    hflip: bool = False
    length: int = DEFAULT_LENGTH
    cache: bool = False
    workers: int | None = None
    # outputs
    log_every: int = 10
    sample_every: int = 100
    ckpt_every: int = 100
    keep: int = 3
    n_sample: int = 8
    metrics: str | None = None
    metrics_every: int = 250
    inception: str | None = None
    tensorboard: bool = False
    # objective (None / "auto": resolved by train_config)
    lr: float | None = None
    betas: tuple[float, float] = PAPER.betas
    r1_img: float | str = "auto"
    r1_seg: float | str = "auto"
    d_reg_every: int = PAPER.d_reg_every
    g_reg_every: int = PAPER.g_reg_every
    path_regularize: float = PAPER.path_regularize
    path_batch_shrink: int = PAPER.path_batch_shrink
    path_decay: float = PAPER.path_decay
    mixing: float = PAPER.mixing
    lambda_mask: float = PAPER.lambda_mask
    ema_kimg: float | None = None
    ema_rampup: float | None = None
    # derived
    world_size: int = 1
    resume_path: Path | None = None

    # ----- parsing ----------------------------------------------------------------------------

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None, world_size: int | None = None) -> RunSpec:
        """Parse and check ``argv`` (default ``sys.argv[1:]``); ``world_size`` defaults to
        torchrun's ``WORLD_SIZE``. Raises :class:`TrainError` (one line) for a bad combination,
        ``SystemExit`` for what argparse rejects. Reads the run folder, writes nothing."""
        return cls.from_namespace(build_parser().parse_args(argv), world_size)

    @classmethod
    def from_namespace(cls, parsed: argparse.Namespace, world_size: int | None = None) -> RunSpec:
        """:meth:`from_args` for arguments already parsed by :func:`build_parser`'s flags (e.g.
        ``ssgan train``'s; attributes that are no flag of it, such as ``func``, are ignored)."""
        given = vars(parsed)
        model_flags = {k: v for k, v in given.items()  # only the model flags given
                       if (k.startswith("cfg_") or k == "config") and v is not None}
        names = {f.name for f in dataclasses.fields(cls)} - {"model_flags", "world_size", "resume_path"}
        ns = {k: v for k, v in given.items() if k in names}
        ns["betas"] = tuple(ns["betas"])
        ns["outdir"] = Path(ns["outdir"] or f"runs/{ns['preset'] or DEFAULT_PRESET}")  # the default
        world = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
        spec = cls(**ns, model_flags=model_flags, world_size=world)
        return spec.checked()

    def checked(self) -> RunSpec:
        """This spec with ``resume_path`` resolved, or :class:`TrainError` naming the problem."""
        for name in ("batch", "steps", "log_every", "sample_every", "ckpt_every", "n_sample"):
            if getattr(self, name) < 1:
                raise TrainError(f"--{name.replace('_', '-')} must be >= 1")
        if self.batch % self.world_size:
            raise TrainError(f"--batch {self.batch} is not divisible by the world size {self.world_size}: "
                             f"the global batch is split evenly across ranks")
        group = min(self.per_rank, DualBranchDiscriminator.stddev_group)
        if self.per_rank % group:
            raise TrainError(f"the per-rank batch {self.per_rank} must be divisible by {group} (the "
                             f"discriminator's minibatch-stddev group); pick another --batch")
        existing = list_checkpoints(self.ckpt_dir)
        if self.resume == "never":
            if existing:
                raise TrainError(f"{self.outdir} already holds checkpoints (newest {existing[-1].name}) and "
                                 f"--resume never was given; choose another --outdir, or drop --resume "
                                 f"never to continue that run")
            resume_path = None
        elif self.resume == "auto":
            resume_path = latest_checkpoint(self.ckpt_dir)  # the newest valid one
            if existing and resume_path is None:
                raise TrainError(f"{self.ckpt_dir} holds checkpoints but none is readable; pass --resume "
                                 f"PATH to continue from another one, or choose another --outdir")
        else:
            try:  # a file, a run folder or RUN/checkpoints/latest
                resume_path = resolve_checkpoint(self.resume)
            except CheckpointError as e:
                raise TrainError(f"--resume {self.resume}: {e}") from None
            if not resume_path.is_file():
                raise TrainError(f"--resume {self.resume}: no such checkpoint file; pass auto (continue "
                                 f"the newest in --outdir), never, or a checkpoint's path")
        return dataclasses.replace(self, resume_path=resume_path)

    # ----- what follows from the flags ---------------------------------------------------------

    @property
    def ckpt_dir(self) -> Path:
        assert self.outdir is not None
        return self.outdir / "checkpoints"

    @property
    def per_rank(self) -> int:
        return self.batch // self.world_size

    @property
    def preset_name(self) -> str:
        return self.preset or DEFAULT_PRESET

    def base_config(self) -> SSGANConfig:
        return preset(self.preset_name)

    def loader_workers(self, on_cpu: bool) -> int:
        """``--workers``, default 0 on CPU, else min(8, cpus / ranks)."""
        if self.workers is not None:
            return self.workers
        return 0 if on_cpu else min(8, max(1, (os.cpu_count() or 1) // self.world_size))

    def model_args(self) -> argparse.Namespace:
        """The model flags as :func:`ssgan.model.config.config_overrides` reads them."""
        return argparse.Namespace(**self.model_flags)

    def train_config(self, cfg: SSGANConfig, use_seg: bool, saved: dict[str, Any] | None
                     ) -> tuple[T.TrainConfig, list[str]]:
        """The objective for model ``cfg``: the flags, with ``auto`` / unset values resolved (module
        doc). ``saved``: a resumed checkpoint's ``meta["train"]`` (its G-EMA schedule is kept
        unless a flag says otherwise; checkpoints from before the ramp-up: fixed decay). Returns
        the config and notes to print; raises :class:`TrainError` for invalid values."""
        r1 = T.r1_auto(cfg, self.batch)
        r1_img, r1_seg = (r1[j] if v == "auto" else v for j, v in enumerate((self.r1_img, self.r1_seg)))
        ema, notes = {}, []
        new_rampup = DEFAULT_EMA_RAMPUP if saved is None else 0.0  # checkpoints from before it: 0
        for k, default in (("ema_kimg", None), ("ema_rampup", new_rampup)):
            given, old = getattr(self, k), (saved or {}).get(k, default)
            ema[k] = old if given is None else given
            if saved is not None and given is not None and given != old:
                flag = "--" + k.replace("_", "-")
                notes.append(f"note: {flag} {given} differs from {self.resume_path}'s {old}; G-EMA continues "
                             f"with {given}")
        lr = self.lr if self.lr is not None else TINY_LR if cfg == preset("tiny") else PAPER.lr
        try:
            tc = T.TrainConfig(lr=lr, betas=self.betas, r1_img=float(r1_img), r1_seg=float(r1_seg),
                               d_reg_every=self.d_reg_every, g_reg_every=self.g_reg_every,
                               path_regularize=self.path_regularize, path_batch_shrink=self.path_batch_shrink,
                               path_decay=self.path_decay, mixing=self.mixing,
                               lambda_mask=self.lambda_mask if use_seg else 0.0, **ema,
                               use_seg=use_seg, freeze_local=self.freeze_local)
        except ValueError as e:
            raise TrainError(str(e)) from None
        return tc, notes

    def to_meta(self) -> dict[str, Any]:
        """The flags as a checkpoint's ``meta["args"]`` (JSON-ready)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name not in ("model_flags", "world_size", "resume_path")}
        d.update(self.model_flags)
        return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
                for k, v in d.items()}


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The ``python train.py`` / ``ssgan train`` argument parser (defaults: :class:`RunSpec`);
    ``add_help=False`` for use as a parent parser."""
    D = RunSpec
    p = argparse.ArgumentParser(description="Train SemanticStyleGAN.", formatter_class=HelpFormatter,
                                add_help=add_help)
    g = p.add_argument_group("run")
    g.add_argument("--preset", choices=sorted(PRESETS), default=D.preset,
                   help=f"model configuration (default {DEFAULT_PRESET}; a resumed or --init "
                        f"checkpoint brings its own)")
    g.add_argument("--batch", type=int, default=D.batch, help="global batch, split across ranks")
    g.add_argument("--steps", type=int, default=D.steps, help="total optimisation steps")
    g.add_argument("--seed", type=int, default=D.seed, help="seed of the weights, latents and data order")
    add_outdir(g, help="run folder (default runs/<preset>)", required=False, aliases=("--out",))
    add_device(g)
    g.add_argument("--threads", type=int, default=D.threads,
                   help="intra-op CPU threads per process (default on CPU: 1, the fastest for the tiny "
                        "model and robust on a busy machine; otherwise torch's default)")
    g.add_argument("--resume", nargs="?", const="auto", default=D.resume, metavar="auto|never|PATH",
                   help="auto: continue from the newest valid checkpoint in --outdir when there is one "
                        "(of the same configuration: anything else is an error), else start; never: "
                        "start, and refuse a folder that holds checkpoints; PATH: continue from this "
                        "checkpoint. A bare --resume means auto")
    g.add_argument("--init", default=D.init, metavar="CKPT",
                   help="start from these G / G-EMA / D weights (ours or an official .pt; default: random)")
    g.add_argument("--freeze-local", "--freeze_local", action="store_true",
                   help="domain adaptation: keep the local generators fixed (default: all of G trains)")
    g = p.add_argument_group("model (on top of --preset; see the module doc)")
    add_config_flags(g)
    g = p.add_argument_group("speed")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=D.compile,
                   help="torch.compile the D- and G-step forwards/backwards (default: on CUDA only)")
    g.add_argument("--precision", choices=T.PRECISIONS, default=D.precision,
                   help="bf16: autocast networks, fp32 weights and losses; tf32: TF32 matmuls; "
                        "fp32: exact (default bf16 on CUDA, fp32 on CPU)")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=D.data,
                   help="folder with images/ and optionally labels/ (default: the built-in procedural faces)")
    g.add_argument("--images", default=D.images, help="image folder (default: DATA/images)")
    g.add_argument("--labels", default=D.labels, help="label folder (default: DATA/labels when present)")
    g.add_argument("--classes", default=D.classes, metavar="JSON",
                   help="class names (default: DATA/classes.json or LABELS/classes.json when present)")
    g.add_argument("--hflip", action="store_true",
                   help="random horizontal flips (reproducible; default: none)")
    g.add_argument("--length", type=int, default=D.length, help="size of the built-in dataset")
    g.add_argument("--cache", action="store_true",
                   help="decode a folder dataset once into memory (uint8; N·size²·4 bytes) to feed fast GPUs "
                        "(default: decode every batch)")
    g.add_argument("--workers", type=int, default=D.workers,
                   help="loader processes per rank (default 0 on CPU, else min(8, cpus/ranks))")
    g = p.add_argument_group("outputs")
    g.add_argument("--log-every", type=int, default=D.log_every, help="log losses every N steps")
    g.add_argument("--sample-every", type=int, default=D.sample_every,
                   help="write a sample grid every N steps")
    g.add_argument("--ckpt-every", type=int, default=D.ckpt_every, help="write a checkpoint every N steps")
    g.add_argument("--keep", type=int, default=D.keep, help="checkpoints kept (0: all)")
    g.add_argument("--n-sample", type=int, default=D.n_sample, help="latents in the sample grids")
    g.add_argument("--metrics", default=D.metrics,
                   help="G-EMA metrics logged to metrics.jsonl, e.g. fid10k,maskfd10k; 'none': off (default: "
                        "maskfd500 on CPU; maskfd10k, plus fid10k with Inception weights, on CUDA)")
    g.add_argument("--metrics-every", type=int, default=D.metrics_every,
                   help="evaluate the metrics every N steps")
    g.add_argument("--inception", default=D.inception, metavar="PATH",
                   help="FID Inception weights for fid/kid/pr/is (default: as `ssgan metrics --help` "
                        "says)")
    g.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to --outdir (needs: pip install tensorboard; "
                        "default: off)")
    g = p.add_argument_group("objective (paper defaults, except R1, the EMA ramp-up and the tiny lr: "
                             "see their help)")
    g.add_argument("--lr", type=float, default=D.lr,
                   help=f"default: {TINY_LR} for the tiny preset (its default run then shows faces with eyes "
                        f"and mouths in {DEFAULT_STEPS} steps), the paper's {PAPER.lr} otherwise")
    g.add_argument("--betas", type=float, nargs=2, default=list(D.betas), help="Adam betas")
    g.add_argument("--r1-img", "--r1_img", type=float_or_auto, default=D.r1_img,
                   help="R1 weight on D's image gradients; auto: the paper's "
                        f"{PAPER.r1_img:g} for the celeba presets, {T.R1_PER_PIXEL}·size²/batch otherwise "
                        "(tiny at batch 8: 0.16), because R1's scale grows with the pixel count "
                        "(ssgan.train.steps.r1_auto)")
    g.add_argument("--r1-seg", "--r1_seg", type=float_or_auto, default=D.r1_seg,
                   help="R1 weight on D's mask gradients; auto: 100 × the auto --r1-img "
                        f"(the paper's {PAPER.r1_seg:g} for the celeba presets)")
    g.add_argument("--d-reg-every", "--d_reg_every", type=int, default=D.d_reg_every, help="lazy R1 interval")
    g.add_argument("--g-reg-every", "--g_reg_every", type=int, default=D.g_reg_every,
                   help="lazy path-length interval")
    g.add_argument("--path-regularize", "--path_regularize", type=float, default=D.path_regularize,
                   help="path-length weight")
    g.add_argument("--path-batch-shrink", "--path_batch_shrink", type=int, default=D.path_batch_shrink,
                   help="path-length batch divisor")
    g.add_argument("--path-decay", type=float, default=D.path_decay, help="mean path length decay")
    g.add_argument("--mixing", type=float, default=D.mixing, help="style-mixing probability")
    g.add_argument("--lambda-mask", "--lambda_mask", type=float, default=D.lambda_mask,
                   help="mask loss weight")
    g.add_argument("--ema-kimg", type=float, default=D.ema_kimg,
                   help="G-EMA half-life in thousands of images (default 10·batch/32: the official "
                        "fixed per-step decay 0.5^(32/10⁴))")
    g.add_argument("--ema-rampup", type=float, default=D.ema_rampup,
                   help=f"G-EMA ramp-up: the half-life is at most this fraction of the images seen so "
                        f"far, so early G-EMA follows G (NVlabs); 0: the official fixed decay "
                        f"(default {DEFAULT_EMA_RAMPUP} for new runs; a resumed run keeps its value)")
    return p
