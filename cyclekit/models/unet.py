"""U-Net generator of pix2pix (Isola et al. 2017, Sec. 3.2.1 and appendix 6.1.1).

An encoder-decoder whose decoder block i also sees the encoder's feature map of the same size
(skip connections), so low-level structure (edges, layout) can pass straight through. Built
recursively from the outermost block inward, exactly as the reference `UnetGenerator` /
`UnetSkipConnectionBlock` (junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py), so the
parameter counts and state dict keys are the reference's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from cyclekit.errors import ConfigError
from cyclekit.models._checks import positive, probability
from cyclekit.models.capabilities import Capabilities, Sizing
from cyclekit.nn.layers import conv_bias, norm_layer

MIN_DOWNS = 5  # the fixed outer blocks: ngf -> 2 ngf -> 4 ngf -> 8 ngf, plus the innermost


@dataclass(frozen=True)
class UnetOptions:
    """Options of `UnetGenerator`; the defaults are the reference ``unet_256``.

    ``n_downs``: number of stride-2 downsamplings; the input side must be a multiple of
    2**n_downs (8 -> 256 px gives a 1x1 bottleneck: unet_256; 7: unet_128; 6 for 64 px runs).
    ``dropout``: rate in the 8*ngf decoder blocks between the innermost block and the 4*ngf level
    (n_downs - 5 of them: three for unet_256, Isola et al. 2017, appendix 6.1.1 "CD512").
    """

    in_channels: int = 3
    out_channels: int = 3
    n_downs: int = 8
    ngf: int = 64
    norm: str = "batch"  # batch (the paper) or instance; batch is per-sample at test time, see pix2pix
    dropout: float = 0.5

    def __post_init__(self) -> None:
        positive(self, "in_channels", "out_channels", "ngf")
        if self.n_downs < MIN_DOWNS:
            raise ConfigError(f"n_downs: must be >= {MIN_DOWNS}, got {self.n_downs}")
        if self.norm not in ("batch", "instance"):
            raise ConfigError(f"norm: the U-Net takes batch or instance, got {self.norm!r}")
        probability(self, "dropout")


class UnetSkipBlock(nn.Module):
    """One level: down (LeakyReLU-conv4x4/2-norm), the inner levels, up (ReLU-convT4x4/2-norm),
    then the input concatenated with the result (the skip). The outermost block has no skip,
    no norm and ends in tanh; the innermost has no inner levels and no down-norm."""

    def __init__(
        self,
        outer: int,
        inner: int,
        *,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        bias = conv_bias(norm)
        input_nc = outer if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner, 4, stride=2, padding=1, bias=bias)
        downrelu = nn.LeakyReLU(0.2, True)  # "LeakyReLUs with slope 0.2" in the encoder: appendix 6.1.1
        if outermost:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1)
            layers = [downconv, submodule, nn.ReLU(True), up, nn.Tanh()]
        elif innermost:
            up = nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, nn.ReLU(True), up, norm_layer(norm, outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=bias)
            layers = [
                downrelu,
                downconv,
                norm_layer(norm, inner),
                submodule,
                nn.ReLU(True),
                up,
                norm_layer(norm, outer),
            ]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """Image -> image of the same size (sides multiples of `size_multiple`), tanh output."""

    def __init__(self, config: UnetOptions | None = None):
        super().__init__()
        self.config = cfg = config or UnetOptions()
        g, kw = cfg.ngf, {"norm": cfg.norm}
        block = UnetSkipBlock(g * 8, g * 8, innermost=True, **kw)
        for _ in range(cfg.n_downs - MIN_DOWNS):
            block = UnetSkipBlock(g * 8, g * 8, submodule=block, dropout=cfg.dropout, **kw)
        block = UnetSkipBlock(g * 4, g * 8, submodule=block, **kw)
        block = UnetSkipBlock(g * 2, g * 4, submodule=block, **kw)
        block = UnetSkipBlock(g, g * 2, submodule=block, **kw)
        self.model = UnetSkipBlock(cfg.out_channels, g, input_nc=cfg.in_channels, submodule=block, outermost=True, **kw)

    sizing: ClassVar[Sizing] = Sizing({"channels": ("in_channels", "out_channels")})

    @classmethod
    def capabilities(cls, options: UnetOptions) -> Capabilities:
        """Image -> image; sides multiples of 2**n_downs (n_downs halvings down to the bottleneck),
        and at least that: a 1x1 bottleneck is fine, no norm runs on it."""
        multiple = 2**options.n_downs
        return Capabilities(size_multiple=multiple, min_size=multiple, label="U-Net", depth_option="n_downs")

    @property
    def size_multiple(self) -> int:
        """Sides must be multiples of this: n_downs halvings down to the bottleneck."""
        return self.capabilities(self.config).size_multiple

    @property
    def min_size(self) -> int:
        return self.capabilities(self.config).min_size

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
