"""Small pieces both recipes use: seeding, Adam + schedule, a resumable data order."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from cyclekit.config import Config, OptimConfig
from cyclekit.data.folders import PlanDataset
from cyclekit.gan.schedule import linear_decay_scheduler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def adam_with_schedule(
    params: Iterable[torch.nn.Parameter], lr: float, optim: OptimConfig, constant: int, decay: int
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LambdaLR]:
    opt = torch.optim.Adam(params, lr=lr, betas=(optim.beta1, optim.beta2))
    return opt, linear_decay_scheduler(opt, constant, decay)


def schedule_steps(config: Config, steps_per_epoch: int) -> tuple[int, int]:
    return config.train.epochs * steps_per_epoch, config.train.decay_epochs * steps_per_epoch


def plan_batches(
    base: Any, plan: Sequence[Any], batch_size: int, start_batch: int, workers: int, drop_last: bool
) -> Iterator[Any]:
    """Batches of `plan` from batch `start_batch` on, loaded by `workers` processes."""
    items = plan[start_batch * batch_size :]
    # A private generator: DataLoader draws a worker base seed when an iterator is created, and
    # from the global RNG that would shift the noise of every later step after a mid-epoch resume.
    loader = DataLoader(
        PlanDataset(base, items),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        drop_last=drop_last,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(0),
    )
    return iter(loader)


def n_batches(n_items: int, batch_size: int, drop_last: bool) -> int:
    return n_items // batch_size if drop_last else math.ceil(n_items / batch_size)
