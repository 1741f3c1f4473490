"""Model registry: name -> (frozen options dataclass, builder), validated from plain dicts.

An explicit dict, no decorators or import side effects: adding a model means adding one line
to `MODELS`. Options arrive from YAML, so every key, type and value is checked and errors name
the dotted config key (``model.generator.n_blocks: ...``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple, Union

from torch import nn

from cyclekit.errors import ConfigError
from cyclekit.models.dcgan import (
    DCGANDiscriminator,
    DCGANDiscriminatorOptions,
    DCGANGenerator,
    DCGANGeneratorOptions,
)
from cyclekit.models.mlp import MLPDiscriminator, MLPDiscriminatorOptions, MLPGenerator, MLPGeneratorOptions
from cyclekit.models.patchgan import PatchGAN, PatchGANOptions
from cyclekit.models.resnet import ResnetGenerator, ResnetOptions


class ModelEntry(NamedTuple):
    """One registered model: its options dataclass, a builder taking an instance of it, its role."""

    options: type
    build: Callable[[Any], nn.Module]
    role: Literal["generator", "discriminator"]


MODELS: dict[str, ModelEntry] = {
    "resnet": ModelEntry(ResnetOptions, ResnetGenerator, "generator"),
    "patchgan": ModelEntry(PatchGANOptions, PatchGAN, "discriminator"),
    "dcgan_g": ModelEntry(DCGANGeneratorOptions, DCGANGenerator, "generator"),
    "dcgan_d": ModelEntry(DCGANDiscriminatorOptions, DCGANDiscriminator, "discriminator"),
    "mlp_g": ModelEntry(MLPGeneratorOptions, MLPGenerator, "generator"),
    "mlp_d": ModelEntry(MLPDiscriminatorOptions, MLPDiscriminator, "discriminator"),
}


def list_models(role: str | None = None) -> list[str]:
    """Registered model names, sorted; only generators or discriminators if ``role`` is given."""
    return sorted(name for name, entry in MODELS.items() if role is None or entry.role == role)


def _entry(name: str, key: str) -> ModelEntry:
    if name not in MODELS:
        raise ConfigError(f"{key}: unknown model '{name}'; known: {', '.join(list_models())}")
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
            raise ConfigError(f"{key}.{opt}: unknown option for '{name}'; valid: {', '.join(fields)}")
        kwargs[opt] = _coerce(hints[opt], value, f"{key}.{opt}")
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


def options_dict(opts: Any) -> dict[str, Any]:
    """A resolved options dataclass (e.g. ``model.config``) as a JSON-safe dict; tuples become lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(opts).items()}


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against type hint ``tp``: int is accepted for float, a list for a tuple."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, where)
    if origin is Literal:
        # Compare types too, so 28.0 or True never pass for 28 or 1.
        if not any(value == a and type(value) is type(a) for a in args):
            raise ConfigError(f"{where}: expected one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"{where}: unsupported option type {tp!r}")  # a bug in an options dataclass


def _describe(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"
