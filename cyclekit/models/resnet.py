"""ResNet generator of CycleGAN (Johnson et al. 2016; Zhu et al. 2017, appendix 7.2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor, nn

from cyclekit.errors import ConfigError
from cyclekit.models._checks import positive, probability
from cyclekit.models.capabilities import Capabilities, Sizing, check_layers
from cyclekit.nn.layers import NormKind, PaddingKind, ResnetBlock, conv_bias, norm_layer, padding_layers


@dataclass(frozen=True)
class ResnetOptions:
    """Options of `ResnetGenerator`; the defaults are the reference 256 px CycleGAN generator."""

    in_channels: int = 3
    out_channels: int = 3
    ngf: int = 64  # filters of the first layer: "c7s1-64" in Zhu et al. 2017, appendix 7.2
    n_blocks: int = 9  # 9 blocks for 256 px training images, 6 for 128 px (appendix 7.2)
    norm: NormKind = "instance"
    padding: PaddingKind = "reflect"  # padding inside the residual blocks (and resize upsampling)
    dropout: float = 0.0  # the reference's --no_dropout is the default for CycleGAN
    # transpose: fractionally-strided convs as the paper; resize: nearest x2 + conv, which avoids
    # checkerboard artifacts (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts").
    upsample: Literal["transpose", "resize"] = "transpose"

    def __post_init__(self) -> None:
        positive(self, "in_channels", "out_channels", "ngf")
        if self.n_blocks < 0:
            raise ConfigError(f"n_blocks: must be >= 0, got {self.n_blocks}")
        probability(self, "dropout")


N_DOWNSAMPLING = 2  # "d128, d256" then "u128, u64": Zhu et al. 2017, appendix 7.2


class ResnetGenerator(nn.Module):
    """c7s1-ngf, 2 stride-2 downsamplings, ``n_blocks`` residual blocks, 2 upsamplings, c7s1-out, tanh.

    Keeps height and width for inputs whose sides are multiples of 4. Layer order and the
    ``model`` attribute name follow the reference ``ResnetGenerator``, so its state dicts load.
    The 7x7 stem and head always use reflection padding, as in the reference.
    """

    def __init__(self, config: ResnetOptions | None = None):
        super().__init__()
        self.config = cfg = config or ResnetOptions()
        bias = conv_bias(cfg.norm)
        ngf = cfg.ngf

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(cfg.in_channels, ngf, 7, bias=bias),
            norm_layer(cfg.norm, ngf),
            nn.ReLU(),
        ]
        for i in range(N_DOWNSAMPLING):
            c = ngf * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), norm_layer(cfg.norm, 2 * c), nn.ReLU()]

        width = ngf * 2**N_DOWNSAMPLING
        layers += [
            ResnetBlock(width, norm=cfg.norm, padding=cfg.padding, dropout=cfg.dropout) for _ in range(cfg.n_blocks)
        ]

        for i in range(N_DOWNSAMPLING):
            c = ngf * 2 ** (N_DOWNSAMPLING - i)
            layers += _upsample(cfg.upsample, c, c // 2, cfg.padding, bias)
            layers += [norm_layer(cfg.norm, c // 2), nn.ReLU()]

        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, cfg.out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    sizing: ClassVar[Sizing] = Sizing({"channels": ("in_channels", "out_channels")})

    @classmethod
    def capabilities(cls, options: ResnetOptions) -> Capabilities:
        """Image -> image; sides multiples of 4 (two stride-2 downsamplings), at least 8 px (at 4 px
        the residual blocks would see 1x1 maps, which reflection padding cannot pad); every layer of
        ``model`` can be tapped."""
        multiple = 2**N_DOWNSAMPLING
        up = 3 if options.upsample == "transpose" else 4 + len(padding_layers(options.padding, 1)[0])
        n_layers = 4 + 3 * N_DOWNSAMPLING + options.n_blocks + N_DOWNSAMPLING * up + 3
        return Capabilities(
            size_multiple=multiple, min_size=2 * multiple, label="ResNet generator", feature_taps=n_layers
        )

    @property
    def size_multiple(self) -> int:
        """Sides must be multiples of this: two stride-2 downsamplings."""
        return self.capabilities(self.config).size_multiple

    @property
    def min_size(self) -> int:
        return self.capabilities(self.config).min_size

    def feature_channels(self, layers: Sequence[int]) -> list[int]:
        """Channels of the outputs of ``model[i]`` for each i in ``layers``, read off the layers
        (works on a network built on the meta device; nothing runs)."""
        layers = check_layers(layers, len(self.model), "ResnetGenerator.feature_channels")
        channels, c = [], self.config.in_channels
        for layer in self.model:
            c = int(getattr(layer, "out_channels", c))  # convs change it; norms, pads, blocks keep it
            channels.append(c)
        return [channels[i] for i in layers]

    def features(self, x: Tensor, layers: Sequence[int]) -> list[Tensor]:
        """The outputs of ``model[i]`` for each i in ``layers`` (in that order), running the layers
        only as far as the deepest one asked (as the CUT reference's ``encode_only``)."""
        layers = check_layers(layers, len(self.model), "ResnetGenerator.features")
        wanted, found = set(layers), {}
        for i, layer in enumerate(self.model):
            x = layer(x)
            if i in wanted:
                found[i] = x
                if len(found) == len(wanted):
                    break
        return [found[i] for i in layers]

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def _upsample(kind: str, in_ch: int, out_ch: int, padding: str, bias: bool) -> list[nn.Module]:
    """One x2 upsampling conv (without norm/activation)."""
    if kind == "transpose":
        return [nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1, bias=bias)]
    if kind == "resize":
        pad, p = padding_layers(padding, 1)
        return [nn.Upsample(scale_factor=2, mode="nearest"), *pad, nn.Conv2d(in_ch, out_ch, 3, padding=p, bias=bias)]
    raise ConfigError(f"upsample: unknown kind {kind!r}; valid: transpose, resize")
