"""Inference bundles: `config.json` + one `.safetensors` per network, described by one dataclass.

A bundle says what it can do, so consumers dispatch on that and never on a recipe's name:
`translates` maps each direction it translates ("AtoB", "BtoA") to a network, `samples` names
the network a GAN samples from. It also records everything pre/post-processing needs (channels,
normalisation, the size multiple and minimum side the generator's architecture requires, domain
names), so loading it never needs the training config or flags.

`write_bundle` is the one writer, `read_bundle` the one reader: it validates every field and
migrates the format-1 bundles of cyclekit 0.1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

from cyclekit import __version__
from cyclekit.atomic import readable_folder, staged_folder
from cyclekit.choices import DIRECTIONS, PREPROCESS_MODES
from cyclekit.errors import ConfigError, CyclekitError
from cyclekit.records import load_json
from cyclekit.typed import from_dict

if TYPE_CHECKING:  # torch only where weights are touched: reading config.json stays light
    import torch
    from torch import nn

BUNDLE_FORMAT = "cyclekit-bundle"
BUNDLE_VERSION = 2
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class NetworkEntry:
    """One network: how to rebuild it and where its weights are."""

    arch: str
    options: dict[str, Any]
    file: str = ""  # set by the writer: <key>.safetensors
    sha256: str = ""  # set by the writer


@dataclass(frozen=True)
class Condition:
    """A condition given to the generator as a vector of ``dim`` floats (StackGAN): a caption embedded
    by the sentence model ``model`` (kind text: `cyclekit sample --text`), a precomputed embedding
    (kind vector; ``model`` says what made it), or the one-hot vector of a class (kind onehot:
    ``dim`` classes, named in `Sampling.classes`)."""

    kind: Literal["text", "vector", "onehot"]
    dim: int
    model: str = ""  # text: the embedding model (all-MiniLM-L6-v2, cyclekit-words-128)

    def __post_init__(self) -> None:
        if self.dim <= 0:
            raise ConfigError(f"samples.condition.dim: must be > 0, got {self.dim}")


@dataclass(frozen=True)
class Sampling:
    """What a GAN bundle samples: `network` maps `latent_dim` noise (and, for a conditional GAN,
    a class index or a condition vector) to images or 2-D points."""

    network: str
    latent_dim: int
    output: Literal["image", "points"] = "image"
    # The condition: the class names of a class-conditional generator G(z, y), y = 0..K-1 indexing
    # them; empty for an unconditional one.
    classes: tuple[str, ...] = ()
    # A generator given its condition as a vector, G(z, c) (see Condition); None: a class index
    # (classes) or nothing.
    condition: Optional[Condition] = None
    # A stacked generator (StackGAN): the side of each stage's image, low to high; its network's
    # `stages(z, c)` returns them all (the network itself the last). Empty: one stage.
    stages: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"samples.classes: names must be unique, got {list(self.classes)}")
        if any(not name.strip() for name in self.classes):
            raise ConfigError(f"samples.classes: names must not be empty, got {list(self.classes)}")
        c = self.condition
        if c is not None and c.kind == "onehot" and c.dim != len(self.classes):
            raise ConfigError(f"samples.condition: a one-hot condition of {c.dim} needs {c.dim} classes")
        if c is not None and c.kind != "onehot" and self.classes:
            raise ConfigError(f"samples.classes: a {c.kind} condition has no classes")


@dataclass(frozen=True)
class TestTime:
    """How the generators run at inference (Isola et al. 2017, Sec. 3.3: pix2pix keeps dropout on
    and normalises with the statistics of the test image, not the training averages)."""

    dropout: bool = False  # apply dropout (seeded, so a repeated call gives the same image)
    batch_norm: Literal["running", "sample"] = "running"  # sample: per-image statistics


@dataclass(frozen=True)
class Bundle:
    """Everything in a bundle's config.json."""

    recipe: str
    networks: dict[str, NetworkEntry]
    translates: dict[str, str] = field(default_factory=dict)  # direction -> network key
    samples: Optional[Sampling] = None
    channels: Optional[int] = 3  # image channels; None for 2-D point GANs
    mean: float = 0.5  # x = (pixel / 255 - mean) / std; pixel = (y * std + mean) * 255
    std: float = 0.5
    size_multiple: int = 1  # sides must be multiples of this (from the generator's architecture)
    min_size: int = 1  # and at least this
    domains: dict[str, str] = field(default_factory=lambda: {"A": "A", "B": "B"})
    test_time: TestTime = field(default_factory=TestTime)
    train_size: Optional[int] = None  # crop size seen in training
    load_size: Optional[int] = None  # training images were resized to this before the crop
    preprocess: Optional[str] = None
    step: int = 0
    epoch: int = 0
    run: str = ""  # a short name (outputs are named after it, made safe: cyclekit.inference.provenance)
    # The files `cyclekit import` / `pretrained download` read the generators from; empty for a trained bundle.
    imported_from: tuple[str, ...] = ()
    cyclekit_version: str = __version__
    format: str = BUNDLE_FORMAT
    format_version: int = BUNDLE_VERSION

    def __post_init__(self) -> None:
        for direction, key in self.translates.items():
            if direction not in DIRECTIONS:
                raise ConfigError(f"translates: unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
            if key not in self.networks:
                raise ConfigError(f"translates.{direction}: no network {key!r} in networks")
        if self.samples is not None and self.samples.network not in self.networks:
            raise ConfigError(f"samples.network: no network {self.samples.network!r} in networks")
        if not self.translates and self.samples is None:
            raise ConfigError("translates: the bundle neither translates nor samples")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"channels: must be 1 or 3, got {self.channels}")
        if not self.std or self.size_multiple < 1 or self.min_size < 1:
            raise ConfigError("std, size_multiple, min_size: std must be non-zero, sizes >= 1")
        if set(self.domains) != {"A", "B"}:
            raise ConfigError(f"domains: expected names for A and B, got {sorted(self.domains)}")
        if self.preprocess is not None and self.preprocess not in PREPROCESS_MODES:
            raise ConfigError(f"preprocess: unknown mode {self.preprocess!r}; valid: {', '.join(PREPROCESS_MODES)}")

    def network_for(self, direction: str) -> str:
        """The network key translating ``direction``; CyclekitError naming the ones it has."""
        if direction not in self.translates:
            have = ", ".join(self.translates) or "none (it samples; use `cyclekit sample`)"
            raise CyclekitError(f"this bundle does not translate {direction}; it translates {have}")
        return self.translates[direction]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def write_bundle(folder: Path, bundle: Bundle, modules: Mapping[str, nn.Module]) -> Bundle:
    """Write ``modules`` (one per entry of ``bundle.networks``) and config.json as the bundle
    ``folder``, replacing any bundle there as a whole (`cyclekit.atomic.staged_folder`): a kill at
    any moment leaves the previous bundle or the new one, never a mix of the two. Files in the
    folder that are not the bundle's own (exported .onnx files, a user's notes) are kept.
    Returns the bundle with file names and hashes filled in.
    """
    from safetensors.torch import save

    if set(modules) != set(bundle.networks):
        raise ValueError(f"modules {sorted(modules)} do not match the bundle's networks {sorted(bundle.networks)}")
    entries = {}
    with staged_folder(folder, keep=lambda name: not _owned(name)) as tmp:
        for key, module in modules.items():
            state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            entry = bundle.networks[key]
            data = save(state, metadata={"arch": entry.arch})
            fname = f"{key}.safetensors"
            (tmp / fname).write_bytes(data)
            entries[key] = dataclasses.replace(entry, file=fname, sha256=hashlib.sha256(data).hexdigest())
        bundle = dataclasses.replace(bundle, networks=entries, cyclekit_version=__version__)
        (tmp / "config.json").write_text(json.dumps(bundle.to_json(), indent=2) + "\n", encoding="utf-8")
    return bundle


def _owned(name: str) -> bool:
    """The files a bundle consists of (replaced with it); everything else in its folder is kept."""
    return name == "config.json" or name.endswith(".safetensors")


def bundle_dir(path: str | Path) -> Path:
    """A run dir (holding bundle/) or a bundle dir (holding config.json) -> the bundle dir."""
    path = Path(path)
    if not path.exists():
        path = readable_folder(path)  # a bundle folder whose swap a kill interrupted
    if not path.exists():
        raise CyclekitError(f"model path not found: {path}")
    inside = readable_folder(path / "bundle")  # undoes a swap a kill interrupted
    if (inside / "config.json").is_file():
        return inside
    if (path / "config.json").is_file():
        return path
    raise CyclekitError(f"{path} is neither a run dir with bundle/ nor a bundle dir with config.json")


def read_bundle(path: str | Path) -> Bundle:
    """Read and validate a bundle's config.json (from a run dir or bundle dir)."""
    folder = bundle_dir(path)
    cfg_path = folder / "config.json"
    raw = load_json(cfg_path)
    if not isinstance(raw, dict) or raw.get("format") != BUNDLE_FORMAT:
        raise CyclekitError(f"{cfg_path} is not a cyclekit bundle config")
    version = raw.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CyclekitError(f"{cfg_path}: format_version must be an integer, got {version!r}")
    if version > BUNDLE_VERSION:
        raise CyclekitError(f"{cfg_path} has bundle format {version}; this cyclekit reads up to {BUNDLE_VERSION}")
    if version < 2:
        raw = _from_format_1(raw)
    try:
        bundle = from_dict(Bundle, raw)
    except ConfigError as exc:
        raise CyclekitError(f"{cfg_path}: {exc}") from None
    for key, entry in bundle.networks.items():
        if Path(entry.file).name != entry.file or entry.file in ("", ".", ".."):
            raise CyclekitError(
                f"{cfg_path}: networks.{key}.file must be a file name inside the bundle, got {entry.file!r}"
            )
        if entry.sha256 and not _SHA256.fullmatch(entry.sha256):
            raise CyclekitError(f"{cfg_path}: networks.{key}.sha256 is not a sha256 hex digest")
    return _default_class_names(bundle)


def with_class_names(bundle: Bundle, names: Sequence[str] | None) -> Bundle:
    """``bundle`` with its classes named ``names`` (in index order: class k is ``names[k]``), as the
    training data named them (class folders, an MNIST folder's classes.txt); unchanged when it does
    not sample from a class or ``names`` do not count its classes."""
    samples = bundle.samples
    if samples is None or not names or len(names) != len(samples.classes):
        return bundle
    try:
        named = dataclasses.replace(samples, classes=tuple(str(name) for name in names))
    except ConfigError:  # duplicate or empty names: keep the indices rather than fail to write
        return bundle
    return dataclasses.replace(bundle, samples=named)


def _default_class_names(bundle: Bundle) -> Bundle:
    """A bundle that does not name the classes its class-conditional generator takes (its network's
    ``n_classes``): they are called "0".."K-1"."""
    samples = bundle.samples
    if samples is None or samples.classes or samples.condition is not None:
        return bundle
    k = bundle.networks[samples.network].options.get("n_classes")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        return bundle
    return dataclasses.replace(bundle, samples=dataclasses.replace(samples, classes=tuple(map(str, range(k)))))


def _from_format_1(raw: dict[str, Any]) -> dict[str, Any]:
    """cyclekit 0.1's bundles: a free dict with `kind` (cyclegan | gan) instead of capabilities."""
    kind = raw.get("kind")
    networks = raw.get("networks")
    if kind not in ("cyclegan", "gan") or not isinstance(networks, dict):
        raise CyclekitError(f"bundle format 1 with unknown kind {kind!r}")
    norm = raw.get("normalization") if isinstance(raw.get("normalization"), dict) else {}
    out: dict[str, Any] = {
        "recipe": kind,
        "networks": networks,
        "mean": norm.get("mean", 0.5),
        "std": norm.get("std", 0.5),
        "step": raw.get("step", 0),
        "epoch": raw.get("epoch", 0),
        "run": raw.get("run") or "",
        "cyclekit_version": str(raw.get("cyclekit_version", "0.1.0")),
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
    }
    if kind == "cyclegan":
        out["translates"] = {d: f"G_{d}" for d in DIRECTIONS if f"G_{d}" in networks}
        out["channels"] = raw.get("channels", 3)
        out["domains"] = raw.get("domains") or {"A": "A", "B": "B"}
        out["size_multiple"] = raw.get("size_multiple", 4)
        out["min_size"] = 2 * out["size_multiple"]
        out["train_size"] = raw.get("train_size")
        # 0.1 wrote some bundles with an invalid "resize_crop"; the field is informational.
        out["preprocess"] = raw.get("preprocess") if raw.get("preprocess") in PREPROCESS_MODES else None
    else:
        channels = raw.get("channels")
        out["channels"] = channels
        out["samples"] = {
            "network": "G",
            "latent_dim": raw.get("latent_dim"),
            "output": "image" if channels else "points",
        }
    return out


def load_network(
    folder: Path, bundle: Bundle, key: str, device: torch.device | str = "cpu", *, dropout: bool | None = None
) -> nn.Module:
    """Rebuild network ``key`` from its recorded architecture, load its weights, apply the
    bundle's test-time settings and return it in eval mode on ``device``.

    ``dropout``: override the bundle's test-time dropout (export runs deterministic graphs)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from cyclekit.models import build_model

    if key not in bundle.networks:
        raise CyclekitError(f"bundle {folder} has no network {key!r}; it has {', '.join(bundle.networks) or 'none'}")
    entry = bundle.networks[key]
    try:
        net = build_model(entry.arch, entry.options, key=f"networks.{key}")
    except ConfigError as exc:
        raise CyclekitError(f"{folder / 'config.json'}: {exc}") from None
    path = Path(folder) / entry.file
    if not path.is_file():
        raise CyclekitError(f"bundle {folder} is missing its weights file {entry.file}")
    if entry.sha256 and file_sha256(path) != entry.sha256:
        raise CyclekitError(
            f"{path} does not match the sha256 in {folder / 'config.json'}; the bundle is damaged or was edited"
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CyclekitError(f"cannot read weights {path}: {' '.join(str(exc).split())}") from None
    import torch

    bad = [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CyclekitError(
            f"weights {path} hold NaN or infinite values (in {bad[0]}); the model diverged or is damaged"
        )
    from cyclekit.nn.weights import load_weights

    load_weights(net, state, f"weights {path}", f"networks.{key}.options")
    net.eval()
    if bundle.test_time.batch_norm == "sample":
        net = per_sample_batch_norm(net)
    if bundle.test_time.dropout if dropout is None else dropout:
        for module in net.modules():
            if module.__class__.__name__.startswith("Dropout"):
                module.train()
    return net.to(device)


def per_sample_batch_norm(net: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by an instance norm with its affine weights and eps: each image
    is normalised with its own statistics, as a batch-norm net run in training mode on a batch
    of one (the pix2pix test protocol), independent of batch mates and exportable to ONNX."""
    from torch import nn

    for module in list(net.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                norm = nn.InstanceNorm2d(child.num_features, eps=child.eps, affine=child.affine)
                if child.affine:
                    norm.weight.data.copy_(child.weight.data)
                    norm.bias.data.copy_(child.bias.data)
                setattr(module, child_name, norm)
    return net


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
