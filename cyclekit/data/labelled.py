"""Labelled image datasets, held in memory: the data side of class-conditional GANs (cGAN, ACGAN)
and of the semi-supervised GAN, where most labels are hidden (-1) and only a few per class kept.

Three sources build a :class:`LabelledImages`: ``digits`` (scikit-learn's 1,797 8x8 digits, bundled
with the library, so it works offline), ``mnist`` (idx files from a folder, the cache or a
download) and ``classes`` (a folder tree with one sub-folder of images per class). The datasets
are small, so every image is decoded and resized once, up front, and kept as uint8.

As in :mod:`cyclekit.data.folders`, the sample order of an epoch and the choice of kept labels
come from generators seeded from ``(seed, ...)``, never the global RNG. The digits train/test
split does not depend on ``seed`` at all: it is the same for every run, so test scores compare.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from cyclekit.data.download import describe_folder, load_mnist, read_idx
from cyclekit.data.folders import derive_seed, scan_images
from cyclekit.data.images import IMAGE_EXTENSIONS, list_images, load_image
from cyclekit.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")

# Fixed constants, not options: changing one changes every run's split or kept labels.
_KEEP_LABELS_KEY = 0x4C41424C  # "LABL": the stream keep_labels_per_class draws from
_DIGITS_SPLIT_SEED = 1797  # the digits train/test split, identical for every run
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_MAX = 16  # load_digits pixels are 0..16

_RESAMPLE = Image.Resampling.BICUBIC  # as the folder transforms (the CycleGAN reference) resize
_CHUNK = 4096  # images interpolated at once: bounds the float32 temporaries for MNIST


class LabelledImages(Dataset):
    """In-memory labelled images: uint8 ``images`` (N x C x H x W, at their final size) and int64
    ``labels`` (N; -1 for an unlabelled image).

    ``ds[i]`` is ``{"image": float32 C x H x W in [-1, 1], "label": int64 0-d tensor}``.
    :meth:`epoch_plan` gives one epoch's items in an order fixed by ``(seed, epoch)``. With
    ``flip=True`` each item of a plan is mirrored or not (a coin per item, drawn with the order):
    a plan item ``i + len(ds)`` is image ``i`` flipped left-right, so the plan stays a list of
    ints and a resumed epoch mirrors exactly the same images.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        class_names: Sequence[str],
        seed: int,
        root: Path | None,
        name: str,
        flip: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be a uint8 N x C x H x W tensor, got {images.dtype} {tuple(images.shape)}")
        if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
            raise ValueError(
                f"labels must be an int64 tensor of {len(images)}, got {labels.dtype} {tuple(labels.shape)}"
            )
        if len(labels) and (labels.min() < -1 or labels.max() >= len(class_names)):
            raise ValueError(f"labels must be -1 or 0..{len(class_names) - 1}")
        self.images = images
        self.labels = labels
        self.class_names = list(class_names)
        self.n_classes = len(self.class_names)
        self.seed = int(seed)
        self.root = root
        self.name = name
        self.flip = bool(flip)
        self.channels = int(images.shape[1])
        self.size = int(images.shape[2])

    def __len__(self) -> int:
        return len(self.images)

    def epoch_plan(self, epoch: int) -> list[int]:
        """The items of epoch ``epoch``: a permutation of ``range(len(self))`` (with ``flip``,
        each item is moved up by ``len(self)`` when its image is to be mirrored)."""
        n = len(self.images)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        order = torch.randperm(n, generator=gen)
        if self.flip:
            order += n * torch.randint(0, 2, (n,), generator=gen)
        return order.tolist()

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        index, n = int(item), len(self.images)
        mirrored = index >= n
        if mirrored:
            index -= n
        image = self.images[index].float().div_(127.5).sub_(1.0)
        if mirrored:
            image = image.flip(-1)
        return {"image": image, "label": self.labels[index].clone()}

    def labelled_count(self) -> int:
        """How many images carry a label (the rest are -1)."""
        return int((self.labels >= 0).sum())

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as float32 N x C x H x W in [-1, 1] and all labels (for evaluation)."""
        return self.images.float().div_(127.5).sub_(1.0), self.labels.clone()

    def summary(self) -> str:
        """One line, e.g. "digits: 1,438 images of 10 classes, 32 x 32 px grey (100 labelled: 10 per class)"."""
        colour = "grey" if self.channels == 1 else "RGB" if self.channels == 3 else f"{self.channels} channels"
        text = f"{self.name}: {len(self):,} images of {self.n_classes} classes, {self.size} x {self.size} px {colour}"
        labelled = self.labelled_count()
        if labelled == len(self):
            return text
        per_class = torch.bincount(self.labels[self.labels >= 0], minlength=self.n_classes)
        lo, hi = int(per_class.min()), int(per_class.max())
        each = f"{lo} per class" if lo == hi else f"{lo} to {hi} per class"
        return f"{text} ({labelled:,} labelled: {each})"


def keep_labels_per_class(
    labels: torch.Tensor,
    k: int,
    seed: int,
    *,
    class_names: Sequence[str] | None = None,
    where: str | None = None,
) -> torch.Tensor:
    """A copy of ``labels`` with exactly ``k`` labels of each class kept and the rest set to -1.

    The kept ones are drawn from a generator seeded by ``(seed, a fixed constant)``, so they are
    the same for a seed. The classes are ``0..len(class_names)-1`` when ``class_names`` is given
    (which also names them in errors), else the labels present. A class with fewer than ``k``
    labelled items is a DataError; ``where`` (a folder, a dataset name) completes its message.
    """
    if k < 1:
        raise ConfigError(f"labels_per_class: must be >= 1, got {k}")
    classes = range(len(class_names)) if class_names is not None else labels[labels >= 0].unique().tolist()
    gen = torch.Generator().manual_seed(derive_seed(seed, _KEEP_LABELS_KEY))
    kept = torch.full_like(labels, -1)
    for c in classes:
        members = torch.nonzero(labels == c).flatten()
        if len(members) < k:
            name = repr(class_names[c]) if class_names is not None else str(c)
            place = f" in {where}" if where else ""
            raise DataError(f"class {name}{place} has {len(members)} labelled images, fewer than labels_per_class {k}")
        chosen = members[torch.randperm(len(members), generator=gen)[:k]]
        kept[chosen] = c
    return kept


# ---------------------------------------------------------------------------------------------
# shared helpers


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")


def _resize_u8(images: torch.Tensor, size: int) -> torch.Tensor:
    """N x C x H x W (uint8, or float in 0..255) -> uint8 N x C x size x size, bilinear.

    Antialiased only when shrinking (it makes no difference when enlarging).
    """
    if images.shape[-2:] == (size, size) and images.dtype == torch.uint8:
        return images
    shrink = size < max(images.shape[-2:])
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8)
    for start in range(0, len(images), _CHUNK):
        x = images[start : start + _CHUNK].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
        out[start : start + _CHUNK] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _finish(
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str],
    split: str,
    seed: int,
    labels_per_class: int | None,
    root: Path | None,
    name: str,
    flip: bool,
    where: Path | None = None,
) -> LabelledImages:
    """Hide all but ``labels_per_class`` labels of each class (train split only) and wrap up.

    ``where`` (default ``root``, else ``name``) is the place a too-small class is reported in.
    """
    if labels_per_class is not None and split == "train":
        place = str(where or root or name)
        labels = keep_labels_per_class(labels, labels_per_class, seed, class_names=class_names, where=place)
    return LabelledImages(images, labels, class_names, seed, root, name, flip=flip)


_DIGIT_NAMES = [str(d) for d in range(10)]


# ---------------------------------------------------------------------------------------------
# digits


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (float64 N x 8 x 8 in 0..16, int64 N); read once per process."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    bunch = load_digits()
    return bunch.images, bunch.target.astype(np.int64)


def _digits_split(split: str) -> np.ndarray:
    """Rows of ``load_digits()`` in ``split``: 20% of each class to test, the same in every run."""
    _, target = _load_digits()
    rows = []
    for c in range(10):
        members = np.flatnonzero(target == c)
        rng = np.random.default_rng([_DIGITS_SPLIT_SEED, c])
        shuffled = rng.permutation(members)
        n_test = round(_DIGITS_TEST_FRACTION * len(members))
        rows.append(shuffled[:n_test] if split == "test" else shuffled[n_test:])
    return np.sort(np.concatenate(rows))


def digits(
    split: str,
    size: int = 32,
    seed: int = 0,
    labels_per_class: int | None = None,
    flip: bool = False,
) -> LabelledImages:
    """scikit-learn's handwritten digits (1,797 images, 8 x 8, grey), enlarged to ``size``.

    A fixed stratified split (20% of each class to test) that ``seed`` does not change;
    ``labels_per_class`` hides all but that many labels of each class of the train split.
    """
    _check_split(split)
    if size < 8:
        raise DataError(f"the digits images are 8 x 8 px; size must be 8 or more, got {size}")
    pixels, target = _load_digits()
    rows = _digits_split(split)
    # Scale to 0..255 in float and round once, after resizing.
    images = torch.from_numpy(pixels[rows]).unsqueeze(1).float().mul_(255.0 / _DIGITS_MAX)
    images = _resize_u8(images, size)
    labels = torch.from_numpy(target[rows])
    return _finish(images, labels, _DIGIT_NAMES, split, seed, labels_per_class, None, "digits", flip)


# ---------------------------------------------------------------------------------------------
# MNIST


def _idx_file(root: Path, name: str) -> Path | None:
    for candidate in (root / f"{name}.gz", root / name):
        if candidate.is_file():
            return candidate
    return None


def _read_mnist_folder(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 N x H x W, labels N) of ``split`` from the idx files in ``root``."""
    if not root.is_dir():
        raise DataError(f"MNIST folder not found: {root} ({describe_folder(root)})")
    prefix = "train" if split == "train" else "t10k"
    names = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    paths = [_idx_file(root, n) for n in names]
    if None in paths:
        missing = [n for n, p in zip(names, paths, strict=True) if p is None]
        raise DataError(
            f"{root} has no MNIST {split} file {' or '.join(missing)} (expected {names[0]} and {names[1]}, "
            f"each optionally .gz); it {describe_folder(root)}"
        )
    image_path, label_path = paths
    assert image_path is not None and label_path is not None
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3:
        raise DataError(f"{image_path} does not hold images: its shape is {images.shape}, expected N x H x W")
    if labels.ndim != 1:
        raise DataError(f"{label_path} does not hold labels: its shape is {labels.shape}, expected N")
    if len(images) != len(labels):
        raise DataError(
            f"MNIST files in {root} do not match: {len(images):,} images in {image_path.name} "
            f"but {len(labels):,} labels in {label_path.name}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{label_path} holds labels outside 0..9 (from {labels.min()} to {labels.max()})")
    return images.astype(np.uint8, copy=False), labels


MNIST_CLASS_FILE = "classes.txt"


def mnist_class_names(root: Path) -> list[str]:
    """The class names of an MNIST-format folder: its optional ``classes.txt``, one name per line in
    label order (label 0 first; surrounding spaces ignored), else "0".."9". DataError naming the
    file for a wrong number of lines, an empty or a repeated name."""
    path = Path(root) / MNIST_CLASS_FILE
    if not path.is_file():
        return list(_DIGIT_NAMES)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise DataError(f"cannot read the class names in {path}: {why}") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # a blank line (or several) at the end
    names = [line.strip() for line in lines]
    if len(names) != len(_DIGIT_NAMES):
        raise DataError(
            f"{path} names {len(names)} classes; MNIST-format labels are 0..9, so it needs "
            f"{len(_DIGIT_NAMES)} lines, one name per line in label order"
        )
    for i, name in enumerate(names):
        if not name:
            raise DataError(f"{path}: line {i + 1} is empty; give every class (0..9) a name, one per line")
        if not name.isprintable():
            raise DataError(f"{path}: line {i + 1} holds control characters; a class name is one line of text")
        first = names.index(name)
        if first != i:
            raise DataError(
                f"{path}: {name!r} names both class {first} (line {first + 1}) and class {i} (line {i + 1}); "
                "class names must be unique"
            )
    return names


def mnist(
    split: str,
    root: Path | None,
    cache_dir: Path | None,
    size: int = 28,
    seed: int = 0,
    labels_per_class: int | None = None,
    download: bool = True,
    flip: bool = False,
) -> LabelledImages:
    """MNIST's ``split`` (60,000 train / 10,000 test), resized (bilinear) to ``size``.

    From the four idx files (each optionally .gz) in ``root`` when it is given, else from the
    cache, downloaded there if missing and ``download``.
    """
    _check_split(split)
    if size < 1:
        raise DataError(f"size must be at least 1 px, got {size}")
    if root is not None:
        images, labels = _read_mnist_folder(Path(root), split)
    else:
        images, labels = load_mnist(cache_dir, split, download=download)
    # A copy: read_idx's arrays view read-only file buffers, which torch must not wrap.
    tensor = _resize_u8(torch.from_numpy(np.array(images, dtype=np.uint8)).unsqueeze(1), size)
    target = torch.from_numpy(labels.astype(np.int64))
    names = mnist_class_names(Path(root)) if root is not None else _DIGIT_NAMES
    return _finish(tensor, target, names, split, seed, labels_per_class, root, "mnist", flip)


# ---------------------------------------------------------------------------------------------
# a folder per class


def _class_base(root: Path, split: str) -> Path | None:
    """The folder holding the class folders of ``split``; None: the tree has no such split.

    ``root/train/`` (and ``root/test/``) when there is a ``train/`` folder, else ``root`` itself,
    all of it the train split.
    """
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "not found"
        raise DataError(f"class folder tree {what}: {root}")
    if (root / "train").is_dir():
        base = root / split
        return base if base.is_dir() else None
    return root if split == "train" else None


def _load_resized(path: Path, size: int, channels: int) -> np.ndarray:
    img = load_image(path, channels=channels)
    if img.size != (size, size):
        img = img.resize((size, size), _RESAMPLE)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


_TRANSLATION_SPLITS = {f"{split}{side}" for split in ("train", "test", "val") for side in "AB"}


def _class_folders(base: Path, split: str) -> list[Path]:
    folders = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(
            f"{base} has no class folders (it {describe_folder(base)}); expected one sub-folder of images per class"
        )
    if len(folders) < 2 and split == "train":
        raise DataError(f"{base} has one class folder ({folders[0].name}/); a labelled data set needs 2 or more")
    if {f.name for f in folders} <= _TRANSLATION_SPLITS:
        raise DataError(
            f"{base} holds {', '.join(f.name + '/' for f in folders)}: the split folders of a translation data set "
            "(cyclegan, pix2pix), not one folder per class"
        )
    return folders


def class_files(
    root: Path, split: str, strict: bool = False, decode: bool = True
) -> tuple[list[Path], list[int], list[str]]:
    """The images of ``split`` of a class folder tree, their labels and the class names: the one
    reading of the tree that training (`classes`), `cyclekit data check` and the size, channel
    and class-count defaults share. Raises DataError when the tree cannot be read.

    The classes are the TRAINING split's folder names, sorted: a test split is numbered by them
    (a class it lacks is simply absent), and a test class folder training does not have is an
    error, so a test image never carries another class's label. ``decode``: check that every
    image can be read (unreadable ones are skipped, or raise with ``strict``); else list only.
    """
    base = _class_base(root, split)
    if base is None:
        raise DataError(f"{root} has no {split} split")
    folders = _class_folders(base, split)
    names = [f.name for f in folders]
    if split != "train":
        train_base = _class_base(root, "train")
        assert train_base is not None
        names = [f.name for f in _class_folders(train_base, "train")]
        unknown = [f.name for f in folders if f.name not in names]
        if unknown:
            raise DataError(
                f"{base} has class folder(s) {', '.join(unknown)} that the training split {train_base} does not "
                f"have (its classes: {', '.join(names)}); test images must belong to the training classes"
            )
        missing = sorted(set(names) - {f.name for f in folders})
        if missing:
            logger.warning("%s has no images of class(es) %s; they are not scored", base, ", ".join(missing))
    paths: list[Path] = []
    targets: list[int] = []
    for folder in folders:
        files = list_images(folder)
        if not files:
            raise DataError(f"class folder {folder} has no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
        good = files
        if decode:
            good, bad = scan_images(files, strict=strict, where=str(folder))
            if not good:
                first, reason = bad[0]
                raise DataError(
                    f"none of the {len(bad)} images in class folder {folder} can be read ({first.name}: {reason})"
                )
        paths += good
        targets += [names.index(folder.name)] * len(good)
    return paths, targets, names


def classes(
    split: str,
    root: Path,
    size: int,
    channels: int,
    seed: int = 0,
    labels_per_class: int | None = None,
    strict: bool = False,
    flip: bool = False,
) -> LabelledImages | None:
    """Images in ``root/<class>/`` (or ``root/<split>/<class>/``), the class names being the
    sub-folder names, sorted. Every image is resized (bicubic) to ``size`` x ``size``.

    With a ``train/`` folder in ``root``, ``split`` selects ``root/train/`` or ``root/test/``
    (None when there is no ``test/``); without one, the whole tree is the train split and
    ``split="test"`` gives None. Unreadable images are skipped with a warning, or raise
    DataError with ``strict``.
    """
    _check_split(split)
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    if size < 1:
        raise DataError(f"size must be at least 1 px, got {size}")
    root = Path(root)
    base = _class_base(root, split)
    if base is None:
        return None
    paths, targets, names = class_files(root, split, strict=strict)
    images = torch.from_numpy(np.stack([_load_resized(p, size, channels) for p in paths]))
    labels = torch.tensor(targets, dtype=torch.int64)
    return _finish(images, labels, names, split, seed, labels_per_class, root, root.name, flip, where=base)


# ---------------------------------------------------------------------------------------------
# what a folder holds, for `cyclekit data check` and the defaults a config leaves to the data


def mnist_has_split(root: Path, split: str) -> bool:
    """Whether the idx folder ``root`` holds both files of ``split`` (t10k-* for "test"), by the
    names `mnist` reads."""
    prefix = "train" if split == "train" else "t10k"
    return all(
        _idx_file(Path(root), f"{prefix}-{kind}") is not None for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    )


def probe_mnist(root: Path) -> str:
    """One line on the MNIST-format idx files in ``root`` (read as training reads them); DataError
    when training could not read them."""
    images, labels = _read_mnist_folder(Path(root), "train")
    names = mnist_class_names(Path(root))  # a bad classes.txt is refused here as training refuses it
    h, w = images.shape[1:]
    named = (
        f" ({', '.join(names[:4])}, ... from {MNIST_CLASS_FILE})" if (Path(root) / MNIST_CLASS_FILE).is_file() else ""
    )
    text = (
        f"MNIST-format idx files: {len(images):,} train images, {h} x {w} px grey, "
        f"{len(np.unique(labels))} classes{named}"
    )
    if mnist_has_split(root, "test"):
        test, _ = _read_mnist_folder(Path(root), "test")
        return f"{text}; test split: {len(test):,} images"
    return f"{text}; no t10k-* test files: training skips the yardstick's scores"


def probe_classes(root: Path) -> str:
    """One line on a class folder tree (read as training reads it); DataError when it cannot be."""
    root = Path(root)
    paths, _, names = class_files(root, "train", decode=False)
    shown = ", ".join(names[:6]) + (f", ... ({len(names)})" if len(names) > 6 else "")
    where = "train/" if (root / "train").is_dir() else "ROOT/<class>/"
    text = f"class folders ({where}): {len(names)} classes ({shown}), {len(paths):,} images"
    if _class_base(root, "test") is None:
        return f"{text}; no test/ split: training skips the yardstick's scores"
    test, _, _ = class_files(root, "test", decode=False)
    return f"{text}; test split: {len(test):,} images"


def inspect_classes(root: Path, sample: int = 64) -> dict[str, int]:
    """What a class folder tree says of itself: ``n_classes``, ``size`` (the most common side of
    its training images, the longer side of the most common size) and ``channels`` (1 when every
    image looked at is grey, else 3), from up to ``sample`` images spread over the classes."""
    from collections import Counter

    from cyclekit.choices import GRAY_MODES

    paths, _, names = class_files(Path(root), "train", decode=False)
    step = max(1, len(paths) // sample)
    sizes: Counter[int] = Counter()
    grey = True
    for path in paths[::step][:sample]:
        try:
            with Image.open(path) as img:
                sizes[max(img.size)] += 1
                grey = grey and (img.mode in GRAY_MODES or (img.mode == "P" and _grey_palette(img)))
        except (OSError, ValueError):
            continue  # unreadable: training skips it too
    out = {"n_classes": len(names)}
    if sizes:
        out["size"] = sizes.most_common(1)[0][0]
        out["channels"] = 1 if grey else 3
    return out


def _grey_palette(img: Image.Image) -> bool:
    palette = img.getpalette() or []
    return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))
