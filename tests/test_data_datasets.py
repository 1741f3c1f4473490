"""Transforms, folder datasets, epoch plans, DataLoader determinism and ``data check``."""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections import Counter
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cyclekit.data.check import check_folder, format_report
from cyclekit.data.folders import ImageFolder, UnpairedFolders, scan_images
from cyclekit.data.transforms import PREPROCESS_MODES, build_eval_transform, build_transform
from cyclekit.errors import ConfigError, DataError
from cyclekit.train.batches import PlanDataset


def _img(w: int, h: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    return Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=mode)


def _write(folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (40, 36)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"im {i:02d}.png"
        _img(*size, seed=seed * 100 + i).save(path)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------
# transforms


@pytest.mark.parametrize(
    ("preprocess", "load", "crop", "expected"),
    [
        ("resize_and_crop", 36, 32, (32, 32)),
        ("crop", 36, 32, (32, 32)),
        ("scale_width", 36, 32, (28, 36)),  # 50x40 -> 36x28.8 -> height rounded to 28
        ("scale_width_and_crop", 36, 24, (24, 24)),
        ("none", 36, 32, (40, 52)),  # 50 -> 52 (half up), 40 stays
    ],
)
@pytest.mark.parametrize("channels", [3, 1])
def test_transform_shapes(preprocess: str, load: int, crop: int, expected: tuple[int, int], channels: int) -> None:
    img = _img(50, 40)
    for build in (
        lambda: build_transform(preprocess, load, crop, True, channels),
        lambda: build_eval_transform(preprocess, load, crop, channels),
    ):
        out = build()(img, 7)
        assert out.dtype == torch.float32
        assert tuple(out.shape) == (channels, *expected)
        assert -1.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_transform_none_rounds_to_multiple_of_4() -> None:
    out = build_transform("none", 256, 256, False, 3)(_img(30, 45), 0)
    assert tuple(out.shape) == (3, 44, 32)
    tiny = build_transform("none", 256, 256, False, 3)(_img(1, 2), 0)
    assert tuple(tiny.shape) == (3, 4, 4)


@pytest.mark.parametrize("preprocess", ["crop", "resize_and_crop", "scale_width_and_crop"])
def test_small_image_upscaled_for_crop(preprocess: str) -> None:
    t = build_transform(preprocess, 32, 32, True, 3)
    assert tuple(t(_img(10, 10), 1).shape) == (3, 32, 32)
    assert tuple(t(_img(10, 25), 1).shape) == (3, 32, 32)
    if preprocess == "crop":
        assert t.resize(_img(10, 25)).size == (32, 80)  # aspect kept, short side = crop


def test_transform_deterministic_given_seed_and_seeds_differ() -> None:
    t = build_transform("resize_and_crop", 48, 32, True, 3)
    img = _img(64, 64)
    assert torch.equal(t(img, 123), t(img, 123))
    outs = {t(img, s).numpy().tobytes() for s in range(10)}
    assert len(outs) > 5
    # A fresh (or unpickled) instance gives the same result: nothing depends on call history.
    t2 = pickle.loads(pickle.dumps(t))
    t(img, 5)
    assert torch.equal(t2(img, 123), t(img, 123))


def test_flip_happens_about_half_the_time() -> None:
    img = _img(16, 16)
    t = build_transform("none", 16, 16, True, 3)
    plain = build_eval_transform("none", 16, 16, 3)(img, 0)
    flipped = sum(not torch.equal(t(img, s), plain) for s in range(200))
    assert 60 < flipped < 140


def test_eval_transform_ignores_seed_and_centre_crops() -> None:
    img = _img(40, 40)
    t = build_eval_transform("crop", 40, 20, 3)
    assert torch.equal(t(img, 1), t(img, 2)) and torch.equal(t(img), t(img, 2))
    full = build_eval_transform("none", 40, 40, 3)(img, 0)
    assert torch.equal(t(img, 0), full[:, 10:30, 10:30])


def test_transform_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        build_transform("zoom", 286, 256, True, 3)
    assert "data.preprocess" in str(info.value)
    for mode in PREPROCESS_MODES:
        assert mode in str(info.value)
    with pytest.raises(ConfigError, match="data.crop_size"):
        build_transform("resize_and_crop", 256, 286, True, 3)
    with pytest.raises(ConfigError, match="data.crop_size"):
        build_eval_transform("scale_width_and_crop", 256, 286, 3)
    with pytest.raises(ConfigError, match="data.channels"):
        build_transform("crop", 256, 256, True, 2)
    with pytest.raises(ConfigError, match="data.load_size"):
        build_transform("crop", 0, 256, True, 3)
    build_transform("crop", 16, 32, True, 3)  # crop-only mode does not use load_size


# ---------------------------------------------------------------------------------------------
# UnpairedFolders


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "my data"
    _write(root / "trainA", 3, seed=1)
    _write(root / "trainB", 5, seed=2)
    return root


def _transform():
    return build_transform("resize_and_crop", 36, 32, True, 3)


def test_missing_split_folder(root: Path) -> None:
    for p in (root / "trainB").iterdir():
        p.unlink()
    (root / "trainB").rmdir()
    with pytest.raises(DataError) as info:
        UnpairedFolders(root, "train", _transform())
    msg = str(info.value)
    assert f"dataset folder {root} has no trainB" in msg
    assert str(root / "trainA") in msg and str(root / "trainB") in msg
    with pytest.raises(DataError, match="not found"):
        UnpairedFolders(root / "nope")


def test_empty_split_folder(root: Path) -> None:
    (root / "testA").mkdir()
    _write(root / "testB", 1)
    (root / "testA" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"no images found in .*testA \(looked for \.jpg"):
        UnpairedFolders(root, "test")


def test_corrupt_files_skipped_and_strict(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    (root / "trainA" / "zero.jpg").write_bytes(b"")
    (root / "trainA" / "text.png").write_text("hello")
    with caplog.at_level(logging.WARNING, logger="cyclekit.data.folders"):
        ds = UnpairedFolders(root, "train", _transform())
    assert len(ds.paths_a) == 3 and len(ds.paths_b) == 5
    assert sorted(p.name for p, _ in ds.skipped) == ["text.png", "zero.jpg"]
    assert "skipped 2 unreadable files in" in caplog.text and "trainA" in caplog.text
    assert "zero.jpg" in caplog.text
    with pytest.raises(DataError, match="text.png"):
        UnpairedFolders(root, "train", _transform(), strict=True)


def test_all_files_unreadable(tmp_path: Path) -> None:
    _write(tmp_path / "trainB", 2)
    (tmp_path / "trainA").mkdir()
    (tmp_path / "trainA" / "a.jpg").write_text("x")
    with pytest.raises(DataError, match=r"trainA can be read"):
        UnpairedFolders(tmp_path)


def test_epoch_plan(root: Path) -> None:
    ds = UnpairedFolders(root, "train", _transform(), seed=3)
    plan = ds.epoch_plan(0)
    assert len(plan) == len(ds) == 5
    assert sorted(a for a, _, _ in plan[:3]) == [0, 1, 2]  # A: a permutation, then wraps
    assert [a for a, _, _ in plan[3:]] == [a for a, _, _ in plan[:2]]
    assert all(0 <= b < 5 for _, b, _ in plan)
    again = UnpairedFolders(root, "train", _transform(), seed=3)
    assert again.epoch_plan(0) == plan
    assert ds.epoch_plan(1) != plan
    assert UnpairedFolders(root, "train", _transform(), seed=4).epoch_plan(0) != plan
    # B uniform: 1000 draws over 5 images.
    counts = Counter(b for e in range(200) for _, b, _ in ds.epoch_plan(e))
    assert set(counts) == set(range(5)) and all(140 < c < 260 for c in counts.values())
    # A is re-shuffled every epoch.
    assert len({tuple(a for a, _, _ in ds.epoch_plan(e)[:3]) for e in range(20)}) > 1


def test_items(root: Path) -> None:
    ds = UnpairedFolders(root, "train", _transform())
    plan = ds.epoch_plan(0)
    item = ds[plan[0]]
    assert set(item) == {"A", "B", "A_path", "B_path"}
    assert item["A"].shape == (3, 32, 32) and item["B"].shape == (3, 32, 32)
    assert item["A_path"] == str(ds.paths_a[plan[0][0]])
    assert torch.equal(ds[plan[0]]["A"], item["A"])
    assert torch.equal(ds[0]["A"], item["A"])  # int index = epoch_plan(epoch)[i]
    ds.set_epoch(1)
    assert ds[0]["A_path"] == str(ds.paths_a[ds.epoch_plan(1)[0][0]])


def test_file_broken_after_scan(root: Path) -> None:
    ds = UnpairedFolders(root, "train", _transform())
    victim = ds.paths_a[0]
    victim.write_bytes(victim.read_bytes()[:60])
    with pytest.raises(DataError, match=str(victim).replace("(", r"\(")):
        ds[(0, 0, 0)]


def test_dataloader_workers_match_single_process(root: Path) -> None:
    ds = UnpairedFolders(root, "train", _transform())
    plan = ds.epoch_plan(2)
    resumed = json.loads(json.dumps(plan[1:]))  # a plan saved in a checkpoint comes back as lists

    def run(workers: int) -> list[dict]:
        loader = DataLoader(PlanDataset(ds, resumed), batch_size=2, num_workers=workers)
        return list(loader)

    single, multi = run(0), run(2)
    assert len(single) == len(multi) == 2
    for x, y in zip(single, multi, strict=True):
        assert torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"])
        assert x["A_path"] == y["A_path"]
    assert torch.equal(single[0]["A"][0], ds[plan[1]]["A"])


# ---------------------------------------------------------------------------------------------
# ImageFolder and scan_images


def test_image_folder(tmp_path: Path) -> None:
    _write(tmp_path / "faces", 4)
    (tmp_path / "faces" / "bad.jpg").write_text("nope")
    ds = ImageFolder(tmp_path / "faces", build_transform("crop", 32, 32, True, 1), channels=1, seed=1)
    assert len(ds) == 4 and len(ds.skipped) == 1
    x = ds[0]["image"]
    assert x.shape == (1, 32, 32)
    assert torch.equal(ds[0]["image"], x) and torch.equal(ds.get(2, 9), ds[(2, 9)]["image"])
    plan = ds.epoch_plan(0)
    assert sorted(i for i, _ in plan) == [0, 1, 2, 3] and plan == ds.epoch_plan(0) != ds.epoch_plan(1)
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["image"], x)  # new epoch, new augmentation

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no images found in .*empty"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(DataError, match="bad.jpg"):
        ImageFolder(tmp_path / "faces", strict=True)


def test_scan_images_where_label(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = _write(tmp_path / "x", 2)
    bad = tmp_path / "x" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n")
    with caplog.at_level(logging.WARNING):
        ok, skipped = scan_images([*good, bad], strict=False, where="trainA")
    assert ok == good and skipped[0][0] == bad
    assert "skipped 1 unreadable file in trainA" in caplog.text


# ---------------------------------------------------------------------------------------------
# data check


def test_check_folder(tmp_path: Path) -> None:
    a = _write(tmp_path / "trainA", 3, seed=1)
    (tmp_path / "trainA" / "copy of im 00.png").write_bytes(a[0].read_bytes())
    (tmp_path / "trainA" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (tmp_path / "trainA" / "notes.txt").write_text("hi")
    _write(tmp_path / "trainB", 2, seed=2, size=(20, 24))
    _img(20, 24, mode="L").save(tmp_path / "trainB" / "grey.png")
    (tmp_path / "testA").mkdir()
    (tmp_path / "testA" / "leak.png").write_bytes(a[1].read_bytes())
    (tmp_path / "docs").mkdir()  # no images: not reported

    report = check_folder(tmp_path)
    names = [f.folder.name for f in report.folders]
    assert names == ["testA", "trainA", "trainB"]
    ra, rb = report.folders[1], report.folders[2]
    assert ra.image_count == 5 and ra.readable_count == 4 and ra.non_image_count == 1
    assert [p.name for p, _ in ra.unreadable] == ["broken.jpg"]
    assert [[p.name for p in g] for g in ra.duplicates] == [["copy of im 00.png", "im 00.png"]]
    assert ra.duplicate_count == 1 and ra.sizes == Counter({(40, 36): 4})
    assert rb.modes == Counter({"RGB": 2, "L": 1}) and rb.grayscale_count == 1
    assert rb.sizes == Counter({(20, 24): 3})
    assert [sorted(p.name for p in g) for g in report.cross_duplicates] == [["im 01.png", "leak.png"]]
    assert not report.ok

    text = format_report(report)
    assert "trainA/" in text and "broken.jpg" in text and "copy of im 00.png = im 00.png" in text
    assert "grayscale: 1" in text and "testA/leak.png" in text


def test_check_flat_folder_and_errors(tmp_path: Path) -> None:
    _write(tmp_path / "flat", 2)
    report = check_folder(tmp_path / "flat")
    assert [f.folder for f in report.folders] == [tmp_path / "flat"]
    assert report.folders[0].image_count == 2 and report.ok
    with pytest.raises(DataError, match="missing"):
        check_folder(tmp_path / "missing")
    # A folder of datasets: each split reported by its relative path.
    _write(tmp_path / "cache" / "set1" / "trainA", 1)
    _write(tmp_path / "cache" / "set2" / "trainB", 1)
    report = check_folder(tmp_path / "cache")
    assert [f.folder.relative_to(tmp_path / "cache").as_posix() for f in report.folders] == [
        "set1/trainA",
        "set2/trainB",
    ]
    assert "set1/trainA/" in format_report(report)
    (tmp_path / "nothing").mkdir()
    assert check_folder(tmp_path / "nothing").folders[0].image_count == 0


def test_run_long_loader_gives_the_per_epoch_batches(tmp_path):
    """With workers, one DataLoader (persistent worker processes) serves every epoch; its batches
    equal those of a fresh loader per epoch, mid-epoch starts and a 2-rank shard included."""
    import torch

    from cyclekit.data.folders import UnpairedFolders
    from cyclekit.data.transforms import build_transform
    from cyclekit.train import distributed
    from cyclekit.train.batches import _LOADERS, plan_batches
    from tests.conftest import write_images

    write_images(tmp_path / "trainA", 7, seed=1)
    write_images(tmp_path / "trainB", 5, seed=2)
    ds = UnpairedFolders(tmp_path, "train", build_transform("resize_and_crop", 36, 32, True, 3), seed=3)

    def batches(epoch: int, start: int, workers: int) -> list[torch.Tensor]:
        plan = ds.epoch_plan(epoch)
        return [b["A"] for b in plan_batches(ds, plan, 2, start, workers, drop_last=False, epoch=epoch)]

    for epoch, start in ((0, 0), (1, 0), (2, 1), (1, 2)):
        fresh, persistent = batches(epoch, start, 0), batches(epoch, start, 2)
        assert len(fresh) == len(persistent) == 4 - start
        assert all(torch.equal(a, b) for a, b in zip(fresh, persistent, strict=True))
    loader = _LOADERS[ds][1]
    assert loader.persistent_workers and loader._iterator is not None  # the same workers throughout
    rank1 = distributed.Distributed(1, 2)
    saved, distributed._CURRENT = distributed._CURRENT, rank1
    try:
        fresh, persistent = batches(1, 0, 0), batches(1, 0, 2)
    finally:
        distributed._CURRENT = saved
    assert len(fresh) == 2 and all(torch.equal(a, b) for a, b in zip(fresh, persistent, strict=True))
