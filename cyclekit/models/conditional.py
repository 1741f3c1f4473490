"""Class-conditional DCGAN networks for the conditional GAN family (cGAN, ACGAN, SGAN).

The label enters as a one-hot vector, as in Mirza and Osindero 2014 (Sec. 4.1: "y ... as one-hot
vectors"): concatenated to z in the generator, and, in a convolutional discriminator, as K
constant feature maps concatenated to the image (the convolutional form of their concatenation).
With 10 classes a learned embedding would add parameters and nothing else, and one-hot keeps the
exported ONNX model's label input a plain class index.

The discriminator has three heads, one per recipe:

- ``concat`` (cGAN): D(x, y) -> one real/fake logit per sample.
- ``aux`` (ACGAN, Odena et al. 2017): D(x) -> (real/fake logit, K class logits).
- ``classes`` (SGAN, Salimans et al. 2016, Sec. 5): D(x) -> K class logits; "fake" is implicit, the
  real/fake logit being logsumexp of the class logits (see `cyclekit.gan.conditional`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cyclekit.models._checks import positive
from cyclekit.models.capabilities import NO_CONDITION, Capabilities, Condition, Sizing
from cyclekit.models.dcgan import _LAYOUT, IMAGE_SIZES, DCGANGenerator, DCGANGeneratorOptions, ImageSize
from cyclekit.nn.layers import NormKind, conv_norm_act

Head = Literal["concat", "aux", "classes"]


@dataclass(frozen=True)
class CondGeneratorOptions:
    """Options of `ConditionalGenerator`."""

    image_size: ImageSize = 32
    channels: Literal[1, 3] = 1
    latent_dim: int = 100
    n_classes: int = 10  # the label, one-hot, is concatenated to z
    ngf: int = 64
    norm: NormKind = "batch"

    def __post_init__(self) -> None:
        positive(self, "latent_dim", "ngf", "n_classes")


@dataclass(frozen=True)
class CondDiscriminatorOptions:
    """Options of `ConditionalDiscriminator`. Use norm "layer" or "none" with WGAN-GP."""

    image_size: ImageSize = 32
    channels: Literal[1, 3] = 1
    n_classes: int = 10
    ndf: int = 64
    norm: NormKind = "batch"
    # concat: D(x, y) -> logit (cGAN); aux: D(x) -> (logit, class logits) (ACGAN);
    # classes: D(x) -> class logits, fake implicit (SGAN)
    head: Head = "concat"
    dropout: float = 0.0  # before the heads (Salimans et al. 2016 use dropout in D for SGAN)

    def __post_init__(self) -> None:
        positive(self, "ndf", "n_classes")
        if not 0 <= self.dropout < 1:
            from cyclekit.errors import ConfigError

            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")


class ConditionalGenerator(nn.Module):
    """(z, y) -> image in [-1, 1]: a DCGAN generator whose input is z concatenated with one-hot y."""

    sizing: ClassVar[Sizing] = Sizing(
        {"channels": "channels", "image_size": "image_size", "latent_dim": "latent_dim", "n_classes": "n_classes"},
        IMAGE_SIZES,
    )

    @classmethod
    def capabilities(cls, options: CondGeneratorOptions) -> Capabilities:
        """G(z, y): a class index y, one-hot of n_classes."""
        return Capabilities(
            takes="latent",
            condition=Condition("class", options.n_classes),
            image_size=options.image_size,
            label="conditional generator",
        )

    def __init__(self, config: CondGeneratorOptions | None = None):
        super().__init__()
        self.config = cfg = config or CondGeneratorOptions()
        self.body = DCGANGenerator(
            DCGANGeneratorOptions(
                image_size=cfg.image_size,
                channels=cfg.channels,
                latent_dim=cfg.latent_dim + cfg.n_classes,
                ngf=cfg.ngf,
                norm=cfg.norm,
            )
        )

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"ConditionalGenerator: expected z of shape (N, {self.config.latent_dim}), got {tuple(z.shape)}"
            )
        onehot = F.one_hot(y.long(), self.config.n_classes).to(z.dtype)
        return self.body(torch.cat([z, onehot], dim=1))


class ConditionalDiscriminator(nn.Module):
    """Image (and, for the concat head, label) -> the head's outputs; see the module docstring."""

    sizing: ClassVar[Sizing] = Sizing(
        {"channels": "channels", "image_size": "image_size", "n_classes": "n_classes"}, IMAGE_SIZES
    )

    @classmethod
    def capabilities(cls, options: CondDiscriminatorOptions) -> Capabilities:
        """concat: D(x, y) -> logit; aux: D(x) -> (logit, class logits); classes: D(x) -> class logits."""
        heads = {"concat": ("logit",), "aux": ("logit", "classes"), "classes": ("classes",)}[options.head]
        condition = Condition("class", options.n_classes) if options.head == "concat" else NO_CONDITION
        return Capabilities(
            heads=heads, condition=condition, image_size=options.image_size, label="conditional discriminator"
        )

    def __init__(self, config: CondDiscriminatorOptions | None = None):
        super().__init__()
        self.config = cfg = config or CondDiscriminatorOptions()
        base, stages = _LAYOUT[cfg.image_size]
        lrelu = 0.2
        extra = cfg.n_classes if cfg.head == "concat" else 0
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.channels + extra, cfg.ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(lrelu),
        ]
        c = cfg.ndf
        for _ in range(stages - 1):
            layers += conv_norm_act(c, 2 * c, 4, stride=2, padding=1, norm=cfg.norm, act=nn.LeakyReLU(lrelu))
            c *= 2
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        self.body = nn.Sequential(*layers)
        self.adversarial = nn.Conv2d(c, 1, base) if cfg.head in ("concat", "aux") else None
        self.classifier = nn.Conv2d(c, cfg.n_classes, base) if cfg.head in ("aux", "classes") else None

    def features(self, x: Tensor) -> Tensor:
        """The flattened activations before the heads (feature matching; heads aux and classes)."""
        return self.body(x).flatten(1)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        cfg = self.config
        size = cfg.image_size
        if x.dim() != 4 or x.shape[1:] != (cfg.channels, size, size):
            raise ValueError(
                f"ConditionalDiscriminator: expected input of shape (N, {cfg.channels}, {size}, {size}), "
                f"got {tuple(x.shape)}"
            )
        n = x.shape[0]
        if cfg.head == "concat":
            if y is None:
                raise ValueError("ConditionalDiscriminator (concat head): needs the labels y")
            maps = F.one_hot(y.long(), cfg.n_classes).to(x.dtype)[:, :, None, None].expand(-1, -1, size, size)
            x = torch.cat([x, maps], dim=1)
        h = self.body(x)
        if cfg.head == "concat":
            assert self.adversarial is not None
            return self.adversarial(h).view(n)
        assert self.classifier is not None
        classes = self.classifier(h).view(n, cfg.n_classes)
        if cfg.head == "classes":
            return classes
        assert self.adversarial is not None
        return self.adversarial(h).view(n), classes
