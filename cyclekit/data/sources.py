"""Data sources as plug-ins: an explicit registry of data kinds, as recipes are.

A source is a class with its own options dataclass (the config's ``data.<kind>:`` section; every
key may also be written ``data.KEY`` for short), the batch keys its items hold, how it finds its
folder (`locate`: the data root as given, else the catalogue's cache or a download) and how it
builds a dataset for a split (`build`). The shared ``data:`` keys are only what every source
reads: ``kind``, ``batch_size``, ``workers``, ``strict`` and ``channels``.

Batch keys say what a recipe can train on: ``A``/``B`` (two domains), ``aligned`` (A and B are
pairs), ``image``, ``label`` (a class index; -1 for an unlabelled item), ``points`` (2-D samples).
A recipe declares the keys it needs, and a config pairing it with a source that lacks one is refused
when it loads, before any data is read.

Every dataset a source builds has the same small interface: ``len()``, ``epoch_plan(epoch)`` (the
items of one epoch in an order fixed by (seed, epoch), so that a run resumes exactly) and
``dataset[item]`` (a dict of tensors under the batch keys), plus ``root`` and ``summary()``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

import numpy as np
import torch

from cyclekit.choices import Preprocess
from cyclekit.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# the options every image source shares


@dataclass(frozen=True)
class ImageOptions:
    """How images are resized, cropped and flipped (`cyclekit.data.transforms`)."""

    # resize_and_crop, crop, scale_width, scale_width_and_crop, or none (each image keeps its size,
    # rounded to a multiple of 4; batch size 1)
    preprocess: Preprocess = "resize_and_crop"
    # 286 -> random 256 crop + flip: Zhu et al. 2017, appendix 7.1; Isola et al. 2017, Sec. 6.2.
    load_size: int = 286
    crop_size: int = 256  # random crop (images smaller than it are upscaled first)
    flip: bool = True  # random horizontal flip

    def __post_init__(self) -> None:
        for name in ("load_size", "crop_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        resizes = self.preprocess in ("resize_and_crop", "scale_width_and_crop")
        if resizes and self.crop_size > self.load_size:
            raise ConfigError(f"crop_size: {self.crop_size} is larger than load_size {self.load_size}")


@dataclass(frozen=True)
class FolderOptions(ImageOptions):
    dataset: Optional[str] = None  # catalogue name (horse2zebra, ...) used to find or fetch the data
    root: Optional[str] = None  # dataset folder (same as --data-root)


@dataclass(frozen=True)
class DomainOptions(FolderOptions):
    domain_a: str = "A"  # domain names, kept in the bundle and the ONNX metadata (translate --to NAME)
    domain_b: str = "B"


@dataclass(frozen=True)
class Shared:
    """What a source's builder needs from the shared ``data:`` keys."""

    channels: int = 3
    strict: bool = False


# --------------------------------------------------------------------------------------------
# the contract


class Source:
    """The contract every data source fulfils (see the module docstring). Subclasses set the class
    attributes and implement `build`; `locate` defaults to "the data root as given"."""

    name: ClassVar[str]
    description: ClassVar[str]
    Options: ClassVar[type]
    batch_keys: ClassVar[tuple[str, ...]]

    @classmethod
    def check(cls, options: Any, shared: Shared) -> None:
        """Value checks that need the shared keys too (run when the config loads)."""

    @classmethod
    def locate(cls, options: Any, data_root: Path | None, cache_dir: Path | None, seed: int) -> Path | None:
        """The folder the data is read from: ``data_root`` (else ``options.root``) as given."""
        root = data_root or (Path(options.root) if getattr(options, "root", None) else None)
        if root is None:
            raise DataError(f"data.kind {cls.name} reads a folder: pass --data-root DIR (or set data.root)")
        return root

    @classmethod
    def build(cls, options: Any, shared: Shared, root: Path | None, split: str, seed: int, train: bool) -> Any:
        """The dataset of ``split`` ("train" or "test"); ``train``: augment (else the eval transform)."""
        raise NotImplementedError


def _transform(options: ImageOptions, channels: int, train: bool) -> Any:
    from cyclekit.data.transforms import build_eval_transform, build_transform

    o = options
    if train:
        return build_transform(o.preprocess, o.load_size, o.crop_size, o.flip, channels)
    return build_eval_transform(o.preprocess, o.load_size, o.crop_size, channels)


def _catalogue_root(options: FolderOptions, data_root: Path | None, cache_dir: Path | None) -> Path:
    """--data-root (or data.root) used as given; else the catalogue dataset's cache or a download."""
    root = data_root or (Path(options.root) if options.root else None)
    if options.dataset:
        from cyclekit.data.catalogue import find_dataset

        return find_dataset(options.dataset, root, cache_dir)
    if root is None:
        raise DataError("no dataset given: pass --data-root DIR (or set data.dataset)")
    return root


# --------------------------------------------------------------------------------------------
# translation sources


class UnpairedSource(Source):
    name = "unpaired"
    description = "two folders of unpaired images: trainA/ and trainB/ (testA/, testB/)"
    Options = DomainOptions
    batch_keys = ("A", "B")

    @classmethod
    def locate(cls, options: Any, data_root: Path | None, cache_dir: Path | None, seed: int) -> Path | None:
        return _catalogue_root(options, data_root, cache_dir)

    @classmethod
    def build(cls, options: Any, shared: Shared, root: Path | None, split: str, seed: int, train: bool) -> Any:
        from cyclekit.data.folders import UnpairedFolders

        assert root is not None
        transform = _transform(options, shared.channels, train)
        return UnpairedFolders(root, split, transform, channels=shared.channels, strict=shared.strict, seed=seed)


@dataclass(frozen=True)
class PairedOptions(DomainOptions):
    # trainA/trainB folders matched by file name, or train/ images holding A|B side by side
    layout: Literal["auto", "folders", "side_by_side"] = "auto"
    # folders: a file's pairing key is its stem without this trailing suffix (A's, B's):
    # trainA/100_A.jpg <-> trainB/100_B.jpg, and testA/1.jpg <-> testB/1.jpg (no suffix to strip).
    pair_suffixes: tuple[str, str] = ("_A", "_B")


class PairedSource(Source):
    name = "paired"
    description = "aligned pairs: trainA/ + trainB/ paired by file name, or train/ of A|B side-by-side images"
    Options = PairedOptions
    batch_keys = ("A", "B", "aligned")

    @classmethod
    def locate(cls, options: Any, data_root: Path | None, cache_dir: Path | None, seed: int) -> Path | None:
        return _catalogue_root(options, data_root, cache_dir)

    @classmethod
    def build(cls, options: Any, shared: Shared, root: Path | None, split: str, seed: int, train: bool) -> Any:
        from cyclekit.data.paired import PairedImages

        assert root is not None
        return PairedImages(
            root,
            split,
            _transform(options, shared.channels, train),
            channels=shared.channels,
            layout=options.layout,
            suffixes=options.pair_suffixes,
            strict=shared.strict,
            seed=seed,
        )


@dataclass(frozen=True)
class DemoOptions(ImageOptions):
    domain_a: str = "A"  # domain names, kept in the bundle and the ONNX metadata
    domain_b: str = "B"
    demo_train: int = 160  # generated scenes per training folder
    demo_test: int = 16  # test scenes (their autumn versions pair up by file name)
    demo_size: int = 64  # image size in px

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("demo_train", "demo_test", "demo_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")


class DemoSource(Source):
    name = "demo"
    description = "the built-in summer -> autumn landscapes, generated offline (unpaired train, paired test)"
    Options = DemoOptions
    batch_keys = ("A", "B")

    @classmethod
    def locate(cls, options: Any, data_root: Path | None, cache_dir: Path | None, seed: int) -> Path | None:
        from cyclekit.data.catalogue import default_cache_dir
        from cyclekit.data.demo import demo_dir_name, generate_demo

        if data_root is not None:
            return data_root
        o = options
        name = demo_dir_name(o.demo_train, o.demo_test, o.demo_size, seed)
        return generate_demo((cache_dir or default_cache_dir()) / name, o.demo_train, o.demo_test, o.demo_size, seed)

    build = UnpairedSource.build


# --------------------------------------------------------------------------------------------
# image and point sources


@dataclass(frozen=True)
class ImageFolderOptions(ImageOptions):
    root: Optional[str] = None  # the folder of images (same as --data-root)
    recursive: bool = False  # include sub-folders


class FolderSource(Source):
    name = "folder"
    description = "one folder of images (DCGAN and friends)"
    Options = ImageFolderOptions
    batch_keys = ("image",)

    @classmethod
    def build(cls, options: Any, shared: Shared, root: Path | None, split: str, seed: int, train: bool) -> Any:
        from cyclekit.data.folders import ImageFolder

        assert root is not None
        transform = _transform(options, shared.channels, train)
        return ImageFolder(
            root, transform, channels=shared.channels, strict=shared.strict, recursive=options.recursive, seed=seed
        )


@dataclass(frozen=True)
class RingOptions:
    epoch_size: int = 8192  # fresh points per epoch

    def __post_init__(self) -> None:
        if self.epoch_size <= 0:
            raise ConfigError(f"epoch_size: must be > 0, got {self.epoch_size}")


class RingSource(Source):
    name = "ring"
    description = "2-D points from a ring of 8 Gaussians (the mode-collapse benchmark of Metz et al. 2017)"
    Options = RingOptions
    batch_keys = ("points",)

    @classmethod
    def locate(cls, options: Any, data_root: Path | None, cache_dir: Path | None, seed: int) -> Path | None:
        return None

    @classmethod
    def build(cls, options: Any, shared: Shared, root: Path | None, split: str, seed: int, train: bool) -> Any:
        return RingPoints(options.epoch_size, seed)


class RingPoints(torch.utils.data.Dataset):
    """``epoch_size`` points a epoch, drawn afresh for each epoch from (seed, epoch): the plan holds
    the points themselves, so a resumed or sharded epoch sees exactly the same ones."""

    root = None

    def __init__(self, epoch_size: int, seed: int) -> None:
        self.epoch_size, self.seed = epoch_size, seed

    def __len__(self) -> int:
        return self.epoch_size

    def epoch_plan(self, epoch: int) -> list[tuple[float, float]]:
        from cyclekit.data.folders import derive_seed
        from cyclekit.data.ring import sample_ring

        gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        return [tuple(p) for p in sample_ring(self.epoch_size, gen).tolist()]

    def __getitem__(self, item: tuple[float, float]) -> dict[str, torch.Tensor]:
        return {"points": torch.tensor(item, dtype=torch.float32)}

    def summary(self) -> str:
        return f"the ring of 8 Gaussians, {self.epoch_size:,} fresh points per epoch"


SOURCES: dict[str, type[Source]] = {
    "unpaired": UnpairedSource,
    "paired": PairedSource,
    "demo": DemoSource,
    "folder": FolderSource,
    "ring": RingSource,
}


def options_dict(options: Any) -> dict[str, Any]:
    """A source's options as plain values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()}


def stable_hash(values: Mapping[str, Any]) -> str:
    return hashlib.sha256(repr(sorted(values.items())).encode()).hexdigest()[:12]


__all__ = ["SOURCES", "Shared", "Source", "np", "os"]
