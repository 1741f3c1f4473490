"""Discriminator and generator step helpers shared by every recipe (GAN, DCGAN, CycleGAN)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from cyclekit.gan.losses import d_loss, g_loss, gradient_penalty


@contextmanager
def frozen(*nets: nn.Module) -> Iterator[None]:
    """Turn off gradients of `nets` inside the block (restoring each flag after).

    Used while updating the generator so no gradient is accumulated into the discriminator:
    saves compute and keeps D's `.grad` clean (the reference's `set_requires_grad(D, False)`).
    """
    saved = [(p, p.requires_grad) for net in nets for p in net.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def discriminator_loss(
    disc: nn.Module,
    real: Tensor,
    fake: Tensor,
    mode: str,
    gp_weight: float = 10.0,
    scale: float = 1.0,
) -> tuple[Tensor, dict[str, float]]:
    """One discriminator's loss on a real and a generated batch (the fake is detached).

    `scale` is 0.5 for CycleGAN ("we divide the objective by 2 while optimizing D, which slows
    down the rate at which D learns": Zhu et al. 2017, Sec. 4) and 1 for the classic GANs.
    Returns the loss and the plain-float parts for logging.
    """
    fake = fake.detach()
    real_logits = disc(real)
    fake_logits = disc(fake)
    loss = d_loss(real_logits, fake_logits, mode)
    parts = {"real": real_logits.detach().mean().item(), "fake": fake_logits.detach().mean().item()}
    if mode == "wgan-gp":
        gp = gradient_penalty(disc, real, fake)
        parts["gp"] = gp.item()
        loss = loss + gp_weight * gp
    return loss * scale, parts


def generator_adversarial_loss(disc: nn.Module, fake: Tensor, mode: str) -> Tensor:
    """The generator's adversarial term; gradients flow into `fake` but not into `disc`."""
    with frozen(disc):
        return g_loss(disc(fake), mode)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
