"""N-layer PatchGAN discriminator (Isola et al. 2017; Zhu et al. 2017, appendix 7.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from cyclekit.models._checks import positive
from cyclekit.models.capabilities import Capabilities, Sizing
from cyclekit.nn.layers import NormKind, conv_norm_act


@dataclass(frozen=True)
class PatchGANOptions:
    """Options of `PatchGAN`; the defaults are the 70x70 PatchGAN ("C64-C128-C256-C512")."""

    in_channels: int = 3
    ndf: int = 64
    n_layers: int = 3  # 3 -> 70x70 receptive field: Zhu et al. 2017, appendix 7.2
    norm: NormKind = "instance"

    def __post_init__(self) -> None:
        positive(self, "in_channels", "ndf", "n_layers")


class PatchGAN(nn.Module):
    """Fully convolutional discriminator scoring overlapping patches; returns raw logits (N, 1, h, w).

    No sigmoid: the loss (LSGAN, BCE-with-logits, hinge, WGAN) decides how to use the scores.
    With the defaults a 256 px input gives 30x30 patches, 64 px gives 6x6, 32 px gives 2x2;
    inputs need at least 3 * 2**n_layers px (24 by default): n_layers halvings, then two
    stride-1 4x4 convs that each remove one pixel.
    Layer order and the ``model`` attribute name follow the reference ``NLayerDiscriminator``.
    """

    def __init__(self, config: PatchGANOptions | None = None):
        super().__init__()
        self.config = cfg = config or PatchGANOptions()
        lrelu = 0.2  # LeakyReLU slope: Zhu et al. 2017, appendix 7.2
        # First layer: no norm ("We do not use InstanceNorm for the first C64 layer").
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, cfg.ndf, 4, stride=2, padding=1), nn.LeakyReLU(lrelu)]
        mult = 1
        for n in range(1, cfg.n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < cfg.n_layers else 1  # the last feature block keeps the resolution
            layers += conv_norm_act(
                cfg.ndf * prev, cfg.ndf * mult, 4, stride=stride, padding=1, norm=cfg.norm, act=nn.LeakyReLU(lrelu)
            )
        layers.append(nn.Conv2d(cfg.ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    sizing: ClassVar[Sizing] = Sizing({"channels": "in_channels"})

    @classmethod
    def capabilities(cls, options: PatchGANOptions) -> Capabilities:
        """Image -> a map of patch logits; at least 3 * 2**n_layers px (see the class docstring)."""
        return Capabilities(
            heads=("patch_logits",), min_size=3 * 2**options.n_layers, label="PatchGAN", depth_option="n_layers"
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
