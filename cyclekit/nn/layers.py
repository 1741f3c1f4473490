"""Small convolutional building blocks shared by the generators and discriminators.

Everything here follows the CycleGAN reference implementation
(junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``) so parameter counts match it.
"""

from __future__ import annotations

from torch import Tensor, nn

from cyclekit.choices import NORMS, PADDINGS, NormKind, PaddingKind
from cyclekit.errors import ConfigError

__all__ = [
    "NORMS",
    "PADDINGS",
    "NormKind",
    "PaddingKind",
    "ResnetBlock",
    "conv_bias",
    "conv_norm_act",
    "norm_layer",
    "padding_layers",
]


def _check_choice(kind: str, choices: tuple[str, ...], what: str, key: str) -> None:
    if kind not in choices:
        raise ConfigError(f"{key}: unknown {what} {kind!r}; valid: {', '.join(choices)}")


def norm_layer(kind: str, channels: int, *, key: str = "norm") -> nn.Module:
    """A 2-D normalisation layer for ``channels`` feature maps.

    ``instance``: InstanceNorm2d without affine parameters or running stats, as the reference
    (Ulyanov et al. 2016; Zhu et al. 2017, Sec. 4). ``batch``: BatchNorm2d with affine parameters.
    ``layer``: GroupNorm with one group, i.e. layer norm over (C, H, W) with a per-channel affine;
    the per-sample norm that WGAN-GP recommends instead of batch norm (Gulrajani et al. 2017, Sec. 4).
    ``none``: Identity.
    """
    _check_choice(kind, NORMS, "norm", key)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels, affine=True)
    return nn.Identity()


def conv_bias(norm: str) -> bool:
    """Whether a conv followed by ``norm`` gets a bias.

    The reference sets ``use_bias = norm_layer == InstanceNorm2d``: batch (and layer) norm have
    their own shift, which would make a conv bias redundant; instance norm in the reference has
    no affine shift, and without any norm the bias is needed.
    """
    return norm in ("instance", "none")


def padding_layers(kind: str, amount: int, *, key: str = "padding") -> tuple[list[nn.Module], int]:
    """Explicit padding layers plus the ``padding=`` to give the following conv.

    ``reflect``/``replicate`` return a pad module and 0; ``zero`` returns no module and
    ``amount``, letting the conv zero-pad itself.
    """
    _check_choice(kind, PADDINGS, "padding", key)
    if kind == "reflect":
        return [nn.ReflectionPad2d(amount)], 0
    if kind == "replicate":
        return [nn.ReplicationPad2d(amount)], 0
    return [], amount


def conv_norm_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int = 0,
    norm: str = "instance",
    act: nn.Module | None = None,
    bias: bool | None = None,
) -> list[nn.Module]:
    """``[Conv2d, norm, act]`` as a list to splice into an ``nn.Sequential``.

    ``bias=None`` picks the reference rule (`conv_bias`); ``act=None`` means no activation.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            bias=conv_bias(norm) if bias is None else bias,
        ),
        norm_layer(norm, out_channels),
    ]
    if act is not None:
        layers.append(act)
    return layers


class ResnetBlock(nn.Module):
    """Residual block: x + (pad-conv3x3-norm-ReLU-[dropout]-pad-conv3x3-norm)(x).

    He et al. 2016, as used by Johnson et al. 2016 and the CycleGAN generator
    (Zhu et al. 2017, appendix 7.2). No ReLU after the addition, as in the reference; the
    submodule is named ``conv_block`` like the reference's so its state dicts load unchanged.
    """

    def __init__(self, channels: int, *, norm: str = "instance", padding: str = "reflect", dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        pad, p = padding_layers(padding, 1)
        layers += pad + conv_norm_act(channels, channels, 3, padding=p, norm=norm, act=nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        pad, p = padding_layers(padding, 1)
        layers += pad + conv_norm_act(channels, channels, 3, padding=p, norm=norm)
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)
