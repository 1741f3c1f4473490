"""Typed, frozen experiment configs: YAML in, validated dataclasses out.

One `Config` describes a whole run. Every component gets only its own section (`DataConfig`,
`LossConfig`, ...), never the whole experiment. Unknown keys, wrong types and contradictory values
raise `ConfigError` naming the dotted key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from cyclekit.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

GanMode = Literal["vanilla", "lsgan", "hinge", "wgan-gp"]
Preprocess = Literal["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"]
DataKind = Literal["unpaired", "folder", "ring", "mnist", "demo"]


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are augmented."""

    kind: DataKind = "unpaired"
    dataset: Optional[str] = None  # catalogue name (horse2zebra, ...) used to find or fetch the data
    root: Optional[str] = None  # folder: trainA/trainB for unpaired, images for `folder`
    domain_a: str = "A"
    domain_b: str = "B"
    channels: int = 3
    preprocess: Preprocess = "resize_and_crop"
    # 286 -> random 256 crop + flip: Zhu et al. 2017, appendix 7.1 ("jittering").
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    batch_size: int = 1
    workers: int = 0
    strict: bool = False  # True: the first unreadable image stops the run instead of being skipped
    recursive: bool = False
    epoch_size: int = 8192  # samples per epoch for generated data (ring); folders use their size
    # demo dataset: how many generated scenes per split and their size
    demo_train: int = 160
    demo_test: int = 16
    demo_size: int = 64

    def __post_init__(self) -> None:
        _positive(self, "data", "channels", "load_size", "crop_size", "batch_size", "epoch_size")
        if self.channels not in (1, 3):
            raise ConfigError(f"data.channels: must be 1 or 3, got {self.channels}")
        if self.workers < 0:
            raise ConfigError(f"data.workers: must be >= 0, got {self.workers}")
        resizes = self.preprocess in ("resize_and_crop", "scale_width_and_crop")
        if resizes and self.crop_size > self.load_size:
            raise ConfigError(f"data.crop_size: {self.crop_size} is larger than data.load_size {self.load_size}")
        if self.kind == "unpaired" and self.crop_size < 24 and self.preprocess != "none":
            # The 70x70 PatchGAN's four 4x4 convs need at least 24 px to produce any output.
            raise ConfigError(f"data.crop_size: must be >= 24 for the PatchGAN, got {self.crop_size}")


@dataclass(frozen=True)
class ModelConfig:
    """Which networks to build. The option dicts are validated by `cyclekit.models.build_model`."""

    generator: Mapping[str, Any] = field(default_factory=lambda: {"name": "resnet"})
    discriminator: Mapping[str, Any] = field(default_factory=lambda: {"name": "patchgan"})
    init: Literal["normal", "xavier", "kaiming", "orthogonal"] = "normal"
    init_gain: float = 0.02  # N(0, 0.02): Radford et al. 2016; Zhu et al. 2017 reference code
    latent_dim: int = 100  # noise size for the unconditional GAN recipe
    pack: int = 1  # GAN recipe: samples per discriminator input (PacGAN, Lin et al. 2018); 1 = off

    def __post_init__(self) -> None:
        for part in ("generator", "discriminator"):
            spec = getattr(self, part)
            if not isinstance(spec.get("name"), str):
                raise ConfigError(f"model.{part}.name: required (e.g. name: resnet)")
        _positive(self, "model", "init_gain", "latent_dim", "pack")


@dataclass(frozen=True)
class LossConfig:
    gan_mode: GanMode = "lsgan"  # LSGAN: Zhu et al. 2017, Sec. 4 (Mao et al. 2017)
    lambda_cycle: float = 10.0  # per direction: Zhu et al. 2017, Sec. 4
    # Identity weight as a fraction of lambda_cycle (reference: 0.5 -> 5.0); 0 disables it.
    lambda_identity: float = 0.5
    gp_weight: float = 10.0  # WGAN-GP penalty: Gulrajani et al. 2017, Alg. 1
    d_scale: float = 0.5  # "divide the objective by 2 while optimizing D": Zhu et al. 2017, Sec. 4

    def __post_init__(self) -> None:
        for name in ("lambda_cycle", "lambda_identity", "gp_weight", "d_scale"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.{name}: must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4  # Adam, Zhu et al. 2017, Sec. 4
    lr_d: Optional[float] = None  # discriminator lr; defaults to lr
    beta1: float = 0.5
    beta2: float = 0.999
    d_steps: int = 1  # discriminator updates per generator update (5 is usual for WGAN-GP)

    def __post_init__(self) -> None:
        _positive(self, "optim", "lr", "d_steps")
        if self.lr_d is not None and self.lr_d <= 0:
            raise ConfigError(f"optim.lr_d: must be > 0, got {self.lr_d}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"optim.{name}: must be in [0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class TrainConfig:
    # 100 epochs at the initial lr, then 100 decaying linearly to zero: Zhu et al. 2017, Sec. 4.
    epochs: int = 100
    decay_epochs: int = 100
    max_steps: Optional[int] = None  # stop early after this many steps (total, across resumes)
    pool_size: int = 50  # history of generated images for D: Shrivastava et al. 2017
    log_every: int = 50
    sample_every: int = 0  # steps between sample grids; 0 = once per epoch
    checkpoint_every: int = 500  # steps; a checkpoint is also written at every epoch end
    device: str = "auto"
    out_dir: str = "runs"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.decay_epochs < 0 or self.epochs + self.decay_epochs == 0:
            raise ConfigError("train.epochs: epochs + decay_epochs must be > 0")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"train.max_steps: must be > 0, got {self.max_steps}")
        _positive(self, "train", "log_every", "checkpoint_every")
        for name in ("pool_size", "sample_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name}: must be >= 0, got {getattr(self, name)}")
        if not (self.device in ("auto", "cpu", "mps") or self.device.startswith("cuda")):
            raise ConfigError(f"train.device: expected auto, cpu, cuda, cuda:N or mps, got {self.device!r}")


@dataclass(frozen=True)
class Config:
    """A whole experiment. `recipe` picks the training recipe: `cyclegan` or `gan`."""

    recipe: Literal["cyclegan", "gan"] = "cyclegan"
    name: str = "run"
    description: str = ""
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ConfigError(f"name: not usable as a folder name: {self.name!r}")
        if self.recipe == "cyclegan" and self.data.kind not in ("unpaired", "demo"):
            raise ConfigError(f"data.kind: recipe cyclegan needs unpaired or demo data, got {self.data.kind}")
        if self.recipe == "gan" and self.data.kind in ("unpaired", "demo"):
            raise ConfigError(f"data.kind: recipe gan needs ring, folder or mnist data, got {self.data.kind}")
        if self.data.batch_size % self.model.pack:
            raise ConfigError(
                f"model.pack: data.batch_size {self.data.batch_size} is not divisible by pack {self.model.pack}"
            )
        if self.recipe == "cyclegan" and self.model.pack != 1:
            raise ConfigError("model.pack: packing is for the gan recipe; CycleGAN uses pack 1")
        if self.loss.gan_mode == "wgan-gp" and _has_batchnorm(self.model.discriminator):
            # The gradient penalty is per sample; batch norm couples samples (Gulrajani et al. 2017, Sec. 4).
            raise ConfigError("model.discriminator.norm: wgan-gp needs a discriminator without batch norm")

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _has_batchnorm(spec: Mapping[str, Any]) -> bool:
    return spec.get("norm") == "batch" or (spec.get("name") == "dcgan_d" and spec.get("norm", "batch") == "batch")


def _positive(obj: Any, section: str, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            raise ConfigError(f"{section}.{name}: must be > 0, got {value}")


def _plain(value: Any) -> Any:
    """Dataclass dicts -> YAML/JSON-safe plain values (tuples become lists, mappings dicts)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# dict -> dataclass with type checking


def from_dict(cls: type, data: Any, key: str = "") -> Any:
    """Build dataclass `cls` from a mapping, checking keys and types; errors name the dotted key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{key or 'config'}: expected a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{key}.{unknown[0]}" if key else str(unknown[0])
        raise ConfigError(f"{where}: unknown key; valid keys: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        sub = f"{key}.{name}" if key else name
        kwargs[name] = _coerce(hints[name], value, sub)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - all fields have defaults
        raise ConfigError(f"{key or 'config'}: {exc}") from None


def _coerce(tp: Any, value: Any, key: str) -> Any:
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
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if tp is Any:
        return value
    if origin in (Mapping, dict) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {_describe(value)}")
        return dict(value)
    if origin in (tuple, Sequence, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_describe(value)}")
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            # PyYAML follows YAML 1.1, where "1e-4" (no dot) is a string, not a number.
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_describe(value)}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp}")  # pragma: no cover


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "null"


# --------------------------------------------------------------------------------------------
# files and overrides


def list_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str) -> Path:
    """`horse2zebra` -> configs/horse2zebra.yaml; an existing path is used as it is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    preset = CONFIG_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        known = list_presets()
        if not known:  # e.g. installed from a wheel, without the checkout's configs/
            raise ConfigError(f"unknown preset '{name_or_path}': no presets in {CONFIG_DIR}; pass a YAML config path")
        raise ConfigError(f"unknown preset '{name_or_path}'; known presets: {', '.join(known)}")
    return preset


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
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
            raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. train.lr=1e-4")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not key or any(not p for p in parts):
            raise ConfigError(f"--set {item}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}") from None
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


def _deepcopy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deepcopy(v) for v in data]
    return data


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> Config:
    """Load a preset name or YAML path, apply `--set` overrides, validate."""
    path = resolve_config_path(name_or_path)
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    return from_dict(Config, apply_overrides(data, overrides))


def config_from_dict(data: Mapping[str, Any]) -> Config:
    return from_dict(Config, dict(data))


def dump_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML (what `cyclekit train PATH` can load back)."""
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
