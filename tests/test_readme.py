"""The README's config reference is checked against the dataclasses, so the two cannot drift:
every key of every shared section and every recipe's section is documented once, with its default."""

from __future__ import annotations

import dataclasses
import re

import yaml

from cyclekit.config import SHARED_SECTIONS, TOP_KEYS, Config
from cyclekit.recipes import RECIPES
from tests.conftest import REPO


def documented() -> dict[str, str]:
    """key -> default cell text, from the tables under '## Config reference'."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Config reference", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([^`]+)`", cells[0])
        defaults = re.findall(r"`([^`]*)`", cells[1])
        parts = [p.strip().strip("`") for p in re.split(r",\s+(?![^\[]*\])", cells[1])]
        if len(defaults) == len(keys):
            pairs = zip(keys, defaults, strict=True)
        elif len(parts) == len(keys):  # e.g. `2e-4`, –
            pairs = zip(keys, parts, strict=True)
        else:  # one text default for all keys of the row ("per recipe", "–", ...)
            pairs = ((k, cells[1]) for k in keys)
        for key, default in pairs:
            assert key not in rows, f"{key} documented twice"
            rows[key] = default
    return rows


def actual() -> dict[str, object]:
    out: dict[str, object] = {}
    config_fields = {f.name: f for f in dataclasses.fields(Config)}
    for key in TOP_KEYS:
        f = config_fields[key]
        out[key] = f.default
    for section, cls in SHARED_SECTIONS.items():
        for f in dataclasses.fields(cls):
            out[f"{section}.{f.name}"] = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    for name, recipe in RECIPES.items():
        for f in dataclasses.fields(recipe.Options):
            out[f"{name}.{f.name}"] = f.default
    return out


def test_readme_config_table_matches_the_dataclasses():
    docs, real = documented(), actual()
    assert sorted(set(real) - set(docs)) == [], "undocumented keys"
    assert sorted(set(docs) - set(real)) == [], "documented keys that do not exist"
    for key, default in docs.items():
        value = real[key]
        if default in ("–", "-"):
            assert value in (None, ""), key
        elif default.startswith(("per ", "file name", "see ")):
            continue  # a default that depends on the recipe or the file: explained in the table
        else:
            parsed = yaml.safe_load(default)
            if isinstance(value, float) and isinstance(parsed, str):
                parsed = float(parsed)  # YAML 1.1 reads 2e-4 as a string; the config loader as a number
            if isinstance(value, float) and isinstance(parsed, (int, float)):
                assert abs(value - parsed) < 1e-12, key
            elif isinstance(value, tuple):
                assert list(value) == parsed, key
            else:
                assert parsed == value, (key, parsed, value)
