"""Everything that upgrades what an earlier cyclekit wrote: configs (presets of your own, a run
folder's config.yaml) and the settings fingerprint a checkpoint holds. Each old layout is read as
it was written and migrated to today's, with a warning where the user's file says something that
moved (never for files of cyclekit's own making, such as a checkpoint's fingerprint).

- **Keys that left the shared sections** (`loss:`, `train.pool_size`, `model.latent_dim`,
  `optim.d_steps`, ...): `MOVED_KEYS` says, per recipe, where each one lives now (its recipe's
  section); `DROPPED_KEYS` the keys a recipe never read but whose one value its configs held there
  (`loss.gan_mode: vanilla` in an sgan run folder), dropped quietly. Any other old key, or another
  value, is refused naming its owner. A whole cyclekit 0.1 dump (`is_legacy_dump`) migrates quietly.
- **The old shared `loss:` section**: what is left of it after the moves is refused in one line.
- **Values recorded whatever they read**: a config.yaml written before the players read the
  optimizer keys recorded Adam's betas under RMSprop (`drop_recorded_betas`), and a WGAN's
  `gp_weight` under clipping (`RECORDED_OPTIONS`); those exact defaults are dropped with a warning.
- **Checkpoint fingerprints** of an earlier layout (`upgrade_fingerprint`): rebuilt as a config in
  today's layout (through all the migrations above) and fingerprinted again.

The tables are keyed by recipe name: recipes declare only what they are today. This module sits at
the config's layer (it is imported by `cyclekit.config`, and knows no recipe class); its warnings
are those of config loading (logger ``cyclekit.config``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cyclekit.errors import ConfigError
from cyclekit.typed import describe

if TYPE_CHECKING:
    from cyclekit.recipe import Recipe

# The warnings of config loading: migrations are part of it (and are silenced with it).
logger = logging.getLogger("cyclekit.config")

# --------------------------------------------------------------------------------------------
# the tables, per recipe name

# Keys that cyclekit 0.1 (and later the shared `loss:` section) kept outside the recipe's section:
# old key -> the option of the recipe's own section it is now.
MOVED_KEYS: dict[str, dict[str, str]] = {
    "cyclegan": {
        "loss.lambda_cycle": "lambda_cycle",
        "loss.lambda_identity": "lambda_identity",
        "loss.d_scale": "d_scale",
        "train.pool_size": "pool_size",
        "loss.gan_mode": "gan_mode",
        "loss.gp_weight": "gp_weight",
    },
    "gan": {
        "model.latent_dim": "latent_dim",
        "model.pack": "pack",
        "optim.d_steps": "d_steps",
        "loss.d_scale": "d_scale",
        "loss.gan_mode": "gan_mode",
        "loss.gp_weight": "gp_weight",
    },
    "pix2pix": {"loss.d_scale": "d_scale", "loss.gan_mode": "gan_mode", "loss.gp_weight": "gp_weight"},
    "cgan": {"loss.gan_mode": "gan_mode"},
    "acgan": {"loss.gan_mode": "gan_mode"},
    "wgan": {"loss.gp_weight": "gp_weight"},
}

# Old shared keys a recipe never read, with the one value its configs held there: such a key in an
# old config.yaml is dropped, any other value is an error. (sgan's objective is the vanilla GAN's and
# wgan's the Wasserstein estimate: neither has a gan_mode.)
DROPPED_KEYS: dict[str, dict[str, Any]] = {
    "cgan": {"loss.gp_weight": 10.0},
    "acgan": {"loss.gp_weight": 10.0},
    "sgan": {"loss.gan_mode": "vanilla", "loss.gp_weight": 10.0},
    "wgan": {"loss.gan_mode": "lsgan"},
}


@dataclass(frozen=True)
class Recorded:
    """An option of a recipe's section that an earlier config.yaml recorded with ``value`` even where
    it is not read: it is read only while the option ``when`` is one of ``read_with``."""

    value: Any
    when: str
    read_with: tuple[Any, ...]
    why: str  # why it is not read otherwise, for the warning


# Recipe name -> option -> what was recorded.
RECORDED_OPTIONS: dict[str, dict[str, Recorded]] = {
    "wgan": {"gp_weight": Recorded(10.0, "constraint", ("gp",), "constraint clip has no gradient penalty")},
}

# What every config.yaml of cyclekit before players recorded for the betas, whatever the optimizer.
RECORDED_BETAS = {"beta1": 0.5, "beta2": 0.999}

# 5: optim keys the players' optimizer does not read are null (and alpha is recorded); 4: loss options in the
# recipe section; 3: data.<kind>: sections; 2: flat data keys
FINGERPRINT_VERSION = 5


def moved_keys(recipe: str) -> Mapping[str, str]:
    """Old key -> the option of ``recipe``'s section it is now."""
    return MOVED_KEYS.get(recipe, {})


def dropped_keys(recipe: str) -> Mapping[str, Any]:
    """Old shared keys ``recipe`` never read -> the one value its configs held there."""
    return DROPPED_KEYS.get(recipe, {})


# --------------------------------------------------------------------------------------------
# configs


def is_legacy_dump(data: Mapping[str, Any]) -> bool:
    """A config.yaml written by cyclekit 0.1 (every key, before recipe sections existed)."""
    loss, train = data.get("loss"), data.get("train")
    return isinstance(loss, Mapping) and "d_scale" in loss and isinstance(train, Mapping) and "pool_size" in train


def migrate_config(
    data: dict[str, Any], spec: type[Recipe], recipes: Mapping[str, type[Recipe]], legacy: bool
) -> dict[str, Any]:
    """A raw config (YAML layout, before the recipe's defaults are merged in) with the old keys moved
    to their recipe's section (`move_old_keys`) and the old `loss:` section gone (`no_loss_section`)."""
    data = move_old_keys(data, spec, recipes, legacy)
    no_loss_section(data, spec)
    return data


def move_old_keys(
    data: dict[str, Any], spec: type[Recipe], recipes: Mapping[str, type[Recipe]], legacy: bool
) -> dict[str, Any]:
    """Keys that lived in shared sections before recipe sections existed move to their recipe's
    section (with a warning); one the chosen recipe does not read is an error naming its owner,
    unless it holds the one value the recipe's own configs wrote there (`DROPPED_KEYS`: e.g.
    ``loss.gan_mode: vanilla`` in an older sgan run folder), which is dropped.
    A whole 0.1 dump (``legacy``) is migrated quietly: its unread keys held defaults and are dropped."""
    moved, dropped = moved_keys(spec.name), dropped_keys(spec.name)
    owners: dict[str, list[str]] = {old: [] for old in dropped}
    for other in recipes.values():
        for old, new in moved_keys(other.name).items():
            owners.setdefault(old, []).append(f"{other.name}.{new}")
    for old, homes in owners.items():
        section, key = old.split(".", 1)
        node = data.get(section)
        if not isinstance(node, dict) or key not in node:
            continue
        value = node.pop(key)
        if old in moved:
            new = moved[old]
            target = data.setdefault(spec.name, {})
            replaced = ""
            if isinstance(target, dict):
                if new in target and target[new] != value:
                    replaced = f" (replacing {spec.name}.{new}: {target[new]!r})"
                target[new] = value
            if not legacy:
                logger.warning("config key %s is now %s.%s; read it from there%s", old, spec.name, new, replaced)
        elif old in dropped and value == dropped[old]:
            logger.debug("config key %s: %r dropped (recipe %s has no such option)", old, value, spec.name)
        elif not legacy:
            where = f" (it is {' / '.join(homes)})" if homes else ""
            raise ConfigError(f"{old}: not used by recipe {spec.name}{where}")
    return data


def no_loss_section(data: dict[str, Any], spec: type[Recipe]) -> None:
    """`loss:` was a shared section until each recipe's loss options moved into its own section;
    what is left of it after the moves is a key no recipe reads there."""
    loss = data.pop("loss", None)
    if loss is None or (isinstance(loss, Mapping) and not loss):
        return
    if not isinstance(loss, Mapping):
        raise ConfigError(f"loss: expected a mapping of keys, got {describe(loss)}")
    key = next(iter(loss))
    raise ConfigError(
        f"loss.{key}: unknown key; loss options live in the recipe's section ({spec.name}: "
        f"{', '.join(f.name for f in dataclasses.fields(spec.Options)) or 'none'})"
    )


def drop_recorded_options(data: dict[str, Any], spec: type[Recipe]) -> dict[str, Any]:
    """Options of the recipe's section (``data``: the raw config with the recipe's defaults merged
    in) that an earlier config.yaml recorded whatever they read (`RECORDED_OPTIONS`): with that exact
    value where they are not read, dropped with a warning (a WGAN's ``gp_weight: 10.0`` under
    clipping); another value is left for the options to refuse."""
    section = data.get(spec.name)
    if not isinstance(section, dict):
        return data
    defaults = {f.name: f.default for f in dataclasses.fields(spec.Options)}
    for option, recorded in RECORDED_OPTIONS.get(spec.name, {}).items():
        value = section.get(option)
        if value is None or isinstance(value, bool) or value != recorded.value:
            continue
        if section.get(recorded.when, defaults.get(recorded.when)) in recorded.read_with:
            continue
        logger.warning(
            "%s.%s: dropped %s (%s; a config.yaml of an earlier cyclekit recorded the default)",
            spec.name,
            option,
            recorded.value,
            recorded.why,
        )
        del section[option]
    return data


def drop_recorded_betas(raw: Mapping[str, Any], given: dict[str, Any], kind: str) -> dict[str, Any]:
    """The `optim:` keys ``given`` (those set, not null) without Adam's betas that a config.yaml of an
    earlier cyclekit recorded under RMSprop (0.5, 0.999, with lr_d, as every such dump holds), with a
    warning; as they are otherwise."""
    if kind == "rmsprop" and "lr_d" in raw and all(raw.get(k) == v for k, v in RECORDED_BETAS.items()):
        logger.warning(
            "optim.beta1, optim.beta2: dropped 0.5, 0.999 (RMSprop does not read them; "
            "a config.yaml of an earlier cyclekit recorded Adam's defaults)"
        )
        return {k: v for k, v in given.items() if k not in RECORDED_BETAS}
    return given


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No migration warnings: for files cyclekit wrote itself (a checkpoint's fingerprint), whose
    moved keys are ours, not the user's."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# --------------------------------------------------------------------------------------------
# checkpoint fingerprints


def upgrade_fingerprint(
    stored: dict[str, Any], refingerprint: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """A checkpoint of an earlier cyclekit stored its settings in an earlier layout (0.1: before
    recipe sections existed; version 2: before data sources had their own options; version 3:
    before loss options moved into the recipe's section; version 4: before the optim keys were
    read per player, when RMSprop runs recorded Adam's betas): that config rebuilt in today's
    layout and given to ``refingerprint`` (raw config -> today's fingerprint, through every config
    migration), so such a run still resumes. A fingerprint of today's layout is returned as it is,
    and so is one that no longer parses (then reported as a different config)."""
    if stored.get("version") == FINGERPRINT_VERSION:
        return stored
    raw = {k: v for k, v in stored.items() if k not in ("version", "options")}
    if stored.get("version") in (2, 3, 4) and isinstance(stored.get("recipe"), str):
        raw[stored["recipe"]] = stored.get("options") or {}
    with quiet():
        try:
            return refingerprint(raw)
        except (ConfigError, TypeError, AttributeError):
            return stored  # compared as it is: reported as a different config


__all__ = [
    "DROPPED_KEYS",
    "FINGERPRINT_VERSION",
    "MOVED_KEYS",
    "RECORDED_OPTIONS",
    "drop_recorded_betas",
    "drop_recorded_options",
    "is_legacy_dump",
    "migrate_config",
    "upgrade_fingerprint",
]
