"""YAML for configs, bounded: every config, ``--set`` value and run's config.yaml is read here.

`yaml.safe_load` never runs code, but it still accepts aliases: nine levels of ``&a [*b, *b, ...]``
in a few hundred bytes make a value that any later walk (a copy, a message, a comparison) expands to
billions of nodes, and Python's int conversion refuses an integer of 5,000 digits with a bare
ValueError. Configs never need aliases (cyclekit writes none), so they are refused while the
document is composed, before anything is built, and every other refusal of the loader becomes one
`YamlRefused` naming what was wrong. Writing uses a dumper that never emits an anchor, so what
cyclekit writes it can always read back.
"""

from __future__ import annotations

from typing import Any

import yaml

# A config is a few kilobytes; the largest dumped run config is under 10 KB.
MAX_CONFIG_BYTES = 1 << 20


class YamlRefused(ValueError):
    """The text is not a config cyclekit reads: the message says why (no traceback needed)."""


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YamlRefused(
                f"uses a YAML alias (*{event.anchor}, line {event.start_mark.line + 1}); configs take none"
            )
        return super().compose_node(parent, index)


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def load(text: str | bytes) -> Any:
    """Parse one YAML document safely: no tags that build objects, no aliases, at most
    `MAX_CONFIG_BYTES`. Raises `YamlRefused` (refused) or `yaml.YAMLError` (not YAML)."""
    if len(text) > MAX_CONFIG_BYTES:
        raise YamlRefused(f"is {len(text):,} bytes; a config is at most {MAX_CONFIG_BYTES:,}")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise YamlRefused("is nested too deeply to be a config") from None
    except ValueError as exc:  # e.g. an integer past Python's int-conversion limit
        if isinstance(exc, YamlRefused):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise YamlRefused(f"holds a value cyclekit cannot read ({first[:120]})") from None


def dump(data: Any) -> str:
    """YAML text of ``data`` with no anchors or aliases (`load` reads it back)."""
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True)
