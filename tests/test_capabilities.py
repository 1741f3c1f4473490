"""Networks declare what they can do (cyclekit.models.capabilities), known without data on the meta
device, and the recipes ask those declarations instead of naming networks: a network the recipes
have never heard of, registered here with its own declarations, goes through their checks."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

from cyclekit.errors import ConfigError
from cyclekit.models import (
    MODELS,
    Capabilities,
    Condition,
    FeatureTaps,
    ModelEntry,
    Sizing,
    build_model,
    build_on_meta,
    capabilities,
    feature_channels,
    sizing,
)
from cyclekit.models.capabilities import Declares
from cyclekit.recipes import RECIPES, load_config

# Options every registered network needs beyond its defaults to be built at all.
NEEDS_OPTIONS: dict[str, dict[str, Any]] = {"stackgan_chain": {"stage1": {}, "stage2": {}}}

CUT_LAYERS = [0, 4, 8, 12, 16]  # the layers the CUT reference taps in its ResNet generator (nce_layers)


# -- every registered network ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_network_declares_its_capabilities_without_data(name: str):
    options = NEEDS_OPTIONS.get(name, {})
    entry = MODELS[name]
    assert isinstance(entry.build, Declares), f"{name} declares no capabilities"
    rng = torch.get_rng_state()
    caps = capabilities(name, options)
    net = build_on_meta(name, options)
    assert torch.equal(rng, torch.get_rng_state())  # nothing drawn from the global RNG
    assert all(p.is_meta for p in net.parameters())  # no memory, no data
    assert isinstance(caps, Capabilities)
    assert caps.takes in ("image", "latent", "points") and caps.heads
    assert caps.size_multiple >= 1 and caps.min_size >= 1
    assert caps.condition.kind in ("none", "class", "embedding")
    assert (caps.condition.size > 0) == (caps.condition.kind != "none")
    # What the data fills in names real options of the network.
    fields = {f.name for f in dataclasses.fields(entry.options)}
    for quantity, names in sizing(name).options.items():
        for option in (names,) if isinstance(names, str) else names:
            assert option in fields, f"{name}: sizing {quantity} -> {option} is not an option"
    if caps.depth_option is not None:
        assert caps.depth_option in fields
    if caps.feature_taps:
        assert isinstance(net, FeatureTaps)


@pytest.mark.parametrize(
    "name, options, expected",
    [
        ("resnet", {}, {"size_multiple": 4, "min_size": 8}),
        ("unet", {"n_downs": 6}, {"size_multiple": 64, "min_size": 64, "depth_option": "n_downs"}),
        ("patchgan", {"n_layers": 2}, {"min_size": 12, "heads": ("patch_logits",)}),
        ("dcgan_g", {"image_size": 28}, {"takes": "latent", "image_size": 28, "heads": ("image",)}),
        ("dcgan_d", {"image_size": 16}, {"image_size": 16, "heads": ("logit",)}),
        ("mlp_g", {}, {"takes": "latent", "heads": ("points",)}),
        ("mlp_d", {"image_shape": [1, 8, 8]}, {"takes": "image", "heads": ("logit",), "image_size": 8}),
        ("cond_g", {"n_classes": 7}, {"takes": "latent", "condition": Condition("class", 7)}),
        ("cond_d", {"head": "concat", "n_classes": 7}, {"heads": ("logit",), "condition": Condition("class", 7)}),
        ("cond_d", {"head": "aux"}, {"heads": ("logit", "classes"), "condition": Condition()}),
        ("cond_d", {"head": "classes"}, {"heads": ("classes",), "condition": Condition()}),
        ("began_g", {"image_size": 32}, {"takes": "latent", "image_size": 32}),
        ("began_d", {}, {"heads": ("reconstruction",)}),
        ("stackgan_g1", {"embed_dim": 12}, {"takes": "latent", "condition": Condition("embedding", 12)}),
        ("stackgan_g2", {"embed_dim": 12}, {"takes": "image", "heads": ("image", "mu", "log_sigma")}),
        ("stackgan_d", {"embed_dim": 12}, {"heads": ("logit",), "condition": Condition("embedding", 12)}),
    ],
)
def test_declared_capabilities_follow_the_options(name: str, options: dict, expected: dict):
    caps = capabilities(name, options)
    assert {k: getattr(caps, k) for k in expected} == expected


def test_fixed_sizes_are_declared_by_the_class():
    assert sizing("began_g").image_sizes == (16, 32, 64, 128) and sizing("began_g").rule == "8 x 2^k"
    assert sizing("dcgan_d").image_sizes == (16, 28, 32, 64)
    assert sizing("cond_g").takes("n_classes") and not sizing("dcgan_g").takes("n_classes")
    assert sizing("resnet").image_sizes == ()
    assert sizing("began_d").sizes_text() == "8 x 2^k: 16, 32, 64 or 128"


def test_the_built_networks_agree_with_their_declarations():
    """Small real builds: the declared sizes are the ones the networks take and give."""
    torch.manual_seed(0)
    unet = build_model("unet", {"n_downs": 5, "ngf": 4})
    assert (unet.size_multiple, unet.min_size) == (32, 32)
    assert unet(torch.zeros(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    caps = capabilities("patchgan", {"n_layers": 2, "ndf": 4})
    d = build_model("patchgan", {"n_layers": 2, "ndf": 4})
    assert d(torch.zeros(1, 3, caps.min_size, caps.min_size)).shape[-1] == 1  # the smallest input: one patch
    with pytest.raises((RuntimeError, ValueError)):  # a map too small to normalise, or to convolve
        d(torch.zeros(1, 3, caps.min_size - 1, caps.min_size - 1))
    g = build_model("dcgan_g", {"image_size": 16, "ngf": 4, "latent_dim": 5})
    assert g(torch.zeros(2, 5)).shape[-1] == capabilities("dcgan_g", {"image_size": 16}).image_size


# -- feature taps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"ngf": 4, "n_blocks": 9},
        {"ngf": 4, "n_blocks": 6, "upsample": "resize"},
        {"ngf": 4, "n_blocks": 9, "upsample": "resize", "padding": "zero"},
    ],
)
def test_resnet_feature_taps_match_their_declared_channels(options: dict):
    torch.manual_seed(0)
    g = build_model("resnet", options)
    assert capabilities("resnet", options).feature_taps == len(g.model)
    declared = feature_channels("resnet", options, CUT_LAYERS)  # meta device: nothing runs
    assert declared == [3, 8, 16, 16, 16]  # padded input, first downsampling, second, inside the blocks
    x = torch.randn(2, 3, 32, 32)
    feats = g.features(x, CUT_LAYERS)
    assert [f.shape[1] for f in feats] == declared
    assert [f.shape[0] for f in feats] == [2] * len(CUT_LAYERS)
    # The same activations the full forward computes, in the order asked.
    expected, h = [], x
    for i, layer in enumerate(g.model):
        h = layer(h)
        if i in CUT_LAYERS:
            expected.append(h)
    assert all(torch.equal(a, b) for a, b in zip(feats, expected, strict=True))
    reordered = g.features(x, [16, 0])
    assert torch.equal(reordered[0], feats[-1]) and torch.equal(reordered[1], feats[0])
    assert g.feature_channels([len(g.model) - 1]) == [3]  # the output


def test_bad_feature_taps_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^model: ResnetGenerator.feature_channels: layer 99 is not one of its"):
        feature_channels("resnet", {"n_blocks": 1}, [0, 99])
    with pytest.raises(ConfigError, match="^model: model 'patchgan' has no feature taps$"):
        feature_channels("patchgan", {}, [0])
    with pytest.raises(ValueError, match="no layers asked for"):
        build_model("resnet", {"ngf": 2, "n_blocks": 1}).features(torch.zeros(1, 3, 8, 8), [])


# -- the one-line refusals, now from the declarations --------------------------------------------


def test_size_refusals_keep_their_one_line_errors():
    with pytest.raises(ConfigError) as info:
        load_config("facades", ["data.load_size=72", "data.crop_size=64"])
    assert str(info.value) == (
        "data.crop_size: 64 is not a multiple of 256 (a U-Net with n_downs 8 halves it 8 times), which the unet "
        "generator needs; use data.crop_size=256, or model.generator.n_downs=6 for 64 px"
    )
    with pytest.raises(ConfigError) as info:
        load_config("horse2zebra", ["data.load_size=36", "data.crop_size=16"])
    assert str(info.value) == "data.crop_size: 16 is too small for a PatchGAN with n_layers 3; it needs at least 24"
    with pytest.raises(ConfigError, match=r"^data.crop_size: 30 is not a multiple of 4, which the resnet generator"):
        load_config("horse2zebra", ["data.load_size=36", "data.crop_size=30"])
    with pytest.raises(ConfigError) as info:
        load_config("digits-began", ["data.digits.size=24"])
    assert str(info.value) == (
        "data.size: 24 px does not fit the began_g network, whose side is 8 x 2^k: 16, 32, 64 or 128 px"
    )


@pytest.mark.parametrize(
    "preset, setting, message",
    [
        ("digits-cgan", "model.discriminator.head=aux", "model.discriminator: cgan needs D(x, y): name cond_d"),
        ("digits-acgan", "model.discriminator.head=classes", "model.discriminator: acgan needs D(x) -> (logit,"),
        ("digits-acgan", "model.generator={name: dcgan_g}", "model.generator: acgan needs G(z, y): name cond_g"),
        ("digits-sgan", "model.discriminator={name: dcgan_d}", "model.discriminator: sgan needs D(x) -> K class"),
        ("digits-sgan", "model.discriminator.head=aux", "model.discriminator: sgan needs D(x) -> K class"),
    ],
)
def test_head_and_condition_refusals(preset: str, setting: str, message: str):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        load_config(preset, [setting])


# -- networks the recipes have never heard of -----------------------------------------------------


@dataclass(frozen=True)
class FakeOptions:
    in_channels: int = 3
    out_channels: int = 3
    depth: int = 3  # halvings: sides must be multiples of 2**depth
    least: int = 1  # the smallest side it takes


class FakeTranslator(nn.Module):
    """Image -> image through one conv; declares whatever its options say."""

    sizing: ClassVar[Sizing] = Sizing({"channels": ("in_channels", "out_channels")})

    @classmethod
    def capabilities(cls, options: FakeOptions) -> Capabilities:
        multiple = 2**options.depth
        return Capabilities(
            size_multiple=multiple, min_size=max(multiple, options.least), label="fake net", depth_option="depth"
        )

    def __init__(self, config: FakeOptions | None = None) -> None:
        super().__init__()
        self.config = config or FakeOptions()
        self.conv = nn.Conv2d(self.config.in_channels, self.config.out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


@dataclass(frozen=True)
class FakeCriticOptions:
    in_channels: int = 3
    least: int = 300


class FakeCritic(nn.Module):
    """A discriminator with a minimum side and no depth option."""

    sizing: ClassVar[Sizing] = Sizing({"channels": "in_channels"})

    @classmethod
    def capabilities(cls, options: FakeCriticOptions) -> Capabilities:
        return Capabilities(heads=("patch_logits",), min_size=options.least)

    def __init__(self, config: FakeCriticOptions | None = None) -> None:
        super().__init__()
        self.config = config or FakeCriticOptions()
        self.conv = nn.Conv2d(self.config.in_channels, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


@dataclass(frozen=True)
class FakeSamplerOptions:
    channels: int = 3
    image_size: int = 64
    classes: int = 2  # the data's class count lands here: its sizing says so
    latent: int = 1
    two_heads: bool = True
    takes_class: bool = False


class FakeSampler(nn.Module):
    """G(z[, y]) or D(x[, y]) -> heads, as its options declare; built for sides 16 and 40 only."""

    sizing: ClassVar[Sizing] = Sizing(
        {"channels": "channels", "image_size": "image_size", "n_classes": "classes", "latent_dim": "latent"},
        image_sizes=(16, 40),
    )

    @classmethod
    def capabilities(cls, options: FakeSamplerOptions) -> Capabilities:
        return Capabilities(
            heads=("logit", "classes") if options.two_heads else ("logit",),
            condition=Condition("class", options.classes) if options.takes_class else Condition(),
            takes="latent" if options.takes_class else "image",
            image_size=options.image_size,
        )

    def __init__(self, config: FakeSamplerOptions | None = None) -> None:
        super().__init__()
        self.config = config or FakeSamplerOptions()
        self.scale = nn.Parameter(torch.ones(()))


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODELS, "fake_g", ModelEntry(FakeOptions, FakeTranslator, "generator"))
    monkeypatch.setitem(MODELS, "fake_d", ModelEntry(FakeCriticOptions, FakeCritic, "discriminator"))
    monkeypatch.setitem(MODELS, "fake_sampler", ModelEntry(FakeSamplerOptions, FakeSampler, "discriminator"))


def test_a_new_generator_gets_the_crop_checks_from_its_declarations(fakes: None):
    cfg = load_config("facades", ["model.generator={name: fake_g, depth: 3}", "data.load_size=72", "data.crop_size=64"])
    assert cfg.model.generator["name"] == "fake_g"
    with pytest.raises(ConfigError) as info:
        load_config("facades", ["model.generator={name: fake_g, depth: 7}", "data.load_size=72", "data.crop_size=64"])
    assert str(info.value) == (
        "data.crop_size: 64 is not a multiple of 128 (a fake net with depth 7 halves it 7 times), which the fake_g "
        "generator needs; use data.crop_size=128, or model.generator.depth=6 for 64 px"
    )
    with pytest.raises(ConfigError, match=r"^data.crop_size: 64 is smaller than 96 px .*use data.crop_size=96"):
        load_config("horse2zebra", ["model.generator={name: fake_g, depth: 2, least: 96}", "data.crop_size=64"])


def test_a_new_discriminator_gets_the_minimum_side_check(fakes: None):
    with pytest.raises(ConfigError) as info:
        load_config("horse2zebra", ["model.discriminator={name: fake_d}"])
    assert str(info.value) == "data.crop_size: 256 is too small for the fake_d discriminator; it needs at least 300"
    load_config("horse2zebra", ["model.discriminator={name: fake_d, least: 256}"])


def test_a_new_conditional_pair_passes_the_sampler_checks(fakes: None):
    """acgan reads heads (logit, classes) from D and a class condition in G: any networks declaring them do."""
    d = "model.discriminator={name: fake_sampler}"
    g = "model.generator={name: fake_sampler, two_heads: false, takes_class: true}"
    cfg = load_config("digits-acgan", [d, g])
    recipe = RECIPES["acgan"]
    _, d_opts = recipe.net_spec(cfg, "discriminator")
    _, g_opts = recipe.net_spec(cfg, "generator")
    # The data's sizes land in the options the networks' sizing names (the digits: 1 x 16 x 16, 10 classes).
    assert (d_opts["channels"], d_opts["image_size"], d_opts["classes"]) == (1, 16, 10)
    assert (g_opts["latent"], g_opts["classes"]) == (cfg.options.latent_dim, 10)
    with pytest.raises(ConfigError, match=r"^model.discriminator: acgan needs D\(x\) -> \(logit, class logits\)"):
        load_config("digits-acgan", ["model.discriminator={name: fake_sampler, two_heads: false}", g])
    with pytest.raises(ConfigError, match=r"^model.generator: acgan needs G\(z, y\)"):
        load_config("digits-acgan", [d, "model.generator={name: fake_sampler}"])
    # cgan: a D that takes the class and gives one logit.
    load_config("digits-cgan", ["model.discriminator={name: fake_sampler, two_heads: false, takes_class: true}", g])


def test_a_new_fixed_size_network_gets_the_size_check(fakes: None):
    with pytest.raises(ConfigError) as info:
        load_config("digits-began", ["model.discriminator={name: fake_sampler}", "data.digits.size=32"])
    # began_g is checked first and takes 32; then the fake one, built for 16 and 40 only.
    assert str(info.value) == "data.size: 32 px does not fit the fake_sampler network, whose side is 16 or 40 px"
