"""Model registry: name -> (frozen options dataclass, builder), validated from plain dicts.

An explicit dict, no decorators or import side effects: adding a model means adding one line
to `MODELS`. Options arrive from YAML, so every key, type and value is checked and errors name
the dotted config key (``model.generator.n_blocks: ...``).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from cyclekit.errors import ConfigError, did_you_mean
from cyclekit.models.began import (
    BeganDiscriminator,
    BeganDiscriminatorOptions,
    BeganGenerator,
    BeganGeneratorOptions,
)
from cyclekit.models.capabilities import NO_SIZING, Capabilities, FeatureTaps, Sizing
from cyclekit.models.conditional import (
    CondDiscriminatorOptions,
    CondGeneratorOptions,
    ConditionalDiscriminator,
    ConditionalGenerator,
)
from cyclekit.models.dcgan import (
    DCGANDiscriminator,
    DCGANDiscriminatorOptions,
    DCGANGenerator,
    DCGANGeneratorOptions,
)
from cyclekit.models.improved import (
    ImprovedDiscriminatorOptions,
    ImprovedGANDiscriminator,
    ImprovedGANGenerator,
    ImprovedGeneratorOptions,
)
from cyclekit.models.mlp import MLPDiscriminator, MLPDiscriminatorOptions, MLPGenerator, MLPGeneratorOptions
from cyclekit.models.patchgan import PatchGAN, PatchGANOptions
from cyclekit.models.resnet import ResnetGenerator, ResnetOptions
from cyclekit.models.stackgan import (
    StackChain,
    StackChainOptions,
    StageDiscriminator,
    StageDiscriminatorOptions,
    StageIGenerator,
    StageIGeneratorOptions,
    StageIIGenerator,
    StageIIGeneratorOptions,
)
from cyclekit.models.unet import UnetGenerator, UnetOptions
from cyclekit.typed import coerce


class ModelEntry(NamedTuple):
    """One registered model: its options dataclass, a builder taking an instance of it, its role."""

    options: type
    build: Callable[[Any], nn.Module]
    role: Literal["generator", "discriminator"]


MODELS: dict[str, ModelEntry] = {
    "resnet": ModelEntry(ResnetOptions, ResnetGenerator, "generator"),
    "unet": ModelEntry(UnetOptions, UnetGenerator, "generator"),
    "patchgan": ModelEntry(PatchGANOptions, PatchGAN, "discriminator"),
    "dcgan_g": ModelEntry(DCGANGeneratorOptions, DCGANGenerator, "generator"),
    "dcgan_d": ModelEntry(DCGANDiscriminatorOptions, DCGANDiscriminator, "discriminator"),
    "mlp_g": ModelEntry(MLPGeneratorOptions, MLPGenerator, "generator"),
    "mlp_d": ModelEntry(MLPDiscriminatorOptions, MLPDiscriminator, "discriminator"),
    "improved_g": ModelEntry(ImprovedGeneratorOptions, ImprovedGANGenerator, "generator"),
    "improved_d": ModelEntry(ImprovedDiscriminatorOptions, ImprovedGANDiscriminator, "discriminator"),
    "cond_g": ModelEntry(CondGeneratorOptions, ConditionalGenerator, "generator"),
    "cond_d": ModelEntry(CondDiscriminatorOptions, ConditionalDiscriminator, "discriminator"),
    "began_g": ModelEntry(BeganGeneratorOptions, BeganGenerator, "generator"),
    "began_d": ModelEntry(BeganDiscriminatorOptions, BeganDiscriminator, "discriminator"),
    "stackgan_g1": ModelEntry(StageIGeneratorOptions, StageIGenerator, "generator"),
    "stackgan_g2": ModelEntry(StageIIGeneratorOptions, StageIIGenerator, "generator"),
    "stackgan_d": ModelEntry(StageDiscriminatorOptions, StageDiscriminator, "discriminator"),
    "stackgan_chain": ModelEntry(StackChainOptions, StackChain, "generator"),
}


def list_models(role: str | None = None) -> list[str]:
    """Registered model names, sorted; only generators or discriminators if ``role`` is given."""
    return sorted(name for name, entry in MODELS.items() if role is None or entry.role == role)


def _entry(name: str, key: str) -> ModelEntry:
    if name not in MODELS:
        raise ConfigError(
            f"{key}: unknown model '{name}'{did_you_mean(name, MODELS)}; known: {', '.join(list_models())}"
        )
    return MODELS[name]


def resolve_options(name: str, options: Mapping[str, Any] | None = None, *, key: str = "model") -> Any:
    """Validate ``options`` for model ``name`` and return its frozen options dataclass.

    A ``name`` entry equal to ``name`` is ignored, so a whole config section
    (``{"name": "resnet", "n_blocks": 6}``) can be passed as it is.
    """
    entry = _entry(name, key)
    options = dict(options or {})
    if options.get("name", name) != name:
        raise ConfigError(f"{key}.name: {options['name']!r} does not match model '{name}'")
    options.pop("name", None)

    fields = [f.name for f in dataclasses.fields(entry.options)]
    hints = typing.get_type_hints(entry.options)
    kwargs = {}
    for opt, value in options.items():
        if opt not in fields:
            raise ConfigError(
                f"{key}.{opt}: unknown option for '{name}'{did_you_mean(opt, fields)}; valid: {', '.join(fields)}"
            )
        kwargs[opt] = coerce(hints[opt], value, f"{key}.{opt}")
    try:
        return entry.options(**kwargs)
    except ConfigError as exc:
        # Value checks in __post_init__ name the bare option; add the config path in front.
        raise ConfigError(f"{key}.{exc}") from None


def build_model(name: str, options: Mapping[str, Any] | None = None, *, key: str = "model") -> nn.Module:
    """Build model ``name`` from plain (YAML/JSON) ``options``; the result keeps them as ``.config``."""
    return _entry(name, key).build(resolve_options(name, options, key=key))


def model_options(name: str, options: Mapping[str, Any] | None = None, *, key: str = "model") -> dict[str, Any]:
    """All options of model ``name`` with defaults filled in, as a JSON-safe dict.

    ``build_model(name, model_options(name, opts))`` rebuilds the same architecture.
    """
    return options_dict(resolve_options(name, options, key=key))


def sizing(name: str, *, key: str = "model") -> Sizing:
    """What the data decides of model ``name`` (the options it fills in, the fixed image sides),
    known from the class alone, before any option is read. Undeclared: nothing."""
    return getattr(_entry(name, key).build, "sizing", NO_SIZING)


def capabilities(name: str, options: Mapping[str, Any] | None = None, *, key: str = "model") -> Capabilities:
    """What model ``name`` with ``options`` takes and gives (`cyclekit.models.capabilities`), from
    its options alone: nothing is built and no data is read. A builder that declares nothing is
    built on the meta device for its ``size_multiple`` and ``min_size``."""
    entry = _entry(name, key)
    resolved = resolve_options(name, options, key=key)
    declare = getattr(entry.build, "capabilities", None)
    if callable(declare):
        return declare(resolved)
    net = build_on_meta(name, resolved, key=key)
    return Capabilities(size_multiple=int(getattr(net, "size_multiple", 1)), min_size=int(getattr(net, "min_size", 1)))


def build_on_meta(name: str, options: Any = None, *, key: str = "model") -> nn.Module:
    """Model ``name`` built on the meta device: its shapes without memory or data. The global RNG is
    left as it was (building initialises weights; a draw here would change the following training
    steps and break exact resume). ``options``: plain options or a resolved options dataclass."""
    entry = _entry(name, key)
    if not isinstance(options, entry.options):
        options = resolve_options(name, options, key=key)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return entry.build(options)


def feature_channels(
    name: str, options: Mapping[str, Any] | None, layers: Sequence[int], *, key: str = "model"
) -> list[int]:
    """The channel counts of model ``name``'s feature taps at ``layers`` (`FeatureTaps`), from a copy
    built on the meta device: what a head sized from them needs, before any data is seen."""
    net = build_on_meta(name, options, key=key)
    if not isinstance(net, FeatureTaps):
        raise ConfigError(f"{key}: model '{name}' has no feature taps")
    try:
        return net.feature_channels(layers)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def options_dict(opts: Any) -> dict[str, Any]:
    """A resolved options dataclass (e.g. ``model.config``) as a JSON-safe dict; tuples become lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(opts).items()}
