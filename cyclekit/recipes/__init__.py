"""Training recipes: an explicit registry of name -> recipe class, and config loading bound to it.

A recipe is one file: a subclass of `cyclekit.recipe.Recipe` (the one contract: its options
dataclass, the batch keys it needs, its defaults, a `check` run when the config loads, and what
the loop, the run, bench and evaluation call). Adding one means adding its file and one line to
`RECIPES`; the loop, config core, data sources, inference and export stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cyclekit.config import Config, load_config_with, parse_config
from cyclekit.data.sources import SOURCES
from cyclekit.errors import ConfigError, CyclekitError, did_you_mean
from cyclekit.recipe import Recipe
from cyclekit.recipes.acgan import AcganRecipe
from cyclekit.recipes.began import BeganRecipe
from cyclekit.recipes.cgan import CganRecipe
from cyclekit.recipes.cyclegan import CycleGanRecipe
from cyclekit.recipes.gan import GanRecipe
from cyclekit.recipes.pix2pix import Pix2PixRecipe
from cyclekit.recipes.sgan import SganRecipe
from cyclekit.recipes.stackgan import StackganRecipe
from cyclekit.recipes.wgan import WganRecipe

RECIPES: dict[str, type[Recipe]] = {
    "cyclegan": CycleGanRecipe,
    "gan": GanRecipe,
    "pix2pix": Pix2PixRecipe,
    "cgan": CganRecipe,
    "acgan": AcganRecipe,
    "sgan": SganRecipe,
    "wgan": WganRecipe,
    "began": BeganRecipe,
    "stackgan": StackganRecipe,
}


def get_recipe(name: str) -> type[Recipe]:
    """The recipe class registered as ``name``; ConfigError listing the known ones otherwise."""
    if name not in RECIPES:
        raise ConfigError(
            f"recipe: unknown recipe {name!r}{did_you_mean(name, RECIPES)}; known: {', '.join(sorted(RECIPES))}"
        )
    return RECIPES[name]


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> Config:
    """Load a preset name or YAML path, apply `--set` overrides and validate for its recipe."""
    return check_config(load_config_with(name_or_path, overrides, RECIPES, SOURCES))


def config_from_dict(data: dict[str, Any]) -> Config:
    return check_config(parse_config(data, RECIPES, SOURCES))


def check_config(config: Config) -> Config:
    """Checks every recipe shares, beyond the recipe's own `check`: the device exists here, and
    preprocess modes that keep image sizes are not batched (images of different sizes cannot be)."""
    from cyclekit.device import resolve_device

    try:
        resolve_device(config.train.device)
    except CyclekitError as exc:
        raise ConfigError(f"train.device: {exc}") from None
    data = config.data
    if data.has("preprocess") and data.preprocess in ("none", "scale_width") and data.batch_size > 1:
        raise ConfigError(
            f"data.batch_size: {data.batch_size} with data.preprocess {data.preprocess}, which keeps each image's "
            "size: images of different sizes cannot share a batch; use batch_size 1 or a cropping preprocess"
        )
    return config


__all__ = ["RECIPES", "config_from_dict", "get_recipe", "load_config"]
