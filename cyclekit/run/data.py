"""The run's data: located once and opened through its Source, and the recipe built on it."""

from __future__ import annotations

from pathlib import Path

from cyclekit.config import Config
from cyclekit.data.protocol import RunData
from cyclekit.recipe import Recipe
from cyclekit.recipes import get_recipe


def open_data(config: Config, data_root: Path | None = None, cache_dir: Path | None = None) -> tuple[Config, RunData]:
    """The run's data, located once (``data_root`` as given, else data.root, the catalogue's cache
    or a download, the generated demo set) and opened through its Source: the config with what it
    leaves to the data filled in (the recipe's `fit_to_data`), and the train and test splits."""
    from cyclekit.data.sources import locate_data

    root = locate_data(config.data, data_root, cache_dir, config.seed)
    config = get_recipe(config.recipe).fit_to_data(config, root)
    return config, RunData.open(config.data, root, config.seed)


def build_recipe(config: Config, data_root: Path | None = None, cache_dir: Path | None = None) -> Recipe:
    """The recipe of ``config``, given its data (`open_data`)."""
    config, data = open_data(config, data_root, cache_dir)
    return get_recipe(config.recipe)(config, data)
