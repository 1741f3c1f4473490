"""StackGAN (Zhang et al. 2017): text (or class) -> a low-resolution image from stage I, then stage II,
conditioned on the same text and on the stage-I image, adds resolution and detail.

The two stages train one after the other, driven by one config: `stackgan.stage1_epochs` epochs of
stage I (G1, D1), then `stackgan.stage2_epochs` of stage II (G2, D2) with stage I frozen (its weights
fixed, batch norm on its running statistics), as the paper does (Sec. 3.4). ``train.epochs`` is
their sum (set from them). The stage a run is in is part of the checkpoint, so a resume continues
in the right stage, bit-exact.

Both discriminators are matching-aware (Sec. 3.3, after Reed et al. 2016): a real image with its
own condition is real; a real image with a mismatched condition (the batch's conditions shifted by
one) and a generated image with its condition are fake:

    L_D = l(D(x, t), real) + 1/2 l(D(x, t'), fake) + 1/2 l(D(G(z, t), t), fake)
    L_G = l(D(G(z, t), t), real) + lambda KL(N(mu(t), sigma(t)) || N(0, I))

with l the GAN loss (``gan_mode``) and lambda `stackgan.kl_weight`. Stage I sees the training
images scaled down (antialiased) to its side; stage II the images as they are.

Conditions: a source of ``embedding`` batches (the built-in scenes, image folders with .npy
embeddings or .txt captions) or of class labels (digits, MNIST, class folders), given as one-hot
vectors. The bundle holds both generators chained (`cyclekit.models.stackgan.StackChain`) and says
what it is conditioned on (`cyclekit.inference.bundle.Condition`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from cyclekit.config import Config
from cyclekit.data.folders import derive_seed
from cyclekit.data.protocol import Conditioned, RunData
from cyclekit.data.sources import SOURCES
from cyclekit.device import resolve_device
from cyclekit.errors import ConfigError
from cyclekit.gan.losses import d_loss, g_loss
from cyclekit.gan.steps import frozen, optimizer_step
from cyclekit.inference.bundle import Bundle, Condition, NetworkEntry, Sampling
from cyclekit.models import build_model, capabilities, options_dict
from cyclekit.models.stackgan import (
    StackChain,
    StackChainOptions,
    StageIGeneratorOptions,
    StageIIGeneratorOptions,
    check_stages,
    kl_loss,
)
from cyclekit.players import Player
from cyclekit.recipe import Recipe
from cyclekit.recipes.common import net_spec, players_state
from cyclekit.train import distributed
from cyclekit.train.batches import n_batches, plan_batches

SAMPLE_ROWS = 8  # conditions in a sample grid (one row each)
SAMPLE_PAIRS = 4  # stage I | stage II pairs per row
EVAL_SEED_KEY = 11  # the noise evaluation samples with, from the run's seed


@dataclass(frozen=True)
class StackganOptions:
    """The `stackgan:` section."""

    stage1_epochs: int = 600  # epochs of stage I (600: Zhang et al. 2017, Sec. 4)
    stage2_epochs: int = 600  # then epochs of stage II, stage I frozen (600: Sec. 4)
    scale: Literal[2, 4] = 4  # stage II's side over stage I's (4: 64 -> 256 px, Sec. 3.4)
    kl_weight: float = 1.0  # lambda of the conditioning augmentation's KL term (1: Sec. 4)
    gan_mode: Literal["vanilla", "lsgan"] = "vanilla"  # the adversarial loss (vanilla: the paper's)
    # the number of classes, for data.kind classes (digits and MNIST have 10)
    n_classes: Optional[int] = None

    def __post_init__(self) -> None:
        if self.stage1_epochs < 0 or self.stage2_epochs < 0 or self.stage1_epochs + self.stage2_epochs == 0:
            raise ConfigError("stage1_epochs: stage1_epochs and stage2_epochs must be >= 0, adding up to > 0")
        if self.kl_weight < 0:
            raise ConfigError(f"kl_weight: must be >= 0, got {self.kl_weight}")
        if self.n_classes is not None and self.n_classes < 2:
            raise ConfigError(f"n_classes: at least 2, got {self.n_classes}")


def condition(config: Config) -> Condition:
    """What the generators are conditioned on, from the data source alone (no data read)."""
    kind = config.data.kind
    info = SOURCES[kind].condition(config.data)
    if info is not None:
        assert info.dim is not None
        return Condition(info.kind, info.dim, info.model)
    k = config.options.n_classes or SOURCES[kind].n_classes(config.data)
    if k is None:
        raise ConfigError(f"stackgan.n_classes: required with data.kind {kind} (its class folders)")
    return Condition("onehot", k)


def sizes(config: Config) -> tuple[int, int, int]:
    """(channels, stage-I side, stage-II side) from the data and `stackgan.scale`; ConfigError in
    one line for a size the two stages cannot make."""
    shape = SOURCES[config.data.kind].image_shape(config.data)
    if shape is None:
        raise ConfigError(f"data.kind: recipe stackgan samples images; the {config.data.kind} source gives points")
    c, size, _ = shape
    scale = config.options.scale
    low = size // scale
    sides = ", ".join(str(4 * 2**k * scale) for k in range(1, 5))
    if size % scale or low < 8 or low % 4 or (low // 4) & (low // 4 - 1):
        raise ConfigError(
            f"data.{config.data.kind}.size: {size} px does not fit StackGAN with scale {scale}: stage I makes "
            f"4 x 2^k px (at least 8) and stage II {scale} times that; use one of {sides} px"
        )
    return c, low, size


class _Stage:
    """The stage a run is in, kept in the checkpoint; entering stage 2 freezes stage I."""

    def __init__(self, recipe: StackganRecipe) -> None:
        self.recipe, self.stage = recipe, 1

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recipe.enter_stage(int(state["stage"]))


_GENERATED = ("image", "mu", "log_sigma")  # a stage's image and its conditioning augmentation
_SLOT_NEEDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "stage1_generator": ("latent", _GENERATED),
    "stage2_generator": ("image", _GENERATED),
    "stage1_discriminator": ("image", ("logit",)),
    "stage2_discriminator": ("image", ("logit",)),
}


class StackganRecipe(Recipe):
    name = "stackgan"
    description = "StackGAN: text -> low-res image (stage I) -> refined, larger image (stage II) (Zhang et al. 2017)"
    Options = StackganOptions
    default_kind = "scenes"
    needs = (("image", "embedding"), ("image", "label"))
    networks = {
        "stage1_generator": "stage-I G(z, c) -> low-res image: stackgan_g1",
        "stage1_discriminator": "stage-I D(image, c), matching-aware: stackgan_d",
        "stage2_generator": "stage-II G(stage-I image, c) -> scale x larger image: stackgan_g2",
        "stage2_discriminator": "stage-II D(image, c), matching-aware: stackgan_d",
    }
    defaults: dict[str, Any] = {
        "model": {
            "stage1_generator": {"name": "stackgan_g1"},
            "stage1_discriminator": {"name": "stackgan_d"},
            "stage2_generator": {"name": "stackgan_g2"},
            "stage2_discriminator": {"name": "stackgan_d"},
        },
        "data": {"batch_size": 64},  # Sec. 4
        "train": {"decay_epochs": 0},
    }

    # -- class side ------------------------------------------------------------------------------

    @classmethod
    def fixed_keys(cls, options: Any) -> dict[str, tuple[Any, str]]:
        why = "stackgan.stage1_epochs + stackgan.stage2_epochs"
        return {
            "train.epochs": (options.stage1_epochs + options.stage2_epochs, why),
            "train.decay_epochs": (0, "stackgan's stages (no decay)"),
        }

    @classmethod
    def players(cls, options: Any) -> tuple[Player, ...]:
        """A generator and a discriminator player per stage, each at a constant learning rate (the
        paper halves it every 100 of its 600 epochs): no schedules."""
        return tuple(
            Player(f"{side.lower()}{stage}", (f"{side}{stage}",), "lr" if side == "G" else "lr_d", schedule="constant")
            for stage in (1, 2)
            for side in ("G", "D")
        )

    @classmethod
    def net_spec(cls, config: Config, slot: str) -> tuple[str, dict[str, Any]]:
        c, low, size = sizes(config)
        dim = condition(config).dim
        fill: dict[str, Any] = {
            "stage1_generator": {"image_size": low, "channels": c, "embed_dim": dim},
            "stage2_generator": {"in_size": low, "scale": config.options.scale, "channels": c, "embed_dim": dim},
            "stage1_discriminator": {"image_size": low, "channels": c, "embed_dim": dim},
            "stage2_discriminator": {"image_size": size, "channels": c, "embed_dim": dim},
        }[slot]
        arch, opts = net_spec(config, slot, **fill)
        # What each slot needs, as the networks declare it: (input, heads); all take the embedding.
        takes, heads = _SLOT_NEEDS[slot]
        caps = capabilities(arch, opts, key=f"model.{slot}")
        if caps.takes != takes or caps.heads != heads or caps.condition.kind != "embedding":
            raise ConfigError(f"model.{slot}: stackgan needs {cls.networks[slot]}, got {arch}")
        for key, value in fill.items():
            if opts[key] != value:
                raise ConfigError(
                    f"model.{slot}.{key}: {opts[key]} does not fit the data and stackgan.scale, which need {value}; "
                    "leave it out"
                )
        return arch, opts

    @classmethod
    def check(cls, config: Config) -> None:
        if getattr(config.data.source, "labels_per_class", None) is not None:
            raise ConfigError("data.labels_per_class: stackgan trains on labelled images only")
        for slot in cls.networks:
            cls.net_spec(config, slot)
        g1 = StageIGeneratorOptions(**cls.net_spec(config, "stage1_generator")[1])
        g2 = StageIIGeneratorOptions(**cls.net_spec(config, "stage2_generator")[1])
        check_stages(g1, g2)

    @classmethod
    def build_networks(cls, config: Config) -> dict[str, torch.nn.Module]:
        names = {"G1": "stage1_generator", "D1": "stage1_discriminator", "G2": "stage2_generator"}
        names["D2"] = "stage2_discriminator"
        return {k: build_model(*cls.net_spec(config, slot), key=f"model.{slot}") for k, slot in names.items()}

    @classmethod
    def make_bundle(
        cls, config: Config, nets: Mapping[str, torch.nn.Module], step: int, epoch: int
    ) -> tuple[Bundle, dict[str, torch.nn.Module]]:
        """A sampling bundle of the two generators chained, saying what they are conditioned on."""
        c, low, size = sizes(config)
        cond = condition(config)
        options = StackChainOptions(
            options_dict(nets["G1"].config),  # type: ignore[union-attr]
            options_dict(nets["G2"].config),  # type: ignore[union-attr]
        )
        chain = StackChain(options, stage1=nets["G1"], stage2=nets["G2"])
        # A class is the class index (the chain takes its one-hot vector); a text or vector condition an embedding.
        by_class = cond.kind == "onehot"
        classes = tuple(str(i) for i in range(cond.dim)) if by_class else ()
        bundle = Bundle(
            recipe=cls.name,
            networks={"G": NetworkEntry("stackgan_chain", options_dict(options))},
            samples=Sampling(
                "G",
                chain.noise_dim,
                "image",
                classes=classes,
                condition=None if by_class else cond,
                stages=(low, size),
                class_feed="onehot" if by_class else "index",
            ),
            channels=c,
            train_size=size,
            step=step,
            epoch=epoch,
            run=config.name,
        )
        return bundle, {"G": chain}

    def write_bundle(self, folder: Path, step: int, epoch: int) -> None:
        """The bundle of `make_bundle`; a generator conditioned on classes names them as the data does."""
        from cyclekit.inference.bundle import with_class_names, write_bundle

        bundle, modules = self.make_bundle(self.config, self.state.nets, step, epoch)
        names = list(self.data.class_names) if self.cond.kind == "onehot" else []
        write_bundle(folder, with_class_names(bundle, names), modules)

    # -- instance side ---------------------------------------------------------------------------

    def __init__(self, config: Config, data: RunData) -> None:
        self.config = config
        self.options = o = config.options
        self.device = resolve_device(config.train.device)
        self.cond = condition(config)
        self.channels, self.low, self.size = sizes(config)
        self.data = data
        self.dataset = data.train
        self.test = data.test
        if self.cond.kind == "onehot":
            if len(data.class_names) != self.cond.dim:
                raise ConfigError(
                    f"stackgan.n_classes: {self.cond.dim}, but the data has {len(data.class_names)} classes"
                )
        elif isinstance(self.dataset, Conditioned) and self.dataset.embed_dim != self.cond.dim:
            have = self.dataset.embed_dim
            raise ConfigError(f"data: the conditions are {have}-d, but the config says {self.cond.dim}")
        world = distributed.current().world
        if len(self.dataset) < config.data.batch_size * world:
            raise ConfigError(
                f"data.batch_size: {config.data.batch_size} is larger than the dataset ({len(self.dataset)} images)"
            )
        self.stage = _Stage(self)
        self.state = players_state(
            config,
            self.players(o),
            self.build_networks(config),
            self.device,
            self.steps_per_epoch(),
            extras={"stage": self.stage},
            config_keys={"G1": "model.stage1_generator", "D1": "model.stage1_discriminator",
                         "G2": "model.stage2_generator", "D2": "model.stage2_discriminator"},
        )  # fmt: skip
        nets = self.state.nets
        self.stage1_steps = o.stage1_epochs * self.steps_per_epoch()
        self.chain = StackChain(
            StackChainOptions(options_dict(nets["G1"].config), options_dict(nets["G2"].config)),  # type: ignore[arg-type]
            stage1=nets["G1"],
            stage2=nets["G2"],
        )
        self.fixed = self._fixed_conditions()
        gen = torch.Generator().manual_seed(derive_seed(config.seed, 7))
        self.fixed_noise = torch.randn(len(self.fixed[0]) * SAMPLE_PAIRS, self.chain.noise_dim, generator=gen)

    def enter_stage(self, stage: int) -> None:
        """Stage 2: stage I frozen (no gradients, batch norm on its running statistics)."""
        self.stage.stage = stage
        if stage == 2:
            for k in ("G1", "D1"):
                self.state.nets[k].eval()
                for p in self.state.nets[k].parameters():
                    p.requires_grad_(False)

    def _fixed_conditions(self) -> tuple[Tensor, list[str]]:
        """The conditions of the sample grids: the first test captions (else train), or each class."""
        if self.cond.kind == "onehot":
            k = self.cond.dim
            names = list(self.data.class_names) or [str(i) for i in range(k)]
            return torch.eye(k)[: min(k, 10)], names[:10]
        source = self.test if self.test is not None else self.dataset
        rows = list(range(0, len(source.embeddings), max(1, len(source.embeddings) // SAMPLE_ROWS)))[:SAMPLE_ROWS]
        labels = [source.captions[r] or f"item {r}" for r in rows]
        return source.embeddings[rows], labels

    # -- loop protocol ---------------------------------------------------------------------------

    def data_summary(self) -> str:
        test = f"; test: {len(self.test):,} images" if self.test is not None else ""
        return f"{self.dataset.summary()}{test}; stage I {self.low} px -> stage II {self.size} px"

    def steps_per_epoch(self) -> int:
        return n_batches(len(self.dataset), self.config.data.batch_size, drop_last=True)

    def batches(self, epoch: int, start: int) -> Iterator[dict[str, Tensor]]:
        data = self.config.data
        plan = self.dataset.epoch_plan(epoch)
        yield from plan_batches(
            self.dataset, plan, data.batch_size, start, data.workers, drop_last=True, device=self.device, epoch=epoch
        )

    def embedding(self, batch: dict[str, Tensor]) -> Tensor:
        if "embedding" in batch:
            return batch["embedding"].to(self.device, non_blocking=True).float()
        return F.one_hot(batch["label"].to(self.device).long(), self.cond.dim).float()

    def train_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor | float]:
        stage = 1 if step < self.stage1_steps else 2
        if stage != self.stage.stage:
            self.enter_stage(stage)
        real = batch["image"].to(self.device, non_blocking=True)
        emb = self.embedding(batch)
        wrong = emb.roll(1, dims=0)  # mismatched conditions: the batch shifted by one
        n, fwd, nets = len(real), self.state.forward, self.state.nets
        mode = self.options.gan_mode
        if stage == 1:
            d, opt_g, opt_d = "D1", "opt_g1", "opt_d1"
            real = downscale(real, self.low)
            noise = torch.randn(n, nets["G1"].config.noise_dim, device=self.device)
            fake, mu, log_sigma = fwd["G1"](noise, emb)
        else:
            d, opt_g, opt_d = "D2", "opt_g2", "opt_d2"
            noise = torch.randn(n, self.chain.noise_dim, device=self.device)
            n1 = nets["G1"].config.noise_dim
            with torch.no_grad():
                low = nets["G1"](noise[:, :n1], emb)[0]
            fake, mu, log_sigma = fwd["G2"](low, noise[:, n1:], emb)
        real_logits = fwd[d](real, emb)
        wrong_logits = fwd[d](real, wrong)
        fake_logits = fwd[d](fake.detach(), emb)
        loss_d = 0.5 * (d_loss(real_logits, fake_logits, mode) + d_loss(real_logits, wrong_logits, mode))
        optimizer_step(self.state.optimizers[opt_d], loss_d, self.state.scaler)
        with frozen(nets[d]):
            adv = g_loss(fwd[d](fake, emb), mode)
        kl = kl_loss(mu, log_sigma)
        loss_g = adv + self.options.kl_weight * kl
        optimizer_step(self.state.optimizers[opt_g], loss_g, self.state.scaler)
        self.state.step_schedulers()
        return {
            "stage": float(stage),
            "loss_D": loss_d.detach(),
            "loss_G": adv.detach(),
            "loss_KL": kl.detach(),
            "D_real": real_logits.detach().mean(),
            "D_wrong": wrong_logits.detach().mean(),
            "D_fake": fake_logits.detach().mean(),
        }

    @torch.no_grad()
    def generate(self, noise: Tensor, emb: Tensor) -> tuple[Tensor, Tensor]:
        """Stage-I and stage-II images (CPU) of ``noise`` and conditions ``emb``, in eval mode."""
        with _eval(self.state.nets["G1"], self.state.nets["G2"]):
            pairs = zip(noise.split(256), emb.split(256), strict=True)
            out = [self.chain.stages(z.to(self.device), e.to(self.device)) for z, e in pairs]
        return torch.cat([o[0] for o in out]).cpu(), torch.cat([o[1] for o in out]).cpu()

    def write_samples(self, folder: Path, step: int, epoch: int) -> list[Path]:
        from cyclekit.data.images import save_grid

        emb, labels = self.fixed
        low, high = self.generate(self.fixed_noise, emb.repeat_interleave(SAMPLE_PAIRS, dim=0))
        tiles = interleave(low, high)
        path = folder / f"step_{step:07d}.png"
        folder.mkdir(parents=True, exist_ok=True)
        save_grid(tiles, path, nrow=2 * SAMPLE_PAIRS, row_labels=[short(t) for t in labels])
        return [path]

    # -- scores ----------------------------------------------------------------------------------

    def load_bundle(self, folder: Path, bundle: Bundle) -> None:
        from cyclekit.inference.bundle import load_network

        chain = load_network(folder, bundle, "G", self.device)
        self.state.nets["G1"].load_state_dict(chain.stage1.state_dict())
        self.state.nets["G2"].load_state_dict(chain.stage2.state_dict())

    def evaluate(self, run_dir: Path) -> dict[str, Any]:
        """On the held-out conditions (the test split; else the train split), one sample each:
        how much sharper stage II is than stage I scaled up, and for the built-in scenes how often
        the stage-II image shows the colour and position its caption asks for, read back by
        `cyclekit.evaluation.scenes` (whose accuracy on the real test images is given beside)."""
        from cyclekit.evaluation.scenes import read_scenes, sharpness

        source = self.test if self.test is not None else self.dataset
        images, emb = source.tensors()
        if self.cond.kind == "onehot":
            emb = F.one_hot(emb.long(), self.cond.dim).float()
        gen = torch.Generator().manual_seed(derive_seed(self.config.seed, EVAL_SEED_KEY))
        noise = torch.randn(len(emb), self.chain.noise_dim, generator=gen)
        low, high = self.generate(noise, emb)
        up = F.interpolate(low, size=high.shape[-2:], mode="bilinear", align_corners=False)
        out: dict[str, Any] = {
            "split": "test" if self.test is not None else "train",
            "samples_scored": len(emb),
            "stage1_size": self.low,
            "stage2_size": self.size,
            "sharpness_stage2": round(sharpness(high), 5),
            "sharpness_stage1_upscaled": round(sharpness(up), 5),
            "sharpness_real": round(sharpness(images), 5),
        }
        out["sharpness_ratio"] = round(out["sharpness_stage2"] / max(out["sharpness_stage1_upscaled"], 1e-12), 4)
        scenes = getattr(source, "scenes", None)
        if scenes is None:
            return out
        truth = [scenes[i] for i in source.owner.tolist()]
        for name, imgs in (("generated", high), ("real", images)):
            got = read_scenes(imgs)
            hits = {
                a: sum(getattr(r, a) == getattr(t, a) for r, t in zip(got, truth, strict=True)) / len(truth)
                for a in ("colour", "position", "size", "shape")
            }
            both = sum(r.colour == t.colour and r.position == t.position for r, t in zip(got, truth, strict=True))
            key = "caption_match" if name == "generated" else "detector_on_real"
            out[key] = round(both / len(truth), 4)
            out[f"{key}_by_attribute"] = {a: round(v, 4) for a, v in hits.items()}
        out["caption_match_chance"] = round(1 / 25, 4)
        out["note"] = (
            "caption_match: the share of held-out captions whose stage-II image shows the caption's colour and "
            "position (detector in cyclekit/evaluation/scenes.py); chance 1/5 x 1/5 = 0.04. sharpness: mean gradient "
            "magnitude; ratio = stage II over stage I upscaled (bilinear) to stage II's size"
        )
        return out


def downscale(images: Tensor, side: int) -> Tensor:
    """Images scaled down to ``side`` (antialiased bilinear): the real images stage I sees."""
    if images.shape[-1] == side:
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False, antialias=True)


def interleave(low: Tensor, high: Tensor) -> Tensor:
    """Stage-I images (scaled up, nearest) beside their stage-II images: I, II, I, II, ..."""
    up = F.interpolate(low, size=high.shape[-2:], mode="nearest")
    return torch.stack([up, high], dim=1).flatten(0, 1)


def short(text: str, n: int = 36) -> str:
    return text if len(text) <= n else text[: n - 1] + "~"


@contextlib.contextmanager
def _eval(*nets: torch.nn.Module) -> Iterator[None]:
    modes = [net.training for net in nets]
    for net in nets:
        net.eval()
    try:
        yield
    finally:
        for net, mode in zip(nets, modes, strict=True):
            net.train(mode)
