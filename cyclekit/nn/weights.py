"""Loading a state dict into a network, with one line that says why it does not fit.

PyTorch's own message ("Error(s) in loading state_dict for ResnetGenerator: ...") lists every
missing key and shape; a user needs the file, the first difference, and which setting would
explain it. Every network cyclekit builds keeps its options dataclass as ``.config`` and is built
by ``type(net)(options)``, so the option is found by rebuilding the network with one option
changed (on the meta device: no memory, no random draws) until its shapes match the file.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cyclekit.errors import CyclekitError

# Options whose value the data section sets (model.<part>.in_channels comes from data.channels, ...).
_FROM_DATA = {"in_channels": "data.channels", "out_channels": "data.channels", "channels": "data.channels"}


def load_weights(net: nn.Module, state: Mapping[str, Any], where: str, key: str | None = None) -> None:
    """``net.load_state_dict(state)``, or one CyclekitError naming ``where`` (the file, and the
    network in it), the first missing or unexpected key, the first shape that differs and, where
    one option of ``net`` explains it, that option as the config key ``key.<option>``."""
    problem = mismatch(net, state)
    if problem is None:
        try:
            net.load_state_dict(dict(state))
            return
        except (RuntimeError, ValueError, TypeError) as exc:
            problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    hint = explain(net, state, key)
    raise CyclekitError(f"{where} does not fit the configured network: {problem}{'; ' + hint if hint else ''}")


def mismatch(net: nn.Module, state: Mapping[str, Any]) -> str | None:
    """The first difference between ``net``'s state dict and ``state`` (keys, then shapes), or None."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    parts = []
    if missing:
        parts.append(f"{len(missing)} key(s) missing from the file, the first {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), the first {unexpected[0]}")
    for k, mine in own.items():
        theirs = state.get(k)
        if isinstance(theirs, torch.Tensor) and tuple(theirs.shape) != tuple(mine.shape):
            parts.append(f"{k} has shape {list(theirs.shape)} in the file, {list(mine.shape)} here")
            break
        if k in state and not isinstance(theirs, torch.Tensor):
            parts.append(f"{k} is not a tensor in the file")
            break
    return "; ".join(parts) or None


def _shapes(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


def explain(net: nn.Module, state: Mapping[str, Any], key: str | None = None) -> str | None:
    """ "the file fits ngf=32 (this configuration: 64; config key model.generator.ngf)" when changing
    one option of ``net`` makes every key and shape match ``state``; None otherwise."""
    options = getattr(net, "config", None)
    if options is None or not dataclasses.is_dataclass(options):
        return None
    want = _shapes(state)
    if len(want) != len(state):
        return None
    hints = typing.get_type_hints(type(options))
    ratios = set()
    for k, shape in _shapes(net.state_dict()).items():
        if k in want and len(want[k]) == len(shape):
            ratios |= {a / b for a, b in zip(want[k], shape, strict=True) if b}
    for f in dataclasses.fields(options):
        current = getattr(options, f.name)
        for candidate in _candidates(hints.get(f.name), current, ratios):
            try:
                with torch.random.fork_rng(devices=[]), torch.device("meta"):
                    other = type(net)(dataclasses.replace(options, **{f.name: candidate}))
            except Exception:  # noqa: BLE001 (an invalid combination of options: not the answer)
                continue
            if _shapes(other.state_dict()) == want:
                where = f"{key}.{f.name}" if key else f.name
                if f.name in _FROM_DATA and key and key.startswith("model."):
                    where += f", set from {_FROM_DATA[f.name]}"
                return f"the file fits {f.name}={candidate!r} (this configuration: {current!r}; {where})"
    return None


def _candidates(tp: Any, current: Any, ratios: set[float]) -> list[Any]:
    """Values worth trying for one option: other literals, the flipped flag, small counts and the
    current value scaled by the ratios of the differing dimensions."""
    if typing.get_origin(tp) is typing.Literal:
        return [v for v in typing.get_args(tp) if v != current]
    if tp is bool:
        return [not current]
    if tp is int and isinstance(current, int):
        values = set(range(0, 17)) | {round(current * r) for r in ratios if r > 0 and float(current * r).is_integer()}
        values |= {2**k for k in range(11)}
        return sorted(v for v in values if v != current and 0 <= v <= 4096)
    return []
