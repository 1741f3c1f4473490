"""DCGAN generator and discriminator (Radford et al. 2016) for 16, 28, 32 and 64 px images."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor, nn

from cyclekit.models._checks import positive
from cyclekit.models.capabilities import Capabilities, Sizing
from cyclekit.nn.layers import NormKind, conv_bias, conv_norm_act, norm_layer

ImageSize = Literal[16, 28, 32, 64]

# image size -> (side of the first/last feature map, number of x2 stages).
# 32 and 64 start from 4x4 as in Radford et al. 2016, Fig. 1; 28 (MNIST) starts from 7x7 so that
# two stride-2 stages land exactly on 28 without cropping.
# 16 (the scikit-learn digits, upscaled) starts from 4x4 with one stage fewer than 32.
_LAYOUT: dict[int, tuple[int, int]] = {16: (4, 2), 28: (7, 2), 32: (4, 3), 64: (4, 4)}
IMAGE_SIZES: tuple[int, ...] = typing.get_args(ImageSize)


@dataclass(frozen=True)
class DCGANGeneratorOptions:
    """Options of `DCGANGenerator`."""

    image_size: ImageSize = 64
    channels: Literal[1, 3] = 3
    latent_dim: int = 100  # z in R^100: Radford et al. 2016, Sec. 3 / Fig. 1
    ngf: int = 64
    norm: NormKind = "batch"

    def __post_init__(self) -> None:
        positive(self, "latent_dim", "ngf")


@dataclass(frozen=True)
class DCGANDiscriminatorOptions:
    """Options of `DCGANDiscriminator`. Use norm "layer" or "none" with WGAN-GP."""

    image_size: ImageSize = 64
    # any count: PacGAN (gan.pack) stacks m images along the channel axis (1 or 3 times m)
    channels: int = 3
    ndf: int = 64
    norm: NormKind = "batch"

    def __post_init__(self) -> None:
        positive(self, "ndf", "channels")


class DCGANGenerator(nn.Module):
    """z -> image in [-1, 1]: transposed convs, norm + ReLU, tanh output without norm.

    Accepts z of shape (N, latent_dim) or (N, latent_dim, 1, 1); returns (N, channels, size, size).
    """

    sizing: ClassVar[Sizing] = Sizing(
        {"channels": "channels", "image_size": "image_size", "latent_dim": "latent_dim"}, IMAGE_SIZES
    )

    @classmethod
    def capabilities(cls, options: DCGANGeneratorOptions) -> Capabilities:
        return Capabilities(takes="latent", image_size=options.image_size, label="DCGAN generator")

    def __init__(self, config: DCGANGeneratorOptions | None = None):
        super().__init__()
        self.config = cfg = config or DCGANGeneratorOptions()
        base, stages = _LAYOUT[cfg.image_size]
        bias = conv_bias(cfg.norm)
        c = cfg.ngf * 2 ** (stages - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(cfg.latent_dim, c, base, stride=1, padding=0, bias=bias),
            norm_layer(cfg.norm, c),
            nn.ReLU(),
        ]
        for _ in range(stages - 1):
            layers += [
                nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1, bias=bias),
                norm_layer(cfg.norm, c // 2),
                nn.ReLU(),
            ]
            c //= 2
        # "not applying batchnorm to the generator output layer": Radford et al. 2016, Sec. 3.
        layers += [nn.ConvTranspose2d(c, cfg.channels, 4, stride=2, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        if z.dim() != 4 or z.shape[1:] != (self.config.latent_dim, 1, 1):
            raise ValueError(
                f"DCGANGenerator: expected z of shape (N, {self.config.latent_dim}) or "
                f"(N, {self.config.latent_dim}, 1, 1), got {tuple(z.shape)}"
            )
        return self.net(z)


class DCGANDiscriminator(nn.Module):
    """Image -> one raw logit per sample, shape (N,): strided convs, norm + LeakyReLU(0.2)."""

    sizing: ClassVar[Sizing] = Sizing({"channels": "channels", "image_size": "image_size"}, IMAGE_SIZES)

    @classmethod
    def capabilities(cls, options: DCGANDiscriminatorOptions) -> Capabilities:
        return Capabilities(heads=("logit",), image_size=options.image_size, label="DCGAN discriminator")

    def __init__(self, config: DCGANDiscriminatorOptions | None = None):
        super().__init__()
        self.config = cfg = config or DCGANDiscriminatorOptions()
        base, stages = _LAYOUT[cfg.image_size]
        lrelu = 0.2  # LeakyReLU slope 0.2: Radford et al. 2016, Sec. 3
        # "not applying batchnorm to ... the discriminator input layer": Radford et al. 2016, Sec. 3.
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, cfg.ndf, 4, stride=2, padding=1), nn.LeakyReLU(lrelu)]
        c = cfg.ndf
        for _ in range(stages - 1):
            layers += conv_norm_act(c, 2 * c, 4, stride=2, padding=1, norm=cfg.norm, act=nn.LeakyReLU(lrelu))
            c *= 2
        layers.append(nn.Conv2d(c, 1, base, stride=1, padding=0))  # base x base -> 1x1
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        size = self.config.image_size
        if x.dim() != 4 or x.shape[1:] != (self.config.channels, size, size):
            raise ValueError(
                f"DCGANDiscriminator: expected input of shape (N, {self.config.channels}, {size}, {size}), "
                f"got {tuple(x.shape)}"
            )
        return self.net(x).view(x.shape[0])
