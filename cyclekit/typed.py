"""The bottom-level typed loader: plain values (YAML, JSON) into frozen dataclasses, checked
against their type hints, with errors that name the dotted key (``data.crop_size: expected an
integer, got str 'x'``). Config sections, recipe and source options, network options and bundle
manifests are all read with it; it knows nothing of any of them.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union

from cyclekit.errors import ConfigError, did_you_mean


def positive(obj: Any, section: str, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            raise ConfigError(f"{section}.{name}: must be > 0, got {value}")


def plain(value: Any) -> Any:
    """Dataclass dicts -> YAML/JSON-safe plain values (tuples become lists, mappings dicts)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def from_dict(cls: type, data: Any, key: str = "") -> Any:
    """Build dataclass `cls` from a mapping, checking keys and types; errors name the dotted key.

    Value checks in the dataclass's ``__post_init__`` may name the bare field; the section path
    is put in front when missing.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{key or 'config'}: expected a mapping of keys, got {describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted((k for k in data if k not in fields), key=str)
    if unknown:
        where = f"{key}.{unknown[0]}" if key else str(unknown[0])
        raise ConfigError(f"{where}: unknown key{did_you_mean(unknown[0], fields)}; valid keys: {', '.join(fields)}")
    for name, f in fields.items():
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}.{name}: required" if key else f"{name}: required")
    kwargs = {name: coerce(hints[name], value, f"{key}.{name}" if key else name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        text = str(exc)
        if key and not text.startswith(key + ".") and text.split(":", 1)[0] in fields:
            text = f"{key}.{text}"
        raise ConfigError(text) from None


def coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against type hint ``tp`` (an int is a valid float, a list a tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, {} if value is None else value, key)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is Literal:
        # Compare types too, so 28.0 or True never pass for 28 or 1.
        if not any(value == a and type(value) is type(a) for a in args):
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if tp is Any:
        return value
    if origin in (Mapping, dict) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {describe(value)}")
        if len(args) == 2:
            return {coerce(args[0], k, f"{key} key"): coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
        return dict(value)
    if origin in (tuple, Sequence, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {describe(value)}")
        if origin is tuple and len(args) >= 1 and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected a list of {len(args)} values, got {len(value)}")
            return tuple(coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
        inner = args[0] if args else Any
        return tuple(coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {describe(value)}")
        if abs(value) >= MAX_INT:
            raise ConfigError(f"{key}: {value} is too large (at most {MAX_INT - 1})")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            # PyYAML follows YAML 1.1, where "1e-4" (no dot) is a string, not a number.
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {describe(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {describe(value)}")
        return value
    raise TypeError(f"{key}: unsupported config type {tp!r}")  # a bug in a dataclass, not user input


MAX_INT = 2**53  # beyond this an integer setting is a typo, and torch or numpy would overflow on it
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "null"
