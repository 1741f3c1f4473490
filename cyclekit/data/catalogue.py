"""The canonical datasets cyclekit can fetch by name: the CycleGAN zips and MNIST.

URLs are those of the CycleGAN reference (``datasets/download_cyclegan_dataset.sh``); each zip
unpacks to ``<name>/trainA``, ``trainB``, ``testA``, ``testB``. The zips have no published
checksums, so none are recorded; MNIST's MD5s are the well-known ones (also used by torchvision).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cyclekit.errors import DataError

CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"
# The pix2pix reference's datasets/download_pix2pix_dataset.sh: tar.gz archives of train/ val/
# test/ folders whose images hold A (left half) and B (right half) side by side.
PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a multi-file dataset, with mirror URLs tried in order."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """A downloadable dataset: where it lives and what its two domains are."""

    name: str
    description: str
    domain_a: str = "A"
    domain_b: str = "B"
    url: str | None = None  # single archive (.zip or .tar.gz)
    kind: str = "unpaired"  # "unpaired" (trainA/trainB), "paired" (train/ A|B images) or "mnist"
    files: tuple[RemoteFile, ...] = ()  # for multi-file datasets (MNIST)
    sha256: str | None = None
    md5: str | None = None
    downloadable: bool = True
    note: str = ""
    # Sub-folders that must exist for a local copy to count as present.
    splits: tuple[str, ...] = field(default=("trainA", "trainB"))
    # Other sets of sub-folders that also count (paired data: trainA/ + trainB/ instead of train/).
    alt_splits: tuple[tuple[str, ...], ...] = ()


def _cyclegan(name: str, a: str, b: str, description: str, **kw: object) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        description=description,
        domain_a=a,
        domain_b=b,
        url=CYCLEGAN_URL.format(name=name),
        **kw,  # type: ignore[arg-type]
    )


def _pix2pix(name: str, a: str, b: str, description: str, **kw: object) -> DatasetInfo:
    return DatasetInfo(
        name=f"pix2pix-{name}",
        description=description,
        domain_a=a,
        domain_b=b,
        url=PIX2PIX_URL.format(name=name),
        kind="paired",
        splits=("train",),
        alt_splits=(("trainA", "trainB"),),
        **kw,  # type: ignore[arg-type]
    )


_MNIST_FILES = (
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
)

_ENTRIES = (
    _cyclegan("horse2zebra", "horse", "zebra", "ImageNet photos of horses and zebras"),
    _cyclegan("apple2orange", "apple", "orange", "ImageNet photos of apples and oranges"),
    _cyclegan("summer2winter_yosemite", "summer", "winter", "Flickr photos of Yosemite in summer and winter"),
    _cyclegan("monet2photo", "monet", "photo", "Claude Monet paintings and landscape photos"),
    _cyclegan("cezanne2photo", "cezanne", "photo", "Paul Cezanne paintings and landscape photos"),
    _cyclegan("ukiyoe2photo", "ukiyoe", "photo", "Ukiyo-e woodblock prints and landscape photos"),
    _cyclegan("vangogh2photo", "vangogh", "photo", "Vincent van Gogh paintings and landscape photos"),
    _cyclegan("maps", "satellite", "map", "Google Maps aerial photos and map tiles (New York City)"),
    _cyclegan(
        "cityscapes",
        "photo",
        "label",
        "Cityscapes street photos and semantic label maps",
        downloadable=False,
        note=(
            "Cityscapes cannot be redistributed (license): download gtFine_trainvaltest.zip and "
            "leftImg8bit_trainvaltest.zip from https://www.cityscapes-dataset.com and convert them "
            "to trainA (photos) / trainB (label maps) folders, as the CycleGAN reference's "
            "datasets/prepare_cityscapes_dataset.py does"
        ),
    ),
    _cyclegan("facades", "photo", "label", "CMP Facades building photos and architectural label maps"),
    _cyclegan("iphone2dslr_flower", "iphone", "dslr", "Flickr flower photos taken with iPhones and with DSLRs"),
    _cyclegan(
        "ae_photos",
        "photo",
        "photo",
        "Flickr photos used as test inputs for the CycleGAN style-transfer models (test images only)",
        splits=("testA",),
        note="test images only: use with a pretrained model, not for training",
    ),
    _cyclegan("grumpifycat", "cat", "grumpy_cat", "Russian Blue cat faces and Grumpy Cat faces"),
    _pix2pix("facades", "photo", "label", "pix2pix: CMP Facades photos | architectural label maps (paired)"),
    _pix2pix("maps", "aerial", "map", "pix2pix: Google Maps aerial photos | map tiles, New York City (paired)"),
    _pix2pix("cityscapes", "photo", "label", "pix2pix: Cityscapes street photos | semantic label maps (paired)"),
    _pix2pix("edges2shoes", "edges", "shoe", "pix2pix: HED edge maps | shoe photos, 50k pairs, 2 GB (paired)"),
    _pix2pix("edges2handbags", "edges", "handbag", "pix2pix: HED edge maps | handbag photos, 137k pairs (paired)"),
    _pix2pix("night2day", "night", "day", "pix2pix: webcam scenes at night | by day (paired)"),
    DatasetInfo(
        name="mnist",
        description="MNIST handwritten digits, 28x28 greyscale (60,000 train / 10,000 test)",
        domain_a="digit",
        domain_b="digit",
        kind="mnist",
        files=tuple(RemoteFile(fname, tuple(m + fname for m in MNIST_MIRRORS), md5=md5) for fname, md5 in _MNIST_FILES),
        splits=(),
        note="single domain; read with cyclekit.data.download.load_mnist",
    ),
)

CATALOGUE: dict[str, DatasetInfo] = {info.name: info for info in _ENTRIES}


def get_dataset(name: str) -> DatasetInfo:
    """Catalogue entry for ``name``; unknown names raise DataError listing the known ones."""
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise DataError(f"unknown dataset {name!r}; known datasets: {known}") from None


def default_cache_dir() -> Path:
    """``$CYCLEKIT_CACHE`` if set, else ``~/.cache/cyclekit``."""
    env = os.environ.get("CYCLEKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cyclekit"
