"""A recipe the platform did not foresee, in one file: three players, one of them sized from another.

A one-direction translator in the manner of CUT (Park et al. 2020), kept small: a generator G (any
network of the registry that declares feature taps: the ResNet generator) maps A to B, a
discriminator D (the PatchGAN) judges B with the LSGAN loss, and a projection head H, whose input
sizes are the channel counts G declares at the tapped layers (`cyclekit.models.feature_channels`,
known from the config alone, on the meta device), maps G's features to unit vectors for a patchwise
contrastive loss (PatchNCE): a patch of G(a) must be closer to the same patch of a than to the other
patches sampled. Three players: ``g`` (G) and ``h`` (H) read ``optim.lr``, ``d`` (D) ``optim.lr_d``.

Importing this module registers the recipe as ``three_players`` in `cyclekit.recipes.RECIPES`;
nothing in cyclekit is edited for it. It uses only the recipe contract (`cyclekit.recipe.Recipe`),
the recipe helpers (`cyclekit.recipes.common`), the model registry, the loss helpers, the batch
planner and the bundle writer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cyclekit.config import Config
from cyclekit.data.protocol import RunData
from cyclekit.device import resolve_device
from cyclekit.errors import ConfigError
from cyclekit.gan.steps import discriminator_loss, generator_adversarial_loss, optimizer_step
from cyclekit.models import build_model, capabilities, feature_channels, sizing
from cyclekit.players import Player
from cyclekit.recipe import Recipe
from cyclekit.recipes import RECIPES
from cyclekit.recipes.common import (
    check_crop_for_generator,
    check_image_discriminator,
    net_spec,
    players_state,
    run_eval,
    save_rows,
)
from cyclekit.train.batches import n_batches, plan_batches

if TYPE_CHECKING:
    from cyclekit.inference.bundle import Bundle

NAME = "three_players"
N_FIXED = 3  # test frames in the sample grid


@dataclass(frozen=True)
class ThreePlayersOptions:
    """The `three_players:` section."""

    lambda_nce: float = 1.0  # weight of the contrastive term
    nce_layers: tuple[int, ...] = (0, 4, 8)  # G's layers tapped (the ResNet's input, first and second downsampling)
    head_dim: int = 32  # H's output per layer
    patches: int = 16  # patch positions sampled per layer and image
    tau: float = 0.07  # the InfoNCE temperature (Park et al. 2020)

    def __post_init__(self) -> None:
        for name in ("head_dim", "patches"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.tau <= 0 or self.lambda_nce < 0:
            raise ConfigError("tau, lambda_nce: tau must be > 0 and lambda_nce >= 0")
        if not self.nce_layers:
            raise ConfigError("nce_layers: at least one layer to tap")


class ProjectionHead(nn.Module):
    """One two-layer MLP per tapped layer, each sized from that layer's channel count."""

    def __init__(self, channels: Sequence[int], dim: int) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(c, dim), nn.ReLU(), nn.Linear(dim, dim)) for c in channels)

    def forward(self, patches: Sequence[Tensor]) -> list[Tensor]:
        """Each layer's (..., C) patch features as unit (..., dim) vectors."""
        return [F.normalize(mlp(x), dim=-1) for mlp, x in zip(self.mlps, patches, strict=True)]


class ThreePlayersRecipe(Recipe):
    name = NAME
    description = "a test double: one-direction translator, PatchGAN and a projection head sized from G's taps"
    Options = ThreePlayersOptions
    default_kind = "unpaired"
    needs = (("A", "B"),)
    networks = {"generator": "the translator G (it must declare feature taps)", "discriminator": "the PatchGAN D"}
    defaults: dict[str, Any] = {
        "model": {"generator": {"name": "resnet"}, "discriminator": {"name": "patchgan"}},
    }
    translates = True

    # -- class side ------------------------------------------------------------------------------

    @classmethod
    def players(cls, options: Any) -> tuple[Player, ...]:
        return (Player("g", ("G",)), Player("d", ("D",), lr_key="lr_d"), Player("h", ("H",)))

    @staticmethod
    def specs(config: Config) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]:
        """(name, options) of G and D, the image channels filled in where each declares it takes them."""
        c = config.data.channels
        out = []
        for slot in ("generator", "discriminator"):
            takes = sizing(getattr(config.model, slot)["name"], key=f"model.{slot}")
            out.append(net_spec(config, slot, **takes.fill({"channels": c})))
        return out[0], out[1]

    @classmethod
    def head_channels(cls, config: Config) -> list[int]:
        """H's input sizes: G's declared channel counts at the tapped layers (nothing is run)."""
        (g_arch, g_opts), _ = cls.specs(config)
        return feature_channels(g_arch, g_opts, config.options.nce_layers, key=f"{NAME}.nce_layers")

    @classmethod
    def check(cls, config: Config) -> None:
        (g_arch, g_opts), (d_arch, d_opts) = cls.specs(config)
        check_crop_for_generator(config, g_arch, g_opts)
        check_image_discriminator(config, d_arch, d_opts, "lsgan")
        cls.head_channels(config)  # G taps those layers (a ConfigError naming the key otherwise)

    @classmethod
    def build_networks(cls, config: Config) -> dict[str, nn.Module]:
        (g_arch, g_opts), (d_arch, d_opts) = cls.specs(config)
        return {
            "G": build_model(g_arch, g_opts, key="model.generator"),
            "D": build_model(d_arch, d_opts, key="model.discriminator"),
            "H": ProjectionHead(cls.head_channels(config), config.options.head_dim),
        }

    @classmethod
    def make_bundle(
        cls, config: Config, nets: Mapping[str, nn.Module], step: int, epoch: int
    ) -> tuple[Bundle, dict[str, nn.Module]]:
        """G alone, translating A to B."""
        from cyclekit.inference.bundle import Bundle, NetworkEntry

        data = config.data
        (g_arch, g_opts), _ = cls.specs(config)
        caps = capabilities(g_arch, g_opts, key="model.generator")
        domains = {"A": data.domain_a, "B": data.domain_b} if data.has("domain_a") else {"A": "A", "B": "B"}
        bundle = Bundle(
            recipe=cls.name,
            networks={"G": NetworkEntry(g_arch, g_opts)},
            translates={"AtoB": "G"},
            channels=data.channels,
            size_multiple=caps.size_multiple,
            min_size=caps.min_size,
            domains=domains,
            train_size=data.crop_size,
            load_size=data.load_size,
            preprocess=data.preprocess,
            step=step,
            epoch=epoch,
            run=config.name,
        )
        return bundle, {"G": nets["G"]}

    # -- instance side ---------------------------------------------------------------------------

    def __init__(self, config: Config, data: RunData) -> None:
        self.config = config
        self.options: ThreePlayersOptions = config.options or ThreePlayersOptions()
        self.data = data
        self.device = resolve_device(config.train.device)
        self.dataset = data.train
        shown = data.test if data.test is not None else data.train
        items = [shown[item] for item in list(shown.epoch_plan(0))[:N_FIXED]]
        self.fixed_a = [item["A"] for item in items]
        self.fixed_b = [item["B"] for item in items]
        self.state = players_state(
            config,
            self.players(self.options),
            self.build_networks(config),
            self.device,
            self.steps_per_epoch(),
            config_keys={"G": "model.generator", "D": "model.discriminator", "H": f"{NAME}.nce_layers"},
        )
        self.G, self.D, self.H = (self.state.nets[k] for k in ("G", "D", "H"))

    def steps_per_epoch(self) -> int:
        return n_batches(len(self.dataset), self.config.data.batch_size, drop_last=False)

    def batches(self, epoch: int, start: int) -> Iterator[Any]:
        data = self.config.data
        plan = self.dataset.epoch_plan(epoch)
        return plan_batches(
            self.dataset, plan, data.batch_size, start, data.workers, drop_last=False, device=self.device, epoch=epoch
        )

    def patch_nce(self, fake: Tensor, real: Tensor) -> Tensor:
        """PatchNCE over the tapped layers: the same positions of G's features of the translated
        and the source image are positives, the other sampled positions negatives. The positions
        come from the global random state (a checkpoint restores it)."""
        o = self.options
        layers = list(o.nce_layers)
        feats_q = self.G.features(fake, layers)
        with torch.no_grad():
            feats_k = self.G.features(real, layers)
        picked_q, picked_k = [], []
        for q, k in zip(feats_q, feats_k, strict=True):
            q, k = q.flatten(2).transpose(1, 2), k.flatten(2).transpose(1, 2)  # (N, HW, C)
            ids = torch.randperm(q.shape[1])[: o.patches].to(q.device)
            picked_q.append(q[:, ids])
            picked_k.append(k[:, ids])
        loss = fake.new_zeros(())
        for q, k in zip(self.H(picked_q), self.H(picked_k), strict=True):
            logits = q @ k.detach().transpose(1, 2) / o.tau  # (N, P, P): the diagonal holds the positives
            target = torch.arange(logits.shape[1], device=logits.device).expand(logits.shape[0], -1)
            loss = loss + F.cross_entropy(logits.flatten(0, 1), target.flatten())
        return loss / len(layers)

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, Tensor]:
        real_a = batch["A"].to(self.device, non_blocking=True)
        real_b = batch["B"].to(self.device, non_blocking=True)
        opt_g, opt_d, opt_h = (self.state.optimizers[f"opt_{k}"] for k in "gdh")
        fake_b = self.state.forward["G"](real_a)
        adv = generator_adversarial_loss(self.D, fake_b, "lsgan")
        nce = self.patch_nce(fake_b, real_a) * self.options.lambda_nce
        loss_g = adv + nce
        # G and H minimise one loss: one backward pass, then each player's step.
        opt_h.zero_grad(set_to_none=True)
        optimizer_step(opt_g, loss_g, self.state.scaler)
        if self.state.scaler is not None:
            self.state.scaler.step(opt_h)
        else:
            opt_h.step()
        loss_d, _ = discriminator_loss(self.state.forward["D"], real_b, fake_b, "lsgan", scale=0.5)
        optimizer_step(opt_d, loss_d, self.state.scaler)
        self.state.step_schedulers()
        return {
            "loss_G": loss_g.detach(),
            "loss_G_GAN": adv.detach(),
            "loss_NCE": nce.detach(),
            "loss_D": loss_d.detach(),
        }

    def write_samples(self, folder: Path, step: int, epoch: int) -> list[Path]:
        """Rows of frame A | G(A) | frame B."""
        fake_b = run_eval(self.G, self.fixed_a, self.device)
        rows = [t for row in zip(self.fixed_a, fake_b, self.fixed_b, strict=True) for t in row]
        return save_rows(rows, folder / f"step_{step:07d}.png", columns=3)

    def data_summary(self) -> str:
        return self.dataset.summary()


def register() -> None:
    """Put the recipe into the registry (importing this module does)."""
    RECIPES[NAME] = ThreePlayersRecipe


register()

__all__ = ["NAME", "ProjectionHead", "ThreePlayersOptions", "ThreePlayersRecipe", "register"]
