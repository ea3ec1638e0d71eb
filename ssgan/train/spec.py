"""What a training run is asked to do: :class:`RunSpec`, parsed and checked from the command line
by :meth:`RunSpec.from_args` without building a model or touching a device.

Every training option is declared once, as a dataclass field that carries its default, help and
flag (:mod:`ssgan.train.options`): the run's own (preset, batch, steps, data, outputs …) are
:class:`RunSpec`'s fields, the objective's are :class:`ssgan.train.steps.TrainConfig`'s, with the
paper's defaults. The parser (:func:`add_arguments`, the same for ``python train.py`` and ``ssgan
train``) is built by walking both, and :meth:`RunSpec.train_config` builds the ``TrainConfig`` by
walking them back. A new run departs from the paper in three defaults, listed with their reasons
in :data:`DEPARTURES` and resolved by :meth:`RunSpec.train_config`: R1 ``auto``
(:func:`ssgan.train.steps.r1_auto`), the tiny preset's lr (:data:`TINY_LR`) and the G-EMA ramp-up of
new runs (:data:`DEFAULT_EMA_RAMPUP`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ssgan.checkpoint import CheckpointError, resolve_checkpoint
from ssgan.cliargs import Parser, add_device, add_no_watermark, add_outdir, add_watermark_key, default_device
from ssgan.model.config import DEFAULT_ARCH, PRESETS, SSGANConfig, add_config_flags, preset
from ssgan.model.discriminator import DualBranchDiscriminator
from ssgan.train import steps as T
from ssgan.train.options import Departure, add_options, flag_of, option, option_fields, parse_defaults, values
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


#: Where a new run departs from the paper's default (TrainConfig's): the flag's default and why,
#: resolved by :meth:`RunSpec.train_config`.
DEPARTURES: dict[str, Departure] = {
    "lr": Departure(None, f"default: {TINY_LR} for the tiny preset (its default run then shows faces with "
                          f"eyes and mouths in {DEFAULT_STEPS} steps), the paper's {PAPER.lr} otherwise"),
    "r1_img": Departure("auto", f"auto: the paper's {PAPER.r1_img:g} for the celeba presets, {T.R1_PER_PIXEL}"
                                f"·size²/batch otherwise (tiny at batch 8: 0.16), because R1's scale grows "
                                f"with the pixel count (ssgan.train.steps.r1_auto)", float_or_auto),
    "r1_seg": Departure("auto", f"auto: 100 × the auto --r1-img (the paper's {PAPER.r1_seg:g} for the "
                                f"celeba presets)", float_or_auto),
    "ema_rampup": Departure(None, f"default {DEFAULT_EMA_RAMPUP} for new runs; a resumed run keeps its "
                                  f"value"),
}

#: The sections of ``--help``: option group -> title.
GROUPS: dict[str, str] = {
    "run": "run", "model": "model (on top of --preset; see the module doc)", "speed": "speed", "data": "data",
    "outputs": "outputs",
    T.OBJECTIVE: "objective (paper defaults, except R1, the EMA ramp-up and the tiny lr: see their help)",
}
DESCRIPTION = ("Train SemanticStyleGAN (python train.py and ssgan train are the same command; see "
               "docs/training.md).")


@dataclass(frozen=True)
class RunSpec:
    """One training run's request: every flag of ``python train.py``, checked, plus what follows
    from them and the environment (``world_size``, ``resume_path``). The run's own flags are the
    fields declared with :func:`~ssgan.train.options.option`; the objective's flags are
    :class:`~ssgan.train.steps.TrainConfig`'s, held as given in ``objective``."""

    # run
    preset: str | None = option(  # None: DEFAULT_PRESET, or a resumed / --init checkpoint's configuration
        None, f"model configuration (default {DEFAULT_PRESET}; a resumed or --init checkpoint brings "
              f"its own)", group="run", choices=sorted(PRESETS))
    batch: int = option(DEFAULT_BATCH, "global batch, split across ranks", group="run")
    steps: int = option(DEFAULT_STEPS, "total optimisation steps", group="run")
    seed: int = option(0, "seed of the weights, latents and data order", group="run")
    outdir: Path | None = option(None, group="run", add=partial(  # None: runs/<preset>
        add_outdir, help="run folder (default runs/<preset>)", required=False, deprecated=("--out",)))
    device: str = option(group="run", default_factory=default_device, add=add_device)  # cuda when available
    threads: int | None = option(
        None, "intra-op CPU threads per process (default on CPU: 1, the fastest for the tiny model and "
              "robust on a busy machine; otherwise torch's default)", group="run")
    resume: str = option(  # auto | never | a checkpoint file (see checked())
        "auto", "auto: continue from the newest valid checkpoint in --outdir when there is one (of the same "
                "configuration: anything else is an error), else start; never: start, and refuse a folder "
                "that holds checkpoints; PATH: continue from this checkpoint. A bare --resume means auto",
        group="run", nargs="?", const="auto", metavar="auto|never|PATH")
    init: str | None = option(None, "start from these G / G-EMA / D weights (ours or an official .pt; "
                                    "default: random)", group="run", metavar="CKPT")
    # model flags (add_config_flags: only the given ones, as {dest: value})
    model_flags: dict[str, Any] = field(default_factory=dict)
    # speed
    compile: bool | None = option(None, "torch.compile the D- and G-step forwards/backwards (default: on "
                                        "CUDA only)", group="speed")
    precision: str | None = option(None, "bf16: autocast networks, fp32 weights and losses; tf32: TF32 "
                                         "matmuls; fp32: exact (default bf16 on CUDA, fp32 on CPU)",
                                   group="speed", choices=T.PRECISIONS)
    # data
    data: str | None = option(None, "folder with images/ and optionally labels/, or a built-in dataset: "
                                    "synthetic (5 classes, the default) or faces (9 classes, --preset "
                                    "small; docs/data.md)", group="data",
                                metavar="DIR")
    images: str | None = option(None, "image folder (default: DATA/images)", group="data",
                                  metavar="DIR")
    labels: str | None = option(None, "label folder (default: DATA/labels when present)",
                                  group="data", metavar="DIR")
    class_names: str | None = option(
        None, "classes.json: the class names (default: DATA/classes.json or LABELS/classes.json when "
              "present; the built-in data names its own)", group="data", metavar="FILE",
        deprecated=("--classes",))
    hflip: bool = option(False, "random horizontal flips (reproducible; default: none)", group="data")
    length: int = option(DEFAULT_LENGTH, "size of the built-in dataset", group="data")
    cache: bool = option(False, "decode a folder dataset once into memory (uint8; N·size²·4 bytes) to feed "
                                "fast GPUs (default: decode every batch)", group="data")
    workers: int | None = option(None, "loader processes per rank (default 0 on CPU, else min(8, "
                                       "cpus/ranks))", group="data")
    # outputs
    log_every: int = option(10, "log losses every N steps", group="outputs")
    sample_every: int = option(100, "write a sample grid every N steps", group="outputs")
    ckpt_every: int = option(100, "write a checkpoint every N steps", group="outputs")
    keep: int = option(3, "checkpoints kept (0: all)", group="outputs")
    count: int = option(8, "latents in the sample grids", group="outputs", metavar="N",
                        deprecated=("--n-sample",))
    metrics: str | None = option(
        None, "G-EMA metrics logged to metrics.jsonl, e.g. fid10k,maskfd10k; 'none': off (default: maskfd500 "
              "on CPU; maskfd10k, plus fid10k with Inception weights, on CUDA)", group="outputs")
    metrics_every: int = option(250, "evaluate the metrics every N steps", group="outputs")
    inception: str | None = option(None, "FID Inception weights for fid/kid/pr/is (default: as `ssgan "
                                         "metrics --help` says)", group="outputs", metavar="PATH")
    tensorboard: bool = option(False, "also write TensorBoard event files to --outdir (needs: pip install "
                                      "tensorboard; default: off)", group="outputs")
    watermark_key: int = option(0, group="outputs", add=add_watermark_key)  # the samples' watermark
    no_watermark: bool = option(False, group="outputs", add=add_no_watermark)
    # objective: TrainConfig's flags as given (DEPARTURES' None / "auto": resolved by train_config)
    objective: dict[str, Any] = field(default_factory=lambda: parse_defaults(T.TrainConfig, DEPARTURES))
    # derived
    world_size: int = 1
    resume_path: Path | None = None

    # ----- parsing ----------------------------------------------------------------------------

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None, world_size: int | None = None) -> RunSpec:
        """Parse and check ``argv`` (default ``sys.argv[1:]``); ``world_size`` defaults to
        torchrun's ``WORLD_SIZE``. Raises :class:`TrainError` (one line) for a bad combination,
        :class:`ssgan.cliargs.CLIError` for what the parser rejects. Reads the run folder, writes
        nothing."""
        return cls.from_namespace(build_parser().parse_args(argv), world_size)

    @classmethod
    def from_namespace(cls, parsed: argparse.Namespace, world_size: int | None = None) -> RunSpec:
        """:meth:`from_args` for arguments already parsed by :func:`build_parser`'s flags (e.g.
        ``ssgan train``'s; attributes that are no flag of it, such as ``func``, are ignored)."""
        given = vars(parsed)
        model_flags = {k: v for k, v in given.items()  # only the model flags given
                       if (k.startswith("cfg_") or k == "config") and v is not None}
        ns, objective = values(cls, given), values(T.TrainConfig, given)
        objective["betas"] = tuple(objective["betas"])
        ns["outdir"] = Path(ns["outdir"] or f"runs/{ns['preset'] or DEFAULT_PRESET}")  # the default
        world = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
        spec = cls(**ns, model_flags=model_flags, objective=objective, world_size=world)
        return spec.checked()

    def checked(self) -> RunSpec:
        """This spec with ``resume_path`` resolved, or :class:`TrainError` naming the problem."""
        for name in ("batch", "steps", "log_every", "sample_every", "ckpt_every", "count"):
            if getattr(self, name) < 1:
                raise TrainError(f"{flag_of(RunSpec, name)} must be >= 1")
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
        given = dict(self.objective)
        r1 = T.r1_auto(cfg, self.batch)
        for j, k in enumerate(("r1_img", "r1_seg")):
            given[k] = r1[j] if given[k] == "auto" else float(given[k])
        if given["lr"] is None:
            given["lr"] = TINY_LR if cfg.replace(arch=DEFAULT_ARCH) == preset("tiny") else PAPER.lr
        notes = []
        new_rampup = DEFAULT_EMA_RAMPUP if saved is None else 0.0  # checkpoints from before it: 0
        for k, default in (("ema_kimg", None), ("ema_rampup", new_rampup)):
            old = (saved or {}).get(k, default)
            if saved is not None and given[k] is not None and given[k] != old:
                notes.append(f"note: {flag_of(T.TrainConfig, k)} {given[k]} differs from "
                             f"{self.resume_path}'s {old}; G-EMA continues with {given[k]}")
            given[k] = old if given[k] is None else given[k]
        if not use_seg:
            given["lambda_mask"] = 0.0
        try:
            tc = T.TrainConfig(**given, use_seg=use_seg)
        except ValueError as e:
            raise TrainError(str(e)) from None
        return tc, notes

    def to_meta(self) -> dict[str, Any]:
        """The flags as a checkpoint's ``meta["args"]`` (JSON-ready)."""
        d = {f.name: getattr(self, f.name) for f in option_fields(RunSpec)}
        d.update(self.objective)
        d.update(self.model_flags)
        return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
                for k, v in d.items()}


def add_arguments(q: argparse.ArgumentParser) -> None:
    """Every flag of ``python train.py`` / ``ssgan train`` on ``q``: the option fields of
    :class:`RunSpec` and :class:`~ssgan.train.steps.TrainConfig` (with :data:`DEPARTURES`), and the
    model flags, in the sections of :data:`GROUPS`."""
    for key, title in GROUPS.items():
        g = q.add_argument_group(title)
        if key == "model":
            add_config_flags(g)
        add_options(g, RunSpec, key)
        add_options(g, T.TrainConfig, key, DEPARTURES)


def build_parser() -> Parser:
    """The ``python train.py`` parser (the same as ``ssgan train``'s: :mod:`ssgan.train.commands`)."""
    q = Parser(prog="ssgan train", description=DESCRIPTION)
    add_arguments(q)
    return q
