"""GAN objectives on raw discriminator logits.

Every loss takes logits (no sigmoid inside the networks), so the numerically stable
`binary_cross_entropy_with_logits` can be used for the vanilla GAN.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from cyclekit.choices import GAN_MODES
from cyclekit.errors import ConfigError


def check_mode(mode: str) -> str:
    if mode not in GAN_MODES:
        raise ConfigError(f"loss.gan_mode: unknown GAN loss '{mode}'; known: {', '.join(GAN_MODES)}")
    return mode


def d_loss(real_logits: Tensor, fake_logits: Tensor, mode: str) -> Tensor:
    """Discriminator objective (to minimise) from logits on real and on generated samples."""
    check_mode(mode)
    if mode == "vanilla":
        # -log D(x) - log(1 - D(G(z))): Goodfellow et al. 2014, Eq. 1.
        return F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    if mode == "lsgan":
        # (D(x) - 1)^2 + D(G(z))^2 with a-b-c = 0-1-1: Mao et al. 2017, Eq. 9.
        return F.mse_loss(real_logits, torch.ones_like(real_logits)) + F.mse_loss(
            fake_logits, torch.zeros_like(fake_logits)
        )
    if mode == "hinge":
        # Lim & Ye 2017; Miyato et al. 2018, Eq. 16.
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    # Critic loss without the penalty, which needs the critic itself: Gulrajani et al. 2017, Alg. 1.
    return fake_logits.mean() - real_logits.mean()


def g_loss(fake_logits: Tensor, mode: str) -> Tensor:
    """Generator objective (to minimise) from the discriminator's logits on generated samples."""
    check_mode(mode)
    if mode == "vanilla":
        # Non-saturating -log D(G(z)): Goodfellow et al. 2014, Sec. 3.
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    if mode == "lsgan":
        return F.mse_loss(fake_logits, torch.ones_like(fake_logits))
    return -fake_logits.mean()  # hinge and WGAN


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates: Gulrajani et al. 2017, Eq. 3."""
    alpha_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(alpha_shape, generator=generator, device="cpu").to(real.device, real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)
    return ((norms - 1.0) ** 2).mean()
