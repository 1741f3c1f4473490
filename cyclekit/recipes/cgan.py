"""Conditional GAN (Mirza and Osindero 2014): G(z, y) and D(x, y), both told the class.

The objective is the GAN's, with both players conditioned on the label (Eq. 2):

    min_G max_D  E[log D(x | y)] + E[log(1 - D(G(z | y) | y))]

Real images come with their own labels; generated ones with labels drawn uniformly over the
classes. The label is one-hot (the paper's choice, Sec. 4.1): concatenated to z in G and given to
the convolutional D as K constant feature maps (see `cyclekit.models.conditional`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from cyclekit.choices import GanMode
from cyclekit.config import Config
from cyclekit.errors import ConfigError
from cyclekit.gan.losses import d_loss, g_loss
from cyclekit.gan.steps import frozen, optimizer_step
from cyclekit.recipes.sampler import ImageSampler


@dataclass(frozen=True)
class CganOptions:
    """The `cgan:` section."""

    # the adversarial loss (vanilla: Mirza and Osindero 2014); no wgan-gp: Wasserstein GANs train with recipe wgan
    gan_mode: GanMode = "vanilla"
    latent_dim: int = 100  # z in R^100 (Mirza and Osindero 2014, Sec. 4.1)

    def __post_init__(self) -> None:
        if self.latent_dim <= 0:
            raise ConfigError(f"latent_dim: must be > 0, got {self.latent_dim}")


class CganRecipe(ImageSampler):
    name = "cgan"
    description = "conditional GAN: G(z, y) and D(x, y) see the class, one-hot (Mirza and Osindero 2014)"
    Options = CganOptions
    networks = {"generator": "G(z, y): cond_g", "discriminator": "D(x, y): cond_d with head concat"}
    defaults: dict[str, Any] = {
        "model": {"generator": {"name": "cond_g"}, "discriminator": {"name": "cond_d", "head": "concat"}},
    }

    @classmethod
    def check(cls, config: Config) -> None:
        super().check(config)
        cls.check_conditional_pair(
            config, "D(x, y): name cond_d with head concat", heads=("logit",), d_condition="class"
        )

    def train_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        mode = self.config.options.gan_mode
        real = batch["image"].to(self.device, non_blocking=True)
        y_real = batch["label"].to(self.device, non_blocking=True)
        n = real.shape[0]
        fwd = self.state.forward
        z = self.noise(n)
        y_fake = self.random_labels(n)
        fake = fwd["G"](z, y_fake)
        real_logits = fwd["D"](real, y_real)
        fake_logits = fwd["D"](fake.detach(), y_fake)
        loss_d = d_loss(real_logits, fake_logits, mode)
        optimizer_step(self.state.optimizers["opt_d"], loss_d, self.state.scaler)
        with frozen(self.state.nets["D"]):
            loss_g = g_loss(fwd["D"](fake, y_fake), mode)
        optimizer_step(self.state.optimizers["opt_g"], loss_g, self.state.scaler)
        self.state.step_schedulers()
        return {
            "loss_D": loss_d.detach(),
            "loss_G": loss_g.detach(),
            "D_real": real_logits.detach().mean(),
            "D_fake": fake_logits.detach().mean(),
        }
