"""Discriminator and generator step helpers shared by every recipe (GAN, DCGAN, CycleGAN, Pix2Pix).

They take networks and batches and return loss tensors: nothing here calls `.item()` (a
host-device sync on a GPU); the training loop decides when losses become numbers.
"""

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
    batched: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One discriminator's loss on a real and a generated batch (the fake is detached).

    `scale` is 0.5 for CycleGAN and Pix2Pix ("we divide the objective by 2 while optimizing D,
    which slows down the rate at which D learns": Zhu et al. 2017, Sec. 4; Isola et al. 2017,
    Sec. 3.3) and 1 for the classic GANs. Returns the loss and detached parts for logging: the
    mean logits on real and fake (and the gradient penalty for WGAN-GP), as tensors.
    """
    fake = fake.detach()
    if batched and real.shape[1:] == fake.shape[1:]:  # sizes differ with preprocess none
        # One call on [real; fake]: identical maths when every layer treats samples independently
        # (instance/layer norm or none), and one pass over the weights instead of two. Not with
        # batch norm, whose statistics would mix real and fake.
        logits = disc(torch.cat([real, fake]))
        real_logits, fake_logits = logits[: real.shape[0]], logits[real.shape[0] :]
    else:
        real_logits = disc(real)
        fake_logits = disc(fake)
    loss = d_loss(real_logits, fake_logits, mode)
    parts = {"real": real_logits.detach().mean(), "fake": fake_logits.detach().mean()}
    if mode == "wgan-gp":
        gp = gradient_penalty(disc, real, fake)
        parts["gp"] = gp.detach()
        loss = loss + gp_weight * gp
    return loss * scale, parts


def generator_adversarial_loss(disc: nn.Module, fake: Tensor, mode: str) -> Tensor:
    """The generator's adversarial term; gradients flow into `fake` but not into `disc`."""
    with frozen(disc):
        return g_loss(disc(fake), mode)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: Tensor, scaler: torch.amp.GradScaler | None = None) -> None:
    """Zero the gradients, backward, step; with a GradScaler (fp16) the loss is scaled first and a
    step with inf/NaN gradients is skipped (the caller calls ``scaler.update()`` once per training
    step, after all its optimizers, e.g. through `TrainingState.finish_step`)."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
