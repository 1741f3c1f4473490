"""Wasserstein GAN (Arjovsky et al. 2017): a critic without sigmoid, kept Lipschitz by clipping its
weights to [-c, c], trained n_critic times per generator update with RMSprop (Algorithm 1:
c = 0.01, lr 5e-5, n_critic = 5, batch 64). WGAN-GP (Gulrajani et al. 2017) replaces the clipping
with a gradient penalty (`wgan.constraint: gp`, with Adam at lr 1e-4, betas (0, 0.9): their
Algorithm 1).

One loop step is one critic iteration on a fresh real batch (as in Algorithm 1); every
n_critic-th step also updates the generator. The critic's loss is E[f(G(z))] - E[f(x)], so its
negative, E[f(x)] - E[f(G(z))], estimates the Wasserstein-1 distance (up to the Lipschitz
constant): it is logged as ``wasserstein`` and falls as the generator learns (Sec. 4.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch
from torch import Tensor

from cyclekit.config import Config
from cyclekit.errors import ConfigError
from cyclekit.gan.losses import gradient_penalty
from cyclekit.gan.pack import pack
from cyclekit.gan.steps import frozen, optimizer_step
from cyclekit.players import Player, generator_and_discriminator
from cyclekit.recipes.sampler import ImageSampler

GP_WEIGHT = 10.0  # lambda (Gulrajani et al. 2017, Algorithm 1)
# The authors' code (martinarjovsky/WassersteinGAN, main.py): 100 critic iterations before each of
# the first 25 generator iterations and before every 500th, "to get the critic to optimality".
WARMUP_CRITIC, WARMUP_FIRST, WARMUP_EVERY = 100, 25, 500


def critic_run(step: int, n_critic: int, warmup: bool) -> tuple[int, int]:
    """Where loop step ``step`` (from 0; one critic iteration each) falls in its generator
    iteration's run of critic iterations: (position in the run, the run's length). The generator
    is updated after the run's last step. Without warmup every run is n_critic long (Algorithm 1);
    with it the authors' code's schedule: WARMUP_CRITIC for generator iterations g < WARMUP_FIRST
    and g % WARMUP_EVERY == 0. A function of the step alone, so a resumed run goes on exactly."""
    if not warmup:
        return step % n_critic, n_critic
    head = WARMUP_FIRST * WARMUP_CRITIC  # generator iterations 0 .. 24
    if step < head:
        return step % WARMUP_CRITIC, WARMUP_CRITIC
    s = step - head
    rest = (WARMUP_EVERY - WARMUP_FIRST) * n_critic  # iterations 25 .. 499
    if s < rest:
        return s % n_critic, n_critic
    s = (s - rest) % (WARMUP_CRITIC + (WARMUP_EVERY - 1) * n_critic)  # blocks of 500 from iteration 500
    if s < WARMUP_CRITIC:
        return s, WARMUP_CRITIC
    return (s - WARMUP_CRITIC) % n_critic, n_critic


@dataclass(frozen=True)
class WganOptions:
    """The `wgan:` section."""

    latent_dim: int = 100  # z in R^100 (the DCGAN generator of Arjovsky et al. 2017)
    n_critic: int = 5  # critic iterations per generator update (Algorithm 1)
    # clip: weights clipped to [-clip, clip] (Arjovsky et al. 2017); gp: gradient penalty (Gulrajani et al. 2017)
    constraint: Literal["clip", "gp"] = "clip"
    clip: float = 0.01  # c (Algorithm 1)
    # lambda of the gradient penalty, with constraint gp (null: 10, Gulrajani et al. 2017, Algorithm 1)
    gp_weight: Optional[float] = None
    # the authors' code's schedule: 100 critic iterations before each of the first 25 generator
    # iterations and every 500th (not in Algorithm 1); false: n_critic throughout
    critic_warmup: bool = False
    # PacGAN (Lin et al. 2018): the critic judges this many samples at once, stacked in the channel
    # axis (its input has pack x the image's channels); 1 = off
    pack: int = 1

    def __post_init__(self) -> None:
        for name in ("latent_dim", "n_critic", "pack"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.clip <= 0:
            raise ConfigError(f"clip: must be > 0, got {self.clip}")
        if self.constraint == "gp" and self.gp_weight is None:
            object.__setattr__(self, "gp_weight", GP_WEIGHT)
        if self.constraint == "clip" and self.gp_weight is not None:
            # (An earlier config.yaml's recorded default, 10.0, is dropped before: cyclekit.migrate.)
            raise ConfigError(
                f"gp_weight: {self.gp_weight} is read only with constraint gp (clip has no gradient penalty)"
            )
        if self.gp_weight is not None and self.gp_weight < 0:
            raise ConfigError(f"gp_weight: must be >= 0, got {self.gp_weight}")


class WganRecipe(ImageSampler):
    name = "wgan"
    description = "Wasserstein GAN: critic with clipped weights, RMSprop, 5 critic steps (Arjovsky et al. 2017)"
    Options = WganOptions
    conditional = False
    needs = (("image",),)
    # The objective is the Wasserstein estimate: no gan_mode (WGAN-GP is constraint: gp)
    networks = {"generator": "G(z)", "discriminator": "the critic f(x), no sigmoid"}
    defaults: dict[str, Any] = {
        "model": {"generator": {"name": "dcgan_g"}, "discriminator": {"name": "dcgan_d"}},
    }

    @classmethod
    def players(cls, options: Any) -> tuple[Player, ...]:
        """Generator and critic with the optimizer of the constraint's paper: RMSprop at 5e-5 with
        clipping (Arjovsky et al. 2017, Algorithm 1), Adam at 1e-4 with betas (0, 0.9) with the
        gradient penalty (Gulrajani et al. 2017, Algorithm 1)."""
        if options.constraint == "gp":
            return generator_and_discriminator("adam", 1e-4, betas=(0.0, 0.9))
        return generator_and_discriminator("rmsprop", 5e-5)

    @classmethod
    def check(cls, config: Config) -> None:
        super().check(config)
        if config.options.critic_warmup and WARMUP_CRITIC % config.options.n_critic:
            raise ConfigError(
                f"wgan.critic_warmup: needs n_critic to divide {WARMUP_CRITIC} (the warm-up's critic "
                f"iterations), got n_critic {config.options.n_critic}"
            )
        if config.data.batch_size % config.options.pack:
            raise ConfigError(
                f"wgan.pack: data.batch_size {config.data.batch_size} is not divisible by pack {config.options.pack}"
            )
        if config.train.log_every % config.options.n_critic:
            raise ConfigError(
                f"train.log_every: {config.train.log_every} is not a multiple of wgan.n_critic "
                f"{config.options.n_critic}: the generator's loss is logged on its own steps"
            )
        _, d_opts = cls.net_spec(config, "discriminator")
        if config.options.constraint == "gp" and d_opts.get("norm", "batch") == "batch":
            # The penalty is per sample; batch norm couples samples (Gulrajani et al. 2017, Sec. 4).
            raise ConfigError("model.discriminator.norm: wgan with constraint gp needs a critic without batch norm")
        cls.net_spec(config, "generator")

    def train_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        opts = self.config.options
        real = batch["image"].to(self.device, non_blocking=True)
        n = real.shape[0]
        fwd = self.state.forward
        critic = self.state.nets["D"]
        with torch.no_grad():
            fake = self.state.nets["G"](self.noise(n))
        # PacGAN: the critic sees packs of `pack` samples (a no-op at 1); the penalty is on packs too
        real, fake = pack(real, opts.pack), pack(fake, opts.pack)
        estimate = fwd["D"](real).mean() - fwd["D"](fake).mean()
        loss_d = -estimate
        out = {"wasserstein": estimate.detach()}
        if opts.constraint == "gp":
            gp = gradient_penalty(fwd["D"], real, fake)
            assert opts.gp_weight is not None  # set with constraint gp
            loss_d = loss_d + opts.gp_weight * gp
            out["gp"] = gp.detach()
        optimizer_step(self.state.optimizers["opt_d"], loss_d, self.state.scaler)
        if opts.constraint == "clip":
            with torch.no_grad():
                for p in critic.parameters():
                    p.clamp_(-opts.clip, opts.clip)
        out["loss_D"] = loss_d.detach()
        position, run = critic_run(step, opts.n_critic, opts.critic_warmup)
        if position == run - 1:  # after the run's last critic step (``step`` counts from 0)
            with frozen(critic):
                loss_g = -fwd["D"](pack(fwd["G"](self.noise(n)), opts.pack)).mean()
            optimizer_step(self.state.optimizers["opt_g"], loss_g, self.state.scaler)
            out["loss_G"] = loss_g.detach()  # only on generator steps (log every multiple of n_critic)
            # G's schedule counts loop steps too: advance it by the critic steps since its last update.
            for _ in range(run):
                self.state.schedulers["sched_g"].step()
        if self.state.scaler is not None:
            self.state.scaler.update()
        self.state.schedulers["sched_d"].step()
        return out
