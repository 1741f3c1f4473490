"""Labelled image datasets: the digits split, epoch plans, kept labels, MNIST idx folders and
class-folder trees (all generated in tmp_path; no network)."""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from cyclekit.data.labelled import (
    LabelledImages,
    _digits_split,
    classes,
    digits,
    keep_labels_per_class,
    mnist,
)
from cyclekit.errors import ConfigError, DataError

N_DIGITS = 1797

# ---------------------------------------------------------------------------------------------
# digits


def test_digits_split_is_fixed_stratified_and_complete() -> None:
    from sklearn.datasets import load_digits

    target = load_digits().target
    train, test = _digits_split("train"), _digits_split("test")
    assert len(train) + len(test) == N_DIGITS
    assert not set(train.tolist()) & set(test.tolist())
    for c in range(10):
        n_class, n_test = int((target == c).sum()), int((target[test] == c).sum())
        assert int((target[train] == c).sum()) > 0 and n_test > 0
        assert abs(n_test - 0.2 * n_class) <= 0.5  # 20% of every class, rounded

    a, b = digits("test", size=16, seed=0), digits("test", size=16, seed=7)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert len(digits("train", size=16)) == len(train) and len(a) == len(test)


@pytest.mark.parametrize("size", [32, 16])
def test_digits_values_and_shape(size: int) -> None:
    ds = digits("train", size=size)
    item = ds[0]
    assert item["image"].shape == (1, size, size) and item["image"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].dim() == 0
    images, labels = ds.tensors()
    assert images.shape == (len(ds), 1, size, size)
    assert images.min() == -1.0 and images.max() == 1.0  # 0 and 16 map to the ends of the range
    assert sorted(labels.unique().tolist()) == list(range(10))
    assert (ds.channels, ds.size, ds.n_classes, ds.root) == (1, size, 10, None)
    assert ds.class_names == [str(d) for d in range(10)]


def test_digits_size_too_small() -> None:
    with pytest.raises(DataError, match="8 x 8 px; size must be 8 or more, got 4"):
        digits("train", size=4)


def test_digits_labels_per_class_only_on_train() -> None:
    train = digits("train", size=8, seed=3, labels_per_class=10)
    assert train.labelled_count() == 100
    assert torch.bincount(train.labels[train.labels >= 0], minlength=10).tolist() == [10] * 10
    test = digits("test", size=8, seed=3, labels_per_class=10)
    assert test.labelled_count() == len(test)
    assert train.summary() == f"digits: {len(train):,} images of 10 classes, 8 x 8 px grey (100 labelled: 10 per class)"
    assert test.summary() == f"digits: {len(test)} images of 10 classes, 8 x 8 px grey"


# ---------------------------------------------------------------------------------------------
# the dataset itself


def _tiny(n: int = 12, seed: int = 0, flip: bool = False) -> LabelledImages:
    images = torch.arange(n * 2 * 3, dtype=torch.uint8).reshape(n, 1, 2, 3)
    labels = torch.arange(n) % 3
    return LabelledImages(images, labels, ["a", "b", "c"], seed, None, "tiny", flip=flip)


def test_epoch_plan_is_fixed_by_seed_and_epoch() -> None:
    ds = _tiny(50)
    plan = ds.epoch_plan(0)
    assert sorted(plan) == list(range(50))
    assert plan == _tiny(50).epoch_plan(0)
    assert plan != ds.epoch_plan(1)
    assert plan != _tiny(50, seed=1).epoch_plan(0)


def test_flip_plan_mirrors_some_items() -> None:
    ds = _tiny(40, flip=True)
    plan = ds.epoch_plan(2)
    assert plan == _tiny(40, flip=True).epoch_plan(2)
    assert sorted(i % 40 for i in plan) == list(range(40))
    flipped = [i for i in plan if i >= 40]
    assert 0 < len(flipped) < 40
    i = flipped[0]
    assert torch.equal(ds[i]["image"], ds[i - 40]["image"].flip(-1))
    assert torch.equal(ds[i]["label"], ds[i - 40]["label"])


def test_getitem_scales_to_minus_one_one() -> None:
    images = torch.tensor([0, 255, 51], dtype=torch.uint8).reshape(1, 1, 1, 3)
    ds = LabelledImages(images, torch.tensor([-1]), ["x", "y"], 0, None, "px")
    item = ds[0]
    assert torch.allclose(item["image"], torch.tensor([[[-1.0, 1.0, 51 / 127.5 - 1]]]))
    assert item["label"].item() == -1
    assert ds.labelled_count() == 0


# ---------------------------------------------------------------------------------------------
# keep_labels_per_class


def test_keep_labels_per_class() -> None:
    labels = torch.arange(60) % 4
    kept = keep_labels_per_class(labels, 5, seed=1)
    assert torch.bincount(kept[kept >= 0], minlength=4).tolist() == [5] * 4
    assert torch.equal(kept[kept >= 0], labels[kept >= 0])  # the kept labels are the true ones
    assert torch.equal(labels, torch.arange(60) % 4)  # the input is not changed
    assert torch.equal(kept, keep_labels_per_class(labels, 5, seed=1))
    assert not torch.equal(kept, keep_labels_per_class(labels, 5, seed=2))


def test_keep_labels_per_class_too_few() -> None:
    labels = torch.tensor([0] * 5 + [1] * 2 + [2] * 5)
    with pytest.raises(DataError, match="class 1 has 2 labelled images, fewer than labels_per_class 3"):
        keep_labels_per_class(labels, 3, seed=0)
    with pytest.raises(DataError, match=r"class 'cat' in /data has 2 labelled images"):
        keep_labels_per_class(labels, 3, seed=0, class_names=["ant", "cat", "dog"], where="/data")
    with pytest.raises(DataError, match="class 'eel' in /data has 0 labelled images"):
        keep_labels_per_class(labels, 1, seed=0, class_names=["ant", "cat", "dog", "eel"], where="/data")
    with pytest.raises(ConfigError, match="labels_per_class: must be >= 1, got 0"):
        keep_labels_per_class(labels, 0, seed=0)


# ---------------------------------------------------------------------------------------------
# MNIST from a folder of idx files


def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    magic = (0x08 << 8) | arr.ndim  # 0x00000803 for images, 0x00000801 for labels
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def _mnist_folder(folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = True) -> Path:
    """The four MNIST idx files with random 28 x 28 images (seed 0) and labels ``i % 10``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, gz)
    return folder


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_idx_folder(tmp_path: Path, gz: bool) -> None:
    root = _mnist_folder(tmp_path / "mnist", gz=gz)
    train = mnist("train", root, None, download=False)
    assert len(train) == 30 and train.images.shape == (30, 1, 28, 28)
    expected = np.random.default_rng(0).integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    assert torch.equal(train.images[:, 0], torch.from_numpy(expected))  # 28 px: kept as stored
    assert train.labels.tolist() == [i % 10 for i in range(30)]
    assert train.root == root and train.class_names == [str(d) for d in range(10)]
    test = mnist("test", root, None, size=16)
    assert test.images.shape == (10, 1, 16, 16) and len(test) == 10
    few = mnist("train", root, None, seed=1, labels_per_class=2)
    assert few.labelled_count() == 20


def test_mnist_missing_file(tmp_path: Path) -> None:
    root = _mnist_folder(tmp_path / "mnist")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="has no MNIST test file t10k-labels-idx1-ubyte") as info:
        mnist("test", root, None)
    assert str(root) in str(info.value) and "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte" in str(info.value)
    with pytest.raises(DataError, match="MNIST folder not found"):
        mnist("train", tmp_path / "nowhere", None)


def test_mnist_length_mismatch(tmp_path: Path) -> None:
    root = _mnist_folder(tmp_path / "mnist", gz=False)
    _write_idx(root / "train-labels-idx1-ubyte", np.arange(29) % 10, gz=False)
    with pytest.raises(DataError, match="do not match: 30 images in train-images-idx3-ubyte but 29 labels"):
        mnist("train", root, None)


# ---------------------------------------------------------------------------------------------
# class folders


def _write_class(folder: Path, n: int, colour: tuple[int, int, int], size: int = 20) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (size, size + i), colour).save(folder / f"{i:02d}.png")


def _class_tree(root: Path) -> Path:
    _write_class(root / "cat", 4, (200, 0, 0))
    _write_class(root / "ant", 3, (0, 200, 0))
    _write_class(root / "dog", 5, (0, 0, 200))
    (root / "dog" / "bad.png").write_bytes(b"not an image at all")
    return root


def test_classes_tree(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _class_tree(tmp_path / "pets")
    with caplog.at_level(logging.WARNING):
        ds = classes("train", root, size=8, channels=3)
    assert ds is not None
    assert "bad.png" in caplog.text
    assert ds.class_names == ["ant", "cat", "dog"]
    assert len(ds) == 12 and ds.labels.tolist() == [0] * 3 + [1] * 4 + [2] * 5
    assert ds.images.shape == (12, 3, 8, 8) and (ds.channels, ds.size) == (3, 8)
    assert ds.images[0, :, 0, 0].tolist() == [0, 200, 0]
    assert ds.summary() == "pets: 12 images of 3 classes, 8 x 8 px RGB"
    assert classes("test", root, size=8, channels=3) is None  # no train/ folder: all of it is train

    grey = classes("train", root, size=8, channels=1, seed=4, labels_per_class=2)
    assert grey is not None and grey.images.shape == (12, 1, 8, 8)
    assert grey.summary() == "pets: 12 images of 3 classes, 8 x 8 px grey (6 labelled: 2 per class)"
    with pytest.raises(DataError, match=r"class 'ant' in .*pets has 3 labelled images, fewer than labels_per_class 4"):
        classes("train", root, size=8, channels=1, labels_per_class=4)


def test_classes_strict_names_the_bad_file(tmp_path: Path) -> None:
    root = _class_tree(tmp_path / "pets")
    with pytest.raises(DataError, match=r"unreadable image .*dog.bad\.png"):
        classes("train", root, size=8, channels=3, strict=True)


def test_classes_train_test_layout(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    for split, n in (("train", 3), ("test", 1)):
        _write_class(root / split / "round", n, (255, 255, 255))
        _write_class(root / split / "square", n, (0, 0, 0))
    train = classes("train", root, size=4, channels=1)
    test = classes("test", root, size=4, channels=1)
    assert train is not None and test is not None
    assert (len(train), len(test)) == (6, 2)
    assert train.class_names == test.class_names == ["round", "square"]
    assert test.labels.tolist() == [0, 1]
    assert train.root == root


def test_classes_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="class folder tree not found: .*missing"):
        classes("train", tmp_path / "missing", size=8, channels=3)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty has no class folders"):
        classes("train", empty, size=8, channels=3)
    one = tmp_path / "one"
    _write_class(one / "only", 2, (1, 2, 3))
    with pytest.raises(DataError, match=r"one class folder \(only/\); a labelled data set needs 2 or more"):
        classes("train", one, size=8, channels=3)
    (one / "hollow").mkdir()
    (one / "hollow" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder .*hollow has no images"):
        classes("train", one, size=8, channels=3)
    broken = tmp_path / "broken"
    _write_class(broken / "fine", 1, (1, 2, 3))
    (broken / "junk").mkdir()
    (broken / "junk" / "x.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"none of the 1 images in class folder .*junk can be read"):
        classes("train", broken, size=8, channels=3)
