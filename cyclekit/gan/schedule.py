"""Learning-rate schedule: constant, then linear decay to zero (Zhu et al. 2017, Sec. 4)."""

from __future__ import annotations

import torch


class LinearDecay:
    """Multiplier for `LambdaLR`: 1 for `constant` steps, then linearly down to 0 over `decay`.

    A class rather than a lambda so that `LambdaLR.state_dict()` stores its numbers and a
    checkpoint can be checked against the configured schedule.
    """

    def __init__(self, constant: int, decay: int) -> None:
        self.constant = constant
        self.decay = decay

    def __call__(self, step: int) -> float:
        if step < self.constant:
            return 1.0
        if self.decay <= 0:
            return 0.0
        return max(0.0, 1.0 - (step - self.constant) / self.decay)


def linear_decay_scheduler(
    optimizer: torch.optim.Optimizer, constant: int, decay: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Scheduler stepped once per training step (a finer version of the reference's per-epoch
    decay that reaches exactly zero at the last step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LinearDecay(constant, decay))
