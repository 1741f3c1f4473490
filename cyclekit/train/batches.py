"""The resumable data order every recipe trains with: the batches of an epoch's *plan* (the items of
one epoch in an order fixed by (seed, epoch), from the dataset's ``epoch_plan``), from any batch on,
loaded by any number of worker processes with the same result, and sharded across the processes of
a multi-process run."""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from cyclekit.train import distributed


class PlanDataset(Dataset):
    """Map-style view ``i -> base[plan[i]]``: a fixed, resumable sample order for a DataLoader.

    ``DataLoader(PlanDataset(ds, plan[start:]), batch_size, num_workers=w)`` yields the same
    batches for any ``w``, because every item carries its own seed.
    """

    def __init__(self, base: Dataset, plan: Sequence[Any]) -> None:
        self.base = base
        # Plans restored from JSON come back as lists; the base datasets index with tuples.
        self.plan = [tuple(p) if isinstance(p, list) else p for p in plan]

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> Any:
        return self.base[self.plan[i]]


def plan_batches(
    base: Any,
    plan: Sequence[Any],
    batch_size: int,
    start_batch: int,
    workers: int,
    drop_last: bool,
    device: torch.device | None = None,
    epoch: int | None = None,
) -> Iterator[Any]:
    """Batches of `plan` (epoch ``epoch``'s plan of ``base``) from batch `start_batch` on, loaded by
    `workers` processes; for a CUDA ``device`` in pinned memory, so the recipes'
    ``.to(device, non_blocking=True)`` overlaps the copy. In a multi-process run, this rank's
    shard of the plan (see `Distributed.shard`).

    With workers and an ``epoch``, one DataLoader serves the whole run and its worker processes
    persist from epoch to epoch (see `_RunItems`); the batches are the same either way."""
    ctx = distributed.current()
    pin = device is not None and device.type == "cuda"
    if workers > 0 and epoch is not None and hasattr(base, "epoch_plan"):
        per_epoch = ctx.per_rank(len(plan))
        loader, sampler = _persistent_loader(base, per_epoch, batch_size, workers, drop_last, pin, ctx)
        sampler.start = epoch * per_epoch + start_batch * batch_size
        sampler.stop = (epoch + 1) * per_epoch
        return iter(loader)
    items = ctx.shard(plan)[start_batch * batch_size :]
    # A private generator: DataLoader draws a worker base seed when an iterator is created, and
    # from the global RNG that would shift the noise of every later step after a mid-epoch resume.
    loader = DataLoader(
        PlanDataset(base, items),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        drop_last=drop_last,
        persistent_workers=False,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(0),
    )
    return iter(loader)


class _RunItems(Dataset):
    """Item ``g`` of a whole run: item ``g % n`` of this rank's shard of epoch ``g // n``'s plan.
    Plans come from (seed, epoch) alone, so each worker process rebuilds them itself: one
    DataLoader, and its workers, serve every epoch."""

    def __init__(self, base: Any, per_epoch: int, rank: int, world: int) -> None:
        self.base, self.per_epoch, self.rank, self.world = base, per_epoch, rank, world
        self._plan: tuple[int, list[Any]] = (-1, [])

    def __len__(self) -> int:
        return 2**62  # indices come from the sampler

    def __getitem__(self, g: int) -> Any:
        epoch, k = divmod(int(g), self.per_epoch)
        if self._plan[0] != epoch:
            shard = distributed.Distributed(self.rank, self.world).shard(self.base.epoch_plan(epoch))
            self._plan = (epoch, shard)
        item = self._plan[1][k]
        return self.base[tuple(item) if isinstance(item, list) else item]


class _RangeSampler(Sampler[int]):
    """Indices start..stop-1, set before each epoch's iterator is made."""

    def __init__(self) -> None:
        self.start = self.stop = 0

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _persistent_loader(
    base: Any, per_epoch: int, batch_size: int, workers: int, drop_last: bool, pin: bool, ctx: Any
) -> tuple[DataLoader, _RangeSampler]:
    key = (per_epoch, batch_size, workers, drop_last, pin, ctx.rank, ctx.world)
    cached = _LOADERS.get(base)
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    sampler = _RangeSampler()
    loader = DataLoader(
        _RunItems(base, per_epoch, ctx.rank, ctx.world),
        batch_sampler=BatchSampler(sampler, batch_size, drop_last),
        num_workers=workers,
        persistent_workers=True,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(0),
    )
    _LOADERS[base] = (key, loader, sampler)
    return loader, sampler


# dataset -> (settings, its run-long DataLoader, sampler); weak, so a dataset's loader (and its
# worker processes) go when the dataset does.
_LOADERS: weakref.WeakKeyDictionary[Any, tuple[Any, DataLoader, _RangeSampler]] = weakref.WeakKeyDictionary()


def n_batches(n_items: int, batch_size: int, drop_last: bool) -> int:
    """Steps per epoch over ``n_items``: of this rank's shard in a multi-process run."""
    n_items = distributed.current().per_rank(n_items)
    return n_items // batch_size if drop_last else math.ceil(n_items / batch_size)
