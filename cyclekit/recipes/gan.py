"""Unconditional GANs: the MLP GAN of Goodfellow et al. 2014 and DCGAN (Radford et al. 2016).

One step: update D on a real batch and a generated one, then update G through D, using the GAN
core's loss and step helpers (the same ones the CycleGAN recipe uses).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cyclekit.choices import GanMode
from cyclekit.config import Config
from cyclekit.data.folders import derive_seed
from cyclekit.data.protocol import RunData
from cyclekit.data.ring import save_samples, score_ring
from cyclekit.device import resolve_device
from cyclekit.errors import ConfigError
from cyclekit.gan.pack import Packed
from cyclekit.gan.steps import discriminator_loss, generator_adversarial_loss, optimizer_step
from cyclekit.inference.bundle import Bundle, NetworkEntry, Sampling
from cyclekit.models import build_model, sizing
from cyclekit.recipe import Recipe
from cyclekit.recipes.common import generator_and_discriminator, net_spec
from cyclekit.train import distributed
from cyclekit.train.batches import n_batches, plan_batches

N_SAMPLES = 64  # images in a sample grid
N_RING_SAMPLES = 2000  # points in a ring scatter / score


@dataclass(frozen=True)
class GanOptions:
    """The `gan:` section."""

    gan_mode: GanMode = "vanilla"  # the adversarial loss (Goodfellow et al. 2014; Radford et al. 2016)
    gp_weight: float = 10.0  # with gan_mode wgan-gp: the penalty's weight (Gulrajani et al. 2017, Alg. 1)
    latent_dim: int = 100  # z in R^100: Radford et al. 2016, Sec. 3
    pack: int = 1  # samples per discriminator input (PacGAN, Lin et al. 2018); 1 = off
    d_steps: int = 1  # discriminator updates per generator update (5 is usual for WGAN-GP)
    d_scale: float = 1.0  # factor on the discriminator loss

    def __post_init__(self) -> None:
        for name in ("latent_dim", "pack", "d_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("d_scale", "gp_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")


def _image_shape(config: Config) -> tuple[int, int, int] | None:
    """(C, H, W) of the samples: None for 2-D points (ring)."""
    from cyclekit.data.sources import SOURCES

    return SOURCES[config.data.kind].image_shape(config.data)


class GanRecipe(Recipe):
    """Vanilla GAN / DCGAN on the 2-D ring or any source of images (a folder, MNIST, the digits)."""

    name = "gan"
    description = "unconditional GANs: MLP GAN (Goodfellow et al. 2014), DCGAN (Radford et al. 2016), PacGAN packing"
    Options = GanOptions
    default_kind = "ring"
    needs = (("image",), ("points",))
    networks = {"generator": "G: z -> a sample", "discriminator": "D: a sample -> real or fake"}
    defaults: dict[str, Any] = {
        "model": {"generator": {"name": "mlp_g"}, "discriminator": {"name": "mlp_d"}},
    }

    @classmethod
    def check(cls, config: Config) -> None:
        opts = config.options
        if config.data.batch_size % opts.pack:
            raise ConfigError(
                f"gan.pack: data.batch_size {config.data.batch_size} is not divisible by pack {opts.pack}"
            )
        shape = _image_shape(config)
        _net_spec(config, "generator", shape)
        _, d_opts = _net_spec(config, "discriminator", shape)
        if opts.gan_mode == "wgan-gp" and d_opts.get("norm") == "batch":
            # The gradient penalty is per sample; batch norm couples samples (Gulrajani et al. 2017, Sec. 4).
            raise ConfigError("model.discriminator.norm: wgan-gp needs a discriminator without batch norm")

    def __init__(self, config: Config, data: RunData) -> None:
        self.config = config
        self.data = data
        self.options: GanOptions = config.options or GanOptions()
        self.device = resolve_device(config.train.device)
        self.image_shape = _image_shape(config)
        self.g_arch, self.g_opts = _net_spec(config, "generator", self.image_shape)
        self.d_arch, self.d_opts = _net_spec(config, "discriminator", self.image_shape)
        self.key = "image" if self.image_shape is not None else "points"  # the batch key a step reads
        self.dataset = data.train
        self.n_items = len(self.dataset)
        world = distributed.current().world
        batch_size = config.data.batch_size
        if self.n_items < batch_size * world:
            per = f" per process x {world} processes" if world > 1 else ""
            raise ConfigError(f"data.batch_size: {batch_size}{per} is larger than the dataset ({self.n_items} samples)")
        self.state = generator_and_discriminator(
            config, self.build_networks(config), self.device, self.steps_per_epoch(), self.players(config.options)
        )
        self.G, self.D = self.state.nets["G"], self.state.nets["D"]
        self.opt_g, self.opt_d = self.state.optimizers["opt_g"], self.state.optimizers["opt_d"]
        self.packed_d = Packed(self.D, self.options.pack)
        # Fixed noise for samples, from its own generator so sampling never moves the training RNG.
        gen = torch.Generator().manual_seed(derive_seed(config.seed, 7))
        n = N_RING_SAMPLES if self.image_shape is None else N_SAMPLES
        self.fixed_z = torch.randn(n, self.options.latent_dim, generator=gen)

    # -- loop protocol --------------------------------------------------------------------------

    def data_summary(self) -> str:
        return self.dataset.summary()

    def steps_per_epoch(self) -> int:
        return n_batches(self.n_items, self.config.data.batch_size, drop_last=True)

    def batches(self, epoch: int, start: int) -> Iterator[torch.Tensor]:
        data = self.config.data
        plan = self.dataset.epoch_plan(epoch)
        workers = data.workers if data.has("workers") else 0
        for batch in plan_batches(
            self.dataset, plan, data.batch_size, start, workers, drop_last=True, device=self.device, epoch=epoch
        ):
            yield batch[self.key]

    def train_step(self, real: torch.Tensor, step: int) -> dict[str, Tensor]:
        opts = self.options
        real = real.to(self.device)
        n = real.shape[0]
        fwd = self.state.forward  # DDP wrappers in a multi-process run (see TrainingState.forward)
        packed_d = Packed(fwd["D"], opts.pack) if fwd["D"] is not self.D else self.packed_d
        for i in range(opts.d_steps):
            z = torch.randn(n, opts.latent_dim, device=self.device)
            if i < opts.d_steps - 1:
                # Only the last fake also trains G: the others need no graph (and under DDP a
                # forward pass without a backward would leave G's gradient sync waiting).
                with torch.no_grad():
                    fake = self.G(z)
            else:
                fake = fwd["G"](z)
            loss_d, parts = discriminator_loss(packed_d, real, fake, opts.gan_mode, opts.gp_weight, scale=opts.d_scale)
            optimizer_step(self.opt_d, loss_d, self.state.scaler)
            if self.state.scaler is not None and opts.d_steps > 1:
                self.state.scaler.update()  # a GradScaler steps each optimizer once per update
        loss_g = generator_adversarial_loss(self.packed_d, fake, opts.gan_mode)
        optimizer_step(self.opt_g, loss_g, self.state.scaler)
        self.state.step_schedulers()
        out = {"loss_D": loss_d.detach(), "loss_G": loss_g.detach(), "D_real": parts["real"], "D_fake": parts["fake"]}
        if "gp" in parts:
            out["gp"] = parts["gp"]
        return out

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        was_training = self.G.training
        self.G.eval()
        try:
            return self.G(z.to(self.device)).cpu()
        finally:
            self.G.train(was_training)

    def write_samples(self, folder: Path, step: int, epoch: int) -> list[Path]:
        path = folder / f"step_{step:07d}.png"
        save_samples(self.generate(self.fixed_z), path)
        return [path]

    @classmethod
    def build_networks(cls, config: Config) -> dict[str, torch.nn.Module]:
        """G and D (untrained, on the CPU): what a checkpoint's weights load into."""
        shape = _image_shape(config)
        return {
            "G": build_model(*_net_spec(config, "generator", shape), key="model.generator"),
            "D": build_model(*_net_spec(config, "discriminator", shape), key="model.discriminator"),
        }

    @classmethod
    def make_bundle(
        cls, config: Config, nets: Mapping[str, torch.nn.Module], step: int, epoch: int
    ) -> tuple[Bundle, dict[str, torch.nn.Module]]:
        """A sampling bundle of ``nets["G"]``."""
        shape = _image_shape(config)
        opts: GanOptions = config.options or GanOptions()
        bundle = Bundle(
            recipe=cls.name,
            networks={"G": NetworkEntry(*_net_spec(config, "generator", shape))},
            samples=Sampling("G", opts.latent_dim, "image" if shape else "points", stages=shape[1:2] if shape else ()),
            channels=shape[0] if shape else None,
            train_size=shape[1] if shape else None,
            step=step,
            epoch=epoch,
            run=config.name,
        )
        return bundle, {"G": nets["G"]}

    def unscored_reason(self) -> str | None:
        """Why an image run will have no scores: the yardstick needs labelled data with a test split."""
        if self.image_shape is None:
            return None
        kind = self.config.data.kind
        if not self.data.labelled:
            return (
                f"the {kind} data has no labels, and the yardstick that scores image samples needs labelled test images"
            )
        if self.data.test is None:
            return f"the {kind} data has no test split, which the yardstick that scores image samples needs"
        return None

    def evaluate(self, run_dir: Path) -> dict[str, Any]:
        """Images from labelled data (MNIST, the digits, class folders): the classifier yardstick's
        classes covered and Frechet distance of samples from fixed noise, as for every sampling
        recipe (`cyclekit.recipes.sampler.yardstick_scores`). Ring: mode coverage and sample
        quality of the fixed-noise samples. The run's results.json."""
        if self.image_shape is not None:
            from cyclekit.recipes.sampler import data_yardstick, yardstick_scores

            if not self.data.labelled:
                return {}
            if not hasattr(self, "_yardstick"):  # once per run: the data is hashed, the classifier loaded
                self._yardstick = data_yardstick(self.config, self.data, list(self.data.class_names))
            stick = self._yardstick
            if stick is None:
                return {}
            return yardstick_scores(stick, self.config, lambda z, _y: self.generate(z), conditional=False)
        score = score_ring(self.generate(self.fixed_z))
        result = {
            "modes_covered": score.modes_covered,
            "of_modes": 8,
            "high_quality": round(score.high_quality, 4),
            "n_samples": score.n_samples,
        }
        return result


def _net_spec(config: Config, part: str, image_shape: tuple[int, int, int] | None) -> tuple[str, dict]:
    """Fill in the sizes the data fixes (latent size, channels, image size, sample length) unless set
    explicitly: those the network declares it takes from the data (its `Sizing`)."""
    arch = getattr(config.model, part)["name"]
    opts: GanOptions = config.options or GanOptions()
    m = opts.pack if part == "discriminator" else 1  # packed samples arrive side by side in the channel axis
    data: dict[str, Any] = {}
    if image_shape is not None:
        c, h, w = image_shape
        data.update(channels=c * m, image_size=h, image_shape=[c * m, h, w])
    else:
        data["features"] = 2 * m  # a point of the ring
    if part == "generator":
        data["latent_dim"] = opts.latent_dim
    return net_spec(config, part, **sizing(arch, key=f"model.{part}").fill(data))
