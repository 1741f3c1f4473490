"""Fully connected GAN (Goodfellow et al. 2014) for 2-D toy data or flattened images."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor, nn

from cyclekit.errors import ConfigError
from cyclekit.models._checks import positive, probability
from cyclekit.models.capabilities import Capabilities, Sizing

TOY_FEATURES = 2  # the 2-D ring of Gaussians (Metz et al. 2017, Sec. 3.1)


def _features(name: str, value: int | None, shape: tuple[int, ...] | None) -> int:
    """Resolve out_features / in_features from ``image_shape`` or the 2-D toy default."""
    if shape is None:
        value = TOY_FEATURES if value is None else value
    else:
        if not shape or any(s <= 0 for s in shape):
            raise ConfigError(f"image_shape: must be positive sizes like [1, 28, 28], got {list(shape)}")
        implied = math.prod(shape)
        if value is not None and value != implied:
            raise ConfigError(f"{name}: {value} does not match image_shape {list(shape)} ({implied} values)")
        value = implied
    if value <= 0:
        raise ConfigError(f"{name}: must be > 0, got {value}")
    return value


def _check_hidden(hidden: tuple[int, ...]) -> None:
    if any(h <= 0 for h in hidden):
        raise ConfigError(f"hidden: widths must be > 0, got {list(hidden)}")


@dataclass(frozen=True)
class MLPGeneratorOptions:
    """Options of `MLPGenerator`. ``out_features`` defaults to prod(image_shape), else 2."""

    latent_dim: int = 100
    out_features: int | None = None
    hidden: tuple[int, ...] = (128, 128)
    # auto: linear for unbounded 2-D toy data, tanh when image_shape is set (images in [-1, 1]).
    output: Literal["auto", "linear", "tanh"] = "auto"
    image_shape: tuple[int, ...] | None = None  # e.g. (1, 28, 28): output is reshaped to it

    def __post_init__(self) -> None:
        positive(self, "latent_dim")
        _check_hidden(self.hidden)
        # Frozen: resolve once here so the saved options rebuild exactly the same network.
        object.__setattr__(self, "out_features", _features("out_features", self.out_features, self.image_shape))
        if self.output == "auto":
            object.__setattr__(self, "output", "linear" if self.image_shape is None else "tanh")


@dataclass(frozen=True)
class MLPDiscriminatorOptions:
    """Options of `MLPDiscriminator`. ``in_features`` defaults to prod(image_shape), else 2."""

    in_features: int | None = None
    hidden: tuple[int, ...] = (128, 128)
    image_shape: tuple[int, ...] | None = None  # inputs are flattened either way
    dropout: float = 0.0  # Goodfellow et al. 2014 trained D with dropout; off by default

    def __post_init__(self) -> None:
        _check_hidden(self.hidden)
        probability(self, "dropout")
        object.__setattr__(self, "in_features", _features("in_features", self.in_features, self.image_shape))


class MLPGenerator(nn.Module):
    """z (N, latent_dim) -> Linear+ReLU per hidden width -> Linear to out_features [-> tanh].

    Returns (N, out_features), or (N, *image_shape) when ``image_shape`` is set.
    """

    sizing: ClassVar[Sizing] = Sizing(
        {"latent_dim": "latent_dim", "image_shape": "image_shape", "features": "out_features"}
    )

    @classmethod
    def capabilities(cls, options: MLPGeneratorOptions) -> Capabilities:
        image = options.image_shape is not None
        side = options.image_shape[-1] if image and len(options.image_shape) == 3 else None
        return Capabilities(
            takes="latent", heads=("image",) if image else ("points",), image_size=side, label="MLP generator"
        )

    def __init__(self, config: MLPGeneratorOptions | None = None):
        super().__init__()
        self.config = cfg = config or MLPGeneratorOptions()
        layers: list[nn.Module] = []
        width = cfg.latent_dim
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, cfg.out_features))
        if cfg.output == "tanh":
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        out = self.net(z.flatten(1))
        if self.config.image_shape is not None:
            out = out.view(out.shape[0], *self.config.image_shape)
        return out


class MLPDiscriminator(nn.Module):
    """Flattened input -> Linear+LeakyReLU(0.2) per hidden width -> one raw logit, shape (N,)."""

    sizing: ClassVar[Sizing] = Sizing({"image_shape": "image_shape", "features": "in_features"})

    @classmethod
    def capabilities(cls, options: MLPDiscriminatorOptions) -> Capabilities:
        image = options.image_shape is not None
        side = options.image_shape[-1] if image and len(options.image_shape) == 3 else None
        return Capabilities(
            takes="image" if image else "points", heads=("logit",), image_size=side, label="MLP discriminator"
        )

    def __init__(self, config: MLPDiscriminatorOptions | None = None):
        super().__init__()
        self.config = cfg = config or MLPDiscriminatorOptions()
        layers: list[nn.Module] = []
        width = cfg.in_features
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]  # slope as in DCGAN (Radford et al. 2016)
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).view(x.shape[0])
