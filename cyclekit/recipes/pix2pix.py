"""Pix2Pix (Isola et al. 2017): paired image-to-image translation with a conditional GAN.

A U-Net generator G maps the source image x to y' = G(x); a conditional PatchGAN D judges the
pair concat(x, y) as real and concat(x, G(x)) as fake. The objective (Sec. 3.1, Eq. 4):

    G* = arg min_G max_D  L_cGAN(G, D) + lambda * L_L1(G),   L_L1 = E |y - G(x)|_1,  lambda = 100

The L1 term makes G reproduce the low frequencies; the PatchGAN only has to judge local texture
(Sec. 2.2). At test time the generator runs "in exactly the same manner as during the training
phase": dropout on, batch norm with the test image's statistics (Sec. 3.3); the bundle records
both, and `pix2pix.test_dropout` / `pix2pix.test_batch_norm` change them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from cyclekit.choices import Direction, GanMode
from cyclekit.config import Config
from cyclekit.errors import ConfigError
from cyclekit.gan.steps import discriminator_loss, generator_adversarial_loss, optimizer_step
from cyclekit.recipes.common import run_eval
from cyclekit.recipes.translation import TranslationRecipe

if TYPE_CHECKING:
    from cyclekit.inference.bundle import Bundle


@dataclass(frozen=True)
class Pix2PixOptions:
    """The `pix2pix:` section."""

    gan_mode: GanMode = "vanilla"  # the adversarial loss; the paper's cGAN objective (Isola et al. 2017, Eq. 1)
    gp_weight: float = 10.0  # with gan_mode wgan-gp: the penalty's weight (Gulrajani et al. 2017, Alg. 1)
    direction: Direction = "AtoB"  # which way to translate: A -> B, or B -> A
    lambda_l1: float = 100.0  # Isola et al. 2017, Sec. 4 ("lambda = 100")
    # "divide the objective by 2 while optimizing D": Isola et al. 2017, Sec. 3.3
    d_scale: float = 0.5
    test_dropout: bool = True  # dropout at test time, as the paper (Sec. 3.3); false: deterministic
    # batch norm at test time: "sample" = each image's own statistics (the paper); "running" = training averages
    test_batch_norm: Literal["sample", "running"] = "sample"

    def __post_init__(self) -> None:
        for name in ("lambda_l1", "d_scale", "gp_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")

    @property
    def source(self) -> str:
        return self.direction[0]

    @property
    def target(self) -> str:
        return self.direction[-1]


class Pix2PixRecipe(TranslationRecipe):
    name = "pix2pix"
    description = "paired translation: U-Net generator, conditional PatchGAN, GAN + L1 loss (Isola et al. 2017)"
    Options = Pix2PixOptions
    default_kind = "paired"
    needs = (("A", "B", "aligned"),)
    networks = {"generator": "G: A -> B (a U-Net)", "discriminator": "D(A, B): the conditional PatchGAN"}
    judged_images = 2  # D judges concat(source, target)
    paired = True  # grids of input | output | target from the fixed test pairs
    defaults: dict[str, Any] = {
        "model": {
            "generator": {"name": "unet", "n_downs": 8},
            "discriminator": {"name": "patchgan", "norm": "batch"},
        },
    }

    options: Pix2PixOptions

    @classmethod
    def check(cls, config: Config) -> None:
        data = config.data
        if data.preprocess in ("none", "scale_width"):
            raise ConfigError(
                f"data.preprocess: {data.preprocess} keeps image sizes, but the generator needs sides that are "
                "multiples of its size; use resize_and_crop, crop or scale_width_and_crop"
            )
        super().check(config)

    def __init__(self, config: Config, data: Any) -> None:
        super().__init__(config, data)
        self.G, self.D = self.state.nets["G"], self.state.nets["D"]
        self.opt_g, self.opt_d = self.state.optimizers["opt_g"], self.state.optimizers["opt_d"]

    # -- loop protocol --------------------------------------------------------------------------

    def data_summary(self) -> str:
        if self.test is None:
            return f"{self.dataset.summary()}, no test pairs"
        return f"{self.dataset.summary()}, {len(self.test)} test pairs ({self.test.split})"  # type: ignore[attr-defined]

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, Tensor]:
        opts, mode = self.options, self.options.gan_mode
        source = batch[opts.source].to(self.device, non_blocking=True)
        target = batch[opts.target].to(self.device, non_blocking=True)
        fwd = self.state.forward  # DDP wrappers in a multi-process run (see TrainingState.forward)
        fake = fwd["G"](source)

        # D first, as the reference: real pair vs generated pair (detached inside the helper).
        loss_d, parts = discriminator_loss(
            fwd["D"],
            torch.cat([source, target], 1),
            torch.cat([source, fake], 1),
            mode,
            self.options.gp_weight,
            scale=opts.d_scale,
        )
        optimizer_step(self.opt_d, loss_d, self.state.scaler)

        # G: fool the (frozen) D on the pair, and stay close to the target in L1.
        adv = generator_adversarial_loss(self.D, torch.cat([source, fake], 1), mode)
        l1 = F.l1_loss(fake, target) * opts.lambda_l1
        optimizer_step(self.opt_g, adv + l1, self.state.scaler)
        self.state.step_schedulers()
        return {
            "loss_G": (adv + l1).detach(),
            "loss_G_GAN": adv.detach(),
            "loss_G_L1": l1.detach(),
            "loss_D": loss_d.detach(),
            "D_real": parts["real"],
            "D_fake": parts["fake"],
        }

    # -- outputs --------------------------------------------------------------------------------

    def _generate(self, source: Tensor) -> Tensor:
        """The generator as the bundle will run it (test-time dropout and norm statistics)."""
        opts = self.options
        g = self.G
        was = g.training
        try:
            # Batch norm: "sample" = training-mode statistics of a batch of one (run_eval feeds
            # images one at a time); dropout follows test_dropout.
            g.train(opts.test_batch_norm == "sample")
            for module in g.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.train(opts.test_dropout)
            # Seeded dropout (as the PyTorch backend does), on a forked RNG so sampling never moves
            # the training RNG.
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                torch.manual_seed(0)
                return torch.cat([g(x.unsqueeze(0).to(self.device)).cpu() for x in source])
        finally:
            g.train(was)

    def sample_rows(self) -> list[Tensor]:
        """A row per fixed pair: input | output | target."""
        source, target = (self.fixed_a, self.fixed_b) if self.options.source == "A" else (self.fixed_b, self.fixed_a)
        fake = self._eval_generate(source)
        rows = []
        for i in range(len(source)):
            rows += [source[i], fake[i], target[i]]
        return rows

    def _eval_generate(self, source: Tensor) -> Tensor:
        if self.options.test_batch_norm == "running" and not self.options.test_dropout:
            return torch.stack(run_eval(self.G, source, self.device))
        # Per-sample statistics in train mode would also update the running averages; keep a
        # copy so sampling leaves the training state (and a resumed run) exactly as it was.
        saved = {k: v.clone() for k, v in self.G.state_dict().items() if "running" in k or "num_batches" in k}
        try:
            return self._generate(source)
        finally:
            self.G.load_state_dict(saved, strict=False)

    @classmethod
    def make_bundle(
        cls, config: Config, nets: Mapping[str, torch.nn.Module], step: int, epoch: int
    ) -> tuple[Bundle, dict[str, torch.nn.Module]]:
        """The inference bundle of ``nets["G"]`` with the paper's test-time settings."""
        from cyclekit.inference.bundle import TestTime

        opts = config.options or Pix2PixOptions()
        (_, g_opts), _ = cls.net_specs(config)
        g = nets["G"]
        has_bn = g_opts.get("norm") == "batch"
        test_time = TestTime(
            # Only where the network has dropout layers (a U-Net with n_downs 5 has none).
            dropout=opts.test_dropout and any(isinstance(m, torch.nn.Dropout) for m in g.modules()),
            batch_norm=opts.test_batch_norm if has_bn else "running",
        )
        return cls.translation_bundle(config, {"G": g}, {opts.direction: "G"}, step, epoch, test_time)
