"""PacGAN packing (Lin et al. 2018): the discriminator judges `m` samples at once.

A collapsed generator gives packs of near-identical samples, which a packed discriminator can tell
from packs of real samples; this removes the incentive to collapse (Lin et al. 2018, Sec. 3) at
the cost of one wider first layer.
"""

from __future__ import annotations

from torch import Tensor, nn


def pack(x: Tensor, m: int) -> Tensor:
    """(N, C, ...) -> (N / m, m * C, ...): consecutive samples side by side in the feature axis."""
    if x.shape[0] % m:
        raise ValueError(f"batch of {x.shape[0]} is not divisible by the pack size {m}")
    return x.reshape(x.shape[0] // m, m * x.shape[1], *x.shape[2:])


class Packed(nn.Module):
    """Wraps a discriminator built for `m` times the channels/features; m = 1 is a no-op."""

    def __init__(self, disc: nn.Module, m: int) -> None:
        super().__init__()
        self.disc, self.m = disc, m

    def forward(self, x: Tensor) -> Tensor:
        return self.disc(x if self.m == 1 else pack(x, self.m))
