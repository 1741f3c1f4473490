"""CycleGAN (Zhu et al. 2017): two generators, two PatchGAN discriminators, unpaired data.

Naming: G_AtoB maps domain A to B and D_B judges domain B (real B vs G_AtoB(A)); the reference
code calls these netG_A and netD_A. The objective (Sec. 3, Eq. 3):

    L = L_GAN(G_AtoB, D_B) + L_GAN(G_BtoA, D_A) + lambda * L_cyc + lambda * lambda_id * L_identity

with L_cyc = |G_BtoA(G_AtoB(a)) - a|_1 + |G_AtoB(G_BtoA(b)) - b|_1 (Eq. 2) and the identity term
|G_AtoB(b) - b|_1 + |G_BtoA(a) - a|_1 (Sec. 5.2, from Taigman et al. 2017).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cyclekit.choices import GanMode
from cyclekit.config import Config
from cyclekit.data.folders import derive_seed
from cyclekit.errors import ConfigError
from cyclekit.gan.pool import ImagePool
from cyclekit.gan.steps import discriminator_loss, generator_adversarial_loss, optimizer_step
from cyclekit.players import Player
from cyclekit.recipes.common import run_eval
from cyclekit.recipes.translation import TranslationRecipe

if TYPE_CHECKING:
    from cyclekit.inference.bundle import Bundle


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


class CycleGanRecipe(TranslationRecipe):
    name = "cyclegan"
    description = "unpaired translation: two generators, two PatchGANs, cycle + identity losses (Zhu et al. 2017)"
    Options = CycleGanOptions
    default_kind = "unpaired"
    needs = (("A", "B"),)
    networks = {"generator": "the two generators, G_AtoB and G_BtoA", "discriminator": "the two PatchGANs, D_A and D_B"}
    nets = {"G_AtoB": "generator", "G_BtoA": "generator", "D_A": "discriminator", "D_B": "discriminator"}
    options: CycleGanOptions
    defaults: dict[str, Any] = {
        "model": {"generator": {"name": "resnet"}, "discriminator": {"name": "patchgan"}},
    }

    @classmethod
    def players(cls, options: Any) -> tuple[Player, ...]:
        """One Adam for both generators and one for both discriminators, as the reference does."""
        return (Player("g", ("G_AtoB", "G_BtoA")), Player("d", ("D_A", "D_B"), lr_key="lr_d"))

    def __init__(self, config: Config, data: Any) -> None:
        super().__init__(config, data)
        self.G_AtoB, self.G_BtoA, self.D_A, self.D_B = (self.state.nets[k] for k in self.nets)
        self.opt_g, self.opt_d = self.state.optimizers["opt_g"], self.state.optimizers["opt_d"]
        # Batch calls that share a network only where every layer is per sample: batch norm would
        # mix the samples' statistics (and change the maths), so nets with it keep separate calls.
        self.batch_g = not _has_batch_norm(self.G_AtoB)
        self.batch_d = not _has_batch_norm(self.D_A)

    def state_extras(self) -> dict[str, Any]:
        # Separate histories of generated A and B images for D_A and D_B.
        pool, cfg = self.options.pool_size, self.config
        self.pool_a = ImagePool(pool, seed=derive_seed(cfg.seed, 11), device=self.device)
        self.pool_b = ImagePool(pool, seed=derive_seed(cfg.seed, 12), device=self.device)
        return {"pool_a": self.pool_a, "pool_b": self.pool_b}

    # -- loop protocol --------------------------------------------------------------------------

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

    def sample_rows(self) -> list[Tensor]:
        """Rows of real A | fake B | rec A, then real B | fake A | rec B."""
        fake_b = run_eval(self.G_AtoB, self.fixed_a, self.device)
        rec_a = run_eval(self.G_BtoA, fake_b, self.device)
        fake_a = run_eval(self.G_BtoA, self.fixed_b, self.device)
        rec_b = run_eval(self.G_AtoB, fake_a, self.device)
        rows = []
        for i in range(len(self.fixed_a)):
            rows += [self.fixed_a[i], fake_b[i], rec_a[i]]
        for i in range(len(self.fixed_b)):
            rows += [self.fixed_b[i], fake_a[i], rec_b[i]]
        return rows

    @classmethod
    def make_bundle(
        cls, config: Config, nets: Mapping[str, torch.nn.Module], step: int, epoch: int
    ) -> tuple[Bundle, dict[str, torch.nn.Module]]:
        """The inference bundle of the two generators, one a direction."""
        generators = {"G_AtoB": nets["G_AtoB"], "G_BtoA": nets["G_BtoA"]}
        return cls.translation_bundle(config, generators, {"AtoB": "G_AtoB", "BtoA": "G_BtoA"}, step, epoch)


def _has_batch_norm(net: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
