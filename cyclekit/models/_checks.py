"""Value checks for the options dataclasses.

Messages start with the option name; `cyclekit.models.registry` prefixes the dotted key
(``model.generator.``) so the user sees exactly which setting to fix.
"""

from __future__ import annotations

from typing import Any

from cyclekit.errors import ConfigError


def positive(opts: Any, *names: str) -> None:
    """Raise ConfigError unless every named option is > 0."""
    for name in names:
        value = getattr(opts, name)
        if value <= 0:
            raise ConfigError(f"{name}: must be > 0, got {value}")


def probability(opts: Any, name: str) -> None:
    """Raise ConfigError unless the option is a dropout rate in [0, 1)."""
    value = getattr(opts, name)
    if not 0 <= value < 1:
        raise ConfigError(f"{name}: must be in [0, 1), got {value}")
