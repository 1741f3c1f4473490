"""CycleGAN (Zhu et al. 2017): two generators, two PatchGAN discriminators, unpaired data.

Naming: G_AtoB maps domain A to B and D_B judges domain B (real B vs G_AtoB(A)); the reference
code calls these netG_A and netD_A. The objective (Sec. 3, Eq. 3):

    L = L_GAN(G_AtoB, D_B) + L_GAN(G_BtoA, D_A) + lambda * L_cyc + lambda * lambda_id * L_identity

with L_cyc = |G_BtoA(G_AtoB(a)) - a|_1 + |G_AtoB(G_BtoA(b)) - b|_1 (Eq. 2) and the identity term
|G_AtoB(b) - b|_1 + |G_BtoA(a) - a|_1 (Sec. 5.2, from Taigman et al. 2017).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cyclekit.choices import GanMode
from cyclekit.config import Config
from cyclekit.data.folders import derive_seed
from cyclekit.data.protocol import RunData
from cyclekit.device import resolve_device
from cyclekit.errors import ConfigError, DataError
from cyclekit.gan.pool import ImagePool
from cyclekit.gan.steps import discriminator_loss, generator_adversarial_loss, optimizer_step
from cyclekit.inference.bundle import Bundle, NetworkEntry
from cyclekit.models import build_model, init_weights
from cyclekit.players import Player
from cyclekit.recipe import Recipe
from cyclekit.recipes.common import (
    N_FIXED,
    build_players,
    check_crop_for_generator,
    check_image_discriminator,
    net_size_needs,
    net_spec,
    run_eval,
    save_rows,
)
from cyclekit.train.batches import n_batches, plan_batches
from cyclekit.train.state import TrainingState


@dataclass(frozen=True)
class CycleGanOptions:
    """The `cyclegan:` section."""

    gan_mode: GanMode = "lsgan"  # the adversarial loss; LSGAN: Zhu et al. 2017, Sec. 4 (Mao et al. 2017)
    gp_weight: float = 10.0  # with gan_mode wgan-gp: the penalty's weight (Gulrajani et al. 2017, Alg. 1)
    lambda_cycle: float = 10.0  # per direction: Zhu et al. 2017, Sec. 4
    # Identity weight as a fraction of lambda_cycle (reference: 0.5 -> 5.0); 0 disables it.
    lambda_identity: float = 0.5
    pool_size: int = 50  # history of generated images per discriminator: Shrivastava et al. 2017
    d_scale: float = 0.5  # "divide the objective by 2 while optimizing D": Zhu et al. 2017, Sec. 4

    def __post_init__(self) -> None:
        for name in ("lambda_cycle", "lambda_identity", "d_scale", "gp_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.pool_size < 0:
            raise ConfigError(f"pool_size: must be >= 0, got {self.pool_size}")


def _net_specs(config: Config) -> tuple[tuple[str, dict], tuple[str, dict]]:
    c = config.data.channels
    g = net_spec(config, "generator", in_channels=c, out_channels=c)
    d = net_spec(config, "discriminator", in_channels=c)
    return g, d


CONFIG_KEYS = {
    "G_AtoB": "model.generator",
    "G_BtoA": "model.generator",
    "D_A": "model.discriminator",
    "D_B": "model.discriminator",
}


class CycleGanRecipe(Recipe):
    name = "cyclegan"
    description = "unpaired translation: two generators, two PatchGANs, cycle + identity losses (Zhu et al. 2017)"
    Options = CycleGanOptions
    translates = True
    default_kind = "unpaired"
    needs = (("A", "B"),)
    networks = {"generator": "the two generators, G_AtoB and G_BtoA", "discriminator": "the two PatchGANs, D_A and D_B"}
    defaults: dict[str, Any] = {
        "model": {"generator": {"name": "resnet"}, "discriminator": {"name": "patchgan"}},
    }
    moved_keys = {
        "loss.lambda_cycle": "lambda_cycle",
        "loss.lambda_identity": "lambda_identity",
        "loss.d_scale": "d_scale",
        "train.pool_size": "pool_size",
        "loss.gan_mode": "gan_mode",
        "loss.gp_weight": "gp_weight",
    }

    @classmethod
    def players(cls, options: Any) -> tuple[Player, ...]:
        """One Adam for both generators and one for both discriminators, as the reference does."""
        return (Player("g", ("G_AtoB", "G_BtoA")), Player("d", ("D_A", "D_B"), lr_key="lr_d"))

    @classmethod
    def check(cls, config: Config) -> None:
        (g_arch, g_opts), (d_arch, d_opts) = _net_specs(config)
        check_crop_for_generator(config, g_arch, g_opts)
        check_image_discriminator(config, d_arch, d_opts, config.options.gan_mode)

    def __init__(self, config: Config, data: RunData) -> None:
        from cyclekit.data.transforms import build_eval_transform

        self.config = cfg = config
        self.options: CycleGanOptions = config.options or CycleGanOptions()
        self.data = data
        self.device = resolve_device(cfg.train.device)
        (self.g_arch, self.g_opts), (self.d_arch, self.d_opts) = _net_specs(cfg)
        self.dataset = data.train
        d = cfg.data
        self.eval_transform = build_eval_transform(d.preprocess, d.load_size, d.crop_size, d.channels)
        self.fixed_a, self.fixed_b = self._fixed_images()

        nets = {k: net.to(self.device) for k, net in self.build_networks(cfg).items()}
        self.G_AtoB, self.G_BtoA, self.D_A, self.D_B = (nets[k] for k in ("G_AtoB", "G_BtoA", "D_A", "D_B"))
        for net in nets.values():
            init_weights(net, cfg.model.init, cfg.model.init_gain)
        optimizers, schedulers = build_players(cfg, self.players(cfg.options), nets, self.steps_per_epoch())
        self.opt_g, self.opt_d = optimizers["opt_g"], optimizers["opt_d"]
        # Separate histories of generated A and B images for D_A and D_B.
        pool = self.options.pool_size
        self.pool_a = ImagePool(pool, seed=derive_seed(cfg.seed, 11), device=self.device)
        self.pool_b = ImagePool(pool, seed=derive_seed(cfg.seed, 12), device=self.device)
        # Batch calls that share a network only where every layer is per sample: batch norm would
        # mix the samples' statistics (and change the maths), so nets with it keep separate calls.
        self.batch_g = not _has_batch_norm(self.G_AtoB)
        self.batch_d = not _has_batch_norm(self.D_A)
        self.state = TrainingState(
            nets,
            optimizers,
            schedulers,
            {"pool_a": self.pool_a, "pool_b": self.pool_b},
            config_keys=CONFIG_KEYS,
        )

    @classmethod
    def build_networks(cls, config: Config) -> dict[str, torch.nn.Module]:
        """The four networks (untrained, on the CPU): what a checkpoint's weights load into."""
        (g_arch, g_opts), (d_arch, d_opts) = _net_specs(config)
        return {
            "G_AtoB": build_model(g_arch, g_opts, key="model.generator"),
            "G_BtoA": build_model(g_arch, g_opts, key="model.generator"),
            "D_A": build_model(d_arch, d_opts, key="model.discriminator"),
            "D_B": build_model(d_arch, d_opts, key="model.discriminator"),
        }

    # -- loop protocol --------------------------------------------------------------------------

    def data_summary(self) -> str:
        return self.dataset.summary()

    def steps_per_epoch(self) -> int:
        n = max(len(self.dataset.paths_a), len(self.dataset.paths_b))
        return n_batches(n, self.config.data.batch_size, drop_last=False)

    def batches(self, epoch: int, start: int) -> Iterator[dict[str, Any]]:
        data = self.config.data
        plan = self.dataset.epoch_plan(epoch)
        return plan_batches(
            self.dataset, plan, data.batch_size, start, data.workers, drop_last=False, device=self.device, epoch=epoch
        )

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, Tensor]:
        opts, mode = self.options, self.options.gan_mode
        lam = opts.lambda_cycle
        real_a = batch["A"].to(self.device, non_blocking=True)
        real_b = batch["B"].to(self.device, non_blocking=True)

        # Generators: adversarial + cycle (+ identity); the discriminators are frozen inside the
        # adversarial helper so no gradient reaches them here.
        # Trained passes go through `state.forward` (DDP wrappers in a multi-process run); the frozen
        # discriminators in the generators' step use the plain networks, so DDP expects no gradient there.
        fwd = self.state.forward
        g_ab, g_ba = fwd["G_AtoB"], fwd["G_BtoA"]
        identity = opts.lambda_identity > 0
        if identity and self.batch_g and real_a.shape[1:] == real_b.shape[1:]:
            # G_AtoB on real A (translation) and real B (identity) in one call, likewise G_BtoA:
            # instance norm is per sample, so this is the same maths in 4 generator calls, not 6.
            n = real_a.shape[0]
            fake_b, same_b = g_ab(torch.cat([real_a, real_b])).split([n, real_b.shape[0]])
            fake_a, same_a = g_ba(torch.cat([real_b, real_a])).split([real_b.shape[0], n])
        else:
            fake_b = g_ab(real_a)
            fake_a = g_ba(real_b)
            same_b = g_ab(real_b) if identity else None
            same_a = g_ba(real_a) if identity else None
        rec_a = g_ba(fake_b)
        rec_b = g_ab(fake_a)
        adv_b = generator_adversarial_loss(self.D_B, fake_b, mode)
        adv_a = generator_adversarial_loss(self.D_A, fake_a, mode)
        cyc_a = F.l1_loss(rec_a, real_a) * lam
        cyc_b = F.l1_loss(rec_b, real_b) * lam
        loss_g = adv_a + adv_b + cyc_a + cyc_b
        out: dict[str, Tensor] = {}
        if identity:
            idt_b = F.l1_loss(same_b, real_b) * lam * opts.lambda_identity
            idt_a = F.l1_loss(same_a, real_a) * lam * opts.lambda_identity
            loss_g = loss_g + idt_a + idt_b
            out.update(loss_idt_A=idt_a.detach(), loss_idt_B=idt_b.detach())
        optimizer_step(self.opt_g, loss_g, self.state.scaler)

        # Discriminators, each on its real domain vs. a fake drawn from the history pool; the same
        # core helper as DCGAN, with the loss halved (Zhu et al. 2017, Sec. 4).
        gp = self.options.gp_weight
        kw = {"scale": opts.d_scale, "batched": self.batch_d}
        loss_d_b, _ = discriminator_loss(fwd["D_B"], real_b, self.pool_b.query(fake_b), mode, gp, **kw)
        loss_d_a, _ = discriminator_loss(fwd["D_A"], real_a, self.pool_a.query(fake_a), mode, gp, **kw)
        optimizer_step(self.opt_d, loss_d_a + loss_d_b, self.state.scaler)
        self.state.step_schedulers()
        return {
            "loss_G": loss_g.detach(),
            "loss_G_A": adv_a.detach(),
            "loss_G_B": adv_b.detach(),
            "loss_cycle_A": cyc_a.detach(),
            "loss_cycle_B": cyc_b.detach(),
            **out,
            "loss_D_A": loss_d_a.detach(),
            "loss_D_B": loss_d_b.detach(),
        }

    # -- outputs --------------------------------------------------------------------------------

    def _fixed_images(self) -> tuple[list[Tensor], list[Tensor]]:
        """The first few test images per side (training images when there is no test split);
        a list, as with preprocess none or scale_width their sizes may differ."""
        from cyclekit.data.images import load_image

        out = []
        train, test = self.dataset, self.data.test
        held = (test.paths_a, test.paths_b) if test is not None else ([], [])  # type: ignore[attr-defined]
        sides = ((train.paths_a, held[0]), (train.paths_b, held[1]))  # type: ignore[attr-defined]
        for paths, files in sides:
            picked = []
            for path in list(files) + list(paths):
                try:
                    picked.append(self.eval_transform(load_image(path, self.config.data.channels)))
                except DataError:
                    continue
                if len(picked) == N_FIXED:
                    break
            out.append(picked)
        return out[0], out[1]

    def write_samples(self, folder: Path, step: int, epoch: int) -> list[Path]:
        """One grid per call: rows of real A | fake B | rec A, then real B | fake A | rec B."""
        fake_b = run_eval(self.G_AtoB, self.fixed_a, self.device)
        rec_a = run_eval(self.G_BtoA, fake_b, self.device)
        fake_a = run_eval(self.G_BtoA, self.fixed_b, self.device)
        rec_b = run_eval(self.G_AtoB, fake_a, self.device)
        rows = []
        for i in range(len(self.fixed_a)):
            rows += [self.fixed_a[i], fake_b[i], rec_a[i]]
        for i in range(len(self.fixed_b)):
            rows += [self.fixed_b[i], fake_a[i], rec_b[i]]
        return save_rows(rows, folder / f"step_{step:07d}.png", columns=3)

    @classmethod
    def make_bundle(
        cls, config: Config, nets: Mapping[str, torch.nn.Module], step: int, epoch: int
    ) -> tuple[Bundle, dict[str, torch.nn.Module]]:
        """The inference bundle of ``nets`` (the generators) and the modules it holds."""
        data = config.data
        (g_arch, g_opts), _ = _net_specs(config)
        multiple, min_size = net_size_needs(nets["G_AtoB"])
        entry = NetworkEntry(g_arch, g_opts)
        bundle = Bundle(
            recipe=cls.name,
            networks={"G_AtoB": entry, "G_BtoA": entry},
            translates={"AtoB": "G_AtoB", "BtoA": "G_BtoA"},
            channels=data.channels,
            size_multiple=multiple,
            min_size=min_size,
            domains={"A": data.domain_a, "B": data.domain_b},
            train_size=data.crop_size,
            load_size=data.load_size if data.preprocess != "none" else None,
            preprocess=data.preprocess,
            step=step,
            epoch=epoch,
            run=config.name,
        )
        return bundle, {"G_AtoB": nets["G_AtoB"], "G_BtoA": nets["G_BtoA"]}


def _has_batch_norm(net: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
