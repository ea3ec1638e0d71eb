"""A training run's state: what it trains (:class:`RunModel`: configuration, class names, data,
objective) and where it stands (:class:`TrainState`: networks, optimisers, step, RNGs, mean path
length, last losses), with the one schema of its checkpoints.

A checkpoint (``ssgan.checkpoint.save_checkpoint``) holds G, D, G-EMA, both optimiser states, the
step, ``meta`` (the flags, the objective, world size, classes) and, for every rank r, the tensors
``rank{r}.<key>`` of :meth:`TrainState.rank_state_dict` (:func:`join_ranks` / :func:`split_ranks`):
``mean_path_length``, ``loss.<term>`` and ``rng.<name>`` (:func:`ssgan.train.rng.capture_rng`).
:meth:`TrainState.write_checkpoint` writes that and :meth:`TrainState.resume` reads it back
(:meth:`TrainState.load_rank_state_dict`); nothing else knows the layout.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ssgan.checkpoint import Checkpoint, load_checkpoint, param_digest, save_checkpoint
from ssgan.classes import ClassInfo, classes_overrides, default_names, find_classes, read_classes
from ssgan.data import images_to_float, label_to_mask, open_dataset
from ssgan.distributed import DistInfo, broadcast_module, gather_objects, sync_grads
from ssgan.model.config import SSGANConfig, config_overrides, preset, resolve_config
from ssgan.model.discriminator import DualBranchDiscriminator
from ssgan.model.networks import build_generator
from ssgan.train import steps as T
from ssgan.train.rng import capture_rng, rank_seed, restore_rng, seed_everything
from ssgan.train.spec import RunSpec, TrainError

Say = Callable[..., None]


@dataclass
class RunModel:
    """What the run trains: the model configuration (preset, ``--config``, classes.json, flags, or
    a resumed / ``--init`` checkpoint's), the class names, the dataset and the objective."""

    cfg: SSGANConfig
    config_name: str  # "tiny", "0000400.safetensors's" …
    changed: bool  # flags or classes.json changed the base configuration
    classes: ClassInfo
    dataset: Any
    tc: T.TrainConfig

    @classmethod
    def resolve(cls, spec: RunSpec, source: Checkpoint | None, resumed: bool, info: DistInfo,
                say: Say) -> RunModel:
        """``source``: the resumed (``resumed``) or ``--init`` checkpoint, or None."""
        base = source.config if source is not None else spec.base_config()
        config_name = f"{source.path.name}'s" if source is not None else spec.preset_name
        if source is not None and spec.preset and preset(spec.preset) != base:
            say(f"note: using the configuration of {source.path}, not --preset {spec.preset}")
        classes_path = Path(spec.class_names) if spec.class_names else find_classes(spec.data, spec.labels)
        try:
            file_classes = read_classes(classes_path) if classes_path else None
            known = file_classes or (source.classes if source is not None else None)
            changes = config_overrides(spec.model_args(), known.names if known else None)
            if file_classes is not None:
                changes = classes_overrides(file_classes, classes_path, changes)
            cfg = resolve_config(base, changes, locked=str(source.path) if source is not None else None)
        except ValueError as e:
            raise TrainError(str(e)) from None
        dataset = open_dataset(spec.data, spec.images, spec.labels, cfg.size, cfg.seg_dim, hflip=False,
                               seed=0, length=spec.length, cache=spec.cache,
                               cache_workers=min(8, os.cpu_count() or 1) if info.is_main else 0)
        # the class names: a classes.json's, else the data's own (the built-in data's), else a checkpoint's
        own = ClassInfo(dataset.class_names) if dataset.class_names else None
        found = [c for c in (file_classes, own, known) if c is not None and c.k == cfg.seg_dim]
        classes = found[0] if found else ClassInfo(default_names(cfg.seg_dim))
        if not cfg.semantic and spec.objective.get("freeze_local"):
            raise TrainError("--freeze-local keeps SemanticStyleGAN's local generators fixed; a StyleGAN2 "
                             "model (--arch stylegan2) has none: drop --freeze-local")
        use_seg = bool(getattr(dataset, "has_labels", True)) and cfg.semantic
        saved = (source.meta.get("train") or {}) if resumed and source is not None else None
        tc, notes = spec.train_config(cfg, use_seg, saved)
        for line in notes:
            say(line)
        if not cfg.semantic:
            say("StyleGAN2 baseline: D sees images only; no R1 on masks; no mask loss")
        elif not use_seg:
            say("image-only data: D sees images only; no R1 on masks; no mask loss")
        return cls(cfg, config_name, bool(changes), classes, dataset, tc)

    @property
    def use_seg(self) -> bool:
        return self.tc.use_seg


class TrainState:
    """Networks, optimisers, step, RNG generators, mean path length and last losses of one rank;
    :meth:`train_step` advances it by one step. Make one with :meth:`new` or :meth:`resume`."""

    def __init__(self, spec: RunSpec, run: RunModel, info: DistInfo, weights: Checkpoint | None,
                 say: Say):
        """Builds the networks (seeded: identical on every rank) from ``weights`` (G / G-EMA / D of
        a checkpoint) or at random, the optimisers and the step's compiled forwards; the step and
        RNGs are set by :meth:`new` / :meth:`resume`."""
        self.spec, self.run, self.info = spec, run, info
        device, cfg, tc = info.device, run.cfg, run.tc
        seed_everything(spec.seed)  # identical initial weights on every rank
        G, D, G_ema = build_generator(cfg), DualBranchDiscriminator(cfg), build_generator(cfg)
        if weights is not None:
            g_src = weights.g if weights.g is not None else weights.g_ema
            if g_src is None:
                raise TrainError(f"{weights.path} holds no generator weights")
            G.load_state_dict(g_src.state_dict())
            G_ema.load_state_dict((weights.g_ema if weights.g_ema is not None else g_src).state_dict())
            if weights.d is not None:
                D.load_state_dict(weights.d.state_dict())
            else:
                say(f"note: {weights.path} holds no discriminator; D starts from random weights")
        else:
            G_ema.load_state_dict(G.state_dict())
        T.copy_buffers(G_ema, G)  # constants: once here, not every EMA step
        self.G, self.D, self.G_ema = G.to(device).train(), D.to(device).train(), G_ema.to(device).eval()
        T.requires_grad(self.G_ema, False)
        for m in (self.G, self.D, self.G_ema):
            broadcast_module(m)
        self.g_params = T.trainable_params(self.G, tc.freeze_local)
        self.d_params = list(self.D.parameters())
        self.ema_modules = T.ema_modules(tc.freeze_local)
        self.g_optim, self.d_optim = T.make_optimizers(self.G, self.D, tc, self.g_params)
        cuda = device.type == "cuda"
        precision = spec.precision or ("bf16" if cuda else "fp32")
        T.configure_precision(precision)
        self.fwd = T.StepForwards(compile=cuda if spec.compile is None else spec.compile, precision=precision)
        self.sync = sync_grads if info.enabled else None
        self.path_batch = max(1, spec.per_rank // tc.path_batch_shrink)
        # step, RNGs, running values (new(): fresh; resume(): the checkpoint's)
        self.step = 0
        self.gen = torch.Generator(device).manual_seed(rank_seed(spec.seed, info.rank))
        self.decide = (self.gen if device.type == "cpu"
                       else torch.Generator().manual_seed(rank_seed(spec.seed, info.rank) + 1))
        self.gens = {"z": self.gen} if self.decide is self.gen else {"z": self.gen, "decide": self.decide}
        seed_everything(rank_seed(spec.seed + 1, info.rank))
        self.mean_path_length = torch.zeros((), device=device)
        self.losses = T.initial_losses(device)
        self.tracker = T.NonFiniteTracker(device)

    # ----- construction ---------------------------------------------------------------------------

    @classmethod
    def new(cls, spec: RunSpec, info: DistInfo, say: Say) -> TrainState:
        """Step 0: random weights, or ``--init``'s."""
        init = load_checkpoint(spec.init) if spec.init else None
        run = RunModel.resolve(spec, init, False, info, say)
        return cls(spec, run, info, init, say)

    @classmethod
    def resume(cls, spec: RunSpec, checkpoint: Checkpoint, info: DistInfo, say: Say) -> TrainState:
        """Continue ``checkpoint`` (written by :meth:`write_checkpoint`): weights, optimisers, step,
        and, at the same world size, every RNG and running value, so the continuation is bit-exact
        on CPU."""
        ck, path = checkpoint, checkpoint.path
        run = RunModel.resolve(spec, ck, True, info, say)
        self = cls(spec, run, info, ck, say)
        if ck.g_optim_state is None or ck.d_optim_state is None or ck.step is None:
            raise TrainError(f"{path} is not a training checkpoint (no optimiser states or step)")
        saved_tc = ck.meta.get("train") or {}
        if "freeze_local" in saved_tc and bool(saved_tc["freeze_local"]) != run.tc.freeze_local:
            was = "with" if saved_tc["freeze_local"] else "without"
            raise TrainError(f"{path} was trained {was} --freeze-local; resume {was} it too "
                             f"(or start a new run with --init)")
        try:
            self.g_optim.load_state_dict(ck.g_optim_state)
            self.d_optim.load_state_dict(ck.d_optim_state)
        except (ValueError, KeyError, RuntimeError) as e:
            raise TrainError(f"cannot load the optimiser states of {path} (was it trained "
                             f"with other flags?): {e}") from None
        if T.apply_hparams(self.g_optim, self.d_optim, run.tc):
            say(f"note: --lr/--betas/--d-reg-every/--g-reg-every differ from {path}'s; the "
                f"optimisers continue with the current values")
        self.step = int(ck.step)
        rank, world = info.rank, info.world_size
        saved = split_ranks(ck.tensors)
        saved_world = int(ck.meta.get("world_size", 1))
        if saved_world == world and any(k.startswith("rng.") for k in saved.get(rank, {})):
            self.load_rank_state_dict(saved[rank])
        else:
            if saved_world != world:
                say(world_change_warning(path, ck.meta, spec, saved_world), file=sys.stderr)
            else:
                say(f"note: {path} holds no RNG states; RNGs reseeded, so the continuation is not "
                    f"bit-identical to an uninterrupted run")
            self.gen.manual_seed(rank_seed(spec.seed + self.step, rank))
            seed_everything(rank_seed(spec.seed + self.step + 1, rank))
            if "mean_path_length" in saved.get(0, {}):
                self.mean_path_length = saved[0]["mean_path_length"].to(info.device)
        say(f"resuming from {path} at step {self.step}")
        return self

    # ----- the per-rank state: one schema -----------------------------------------------------------

    def rank_state_dict(self) -> dict[str, torch.Tensor]:
        """This rank's running state (CPU tensors): ``mean_path_length``, ``loss.<term>``,
        ``rng.<name>``. A checkpoint holds it as ``rank{r}.<key>``."""
        return {"mean_path_length": self.mean_path_length.detach().cpu(),
                **{f"loss.{k}": v.detach().cpu() for k, v in self.losses.items()},
                **{f"rng.{k}": v for k, v in capture_rng(self.gens).items()}}

    def load_rank_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`rank_state_dict`."""
        device = self.info.device
        restore_rng({k[4:]: v for k, v in state.items() if k.startswith("rng.")}, self.gens)
        self.mean_path_length = state["mean_path_length"].to(device)
        self.losses = {k: state[f"loss.{k}"].to(device) for k in T.LOSS_KEYS}

    def write_checkpoint(self, path: Path, meta: dict[str, Any]) -> Path | None:
        """Gather every rank's :meth:`rank_state_dict` and write the checkpoint (rank 0; returns its
        path, None on the other ranks). All ranks must call it."""
        per_rank = gather_objects(self.rank_state_dict())
        if not self.info.is_main:
            return None
        tensors = join_ranks(per_rank)
        return save_checkpoint(path, self.run.cfg, g_ema=self.G_ema, g=self.G, d=self.D,
                               g_optim=self.g_optim, d_optim=self.d_optim, step=self.step,
                               tensors=tensors, meta=meta)

    # ----- one step -------------------------------------------------------------------------------

    def train_step(self, batch: dict[str, torch.Tensor]) -> None:
        """Step index ``i = self.step`` (as the official script): D step; R1 when ``i % d_reg_every
        == 0``; G step; path length when ``i % g_reg_every == 0``; EMA. Then ``step = i + 1``."""
        i, tc, cfg, spec, device = self.step, self.run.tc, self.run.cfg, self.spec, self.info.device
        real_img = images_to_float(batch["image"].to(device, non_blocking=True))  # uint8 travels
        real_mask = (label_to_mask(batch["label"].to(device, non_blocking=True), cfg.seg_dim)
                     if tc.use_seg else None)  # uint8 labels travel; the ±1 mask is built here
        G, D, losses, gen, decide, sync, fwd = (self.G, self.D, self.losses, self.gen, self.decide,
                                                self.sync, self.fwd)
        # discriminator: logistic loss, then lazy R1
        T.requires_grad(self.g_params, False)
        T.requires_grad(self.d_params, True)
        z = T.sample_z(spec.per_rank, cfg.style_dim, tc.mixing, gen, decide)
        losses.update(T.d_step(G, D, self.d_optim, real_img, real_mask, z, tc, gen, sync, fwd))
        if i % tc.d_reg_every == 0:
            losses.update(T.r1_step(D, self.d_optim, real_img, real_mask, tc, sync))
        # generator: non-saturating + mask loss, then lazy path length
        T.requires_grad(self.g_params, True)
        T.requires_grad(self.d_params, False)
        z = T.sample_z(spec.per_rank, cfg.style_dim, tc.mixing, gen, decide)
        losses.update(T.g_step(G, D, self.g_optim, z, tc, gen, sync, fwd))
        if tc.path_regularize > 0 and i % tc.g_reg_every == 0:
            z = T.sample_z(self.path_batch, cfg.style_dim, tc.mixing, gen, decide)
            pl, self.mean_path_length = T.pl_step(G, self.g_optim, z, self.mean_path_length, tc, gen, sync)
            losses.update(pl)
        T.ema_update(self.G_ema, G, T.ema_beta(tc, spec.batch, i * spec.batch), self.ema_modules)
        self.step = i + 1
        self.tracker.update(losses, self.step)

    def param_digest(self) -> dict[str, str]:
        """sha256 of G's, D's and G-EMA's parameters and buffers (for checking that ranks agree)."""
        return {"g": param_digest(self.G), "d": param_digest(self.D), "g_ema": param_digest(self.G_ema)}


def world_change_warning(path: Path, meta: dict[str, Any], spec: RunSpec, saved_world: int) -> str:
    """The ``warning:`` line of a resume at another world size (a host lost or added under
    ``torchrun --nnodes MIN:MAX``): what changes. The batch of step s depends on the seed, s and the
    global batch only (``ssgan.data.loader.StepBatchSampler``), so the data order survives a new
    world size when ``--batch`` (global) is the saved run's; the per-rank batch is ``batch /
    world size``; the latents and noise of each rank are reseeded from (seed + step, rank)."""
    saved_batch = int((meta.get("args") or {}).get("batch", spec.batch))
    order = ("data order unchanged (the same global batch of the same images at every step)"
             if saved_batch == spec.batch
             else f"data order changed (global batch {saved_batch} -> {spec.batch})")
    return (f"warning: {path} was written by {saved_world} ranks, this run has {spec.world_size}: "
            f"world size {saved_world} -> {spec.world_size}, per-rank batch {saved_batch // saved_world} -> "
            f"{spec.per_rank}, {order}; the random numbers are reseeded, so the run continues but is not "
            f"bit-identical to an uninterrupted run at {saved_world} ranks")


def join_ranks(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Every rank's :meth:`TrainState.rank_state_dict` as checkpoint tensors ``rank{r}.<key>``."""
    return {f"rank{r}.{k}": v for r, state in enumerate(states) for k, v in state.items()}


def split_ranks(tensors: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    """Inverse of :func:`join_ranks` (other tensors are ignored)."""
    out: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        if (m := RANK_KEY.match(name)) is not None:
            out.setdefault(int(m[1]), {})[m[2]] = t
    return out


RANK_KEY = re.compile(r"^rank(\d+)\.(.+)$")


def info_say(info: DistInfo) -> Say:
    """``print`` on rank 0, nothing elsewhere."""
    return print if info.is_main else (lambda *a, **k: None)
