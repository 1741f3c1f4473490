"""Typed, frozen experiment configs: YAML in, validated dataclasses out.

A config has the sections every recipe shares (`data`, `model`, `loss`, `optim`, `train`) and one
section of the chosen recipe's own options, written under the recipe's name::

    recipe: cyclegan
    data: {...}
    cyclegan: {lambda_cycle: 10.0, lambda_identity: 0.5, pool_size: 50, d_scale: 0.5}

This module knows no recipe and no data source: `parse_config` takes both registries (name ->
class) and asks the chosen recipe for its options dataclass, its defaults and the batch keys it
needs, and the chosen data kind's source for its options (`data.<kind>:`) and the batch keys it
gives. A key the chosen recipe (or source) does not read is an error naming the key, so a setting
never silently does nothing; the recipe's `check` then validates the model options before any
data is touched.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Protocol

import yaml

from cyclekit import migrate, yamltext
from cyclekit.atomic import atomic_write
from cyclekit.choices import DIRECTIONS, EVAL_METRICS, InitKind, Logger
from cyclekit.errors import ConfigError, did_you_mean
from cyclekit.players import READS, Player, Settings
from cyclekit.typed import coerce, describe, from_dict, plain, positive

if TYPE_CHECKING:
    from cyclekit.recipe import Recipe

logger = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).resolve().parent / "presets"

# The data keys every source may read; the rest of `data:` belongs to the chosen kind's source
# (`cyclekit.data.sources`), written flat (`data.crop_size`) or in its section (`data.paired.crop_size`).
SHARED_DATA_KEYS = ("kind", "batch_size", "workers", "strict", "channels")


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from. The shared keys are here; `source` holds the options of the data
    kind's source (read through: `config.data.crop_size` is `config.data.source.crop_size`)."""

    kind: str = "unpaired"  # the data source (see the table of kinds); the recipe's default
    batch_size: int = 1  # per process
    # DataLoader worker processes; with workers one loader serves the whole run (prefetching; pinned
    # memory on CUDA). On a 2-core CPU they compete with training: 0 is faster there.
    workers: int = 0
    strict: bool = False  # True: the first unreadable image (or unpaired file) stops the run
    # 3: RGB; 1: grayscale end to end (null, for a source that can tell: from the data, e.g. classes)
    channels: Optional[int] = 3
    source: Any = None  # the source's options dataclass, built by parse_config

    def __post_init__(self) -> None:
        positive(self, "data", "batch_size")
        if self.channels not in (1, 3, None):
            raise ConfigError(f"data.channels: must be 1 or 3, got {self.channels}")
        if self.workers < 0:
            raise ConfigError(f"data.workers: must be >= 0, got {self.workers}")

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not fields: the source's options.
        source = self.__dict__.get("source")
        if name.startswith("__") or source is None or name not in {f.name for f in dataclasses.fields(source)}:
            raise AttributeError(f"data.{name}: not an option of data.kind {self.__dict__.get('kind')}")
        return getattr(source, name)

    @property
    def root(self) -> Optional[str]:
        """The data folder given (data.root or --data-root), for sources that read one."""
        return getattr(self.source, "root", None) if self.source is not None else None

    def with_root(self, root: Optional[str]) -> DataConfig:
        if self.source is None or not hasattr(self.source, "root"):
            return self
        return dataclasses.replace(self, source=dataclasses.replace(self.source, root=root))

    def has(self, name: str) -> bool:
        """Whether ``name`` is a key of this data section (shared, or the source's)."""
        return name in SHARED_DATA_KEYS or (
            self.source is not None and name in {f.name for f in dataclasses.fields(self.source)}
        )

    def flat(self) -> dict[str, Any]:
        """kind, the shared keys the source reads and its options in one flat mapping (data.KEY)."""
        out: dict[str, Any] = {"kind": self.kind, **{k: getattr(self, k) for k in source_shared_keys(self.source)}}
        if self.source is not None:
            out.update(dataclasses.asdict(self.source))
        return plain(out)


@dataclass(frozen=True)
class ModelConfig:
    """Which networks to build: `model.<slot>` for each network slot the recipe declares (its
    ``networks``: generator and discriminator for most; StackGAN's stages are slots of their own),
    a network name and its options, validated by `cyclekit.models.build_model` through the
    recipe's `check` when the config loads. ``config.model.generator`` reads a slot."""

    # slot -> {name: NETWORK, ...its options}; written flat in YAML (model.generator: {...})
    nets: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: {"generator": {"name": "resnet"}, "discriminator": {"name": "patchgan"}}
    )
    init: InitKind = "normal"  # weight initialisation of every network
    init_gain: float = 0.02  # N(0, 0.02): Radford et al. 2016; Zhu et al. 2017 reference code

    def __post_init__(self) -> None:
        for slot, spec in self.nets.items():
            if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
                raise ConfigError(f"model.{slot}.name: required (e.g. name: resnet)")
        positive(self, "model", "init_gain")

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not fields: the network slots.
        nets = self.__dict__.get("nets")
        if name.startswith("__") or nets is None or name not in nets:
            raise AttributeError(f"model.{name}: not a network slot of this config")
        return nets[name]

    def flat(self) -> dict[str, Any]:
        """The YAML layout: each slot's spec, then init and init_gain."""
        return plain({**self.nets, "init": self.init, "init_gain": self.init_gain})


@dataclass(frozen=True)
class OptimConfig:
    """The optimizer of the recipe's players (`cyclekit.players`). A key left out (or null) takes
    the recipe's default, its paper's (WGAN: RMSprop 5e-5; WGAN-GP: Adam 1e-4, betas (0, 0.9)); a
    key the optimizer does not read is refused, and null once the config is resolved."""

    # adam, or rmsprop (WGAN: "momentum based methods such as Adam" made the critic unstable:
    # Arjovsky et al. 2017, Sec. 3); the recipe's default (wgan: rmsprop with constraint clip, adam with gp)
    kind: Literal["adam", "rmsprop"] = "adam"
    # the generator's lr, the recipe's default (Adam 2e-4: Zhu et al. 2017, Sec. 4; Isola et al. 2017, Sec. 3.3)
    lr: float = 2e-4
    lr_d: Optional[float] = None  # discriminator (critic) lr; null: lr (refused in a recipe without one)
    # Adam's first-moment decay, the recipe's default (0.5: Radford et al. 2016; WGAN-GP: 0, Gulrajani et al. 2017)
    beta1: Optional[float] = 0.5
    beta2: Optional[float] = 0.999  # Adam's second-moment decay, the recipe's default (WGAN-GP: 0.9)
    alpha: Optional[float] = None  # RMSprop's smoothing constant, the recipe's default (0.99, PyTorch's)
    # added to the root of the second moment (Adam and RMSprop), the recipe's default (PyTorch's
    # 1e-8; mnist-sgan: 1e-4, as improved-gan's Adam, which adds 1e-8 under the root)
    eps: Optional[float] = None

    def __post_init__(self) -> None:
        positive(self, "optim", "lr")
        if self.lr_d is not None and self.lr_d <= 0:
            raise ConfigError(f"optim.lr_d: must be > 0, got {self.lr_d}")
        for name in ("beta1", "beta2", "alpha"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise ConfigError(f"optim.{name}: must be in [0, 1), got {value}")
        if self.eps is not None and not 0 < self.eps < 1:
            raise ConfigError(f"optim.eps: must be in (0, 1), got {self.eps}")

    def settings(self, player: Player) -> Settings:
        """What ``player``'s optimizer is built with: this section's kind and its betas or alpha,
        and the learning rate of the key the player reads (lr_d falls back to lr)."""
        lr = self.lr_d if player.lr_key == "lr_d" and self.lr_d is not None else self.lr
        if self.kind == "adam":
            betas = (_given(self.beta1, player.betas[0]), _given(self.beta2, player.betas[1]))
            return Settings("adam", lr, betas, None, _given(self.eps, player.eps))
        return Settings("rmsprop", lr, None, _given(self.alpha, player.alpha), _given(self.eps, player.eps))


def _given(value: Optional[float], default: float) -> float:
    return default if value is None else value


_OPTIM_NAMES = {"adam": "Adam", "rmsprop": "RMSprop"}


def resolve_optim(raw: Any, spec: type[Recipe], options: Any) -> OptimConfig:
    """The `optim:` section for the recipe's players (`spec.players(options)`): each key left out
    (or null) takes the players' default, the paper's; a key no player reads is an error in one
    line (Adam's betas under RMSprop, RMSprop's alpha under Adam, lr_d in a recipe whose players
    all read lr). The resolved values are returned, those not read as null, so config.yaml records
    what trained. A config.yaml of an earlier cyclekit recorded beta1 0.5 and beta2 0.999 under
    RMSprop too (unread); those are dropped with a warning (`cyclekit.migrate.drop_recorded_betas`),
    so such a run loads and resumes as it trained."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"optim: expected a mapping of keys, got {describe(raw)}")
    from_dict(OptimConfig, raw, "optim")  # types, ranges and unknown keys, each named
    given = {k: v for k, v in raw.items() if v is not None}
    players = tuple(spec.players(options))
    first = players[0]
    for p in players[1:]:
        if (p.kind, p.betas, p.alpha, p.eps) != (first.kind, first.betas, first.alpha, first.eps):
            raise ConfigError(
                f"recipe {spec.name}: its players {first.name} and {p.name} declare different optimizers, "
                "but optim: is one section"
            )
    kind = given.get("kind", first.kind)
    reads = READS[kind]
    given = migrate.drop_recorded_betas(raw, given, kind)
    unread = [k for k in ("beta1", "beta2", "alpha") if k in given and k not in reads]
    if unread:
        raise ConfigError(
            f"optim.{unread[0]}: not read by {_OPTIM_NAMES[kind]} (optim.kind {kind}); it reads lr, lr_d, "
            f"{', '.join(reads)}"
        )
    for key in ("lr", "lr_d"):
        if key in given and not any(p.lr_key == key for p in players):
            who = ", ".join(f"{p.name} ({', '.join(p.nets)}: optim.{p.lr_key})" for p in players)
            raise ConfigError(
                f"optim.{key}: no player of recipe {spec.name} reads it; "
                f"{'its one player is' if len(players) == 1 else 'its players are'} {who}"
            )
    by_key = {key: next((p for p in players if p.lr_key == key), None) for key in ("lr", "lr_d")}
    lr = given.get("lr", (by_key["lr"] or first).lr)
    lr_d = given.get("lr_d")
    d_player = by_key["lr_d"]
    if lr_d is None and "lr" not in given and d_player is not None and d_player.lr != lr:
        lr_d = d_player.lr  # the discriminator's own default, where the recipe's paper gives one
    adam = kind == "adam"
    return from_dict(
        OptimConfig,
        {
            "kind": kind,
            "lr": lr,
            "lr_d": lr_d,
            "beta1": given.get("beta1", first.betas[0]) if adam else None,
            "beta2": given.get("beta2", first.betas[1]) if adam else None,
            "alpha": None if adam else given.get("alpha", first.alpha),
            "eps": given.get("eps", first.eps),
        },
        "optim",
    )


@dataclass(frozen=True)
class TrainConfig:
    # Epochs at the initial lr; the run trains epochs + decay_epochs epochs in all (100 + 100: Zhu et
    # al. 2017, Sec. 4; the reference's n_epochs and n_epochs_decay). The start line says the total.
    epochs: int = 100
    decay_epochs: int = 100  # epochs after those, with the lr decaying linearly to zero
    max_steps: Optional[int] = None  # stop early after this many steps (total, across resumes)
    log_every: int = 50
    sample_every: int = 0  # steps between sample grids; 0 = once per epoch
    checkpoint_every: int = 500  # steps; a checkpoint is also written at every epoch end
    device: str = "auto"  # auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps
    out_dir: str = "runs"  # the folder run folders go in (--out overrides it)
    progress: bool = True  # a progress bar on a terminal, a line every 30 s in a log
    # A loss above this (in magnitude) stops training as diverged; see cyclekit.train.loop.check_healthy.
    divergence_limit: float = 1e6
    # auto: bf16 (or fp16 + loss scaling) autocast on CUDA, fp32 elsewhere; see cyclekit.train.precision
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # torch.compile the passes a step trains (opt-in: measured 0.99x on a CPU, after ~1 min of compiling)
    compile: bool = False
    # Evaluate the bundle on the test split every N epochs (0: never); see cyclekit.evaluation.evaluate.
    eval_every: int = 0
    # The score that picks the best epoch (kept as bundle-best/): METRIC or DIRECTION.METRIC; auto:
    # fid when FID can be computed, else l1; the first direction the bundle translates unless named.
    best_metric: str = "auto"
    # Extra logs besides metrics.jsonl (always written): tensorboard (needs the tensorboard package).
    loggers: tuple[Logger, ...] = ("jsonl",)

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.decay_epochs < 0 or self.epochs + self.decay_epochs == 0:
            raise ConfigError("train.epochs: epochs + decay_epochs must be > 0")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"train.max_steps: must be > 0, got {self.max_steps}")
        if self.eval_every < 0:
            raise ConfigError(f"train.eval_every: must be >= 0, got {self.eval_every}")
        metric = self.best_metric.split(".")[-1]
        direction = self.best_metric.split(".")[0] if "." in self.best_metric else None
        if self.best_metric != "auto" and (
            metric not in EVAL_METRICS or (direction is not None and direction not in DIRECTIONS)
        ):
            raise ConfigError(
                f"train.best_metric: {self.best_metric!r} is not auto, METRIC or DIRECTION.METRIC with a metric of "
                f"{', '.join(EVAL_METRICS)} and a direction of {', '.join(DIRECTIONS)}"
            )
        positive(self, "train", "log_every", "checkpoint_every", "divergence_limit")
        if self.sample_every < 0:
            raise ConfigError(f"train.sample_every: must be >= 0, got {self.sample_every}")
        if not (self.device in ("auto", "cpu", "mps") or re.fullmatch(r"cuda(:\d+)?", self.device)):
            raise ConfigError(f"train.device: expected auto, cpu, cuda, cuda:N or mps, got {self.device!r}")


SHARED_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
}
TOP_KEYS = ("recipe", "name", "description", "seed")


@dataclass(frozen=True)
class Config:
    """A whole experiment: the shared sections plus `options`, the chosen recipe's own section.

    Build it with `parse_config` (or `cyclekit.recipes.load_config`), which fills `options`.
    """

    recipe: str = "cyclegan"
    name: str = "run"
    description: str = ""
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    options: Any = None  # the recipe's options dataclass; written as the section named `recipe`

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or "\\" in self.name or self.name in (".", ".."):
            raise ConfigError(f"name: not usable as a folder name: {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values in the YAML layout: the shared data keys the source reads with its own
        options in `data.<kind>:`, and the recipe's options under the recipe's name."""
        out: dict[str, Any] = {k: getattr(self, k) for k in TOP_KEYS}
        for section in SHARED_SECTIONS:
            if section == "model":
                out[section] = self.model.flat()
            elif section != "data":
                out[section] = plain(dataclasses.asdict(getattr(self, section)))
        data = self.data
        out["data"] = {"kind": data.kind, **{k: getattr(data, k) for k in source_shared_keys(data.source)}}
        if data.source is not None:
            out["data"][data.kind] = plain(dataclasses.asdict(data.source))
        if self.options is not None:
            out[self.recipe] = plain(dataclasses.asdict(self.options))
        return out


# --------------------------------------------------------------------------------------------
# recipes


# The recipe contract (its class side: name, Options, default_kind, needs, defaults, check) is
# `cyclekit.recipe.Recipe`; this module reads it, and imports it for type checkers alone. What
# earlier cyclekits wrote is migrated by `cyclekit.migrate` first.


class SourceSpec(Protocol):
    """What config loading needs from a data source class (see `cyclekit.data.sources`)."""

    name: str
    Options: type  # frozen dataclass of the source's own keys (data.<kind>:); may set `shared_keys`
    batch_keys: tuple[str, ...]

    @classmethod
    def check(cls, options: Any, data: DataConfig) -> None: ...


def source_shared_keys(options: Any) -> tuple[str, ...]:
    """The shared data keys (besides kind) a source reads: its options class's ``shared_keys``."""
    cls = options if isinstance(options, type) else type(options)
    return tuple(getattr(cls, "shared_keys", SHARED_DATA_KEYS[1:]))


def satisfies(needs: Sequence[Sequence[str]], batch_keys: Sequence[str]) -> bool:
    """Whether a source yielding ``batch_keys`` gives one of a recipe's ``needs`` alternatives."""
    return any(set(alt) <= set(batch_keys) for alt in needs)


def compatible_kinds(spec: type[Recipe], sources: Mapping[str, SourceSpec]) -> list[str]:
    return [k for k, src in sources.items() if satisfies(spec.needs, src.batch_keys)]


def parse_config(
    data: Mapping[str, Any], recipes: Mapping[str, type[Recipe]], sources: Mapping[str, SourceSpec]
) -> Config:
    """Validate a raw config dict (YAML layout) into a `Config` for one of ``recipes``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping of keys, got {describe(data)}")
    data = _deepcopy(dict(data))
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"config: keys must be names, got {bad[0]!r}")
    name = data.get("recipe", "cyclegan")
    if not isinstance(name, str) or name not in recipes:
        raise ConfigError(
            f"recipe: unknown recipe {name!r}{did_you_mean(name, recipes)}; known: {', '.join(sorted(recipes))}"
        )
    spec = recipes[name]
    legacy = migrate.is_legacy_dump(data)
    data = migrate.migrate_config(data, spec, recipes, legacy)
    data = migrate.drop_recorded_options(_merge(_deepcopy(dict(spec.defaults)), data), spec)
    if data.get("data") is None:
        data["data"] = {}
    if isinstance(data["data"], dict):
        data["data"].setdefault("kind", spec.default_kind)

    allowed = set(TOP_KEYS) | set(SHARED_SECTIONS) | {name}
    for key in data:
        if key in recipes and key != name:
            raise ConfigError(f"{key}: options of recipe {key}, but this config's recipe is {name}")
        if key not in allowed:
            valid = [*TOP_KEYS, *SHARED_SECTIONS, name]
            raise ConfigError(f"{key}: unknown key{did_you_mean(key, valid)}; valid keys: {', '.join(valid)}")
    top = {k: coerce(t, data[k], k) for k, t in (("name", str), ("description", str), ("seed", int)) if k in data}
    options = from_dict(spec.Options, _section(data, name), name)
    _set_fixed_keys(data, spec, options)
    sections = {
        s: from_dict(cls, _section(data, s), s)
        for s, cls in SHARED_SECTIONS.items()
        if s not in ("data", "model", "optim")
    }
    sections["optim"] = resolve_optim(_section(data, "optim"), spec, options)
    sections["data"] = parse_data(_section(data, "data"), spec, sources, legacy)
    sections["model"] = parse_model(_section(data, "model"), spec)
    config = Config(recipe=name, **top, **sections, options=options)
    spec.check(config)
    return config


def _set_fixed_keys(data: dict[str, Any], spec: type[Recipe], options: Any) -> None:
    """Shared keys the recipe derives from its own options (`Recipe.fixed_keys`: StackGAN's
    train.epochs is its stages' epochs added up) go into ``data``; a config giving one another
    value is an error naming the options that decide it."""
    for dotted, (value, why) in spec.fixed_keys(options).items():
        section, key = dotted.split(".")
        raw = _section(data, section)
        if not isinstance(raw, Mapping):
            continue  # reported by the section's own parsing
        if key in raw and raw[key] != value:
            raise ConfigError(
                f"{dotted}: recipe {spec.name} sets it from {why} (= {value}), got {raw[key]}; change those"
            )
        data[section] = {**raw, key: value}


def parse_model(raw: Any, spec: type[Recipe]) -> ModelConfig:
    """The `model:` section: one network spec per slot the recipe declares, plus init and init_gain."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"model: expected a mapping of keys, got {describe(raw)}")
    shared_keys = [f.name for f in dataclasses.fields(ModelConfig) if f.name != "nets"]
    slots = list(spec.networks)
    nets: dict[str, Any] = {}
    for key, value in raw.items():
        if key in shared_keys:
            continue
        if key not in slots:
            valid = [*slots, *shared_keys]
            raise ConfigError(
                f"model.{key}: not a network of recipe {spec.name}{did_you_mean(str(key), valid)}; "
                f"valid keys: {', '.join(valid)}"
            )
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"model.{key}: expected a network name and its options (e.g. name: resnet), got {describe(value)}"
            )
        nets[key] = dict(value)
    for slot in slots:
        if slot not in nets:
            raise ConfigError(f"model.{slot}: required by recipe {spec.name} ({spec.networks[slot]})")
    return from_dict(ModelConfig, {**{k: raw[k] for k in shared_keys if k in raw}, "nets": nets}, "model")


def _section(data: Mapping[str, Any], key: str) -> Any:
    """A section's raw value; an empty one (``train:`` with nothing under it) is no keys."""
    value = data.get(key)
    return {} if value is None else value


def parse_data(raw: Any, spec: type[Recipe], sources: Mapping[str, SourceSpec], legacy: bool = False) -> DataConfig:
    """The `data:` section: the shared keys, and the kind's own keys written flat (`data.crop_size`)
    or in its section (`data.paired.crop_size`), checked against the source's options. A key of
    another source, or a shared key this source does not read, is an error naming who reads it;
    so is a kind whose batches lack what the recipe needs. ``legacy``: a 0.1 dump, whose keys
    for other kinds held defaults and are dropped."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"data: expected a mapping of keys, got {describe(raw)}")
    raw = dict(raw)
    kind = raw.pop("kind", spec.default_kind)
    if not isinstance(kind, str) or kind not in sources:
        raise ConfigError(
            f"data.kind: unknown kind {kind!r}{did_you_mean(str(kind), sources)}; known: {', '.join(sources)}"
        )
    source = sources[kind]
    if not satisfies(spec.needs, source.batch_keys):
        wanted = " or ".join(", ".join(alt) for alt in spec.needs)
        fits = compatible_kinds(spec, sources)
        raise ConfigError(
            f"data.kind: recipe {spec.name} trains on batches of {wanted}; the {kind} source gives "
            f"{', '.join(source.batch_keys)} (kinds that fit: {', '.join(fits)})"
        )
    option_names = [f.name for f in dataclasses.fields(source.Options) if f.init]
    reads = source_shared_keys(source.Options)
    nested = raw.pop(kind, None)
    if nested is not None and not isinstance(nested, Mapping):
        raise ConfigError(f"data.{kind}: expected a mapping of the {kind} source's keys, got {describe(nested)}")
    shared: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for key, value in raw.items():
        if key in reads:
            shared[key] = value
        elif key in option_names:
            if nested is not None and key in nested and nested[key] != value:
                raise ConfigError(f"data.{key} and data.{kind}.{key} disagree ({value!r} and {nested[key]!r})")
            own[key] = value
        elif legacy:
            continue
        elif key in sources and isinstance(value, Mapping):
            raise ConfigError(f"data.{key}: options of the {key} source, but data.kind is {kind}")
        else:
            readers = [k for k, src in sources.items() if key in _source_keys(src)]
            if readers:
                raise ConfigError(f"data.{key}: not used with data.kind {kind} (read by: {', '.join(readers)})")
            valid = [*reads, *option_names]
            raise ConfigError(
                f"data.{key}: unknown key{did_you_mean(key, valid)}; the {kind} source reads: {', '.join(valid)}"
            )
    own.update(nested or {})
    options = from_dict(source.Options, own, f"data.{kind}" if nested else "data")
    shared = {**getattr(source.Options, "shared_defaults", {}), **shared}
    if "channels" in getattr(source.Options, "from_data", ()) and "channels" not in shared:
        shared["channels"] = None  # from the data (the source's `inspect`), once it is located
    config = from_dict(DataConfig, {"kind": kind, **shared}, "data")
    if config.channels is None and "channels" not in getattr(source.Options, "from_data", ()):
        raise ConfigError(f"data.channels: must be 1 or 3 (the {kind} source cannot tell from its data), got null")
    config = dataclasses.replace(config, source=options)
    try:
        source.check(options, config)
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith("data.") else f"data.{text}") from None
    return config


def _source_keys(source: SourceSpec) -> set[str]:
    return {f.name for f in dataclasses.fields(source.Options) if f.init} | set(source_shared_keys(source.Options))


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict update; a section given as a mapping is merged, except network specs whose
    `name` changes (a different network's defaults would not fit)."""
    for key, value in override.items():
        old = base.get(key)
        if isinstance(old, dict) and isinstance(value, Mapping):
            if "name" in old and value.get("name", old["name"]) != old["name"]:
                base[key] = dict(value)
            else:
                base[key] = _merge(old, value)
        else:
            base[key] = value
    return base


# --------------------------------------------------------------------------------------------
# files and overrides


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str) -> Path:
    """`horse2zebra` -> the packaged preset; an existing path (or a .yaml name) is used as it is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        raise ConfigError(
            f"unknown preset '{name_or_path}'{did_you_mean(name_or_path, list_presets())}; "
            f"known presets: {', '.join(list_presets())}"
        )
    return preset


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yamltext.load(path.read_bytes().decode("utf-8"))
    except yamltext.YamlRefused as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings to a raw config dict; values are parsed as YAML scalars."""
    data = _deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. optim.lr=1e-4")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not key or any(not p for p in parts):
            raise ConfigError(f"--set {item}: empty key")
        try:
            value = yamltext.load(raw) if raw.strip() else ""
        except yamltext.YamlRefused as exc:
            raise ConfigError(f"--set {key}: the value {exc}") from None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse value {raw[:80]!r}") from None
        _drop_other_spelling(data, parts)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _drop_other_spelling(data: dict[str, Any], parts: list[str]) -> None:
    """A source key has two spellings, ``data.KEY`` and ``data.<kind>.KEY``: a --set of one replaces
    both, so the command line always wins over the file, whichever spelling each uses."""
    section = data.get("data")
    if parts[0] != "data" or not isinstance(section, dict):
        return
    if len(parts) == 2:
        for value in section.values():
            if isinstance(value, dict):
                value.pop(parts[1], None)
    elif len(parts) == 3:
        section.pop(parts[2], None)


def _deepcopy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deepcopy(v) for v in data]
    return data


def load_config_with(
    name_or_path: str,
    overrides: Sequence[str],
    recipes: Mapping[str, type[Recipe]],
    sources: Mapping[str, SourceSpec],
) -> Config:
    """Load a preset name or YAML path, apply `--set` overrides, validate against ``recipes``."""
    path = resolve_config_path(name_or_path)
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    data = switch_data_kind(data, overrides, recipes, sources)
    return parse_config(apply_overrides(data, overrides), recipes, sources)


def switch_data_kind(
    data: dict[str, Any],
    overrides: Sequence[str],
    recipes: Mapping[str, type[Recipe]],
    sources: Mapping[str, SourceSpec],
) -> dict[str, Any]:
    """``--set data.kind=NEW`` on a config written for another source: the old source's section
    (``data.<old>:``) and the ``data.KEY`` settings the new source does not read are dropped, with
    a one-line note, so that a preset's source can be switched (digits-cgan onto class folders)."""
    kinds = [item.split("=", 1)[1].strip() for item in overrides if item.split("=", 1)[0].strip() == "data.kind"]
    section = data.get("data")
    if not kinds or not isinstance(section, dict):
        return data
    recipe = data.get("recipe", "cyclegan")
    old = section.get("kind", recipes[recipe].default_kind if isinstance(recipe, str) and recipe in recipes else None)
    new = kinds[-1]
    if old == new or old not in sources or new not in sources:
        return data  # nothing switched, or an unknown kind: parsing names it
    reads = _source_keys(sources[new])
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in section.items():
        if key == old and isinstance(value, Mapping):
            dropped += [f"data.{old}.{k}" for k in value]
        elif key == "kind" or key in reads or (key in sources and key != old):
            kept[key] = value
        else:
            dropped.append(f"data.{key}")
    if dropped:
        logger.warning(
            "data.kind %s replaces %s: dropped the %s settings the %s source does not read (%s)",
            new,
            old,
            old,
            new,
            ", ".join(dropped),
        )
    return {**data, "data": kept}


def dump_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML (what `cyclekit train PATH` can load back)."""
    atomic_write(path, yamltext.dump(config.to_dict()))
