"""Issue 23, data side: `data check` asks every data source; class folders and MNIST-format files
train in one try (test split numbered by the training classes, no test split decided and said at
the start, size/channels/classes from the data, a preset's source switched with --set); the MNIST
start line names its folder; docs/config.md lists each source's keys once, as runs record them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.helpers import cli


def _write_idx(path: Path, arr: np.ndarray) -> None:
    arr = np.asarray(arr, dtype=np.uint8)
    code = {1: 0x801, 3: 0x803}[arr.ndim]
    header = code.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(header + arr.tobytes())


def _mnist(folder: Path, n_train: int = 40, n_test: int = 20, test: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        if prefix == "t10k" and not test:
            continue
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return folder


def _classes(folder: Path, names: list[str], n: int = 4, size: int = 28) -> Path:
    """Grey ``size`` px images, one folder per class, each class its own brightness."""
    for i, name in enumerate(names):
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        for j in range(n):
            Image.new("L", (size, size), 40 + 60 * i + j).save(d / f"{j}.png")
    return folder


def _verdict(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("verdict: ")]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))  # the yardstick's cache


# 1 ------------------------------------------------------------------------------------------


def test_data_check_asks_every_source(tmp_path: Path) -> None:
    code, out, err = cli("data", "check", str(_mnist(tmp_path / "mnist")))
    assert code == 0, err
    (line,) = _verdict(out)
    assert "cgan, acgan, sgan" in line and "(data.kind mnist)" in line and "40 train images" in line
    assert "test split: 20 images" in line

    code, out, err = cli("data", "check", str(_mnist(tmp_path / "notest", test=False)))
    assert code == 0, err
    assert "no t10k-* test files" in _verdict(out)[0]

    code, out, err = cli("data", "check", str(_classes(tmp_path / "flat", ["cat", "dog", "fox"])))
    assert code == 0, err
    (line,) = _verdict(out)
    assert "cgan" in line and "(data.kind classes)" in line and "3 classes (cat, dog, fox), 12 images" in line
    assert "images: 4 (4 readable)" in out  # the image-folder health report is still there

    tree = tmp_path / "tree"
    _classes(tree / "train", ["cat", "dog", "fox"])
    _classes(tree / "test", ["cat", "fox"], n=2)
    code, out, err = cli("data", "check", str(tree))
    assert code == 0, err
    assert "(data.kind classes)" in _verdict(out)[0] and "test split: 4 images" in _verdict(out)[0]

    named = _mnist(tmp_path / "fashion")
    (named / "classes.txt").write_text("\n".join(["T-shirt/top", "Trouser", "Pullover"] + [f"c{i}" for i in range(7)]))
    code, out, err = cli("data", "check", str(named))
    assert code == 0 and "(T-shirt/top, Trouser, Pullover, c0, ... from classes.txt)" in _verdict(out)[0], out
    (named / "classes.txt").write_text("a\nb\n")  # 2 names for 10 labels: refused as training refuses it
    code, out, err = cli("data", "check", str(named))
    assert code == 1 and "Traceback" not in err, err
    assert any("mnist: " in line and "classes.txt" in line for line in _verdict(out)), out

    (tmp_path / "empty").mkdir()
    code, out, err = cli("data", "check", str(tmp_path / "empty"))
    assert code == 1 and "verdict: not usable" in out
    assert "verdict:   mnist: " in out and "verdict:   classes: " in out  # each source's reason
    assert err.strip().startswith("error: no data source can read") and len(err.strip().splitlines()) == 1
    assert "holds no readable images" in err  # the likeliest reason in the error line itself


# 2 ------------------------------------------------------------------------------------------


def test_class_test_split_is_numbered_by_the_training_classes(tmp_path: Path) -> None:
    from cyclekit.data.labelled import classes

    tree = tmp_path / "tree"
    _classes(tree / "train", ["cat", "dog", "fox"])
    _classes(tree / "test", ["cat", "fox"], n=2)  # no dog
    test = classes("test", tree, size=8, channels=1)
    assert test is not None and test.class_names == ["cat", "dog", "fox"]
    assert test.labels.tolist() == [0, 0, 2, 2]  # fox is 2, as in training, not 1

    code, out, err = cli(
        "train", "classes-cgan", "--data-root", str(tree), "--out", str(tmp_path / "runs"),
        "--set", "data.batch_size=4", "--set", "train.max_steps=1", "-q",
    )  # fmt: skip
    assert code == 0, err
    scores = json.loads((tmp_path / "runs" / "classes-cgan" / "results.json").read_text())["sampling"]
    assert scores["of_classes"] == 3

    _classes(tree / "test", ["owl"], n=2)  # a class training never saw
    code, out, err = cli(
        "train", "classes-cgan", "--data-root", str(tree), "--out", str(tmp_path / "runs2"),
        "--set", "data.batch_size=4", "--set", "train.max_steps=1", "-q",
    )  # fmt: skip
    assert code == 1 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert "owl" in err and "cat, dog, fox" in err
    assert not (tmp_path / "runs2" / "classes-cgan" / "checkpoints" / "last.pt").exists()  # refused before training


# 3 and 5 ------------------------------------------------------------------------------------


def test_mnist_without_test_files_trains_and_says_why_there_are_no_scores(tmp_path: Path) -> None:
    root = _mnist(tmp_path / "notest", test=False)
    code, out, err = cli(
        "train", "mnist-cgan", "--data-root", str(root), "--out", str(tmp_path / "runs"),
        "--set", "data.batch_size=4", "--set", "train.max_steps=1", "-q",
    )  # fmt: skip
    assert code == 0, err
    start = err.split("schedule:")[0]
    assert f"from {root}" in start  # 5: the start line names the data folder
    assert "warning: no scores:" in err and "t10k-images-idx3-ubyte" in err  # said at the start
    assert "no scores (no results.json):" in out and "t10k" in out  # and at the end
    assert not (tmp_path / "runs" / "mnist-cgan" / "results.json").exists()

    # A class folder tree without test/ says the same, both times.
    flat = _classes(tmp_path / "flat", ["cat", "dog"])
    code, out, err = cli(
        "train", "classes-cgan", "--data-root", str(flat), "--out", str(tmp_path / "runs"),
        "--set", "data.batch_size=4", "--set", "train.max_steps=1", "-q",
    )  # fmt: skip
    assert code == 0, err
    assert "warning: no scores:" in err and "test/<class>/" in err and "no scores (no results.json):" in out


# 4 ------------------------------------------------------------------------------------------


def test_a_preset_switches_to_class_folders_and_takes_size_channels_classes_from_them(tmp_path: Path) -> None:
    flat = _classes(tmp_path / "flat", ["cat", "dog", "fox"], size=28)
    runs = tmp_path / "runs"
    args = ["train", "digits-cgan", "--data-root", str(flat), "--out", str(runs), "-q"]
    code, out, err = cli(
        *args, "--set", "data.kind=classes", "--set", "data.batch_size=4", "--set", "train.max_steps=1"
    )
    assert code == 0, err
    assert "data.kind classes replaces digits: dropped" in err and "data.digits.size" in err
    assert "28 x 28 px grey" in err and "3 classes" in err
    config = yaml.safe_load((runs / "digits-cgan" / "config.yaml").read_text())
    assert config["data"]["channels"] == 1 and config["data"]["classes"]["size"] == 28
    assert config["model"]["generator"]["n_classes"] == 3
    # The recorded config resumes as it is.
    code, out, err = cli("train", "--resume", str(runs / "digits-cgan"), "--set", "train.max_steps=2", "-q")
    assert code == 0, err
    assert "resumed at step 1" in out

    # An explicit setting wins over the data.
    code, out, err = cli(
        "train", "classes-cgan", "--data-root", str(flat), "--out", str(runs), "--name", "rgb32",
        "--set", "data.size=32", "--set", "data.channels=3", "--set", "data.batch_size=4", "--set", "train.max_steps=1",
        "-q",
    )  # fmt: skip
    assert code == 0, err
    assert "32 x 32 px RGB" in err
    # n_classes set by hand must agree with the folders.
    code, out, err = cli(
        "train", "classes-cgan", "--data-root", str(flat), "--out", str(runs), "--name", "bad",
        "--set", "model.generator.n_classes=5", "--set", "data.batch_size=4", "--set", "train.max_steps=1", "-q",
    )  # fmt: skip
    assert code == 1 and "model.generator.n_classes: 5, but" in err and "3 classes" in err


def test_the_guide_walks_through_class_folders_and_mnist_files() -> None:
    from tests.conftest import REPO

    guide = (REPO / "docs" / "guide-own-data.md").read_text()
    assert "## Training a conditional GAN on your own class folders / MNIST-format files" in guide
    assert "cyclekit train classes-cgan --data-root" in guide and "cyclekit data check" in guide


# 6 ------------------------------------------------------------------------------------------


def test_config_reference_lists_each_source_once_with_the_recorded_key() -> None:
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("gen_docs", REPO / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    gen_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_docs)
    text = gen_docs.config_reference()
    assert text.count("### `data.kind: classes`") == 1 and text.count("### `data.kind: mnist`") == 1
    assert "| `data.mnist.root` |" in text and "| `data.classes.size` |" in text
    assert "| `data.root` |" not in text
