"""StackGAN networks (Zhang et al. 2017, "StackGAN: Text to Photo-realistic Image Synthesis with
Stacked Generative Adversarial Networks"): two stages, each conditioned on a text (or class)
embedding through conditioning augmentation.

- `CondAugment` (Sec. 3.2): mu and log sigma from the embedding by one linear layer, and
  c_hat = mu + sigma * eps, eps ~ N(0, I); its KL(N(mu, sigma^2) || N(0, I)) is a loss term.
- `StageIGenerator` (Sec. 3.3, "stackgan_g1"): [z, c_hat] -> a linear layer to ngf*8 x 4 x 4 ->
  upsampling blocks (nearest x2, 3x3 conv, batch norm, ReLU), halving the channels -> 3x3 conv,
  tanh: a low-resolution image.
- `StageIIGenerator` (Sec. 3.4, "stackgan_g2"): the stage-I image -> an encoder (two stride-2
  downsamplings) -> c_hat (its own conditioning augmentation) replicated spatially and joined ->
  residual blocks -> upsampling blocks to ``scale`` (2 or 4) times the input side.
- `StageDiscriminator` ("stackgan_d", both stages): stride-2 downsamplings to 4 x 4, then the
  embedding compressed to ``cond_dim`` by a linear layer, replicated to 4 x 4 and joined, a 3x3
  conv and a 4x4 conv to one logit: matching-aware, D(image, embedding).
- `StackChain` ("stackgan_chain"): stage I then stage II, what a bundle samples from: noise
  [z, eps_I, eps_II] and the embedding in, the stage-II image out; `stages` returns both images.

Generators take their noise as one input (z and the augmentation's eps side by side), so that
everything random in a sample is an input: a seeded sample is repeatable, and an exported ONNX
graph is deterministic. The forward of a generator returns (image, mu, log_sigma).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cyclekit.errors import ConfigError
from cyclekit.models._checks import positive
from cyclekit.models.capabilities import Capabilities, Condition, Sizing


def _side(name: str, value: int, least: int = 8) -> None:
    """A side the networks reach by doubling from 4 x 4: 4 * 2^k, at least ``least``."""
    if value < least or value % 4 or (value // 4) & (value // 4 - 1):
        raise ConfigError(f"{name}: must be 4 x a power of two and at least {least} (8, 16, 32, 64, ...), got {value}")


def _doublings(size: int) -> int:
    return (size // 4).bit_length() - 1


# ---------------------------------------------------------------------------------------------
# conditioning augmentation


# Conditioning augmentation starts near c_hat = mu: sigma = e^-2 = 0.14 while the linear layer's
# output is still near 0 (it is initialised with N(0, 0.02) weights and no bias, like every layer).
# Starting at sigma = 1, mu (a few hundredths at first) is lost in the noise, the generator learns to
# ignore its condition, and a short run (a few hundred steps) never recovers; the KL term still pulls
# sigma towards 1 as training goes on.
LOG_SIGMA_START = -2.0


class CondAugment(nn.Module):
    """embedding -> (c_hat, mu, log_sigma), c_hat = mu + exp(log_sigma) * eps, with mu and log sigma
    from one linear layer of the embedding scaled to unit RMS entries (x sqrt(embed_dim): sentence
    embeddings have unit length)."""

    def __init__(self, embed_dim: int, c_dim: int) -> None:
        super().__init__()
        self.c_dim = c_dim
        self.scale = float(embed_dim) ** 0.5
        self.fc = nn.Linear(embed_dim, 2 * c_dim)

    def forward(self, embedding: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, raw = self.fc(embedding * self.scale).chunk(2, dim=1)
        log_sigma = raw + LOG_SIGMA_START
        return mu + log_sigma.exp() * eps, mu, log_sigma


def kl_loss(mu: Tensor, log_sigma: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per dimension, averaged over the dimensions and the batch (as the
    authors' code does: the sum over c_dim dimensions, used with the paper's weights, pulls a small
    c_hat onto the prior, and the generator then ignores its condition)."""
    return 0.5 * (mu.pow(2) + (2 * log_sigma).exp() - 1 - 2 * log_sigma).mean()


def _up(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(True),
    ]


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(True),
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )
        self.act = nn.ReLU(True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


def _check_noise(name: str, noise: Tensor, width: int) -> None:
    if noise.dim() != 2 or noise.shape[1] != width:
        raise ValueError(f"{name}: expected noise of shape (N, {width}), got {tuple(noise.shape)}")


# ---------------------------------------------------------------------------------------------
# stage I


@dataclass(frozen=True)
class StageIGeneratorOptions:
    """Options of `StageIGenerator`; the defaults are the paper's 64 px stage I (Ng 128, Nz 100)."""

    image_size: int = 64  # 4 x 2^k: one upsampling block per doubling from 4 x 4
    channels: Literal[1, 3] = 3
    embed_dim: int = 1024  # the condition's size (filled in from the data)
    c_dim: int = 128  # conditioning augmentation's output (Ng)
    z_dim: int = 100  # noise (Nz)
    ngf: int = 128  # the 4 x 4 map has ngf * 8 channels, halved by each upsampling block

    def __post_init__(self) -> None:
        positive(self, "embed_dim", "c_dim", "z_dim", "ngf")
        _side("image_size", self.image_size)

    @property
    def noise_dim(self) -> int:
        return self.z_dim + self.c_dim


class StageIGenerator(nn.Module):
    """(noise [z, eps], embedding) -> (image in [-1, 1], mu, log_sigma)."""

    sizing: ClassVar[Sizing] = Sizing(
        {"channels": "channels", "image_size": "image_size", "embed_dim": "embed_dim"}, rule="4 x 2^k, at least 8"
    )

    @classmethod
    def capabilities(cls, options: StageIGeneratorOptions) -> Capabilities:
        return Capabilities(
            takes="latent",
            heads=("image", "mu", "log_sigma"),
            condition=Condition("embedding", options.embed_dim),
            image_size=options.image_size,
            label="stage-I generator",
        )

    def __init__(self, config: StageIGeneratorOptions | None = None) -> None:
        super().__init__()
        self.config = cfg = config or StageIGeneratorOptions()
        self.ca = CondAugment(cfg.embed_dim, cfg.c_dim)
        c = cfg.ngf * 8
        self.fc = nn.Sequential(
            nn.Linear(cfg.z_dim + cfg.c_dim, c * 16, bias=False), nn.BatchNorm1d(c * 16), nn.ReLU(True)
        )
        layers: list[nn.Module] = []
        for _ in range(_doublings(cfg.image_size)):
            layers += _up(c, max(c // 2, 8))
            c = max(c // 2, 8)
        layers += [nn.Conv2d(c, cfg.channels, 3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, noise: Tensor, embedding: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        cfg = self.config
        _check_noise("StageIGenerator", noise, cfg.noise_dim)
        c_hat, mu, log_sigma = self.ca(embedding, noise[:, cfg.z_dim :])
        h = self.fc(torch.cat([noise[:, : cfg.z_dim], c_hat], dim=1)).view(-1, cfg.ngf * 8, 4, 4)
        return self.body(h), mu, log_sigma


# ---------------------------------------------------------------------------------------------
# stage II


@dataclass(frozen=True)
class StageIIGeneratorOptions:
    """Options of `StageIIGenerator`; the defaults are the paper's 64 -> 256 px stage II."""

    in_size: int = 64  # the stage-I image's side (a multiple of 4: the encoder halves it twice)
    scale: Literal[2, 4] = 4  # output side = in_size * scale
    channels: Literal[1, 3] = 3
    embed_dim: int = 1024
    c_dim: int = 128
    ngf: int = 128  # encoder ngf -> 2 ngf -> 4 ngf; the residual blocks run at 4 ngf
    n_res: int = 4  # residual blocks
    # add the stage-I image, scaled up (bilinear), to the output (clamped to [-1, 1]): stage II then
    # learns a refinement and starts from stage I's picture. Not in the paper; for short CPU runs.
    skip: bool = False

    def __post_init__(self) -> None:
        positive(self, "embed_dim", "c_dim", "ngf")
        if self.n_res < 0:
            raise ConfigError(f"n_res: must be >= 0, got {self.n_res}")
        _side("in_size", self.in_size)

    @property
    def out_size(self) -> int:
        return self.in_size * self.scale

    @property
    def noise_dim(self) -> int:
        return self.c_dim


class StageIIGenerator(nn.Module):
    """(stage-I image, noise eps, embedding) -> (image of scale x the side, mu, log_sigma)."""

    sizing: ClassVar[Sizing] = Sizing(
        {"channels": "channels", "embed_dim": "embed_dim"}, rule="4 x 2^k, at least 8"
    )  # its in_size and scale are the stages' business (the stackgan recipe sets them)

    @classmethod
    def capabilities(cls, options: StageIIGeneratorOptions) -> Capabilities:
        """Takes the stage-I image (``in_size``) and gives one ``scale`` times larger."""
        return Capabilities(
            takes="image",
            heads=("image", "mu", "log_sigma"),
            condition=Condition("embedding", options.embed_dim),
            image_size=options.in_size,
            label="stage-II generator",
        )

    def __init__(self, config: StageIIGeneratorOptions | None = None) -> None:
        super().__init__()
        self.config = cfg = config or StageIIGeneratorOptions()
        g = cfg.ngf
        self.ca = CondAugment(cfg.embed_dim, cfg.c_dim)
        self.encoder = nn.Sequential(
            nn.Conv2d(cfg.channels, g, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(g, 2 * g, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * g),
            nn.ReLU(True),
            nn.Conv2d(2 * g, 4 * g, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(4 * g),
            nn.ReLU(True),
        )
        self.joint = nn.Sequential(
            nn.Conv2d(4 * g + cfg.c_dim, 4 * g, 3, padding=1, bias=False), nn.BatchNorm2d(4 * g), nn.ReLU(True)
        )
        self.residual = nn.Sequential(*[_Residual(4 * g) for _ in range(cfg.n_res)])
        layers: list[nn.Module] = []
        c = 4 * g
        for _ in range(2 + (cfg.scale.bit_length() - 1)):  # back up the 2 halvings, then the scale
            layers += _up(c, max(c // 2, 8))
            c = max(c // 2, 8)
        layers += [nn.Conv2d(c, cfg.channels, 3, padding=1), nn.Tanh()]
        self.decoder = nn.Sequential(*layers)

    def forward(self, image: Tensor, noise: Tensor, embedding: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        cfg = self.config
        if image.dim() != 4 or image.shape[1:] != (cfg.channels, cfg.in_size, cfg.in_size):
            raise ValueError(
                f"StageIIGenerator: expected a stage-I image of shape (N, {cfg.channels}, {cfg.in_size}, "
                f"{cfg.in_size}), got {tuple(image.shape)}"
            )
        _check_noise("StageIIGenerator", noise, cfg.noise_dim)
        c_hat, mu, log_sigma = self.ca(embedding, noise)
        h = self.encoder(image)
        side = h.shape[-1]
        h = self.joint(torch.cat([h, c_hat[:, :, None, None].expand(-1, -1, side, side)], dim=1))
        out = self.decoder(self.residual(h))
        if cfg.skip:
            up = F.interpolate(image, scale_factor=cfg.scale, mode="bilinear", align_corners=False)
            out = (out + up).clamp(-1.0, 1.0)
        return out, mu, log_sigma


# ---------------------------------------------------------------------------------------------
# discriminator (both stages)


@dataclass(frozen=True)
class StageDiscriminatorOptions:
    """Options of `StageDiscriminator` (Nd = cond_dim 128 in the paper)."""

    image_size: int = 64
    channels: Literal[1, 3] = 3
    embed_dim: int = 1024
    cond_dim: int = 128  # the embedding compressed to this by a linear layer
    ndf: int = 64  # doubled by each downsampling, up to ndf * 8

    def __post_init__(self) -> None:
        positive(self, "embed_dim", "cond_dim", "ndf")
        _side("image_size", self.image_size)


class StageDiscriminator(nn.Module):
    """(image, embedding) -> one logit per sample: real and matching the condition, or not."""

    sizing: ClassVar[Sizing] = Sizing(
        {"channels": "channels", "image_size": "image_size", "embed_dim": "embed_dim"}, rule="4 x 2^k, at least 8"
    )

    @classmethod
    def capabilities(cls, options: StageDiscriminatorOptions) -> Capabilities:
        """Matching-aware: D(image, embedding) -> one logit."""
        return Capabilities(
            heads=("logit",),
            condition=Condition("embedding", options.embed_dim),
            image_size=options.image_size,
            label="stage discriminator",
        )

    def __init__(self, config: StageDiscriminatorOptions | None = None) -> None:
        super().__init__()
        self.config = cfg = config or StageDiscriminatorOptions()
        lrelu = 0.2
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, cfg.ndf, 4, stride=2, padding=1), nn.LeakyReLU(lrelu, True)]
        c = cfg.ndf
        for _ in range(_doublings(cfg.image_size) - 1):
            out = min(2 * c, 8 * cfg.ndf)
            layers += [
                nn.Conv2d(c, out, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(lrelu, True),
            ]
            c = out
        self.body = nn.Sequential(*layers)
        # the embedding scaled to unit-RMS entries, as the conditioning augmentation takes it: a
        # unit-length sentence embedding entered as is gave the condition a tiny share of the
        # joined features, and D learnt to match captions slowly (docs/benchmarks.md)
        self.embed_scale = float(cfg.embed_dim) ** 0.5
        self.compress = nn.Sequential(nn.Linear(cfg.embed_dim, cfg.cond_dim), nn.LeakyReLU(lrelu, True))
        self.head = nn.Sequential(
            nn.Conv2d(c + cfg.cond_dim, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.LeakyReLU(lrelu, True),
            nn.Conv2d(c, 1, 4),
        )

    def forward(self, image: Tensor, embedding: Tensor) -> Tensor:
        cfg = self.config
        size = cfg.image_size
        if image.dim() != 4 or image.shape[1:] != (cfg.channels, size, size):
            raise ValueError(
                f"StageDiscriminator: expected input of shape (N, {cfg.channels}, {size}, {size}), "
                f"got {tuple(image.shape)}"
            )
        h = self.body(image)
        cond = self.compress(embedding * self.embed_scale)[:, :, None, None].expand(-1, -1, 4, 4)
        return self.head(torch.cat([h, cond], dim=1)).view(len(image))


# ---------------------------------------------------------------------------------------------
# the two stages chained (what a bundle samples from)


@dataclass(frozen=True)
class StackChainOptions:
    """The options of both generators (`StageIGeneratorOptions`, `StageIIGeneratorOptions`)."""

    stage1: dict[str, Any]
    stage2: dict[str, Any]


def check_stages(o1: StageIGeneratorOptions, o2: StageIIGeneratorOptions) -> None:
    """Stage II must take what stage I gives: its side, channels and condition size."""
    if o2.in_size != o1.image_size or o2.channels != o1.channels or o2.embed_dim != o1.embed_dim:
        raise ConfigError(
            f"stage2: stage II takes {o2.in_size} px, {o2.channels} channels and {o2.embed_dim}-d conditions; "
            f"stage I gives {o1.image_size} px, {o1.channels} channels and takes {o1.embed_dim}-d"
        )


class StackChain(nn.Module):
    """(noise [z, eps_I, eps_II], embedding) -> the stage-II image; `stages` gives both images.

    ``stage1``/``stage2``: existing generators to chain (a training run's, shared, not copied)."""

    sizing: ClassVar[Sizing] = Sizing()  # its options are the two stages' own, already sized

    @classmethod
    def capabilities(cls, options: StackChainOptions) -> Capabilities:
        o1 = StageIGeneratorOptions(**options.stage1)
        o2 = StageIIGeneratorOptions(**options.stage2)
        return Capabilities(
            takes="latent",
            condition=Condition("embedding", o1.embed_dim),
            image_size=o2.out_size,
            label="StackGAN chain",
        )

    def __init__(
        self,
        config: StackChainOptions,
        stage1: StageIGenerator | None = None,
        stage2: StageIIGenerator | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        o1 = StageIGeneratorOptions(**config.stage1)
        o2 = StageIIGeneratorOptions(**config.stage2)
        check_stages(o1, o2)
        self.stage1 = stage1 if stage1 is not None else StageIGenerator(o1)
        self.stage2 = stage2 if stage2 is not None else StageIIGenerator(o2)
        self.noise_dim = o1.noise_dim + o2.noise_dim

    def stages(self, noise: Tensor, embedding: Tensor) -> tuple[Tensor, Tensor]:
        _check_noise("StackChain", noise, self.noise_dim)
        n1 = self.stage1.config.noise_dim
        low = self.stage1(noise[:, :n1], embedding)[0]
        return low, self.stage2(low, noise[:, n1:], embedding)[0]

    def forward(self, noise: Tensor, embedding: Tensor) -> Tensor:
        return self.stages(noise, embedding)[1]
