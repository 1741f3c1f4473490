"""BEGAN networks (Berthelot, Schumm and Metz 2017, Fig. 1): the discriminator is an autoencoder,
the generator has the shape of its decoder. No batch norm anywhere; every 3x3 convolution but the
last is followed by an exponential linear unit.

- Encoder: a 3x3 conv to ``n`` filters, then one block per scale of two 3x3 conv-ELU layers; a
  stride-2 3x3 conv-ELU between scales halves the side and adds ``n`` filters (n, 2n, 3n, ...:
  "the number of filters increases linearly with each down-sampling"); at 8 x 8 a fully connected
  layer maps to the embedding of ``h`` values (no activation).
- Decoder: a fully connected layer from the embedding to 8 x 8 x ``n``, then one block per scale of
  two 3x3 conv-ELU layers, nearest-neighbour upsampling x2 between scales, and a 3x3 conv to the
  image channels (linear output, as in the paper).
- Generator: the decoder's shape with z (``latent_dim``) in place of the embedding.

The first and last feature maps are 8 x 8 (the paper's), so the image side must be 8 x 2^k with
k >= 1: 16, 32, 64 or 128 px (k down-samplings and k + 1 blocks). The generator's output is linear
while it trains (D reconstructs it as it is); in eval mode (samples, bundles, ONNX export) it is
clamped to the pixel range [-1, 1].
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor, nn

from cyclekit.models._checks import positive
from cyclekit.models.capabilities import Capabilities, Sizing

ImageSize = Literal[16, 32, 64, 128]
IMAGE_SIZES: tuple[int, ...] = typing.get_args(ImageSize)
SIZE_RULE = "8 x 2^k"  # the first and last feature maps are 8 x 8
BASE = 8  # side of the first (decoder) and last (encoder) feature map: Berthelot et al. 2017, Fig. 1


def _scales(image_size: int) -> int:
    """Down-samplings from ``image_size`` to 8 x 8 (image_size is one of ImageSize)."""
    return (image_size // BASE).bit_length() - 1


def _conv_elu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ELU()]


@dataclass(frozen=True)
class BeganGeneratorOptions:
    """Options of `BeganGenerator` (the decoder's shape, z in place of the embedding)."""

    image_size: ImageSize = 64
    channels: Literal[1, 3] = 3
    latent_dim: int = 64  # N_z (h = N_z = 64 in most of the paper's experiments, Sec. 4)
    n: int = 64  # filters of every conv (the paper's n: 64, or 128 for 128 px)

    def __post_init__(self) -> None:
        positive(self, "latent_dim", "n")


@dataclass(frozen=True)
class BeganDiscriminatorOptions:
    """Options of `BeganDiscriminator` (an autoencoder: D(x) is the reconstruction of x)."""

    image_size: ImageSize = 64
    channels: Literal[1, 3] = 3
    n: int = 64  # filters of the first scale; the encoder adds n per down-sampling
    h: int = 64  # the embedding between encoder and decoder

    def __post_init__(self) -> None:
        positive(self, "n", "h")


class _Decoder(nn.Module):
    """``dim`` values -> fully connected to 8 x 8 x n -> conv-ELU blocks with nearest x2 upsampling
    between them -> a 3x3 conv to ``channels`` (linear)."""

    def __init__(self, dim: int, n: int, channels: int, image_size: int) -> None:
        super().__init__()
        self.n = n
        self.fc = nn.Linear(dim, BASE * BASE * n)
        layers: list[nn.Module] = []
        scales = _scales(image_size)
        for i in range(scales + 1):
            layers += _conv_elu(n, n) + _conv_elu(n, n)
            if i < scales:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers.append(nn.Conv2d(n, channels, 3, padding=1))
        self.convs = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.convs(self.fc(x).view(x.shape[0], self.n, BASE, BASE))


class _Encoder(nn.Module):
    """Image -> a 3x3 conv-ELU to n -> blocks of two conv-ELU at n, 2n, 3n, ... with a stride-2
    conv-ELU between them -> fully connected from 8 x 8 to ``h`` (linear)."""

    def __init__(self, channels: int, n: int, h: int, image_size: int) -> None:
        super().__init__()
        scales = _scales(image_size)
        layers: list[nn.Module] = _conv_elu(channels, n)
        for i in range(scales + 1):
            c = n * (i + 1)
            layers += _conv_elu(c, c) + _conv_elu(c, c)
            if i < scales:
                layers += _conv_elu(c, c + n, stride=2)  # sub-sampling with stride 2
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(BASE * BASE * n * (scales + 1), h)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.convs(x).flatten(1))


class BeganGenerator(nn.Module):
    """z of shape (N, latent_dim) -> images (N, channels, size, size); clamped to [-1, 1] in eval mode."""

    sizing: ClassVar[Sizing] = Sizing(
        {"channels": "channels", "image_size": "image_size", "latent_dim": "latent_dim"}, IMAGE_SIZES, SIZE_RULE
    )

    @classmethod
    def capabilities(cls, options: BeganGeneratorOptions) -> Capabilities:
        return Capabilities(takes="latent", image_size=options.image_size, label="BEGAN generator")

    def __init__(self, config: BeganGeneratorOptions | None = None) -> None:
        super().__init__()
        self.config = cfg = config or BeganGeneratorOptions()
        self.decoder = _Decoder(cfg.latent_dim, cfg.n, cfg.channels, cfg.image_size)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() == 4 and z.shape[2:] == (1, 1):
            z = z.flatten(1)
        if z.dim() != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"BeganGenerator: expected z of shape (N, {self.config.latent_dim}), got {tuple(z.shape)}")
        out = self.decoder(z)
        return out if self.training else out.clamp(-1.0, 1.0)


class BeganDiscriminator(nn.Module):
    """Images -> their reconstructions, the same shape: decoder(encoder(x)). `embed` gives the
    ``h`` values of the embedding."""

    sizing: ClassVar[Sizing] = Sizing({"channels": "channels", "image_size": "image_size"}, IMAGE_SIZES, SIZE_RULE)

    @classmethod
    def capabilities(cls, options: BeganDiscriminatorOptions) -> Capabilities:
        """An autoencoder: D(x) is the reconstruction of x (`embed` gives the h values between)."""
        return Capabilities(heads=("reconstruction",), image_size=options.image_size, label="BEGAN autoencoder")

    def __init__(self, config: BeganDiscriminatorOptions | None = None) -> None:
        super().__init__()
        self.config = cfg = config or BeganDiscriminatorOptions()
        self.encoder = _Encoder(cfg.channels, cfg.n, cfg.h, cfg.image_size)
        self.decoder = _Decoder(cfg.h, cfg.n, cfg.channels, cfg.image_size)

    def embed(self, x: Tensor) -> Tensor:
        size, c = self.config.image_size, self.config.channels
        if x.dim() != 4 or x.shape[1:] != (c, size, size):
            raise ValueError(
                f"BeganDiscriminator: expected input of shape (N, {c}, {size}, {size}), got {tuple(x.shape)}"
            )
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.embed(x))
