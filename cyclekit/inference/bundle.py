"""Inference bundles: `config.json` + one `.safetensors` per network, described by one dataclass.

A bundle says what it can do, so consumers dispatch on that and never on a recipe's name:
`translates` maps each direction it translates ("AtoB", "BtoA") to a network, `samples` names
the network a GAN samples from and declares its sampling signature (inputs and outputs). It also
records everything pre/post-processing needs (channels, normalisation, the size multiple and
minimum side the generator's architecture requires, domain names), so loading it never needs the
training config or flags.

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
    by the sentence model ``model`` (kind text: `cyclekit sample --text`) or a precomputed embedding
    (kind vector; ``model`` says what made it). A class is never a condition vector in a bundle: it
    is the class index of `Sampling.classes`, whatever form the network takes it in (`Sampling.class_feed`);
    kind onehot is what bundles written before the signature said instead (migrated on reading), and what
    a recipe may call its own class condition."""

    kind: Literal["text", "vector", "onehot"]
    dim: int
    model: str = ""  # text: the embedding model (all-MiniLM-L6-v2, cyclekit-words-128)

    def __post_init__(self) -> None:
        if self.dim <= 0:
            raise ConfigError(f"samples.condition.dim: must be > 0, got {self.dim}")


# The sampling signature: what a sampling generator takes and gives, one typed description that
# `cyclekit sample` (cyclekit.inference.sampling) and the ONNX sampler (cyclekit.export.onnx, and the
# torch-free scripts/onnx_sample.py through its metadata) are both driven by. The bundle declares it
# in `Sampling` (latent_dim: the noise; classes: the class index; condition: the embedding; stages:
# the outputs) and `Sampling.signature` spells it out as ordered, named inputs and outputs.
NOISE_INPUT, CLASS_INPUT, EMBEDDING_INPUT = "z", "label", "embedding"
FINAL_OUTPUT = "output"


@dataclass(frozen=True)
class SampleInput:
    """One input of a sampling generator, as `cyclekit sample` and G.onnx take it."""

    name: str  # its name in G.onnx: z, label, embedding
    kind: Literal["noise", "class", "embedding"]
    size: int  # noise, embedding: the vector's length; class: the number of classes
    dtype: Literal["float32", "int64"] = "float32"  # class: int64 (an index); the others float32
    classes: tuple[str, ...] = ()  # class: the names, in index order
    model: str = ""  # embedding: what made it (the embedding model)
    source: str = ""  # embedding: text (cyclekit embeds a caption with `model`) or vector (precomputed)


@dataclass(frozen=True)
class SampleOutput:
    """One output of a sampling generator: the image of one stage (or the 2-D points)."""

    name: str  # output (the last stage: the network's own output), stage1, stage2, ... (the lower ones)
    kind: Literal["image", "points"]
    size: int = 0  # image: its side in pixels (0: not recorded); points: 2


@dataclass(frozen=True)
class Signature:
    """A sampling generator's inputs (in call order: noise, then its conditions) and outputs (low to
    high resolution: one per declared stage, the last the network's own output)."""

    inputs: tuple[SampleInput, ...]
    outputs: tuple[SampleOutput, ...]

    def input(self, kind: str) -> Optional[SampleInput]:
        """The input of ``kind`` (noise, class, embedding), or None when the generator takes none."""
        return next((i for i in self.inputs if i.kind == kind), None)

    @property
    def classes(self) -> tuple[str, ...]:
        """The names of the classes of the class input (empty: not conditioned on a class)."""
        found = self.input("class")
        return found.classes if found is not None else ()

    def output_names(self) -> list[str]:
        """The outputs in G.onnx's order: the final image first (what a consumer reads as
        `session.run(...)[0]`), then the lower stages, low to high."""
        return [self.outputs[-1].name, *(o.name for o in self.outputs[:-1])]

    def to_metadata(self) -> dict[str, str]:
        """The signature as ONNX metadata_props (strings; `signature_from_metadata` reads it back)."""
        return {"signature": json.dumps(dataclasses.asdict(self))}


def signature_from_metadata(metadata: Mapping[str, str]) -> Signature:
    """The signature an exported sampler's metadata_props declare (`Signature.to_metadata`)."""
    try:
        return from_dict(Signature, json.loads(metadata["signature"]), "signature")
    except (KeyError, ValueError, TypeError, RecursionError) as exc:
        raise CyclekitError(f"the sampler's metadata has no usable signature ({exc})") from None
    except ConfigError as exc:
        raise CyclekitError(f"the sampler's metadata: {exc}") from None


def stage_name(k: int, n: int) -> str:
    """Output ``k`` of ``n`` (0: the lowest stage): `output` for the last, `stage<k+1>` for the others."""
    return FINAL_OUTPUT if k == n - 1 else f"stage{k + 1}"


@dataclass(frozen=True)
class Sampling:
    """What a GAN bundle samples: `network` maps `latent_dim` noise (and, for a conditional GAN,
    a class index and/or a condition vector) to images or 2-D points; `signature` spells it out."""

    network: str
    latent_dim: int
    output: Literal["image", "points"] = "image"
    # The class input: the class names of a class-conditional generator G(z, y), y = 0..K-1 indexing
    # them; empty for a generator not conditioned on a class.
    classes: tuple[str, ...] = ()
    # The embedding input: a generator given a vector, G(z, c) (see Condition); None: none.
    condition: Optional[Condition] = None
    # The outputs: the side of each stage's image, low to high. Several: the network's `stages(...)`
    # returns them all (its forward the last); one: its forward. Empty: one output of unrecorded side.
    stages: tuple[int, ...] = ()
    # How the network takes the class index: as it is (int64) or as its one-hot vector (float32, K).
    class_feed: Literal["index", "onehot"] = "index"

    def __post_init__(self) -> None:
        c = self.condition
        if c is not None and c.kind == "onehot":  # written before the signature: a class as a condition vector
            object.__setattr__(self, "condition", None)
            object.__setattr__(self, "class_feed", "onehot")
            if not self.classes:
                object.__setattr__(self, "classes", tuple(map(str, range(c.dim))))
            if c.dim != len(self.classes):
                raise ConfigError(f"samples.condition: a one-hot condition of {c.dim} needs {c.dim} classes")
        if self.latent_dim < 1:
            raise ConfigError(f"samples.latent_dim: must be >= 1, got {self.latent_dim}")
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"samples.classes: names must be unique, got {list(self.classes)}")
        if any(not name.strip() for name in self.classes):
            raise ConfigError(f"samples.classes: names must not be empty, got {list(self.classes)}")
        if self.class_feed != "index" and not self.classes:
            raise ConfigError(f"samples.class_feed: {self.class_feed} needs classes")
        if any(side < 1 for side in self.stages):
            raise ConfigError(f"samples.stages: sides must be >= 1, got {list(self.stages)}")
        if self.output == "points" and len(self.stages) > 1:
            raise ConfigError("samples.stages: a generator of 2-D points has one output")

    @property
    def signature(self) -> Signature:
        inputs = [SampleInput(NOISE_INPUT, "noise", self.latent_dim)]
        if self.classes:
            inputs.append(SampleInput(CLASS_INPUT, "class", len(self.classes), "int64", classes=self.classes))
        if self.condition is not None:
            c = self.condition
            inputs.append(SampleInput(EMBEDDING_INPUT, "embedding", c.dim, model=c.model, source=c.kind))
        if self.output == "points":
            outputs = [SampleOutput(FINAL_OUTPUT, "points", 2)]
        else:
            sides = self.stages or (0,)
            outputs = [SampleOutput(stage_name(k, len(sides)), "image", s) for k, s in enumerate(sides)]
        return Signature(tuple(inputs), tuple(outputs))


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
        data = dataclasses.asdict(self)
        if data["samples"] is not None and data["samples"]["class_feed"] == "index":
            del data["samples"][
                "class_feed"
            ]  # the default, left out: a cyclekit from before the signature reads it too
        return data


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
    return _declared_stages(_default_class_names(bundle))


def samples(path: str | Path) -> bool:
    """Whether ``path`` (a run or bundle folder) holds a generator that samples; False for any
    other model, a translation one or one that does not read (its own path reports why)."""
    try:
        return read_bundle(path).samples is not None
    except CyclekitError:
        return False


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


def _declared_stages(bundle: Bundle) -> Bundle:
    """A bundle written before its outputs were declared (an image generator with no `stages`): its
    one output is the image of the training size."""
    samples = bundle.samples
    if samples is None or samples.stages or samples.output != "image" or not bundle.train_size:
        return bundle
    return dataclasses.replace(bundle, samples=dataclasses.replace(samples, stages=(bundle.train_size,)))


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
