"""The training loader: a reproducible data order, resumable at any step and the same for any
number of ranks or worker processes.

:class:`StepBatchSampler` draws epoch e's permutation (and flip bits) from ``(seed, e)`` only,
so step s always reads the same images; :class:`FlipIndexed` applies the flips and ships lean
uint8 items; :func:`make_step_loader` puts the two in a ``DataLoader``. Randomness goes through
``torch.Generator`` objects (never Python's ``random``), so the order is reproducible and
resumable bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ssgan.data.base import DatasetError, ItemDataset, to_item


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


class StepBatchSampler(Sampler[list[int]]):
    """Per-rank batch indices for steps ``start_step, start_step + 1, …`` forever.

    Epoch e is a permutation of the dataset (and one horizontal-flip bit per item) drawn from
    ``(seed, e)`` only; step s reads global batch number ``s mod steps_per_epoch`` of epoch
    ``s // steps_per_epoch`` (incomplete tail dropped), and rank r takes its slice
    ``[r·b, (r+1)·b)`` of it. So the data order depends on (seed, step, global batch) only —
    not on the number of ranks, worker processes or on where a run was resumed.

    Indices are encoded as ``index + n·flip`` for :class:`FlipIndexed`."""

    def __init__(self, n: int, global_batch: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 start_step: int = 0, hflip: bool = False):
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by world size {world_size}")
        if n < global_batch:
            raise DatasetError(f"dataset has {n} images but one batch needs {global_batch}; "
                               f"lower --batch or add data")
        self.n, self.global_batch, self.rank, self.world_size = n, global_batch, rank, world_size
        self.per_rank = global_batch // world_size
        self.seed, self.start_step, self.hflip = seed, start_step, hflip
        self.steps_per_epoch = n // global_batch
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def batch(self, step: int) -> list[int]:
        """The encoded indices of this rank's batch at ``step``."""
        epoch, within = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = _epoch_generator(self.seed, epoch)
            perm = torch.randperm(self.n, generator=g)
            if self.hflip:
                perm = perm + self.n * (torch.rand(self.n, generator=g) < 0.5).long()
            self._epoch, self._perm = epoch, perm
        lo = within * self.global_batch + self.rank * self.per_rank
        return self._perm[lo: lo + self.per_rank].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


class FlipIndexed(Dataset):
    """Wraps a dataset for :class:`StepBatchSampler`: index ``i + n·f`` is item i, flipped
    horizontally when f = 1 (image and label alike).

    Items hold a uint8 ``image`` (3, H, W) and, with labels, a uint8 ``label`` (H, W) only: no
    float image (4× the bytes) and no one-hot ``mask`` (K×H×W float32, 13.6 MB at 512 px); the
    training loop makes both on the device with :func:`ssgan.data.images_to_float` and
    :func:`ssgan.data.label_to_mask`. (Datasets other than those of :mod:`ssgan.data`, or with
    their own random flip, ship their items' float image, which ``images_to_float`` passes.)"""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.n = len(dataset)  # type: ignore[arg-type]
        seg_dim = getattr(dataset, "seg_dim", 0)
        if seg_dim > 256:
            raise ValueError(f"FlipIndexed: uint8 labels hold at most 256 classes, not {seg_dim}")

    def __len__(self) -> int:
        return 2 * self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        flip, i = divmod(int(index), self.n)
        ds = self.dataset
        if isinstance(ds, ItemDataset) and not ds.hflip:  # no mask is built at all
            image, label = ds._load(i)
            return to_item(image, label, ds.seg_dim, bool(flip), masks=False)
        item = {k: v for k, v in ds[i].items() if k != "mask"}
        if "label" in item:
            item["label"] = item["label"].to(torch.uint8)
        if flip:
            item = {k: v.flip(-1) for k, v in item.items()}
        return item


def make_step_loader(dataset: Dataset, global_batch: int, *, rank: int = 0, world_size: int = 1,
                     seed: int = 0, start_step: int = 0, hflip: bool = False, workers: int = 0,
                     pin_memory: bool = False) -> DataLoader:
    """An endless DataLoader whose k-th batch is the one of step ``start_step + k`` (see
    :class:`StepBatchSampler`). The dataset's own random flip must be off; ``hflip`` here flips
    reproducibly. The loader has its own generator, so creating it leaves the global RNG alone."""
    sampler = StepBatchSampler(len(dataset), global_batch, rank, world_size, seed,  # type: ignore[arg-type]
                               start_step, hflip)
    extra: dict[str, Any] = {"prefetch_factor": 4} if workers > 0 else {}
    return DataLoader(FlipIndexed(dataset), batch_sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed), **extra)
