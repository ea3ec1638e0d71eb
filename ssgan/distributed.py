"""Multi-process (torchrun) training helpers: process set-up and tear-down, and the collectives
the training loop uses.

There is no ``DistributedDataParallel`` wrapper. Every backward is followed by one all-reduce of
the flattened gradients (:func:`sync_grads`), which works unchanged for R1's and path length's
double backward and keeps parameters identical on every rank by construction. The global batch
is split across ranks (the official ``--batch`` is per GPU). As in the official script, the mean
path length is a per-rank running value (logs show its mean over ranks, :func:`all_reduce_mean`);
checkpoints hold every rank's value and RNG states (:func:`gather_objects`).

Every collective waits at most :func:`dist_timeout` (``SSGAN_DIST_TIMEOUT`` seconds, default
1800, torch's own default made explicit); a collective that fails (a peer died, the link is down
for longer than that) raises :class:`CollectiveError`, one line naming the rank and the timeout,
which ``python train.py`` prints as ``ssgan: error: …`` before exiting 1, so that torchrun's
``--max-restarts`` restarts the group (docs/reliability.md, "Two hosts").

In a single process (no torchrun) the collectives are no-ops or return their input.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

TIMEOUT_ENV = "SSGAN_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800  # torch's default for gloo and NCCL process groups


class CollectiveError(RuntimeError):
    """A collective with the other ranks failed: a peer died, or none answered within the timeout."""


def dist_timeout() -> datetime.timedelta:
    """The longest wait of one collective or store operation: ``SSGAN_DIST_TIMEOUT`` seconds
    (a positive number), default :data:`DEFAULT_TIMEOUT_S`."""
    text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise RuntimeError(f"{TIMEOUT_ENV}={text!r} is not a positive number of seconds; unset it "
                           f"(default {DEFAULT_TIMEOUT_S}) or give e.g. {TIMEOUT_ENV}=600")
    return datetime.timedelta(seconds=seconds)


@contextmanager
def collective(what: str) -> Iterator[None]:
    """Run a collective (``what`` names it), turning its failure into a :class:`CollectiveError`."""
    try:
        yield
    except RuntimeError as e:
        lines = str(e).strip().splitlines() or [type(e).__name__]
        raise CollectiveError(f"rank {dist.get_rank()}: {what} with the other ranks failed "
                              f"({TIMEOUT_ENV}={dist_timeout().total_seconds():g} s): {lines[0]}") from None


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistInfo:
    """Set up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK): NCCL on CUDA, gloo on
    CPU; under torchrun's elastic agent the group's store keys carry the restart count, so that a
    restarted group (``--max-restarts``) never meets the addresses of the group it replaces (one
    host: every agent counts the same restarts; across hosts a restarted agent counts from 0, so
    the hosts run torchrun with ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` and each group's rank 0
    serves a store of its own: docs/reliability.md, "Two hosts").
    Without those variables (or WORLD_SIZE=1): a single process on ``device`` (default CUDA when
    available). Collectives and the store wait at most :func:`dist_timeout`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        timeout = dist_timeout()
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # torchrun's store (its agent's) outlives a worker group: a group restarted after a
            # worker died would read the dead group's addresses, so each attempt gets a prefix
            store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                                  is_master=False, timeout=timeout)
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            dist.init_process_group(backend, store=dist.PrefixStore(f"ssgan/attempt{attempt}", store),
                                    rank=rank, world_size=world, timeout=timeout)
        else:
            dist.init_process_group(backend=backend, timeout=timeout)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def cleanup_distributed() -> None:
    global _cpu_group
    _cpu_group = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


_cpu_group: Any = None


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is true on any rank (``flag`` itself when not distributed). A collective
    every rank must call at the same point; it runs on the CPU (gloo: the default group on CPU, a
    gloo group made at the first call otherwise), so calling it every step costs one small
    message round and no device synchronisation."""
    global _cpu_group
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    if _cpu_group is None:
        _cpu_group = (dist.group.WORLD if dist.get_backend() == "gloo"
                      else dist.new_group(backend="gloo"))
    t = torch.tensor([int(flag)], dtype=torch.int32)
    with collective("the per-step stop check"):
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_cpu_group)
    return bool(t.item())


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over all ranks (``t`` itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    t = t.clone()
    with collective("averaging a logged value"):
        dist.all_reduce(t)
    return t / dist.get_world_size()


def sync_grads(module: nn.Module) -> None:
    """Average the gradients of ``module`` over all ranks with one all-reduce of a flat buffer.
    Parameters without a gradient are skipped (the same on every rank: the graphs agree)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    with collective("the gradient all-reduce"):
        dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset: offset + n].view_as(g))
        offset += n


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    with torch.no_grad(), collective("broadcasting the weights"):
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (a list of one when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    with collective("gathering every rank's state"):
        dist.all_gather_object(out, obj)
    return out
