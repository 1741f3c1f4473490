"""Every mnist-* preset runs unchanged on any MNIST-format data set: four idx files (gzip or not)
and an optional classes.txt, given with --data-root. Here: generated 28 px idx files of ten
"letters" (the real MNIST is for the benchmarks, docs/benchmarks.md); a few steps of each preset,
then its scores name the yardstick that measured them and the classes by their names."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from cyclekit.config import list_presets
from tests.helpers import cli, train_args

LETTERS = [chr(ord("a") + i) for i in range(10)]
MNIST_PRESETS = sorted(p for p in list_presets() if p.startswith("mnist-"))


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = ((0x08 << 8) | arr.ndim).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


@pytest.fixture(scope="module")
def letters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MNIST-format idx files: 300 training and 100 test images, 28 x 28, each class a bar at its
    own place (learnable), labels cycling through 0..9, class names a..j in classes.txt."""
    root = tmp_path_factory.mktemp("letters")
    rng = np.random.default_rng(0)
    for prefix, n, gz in (("train", 300, True), ("t10k", 100, False)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, size=(n, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label : 5 + 2 * label, 4:24] = 255
        write_idx(root / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, gz)
    (root / "classes.txt").write_text("\n".join(LETTERS) + "\n", encoding="utf-8")
    return root


def test_there_is_an_mnist_preset_for_every_recipe_of_the_family():
    family = {"gan", "dcgan", "cgan", "acgan", "sgan", "wgan", "wgan-gp", "began"}
    assert {f"mnist-{name}" for name in family} <= set(MNIST_PRESETS)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    """The tests' own cache: the yardstick of the letters is trained once and shared by the presets
    at 28 px (the 16 px BEGAN preset gets its own)."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CYCLEKIT_CACHE", str(path))
        yield path


@pytest.mark.parametrize("preset", MNIST_PRESETS)
def test_each_mnist_preset_trains_and_is_scored_on_other_idx_data(
    preset: str, letters: Path, tmp_path: Path, cache: Path
):
    settings = ["train.max_steps=3", "train.progress=false", "data.batch_size=8"]
    if preset == "mnist-sgan":
        settings += ["data.mnist.labels_per_class=3", "sgan.labelled_batch=8"]
    code, out, err = cli(*train_args(preset, letters, tmp_path / "runs", settings))
    assert code == 0, err
    run = tmp_path / "runs" / preset
    scores = json.loads((run / "results.json").read_text())["sampling"]
    stick = scores["yardstick"]
    assert stick["id"].startswith("mnist-") and stick["train_images"] == 300 and stick["test_images"] == 100
    assert (cache / "yardsticks" / f"{stick['id']}.pt").is_file()
    assert scores["of_classes"] == 10 and len(scores["class_histogram"]) == 10 and scores["frechet_classifier"] >= 0
    bundle = json.loads((run / "bundle" / "config.json").read_text())
    if bundle["samples"].get("classes"):
        assert bundle["samples"]["classes"] == LETTERS  # named by classes.txt
