"""Auxiliary classifier GAN (Odena et al. 2017): G(z, c) is told the class; D sees only the image
and outputs both a real/fake logit and the class logits.

The objective (Sec. 3): with L_S the log-likelihood of the right source (real or fake) and L_C
that of the right class,

    D maximises L_S + L_C,    G maximises L_C - L_S,

so both players add the class log-likelihood, on real images with their labels and on generated
ones with the labels they were asked for. The adversarial part uses `loss.gan_mode`; the class
part is cross-entropy, weighted by `acgan.lambda_class` (1 in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from cyclekit.choices import GanMode
from cyclekit.config import Config
from cyclekit.errors import ConfigError
from cyclekit.gan.losses import d_loss, g_loss
from cyclekit.gan.steps import frozen, optimizer_step
from cyclekit.recipes.sampler import ImageSampler


@dataclass(frozen=True)
class AcganOptions:
    """The `acgan:` section."""

    # the adversarial loss (vanilla: Odena et al. 2017); no wgan-gp: Wasserstein GANs train with recipe wgan
    gan_mode: GanMode = "vanilla"
    latent_dim: int = 100  # z in R^100 (Odena et al. 2017, appendix: 110 = 100 + the class one-hot)
    lambda_class: float = 1.0  # weight of the class log-likelihood L_C (1: Odena et al. 2017, Sec. 3)

    def __post_init__(self) -> None:
        if self.latent_dim <= 0:
            raise ConfigError(f"latent_dim: must be > 0, got {self.latent_dim}")
        if self.lambda_class < 0:
            raise ConfigError(f"lambda_class: must be >= 0, got {self.lambda_class}")


class AcganRecipe(ImageSampler):
    name = "acgan"
    description = "auxiliary classifier GAN: D tells real from fake and names the class (Odena et al. 2017)"
    Options = AcganOptions
    networks = {
        "generator": "G(z, y): cond_g",
        "discriminator": "D(x) -> real/fake and class logits: cond_d with head aux",
    }
    defaults: dict[str, Any] = {
        "model": {"generator": {"name": "cond_g"}, "discriminator": {"name": "cond_d", "head": "aux"}},
    }

    @classmethod
    def check(cls, config: Config) -> None:
        super().check(config)
        cls.check_conditional_pair(
            config, "D(x) -> (logit, class logits): cond_d with head aux", heads=("logit", "classes")
        )

    def train_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        mode, weight = self.config.options.gan_mode, self.config.options.lambda_class
        real = batch["image"].to(self.device, non_blocking=True)
        y_real = batch["label"].to(self.device, non_blocking=True)
        n = real.shape[0]
        fwd = self.state.forward
        y_fake = self.random_labels(n)
        fake = fwd["G"](self.noise(n), y_fake)
        real_logit, real_class = fwd["D"](real)
        fake_logit, fake_class = fwd["D"](fake.detach())
        class_d = F.cross_entropy(real_class, y_real) + F.cross_entropy(fake_class, y_fake)
        loss_d = d_loss(real_logit, fake_logit, mode) + weight * class_d
        optimizer_step(self.state.optimizers["opt_d"], loss_d, self.state.scaler)
        with frozen(self.state.nets["D"]):
            logit, classes = fwd["D"](fake)
            class_g = F.cross_entropy(classes, y_fake)
            loss_g = g_loss(logit, mode) + weight * class_g
        optimizer_step(self.state.optimizers["opt_g"], loss_g, self.state.scaler)
        self.state.step_schedulers()
        accuracy = (real_class.detach().argmax(1) == y_real).float().mean()
        return {
            "loss_D": loss_d.detach(),
            "loss_G": loss_g.detach(),
            "class_D": class_d.detach(),
            "class_G": class_g.detach(),
            "D_real": real_logit.detach().mean(),
            "D_fake": fake_logit.detach().mean(),
            "D_class_acc": accuracy,
        }
