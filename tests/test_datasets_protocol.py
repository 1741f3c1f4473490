"""The run owns the data (issue 24, item 1): every dataset a source builds satisfies the `Dataset`
protocol; a recipe is given a `RunData` (typed datasets, never a root) and trains from one built by
hand; a run's config.yaml records the folder it read, for every source that reads one; and recipes
and the run ask the source's capabilities instead of comparing data-kind names."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cyclekit.config import Config
from cyclekit.data.labelled import LabelledImages
from cyclekit.data.protocol import Conditioned, Dataset, Labelled, RunData, Tensors
from cyclekit.data.sources import SOURCES, RingPoints, locate_data
from cyclekit.recipes import RECIPES, load_config
from cyclekit.run import open_data, train_run
from tests.conftest import REPO, write_images
from tests.helpers import TINY_CYCLEGAN

# ---------------------------------------------------------------------------------------------
# generated data, one folder per source


def _idx(path: Path, arr: np.ndarray) -> None:
    arr = np.asarray(arr, dtype=np.uint8)
    code = {1: 0x801, 3: 0x803}[arr.ndim]
    path.write_bytes(code.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.tobytes())


def _mnist(root: Path, test: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)) if test else (("train", 40),):
        _idx(root / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(root / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return root


def _classes(root: Path, split: bool = True) -> Path:
    for part in ("train", "test") if split else ("",):
        for i, name in enumerate(("ant", "bee", "cat")):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(6 if part != "test" else 2):
                Image.new("L", (16, 16), 30 + 70 * i + j).save(folder / f"{j}.png")
    return root


def _paired(root: Path) -> Path:
    for split, n in (("train", 4), ("test", 2)):
        for side in "AB":
            paths = write_images(root / f"{split}{side}", n, size=40, seed=ord(side) + n)
            for p in paths:
                p.rename(p.with_name(f"{p.stem.split()[-1]}_{side}.png"))
    return root


def _sidecars(root: Path, suffix: str) -> Path:
    for split, n in (("train", 4), ("test", 2)):
        for p in write_images(root / split, n, size=16, seed=n):
            if suffix == ".npy":
                np.save(p.with_suffix(".npy"), np.full(8, float(n), dtype=np.float32))
            else:
                p.with_suffix(".txt").write_text("a red square on the left\n")
    return root


# (kind, preset, overrides, make the data under a folder -> root or None)
SOURCE_CASES: dict[str, tuple[str, list[str], Any]] = {
    "unpaired": ("horse2zebra", TINY_CYCLEGAN, lambda d: _paired(d / "unpaired")),  # paired names: unpaired reads them
    "paired": (
        "facades-small",
        ["data.load_size=36", "data.crop_size=32", "model.generator.n_downs=5"],
        lambda d: _paired(d / "paired"),
    ),
    "demo": ("demo", ["data.demo_train=4", "data.demo_test=2", "data.demo_size=32"], None),
    "folder": ("dcgan-small", [], lambda d: write_images(d / "folder", 6)[0].parent),
    "ring": ("gan-ring", ["data.epoch_size=64"], None),
    "digits": ("digits-cgan", [], None),
    "mnist": ("mnist-cgan", [], lambda d: _mnist(d / "mnist")),
    "classes": ("classes-cgan", [], lambda d: _classes(d / "classes")),
    "scenes": (
        "scenes-stackgan",
        ["data.train_scenes=8", "data.test_scenes=4", "data.captions_per_scene=2"],
        None,
    ),
    "embedded": (
        "scenes-stackgan",
        ["data.kind=embedded", "data.embedded.embed_dim=8", "data.embedded.size=16", "stackgan.scale=2"],
        lambda d: _sidecars(d / "embedded", ".npy"),
    ),
    "captions": (
        "scenes-stackgan",
        ["data.kind=captions", "data.captions.embedding=words", "data.captions.size=16", "stackgan.scale=2"],
        lambda d: _sidecars(d / "captions", ".txt"),
    ),
}


def test_every_source_is_covered_here():
    assert set(SOURCE_CASES) == set(SOURCES)


@pytest.mark.parametrize("kind", sorted(SOURCE_CASES))
def test_every_source_builds_train_and_test_splits_that_satisfy_the_protocol(kind: str, tmp_path: Path):
    preset, overrides, make = SOURCE_CASES[kind]
    config = load_config(preset, overrides)
    assert config.data.kind == kind
    root = make(tmp_path) if make is not None else None
    config, data = open_data(config, root, tmp_path / "cache")
    assert isinstance(data, RunData) and data.source is SOURCES[kind]
    splits = {"train": data.train, "test": data.test}
    if kind in ("folder", "ring"):
        assert data.test is None  # nothing held out
    else:
        assert data.test is not None, kind
    for split, dataset in splits.items():
        if dataset is None:
            continue
        assert isinstance(dataset, Dataset), (kind, split)
        assert len(dataset) > 0 and isinstance(dataset.summary(), str) and dataset.summary()
        plan = dataset.epoch_plan(0)
        assert list(plan) == list(dataset.epoch_plan(0))  # fixed by (seed, epoch)
        item = dataset[plan[0]]
        assert set(SOURCES[kind].batch_keys) - {"aligned"} <= set(item), (kind, split, sorted(item))
        if "label" in SOURCES[kind].batch_keys:
            assert isinstance(dataset, Labelled) and len(dataset.tensors()[0]) == len(dataset)
        if "embedding" in SOURCES[kind].batch_keys:
            assert isinstance(dataset, Conditioned) and isinstance(dataset, Tensors)
    if "label" in SOURCES[kind].batch_keys:
        assert data.labelled and data.class_names and SOURCES[kind].n_classes(config.data) in (None, 10)
    else:
        assert not data.labelled and data.class_names == []


# ---------------------------------------------------------------------------------------------
# a recipe from data built by hand


def _labelled(n: int, seed: int) -> LabelledImages:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 16, 16), generator=gen, dtype=torch.uint8)
    return LabelledImages(images, torch.arange(n) % 3, ["a", "b", "c"], seed=0, root=None, name="by hand")


def _step(config: Config, data: RunData) -> dict[str, Any]:
    recipe = RECIPES[config.recipe](config, data)
    assert recipe.root is None and recipe.data is data
    batch = next(iter(recipe.batches(0, 0)))
    return {k: float(v) for k, v in recipe.train_step(batch, 0).items()}


def test_a_recipe_trains_a_step_on_a_run_data_built_by_hand_with_no_root_and_no_cache(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "no-cache"))  # nothing may be located or fetched
    config = load_config(
        "classes-cgan",
        ["data.classes.size=16", "data.channels=1", "model.generator.n_classes=3", "data.batch_size=4"],
    )
    train, test = _labelled(12, 1), _labelled(6, 2)
    data = RunData(SOURCES["classes"], config.data, None, config.seed, train, test, list(train.class_names))
    losses = _step(config, data)
    assert losses and all(np.isfinite(v) for v in losses.values())

    ring = load_config("gan-ring", ["data.epoch_size=64", "data.batch_size=16"])
    points = RunData(SOURCES["ring"], ring.data, None, ring.seed, RingPoints(64, 0))
    assert all(np.isfinite(v) for v in _step(ring, points).values())
    assert not (tmp_path / "no-cache").exists()


# ---------------------------------------------------------------------------------------------
# config.yaml says where the data came from


ROOT_CASES = {
    "unpaired": ("horse2zebra", [*TINY_CYCLEGAN], lambda d: _unpaired_no_test(d / "unpaired")),
    "paired": (
        "facades-small",
        ["data.load_size=36", "data.crop_size=32", "model.generator.n_downs=5"]
        + ["model.generator.ngf=8", "model.discriminator.ndf=8"],
        lambda d: _paired(d / "paired"),
    ),
    "demo": (
        "demo",
        [*TINY_CYCLEGAN, "data.demo_train=4", "data.demo_test=2", "data.demo_size=32", "data.load_size=32"],
        None,
    ),
    "folder": (
        "dcgan-small",
        ["data.batch_size=2", "model.generator.ngf=8", "model.discriminator.ndf=8"],
        lambda d: write_images(d / "folder", 4)[0].parent,
    ),
    "mnist": (
        "mnist-cgan",
        ["data.batch_size=8", "model.generator.ngf=8", "model.discriminator.ndf=8"],
        lambda d: _mnist(d / "mnist", test=False),
    ),
    "classes": (
        "classes-cgan",
        ["data.batch_size=4", "model.generator.ngf=8", "model.discriminator.ndf=8"],
        lambda d: _classes(d / "classes", split=False),
    ),
}


def _unpaired_no_test(root: Path) -> Path:
    write_images(root / "trainA", 2, seed=1)
    write_images(root / "trainB", 2, seed=2)
    return root


@pytest.mark.parametrize("kind", sorted(ROOT_CASES))
def test_config_yaml_records_the_data_folder_the_run_read(kind: str, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))  # no FID weights: no slow scoring
    preset, overrides, make = ROOT_CASES[kind]
    root = make(tmp_path) if make is not None else None
    settings = [*overrides, "train.max_steps=1", "train.epochs=1", "train.decay_epochs=0", "train.progress=false"]
    config = load_config(preset, [*settings, "name=run"])
    assert config.data.kind == kind
    report = train_run(config, tmp_path / "runs", data_root=root)
    recorded = yaml.safe_load((report.run_dir / "config.yaml").read_text())["data"][kind]["root"]
    expected = root if root is not None else locate_data(config.data, None, None, config.seed)
    assert recorded == str(Path(expected).resolve())
    # A resume (or `cyclekit train RUN/config.yaml`) reads exactly that folder, without --data-root.
    again = load_config(str(report.run_dir / "config.yaml"))
    assert locate_data(again.data, None, None, again.seed) == Path(recorded)


def test_a_demo_run_whose_recorded_folder_is_gone_generates_the_demo_again(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))
    config = load_config("demo", ["data.demo_train=2", "data.demo_test=1", "data.demo_size=16"])
    gone = load_config("demo", ["data.demo_train=2", "data.demo_test=1", "data.demo_size=16", "data.root=/nowhere"])
    fresh = locate_data(config.data, None, None, config.seed)
    assert locate_data(gone.data, None, None, gone.seed) == fresh and (fresh / "trainA").is_dir()


# ---------------------------------------------------------------------------------------------
# no data-kind names in recipes or the run


def test_recipes_and_the_run_compare_no_data_kind_names():
    """Recipes and the run ask the source (image_shape, n_classes, condition, has_split, batch
    keys); a data-kind name compared in them is the special case the platform is meant to avoid."""
    files = sorted((REPO / "cyclekit" / "recipes").glob("*.py")) + [REPO / "cyclekit" / "recipe.py"]
    names = "|".join(map(re.escape, SOURCES))
    pattern = re.compile(rf"""(==|!=)\s*["']({names})["']|\bin\s*\([^)]*["']({names})["']""")
    found = [
        f"{path.relative_to(REPO)}:{i}: {line.strip()}"
        for path in files
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
    # git grep agrees where the checkout is a git repository (a fresh clone is)
    try:
        out = subprocess.run(
            [
                "git",
                "grep",
                "-n",
                "-E",
                r"data\.kind (==|!=|in \(|not in \()",
                "--",
                "cyclekit/recipes",
                "cyclekit/recipe.py",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return
    if out.returncode in (0, 1):
        assert out.stdout == ""
