"""Issue 23, held-out battery: hostile configs and damaged condition files give one line, quickly.

A YAML alias bomb (nine levels of aliases in a few hundred bytes) used to hang train, resume, bundle
and eval while growing past 6 GB; an integer of 5,000 digits and a `.npy` of strings or of a
structured dtype were tracebacks."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from cyclekit import yamltext
from tests.helpers import TINY_CYCLEGAN, cli, one_error, train_args

# Nine levels, nine aliases each: 9**9 (387 million) leaves once expanded, in about 400 bytes.
BOMB = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
)


def test_the_bomb_is_small_and_refused_by_the_loader():
    assert len(BOMB) < 600
    with pytest.raises(yamltext.YamlRefused, match="alias"):
        yamltext.load(BOMB)


def test_what_cyclekit_writes_it_reads_back():
    shared = [1, 2]
    data = {"x": shared, "y": shared, "z": {"k": "v"}}
    assert yamltext.load(yamltext.dump(data)) == {"x": [1, 2], "y": [1, 2], "z": {"k": "v"}}


def _timed(*args: str) -> tuple[int, str, float]:
    start = time.monotonic()
    code, _, err = cli(*args)
    return code, err, time.monotonic() - start


def test_an_alias_bomb_in_a_config_file_is_one_line(tmp_path: Path):
    config = tmp_path / "bomb.yaml"
    config.write_text("recipe: cyclegan\n" + BOMB + "\n")
    code, err, took = _timed("train", str(config), "--out", str(tmp_path / "o"))
    line = one_error(err)
    assert code != 0 and "alias" in line and "bomb.yaml" in line, line
    assert took < 5, took  # was: hung, growing past 6 GB
    assert not (tmp_path / "o").exists()


def test_an_alias_bomb_in_a_set_value_is_one_line(tmp_path: Path):
    value = "{" + BOMB.replace("\n", ", ") + "}"
    code, err, took = _timed("train", "demo", "--set", f"train.epochs={value}", "--out", str(tmp_path / "o"))
    line = one_error(err)
    assert code != 0 and "--set train.epochs" in line and "alias" in line, line
    assert took < 5, took


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import write_images

    base = tmp_path_factory.mktemp("bombrun")
    root = base / "data"
    for folder, seed in (("trainA", 1), ("trainB", 2), ("testA", 3), ("testB", 4)):
        write_images(root / folder, 2, seed=seed)
    code, _, err = cli(*train_args("horse2zebra-small", root, base / "runs", TINY_CYCLEGAN,
                                   "train.epochs=1", "data.dataset=null", "train.eval_every=0"))  # fmt: skip
    assert code == 0, err
    return base / "runs" / "horse2zebra-small"


@pytest.mark.parametrize("command", ["resume", "bundle", "eval", "report"])
def test_an_alias_bomb_in_a_runs_config_yaml_is_one_line(tiny_run: Path, tmp_path: Path, command: str):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "config.yaml").write_text(BOMB + "\n")
    args = {
        "resume": ["train", "--resume", str(run)],
        "bundle": ["bundle", str(run), "-o", str(tmp_path / "b")],
        "eval": ["eval", str(run), "--no-fid"],
        "report": ["report", str(run)],
    }[command]
    code, err, took = _timed(*args)
    line = one_error(err)
    assert code != 0 and "alias" in line and "config.yaml" in line, line
    assert took < 5, took


def test_an_integer_of_5000_digits_is_one_line(tmp_path: Path):
    config = tmp_path / "big.yaml"
    config.write_text("recipe: cyclegan\ntrain:\n  epochs: " + "9" * 5000 + "\n")
    code, err, _ = _timed("train", str(config), "--out", str(tmp_path / "o"))
    line = one_error(err)
    assert code != 0 and "big.yaml" in line and "cannot read" in line, line
    code, err, _ = _timed("train", "demo", "--set", "train.epochs=" + "9" * 5000, "--out", str(tmp_path / "o"))
    line = one_error(err)
    assert code != 0 and "--set train.epochs" in line, line


@pytest.mark.parametrize(
    "array",
    [np.array(["a", "b", "c", "d", "e", "f", "g", "h"]), np.zeros(8, dtype=[("x", "f4"), ("y", "i4")])],
    ids=["strings", "structured"],
)
def test_an_embedding_file_of_strings_or_records_is_one_line(tmp_path: Path, array: np.ndarray):
    from tests.conftest import write_images

    data = tmp_path / "data"
    for i, path in enumerate(write_images(data, 4, size=40)):
        np.save(path.with_suffix(".npy"), array if i == 2 else np.full(8, i, np.float32))
    config = tmp_path / "emb.yaml"
    config.write_text(
        "recipe: stackgan\ndata: {kind: embedded, batch_size: 2, embedded: {size: 32, embed_dim: 8}}\n"
        "stackgan: {stage1_epochs: 1, stage2_epochs: 1, scale: 2}\n"
    )
    code, _, err = cli("train", str(config), "--data-root", str(data), "--out", str(tmp_path / "o"), "--quiet")
    line = one_error(err)
    assert code == 1 and "img 02.npy" in line and "not numbers" in line, line


SMALL_PRESETS = [
    "demo", "facades-small", "horse2zebra-small", "maps-small", "dcgan-small", "gan-ring", "digits-cgan",
    "digits-acgan", "digits-sgan", "digits-wgan", "digits-wgan-gp", "digits-began", "scenes-stackgan",
]  # fmt: skip


@pytest.mark.parametrize("name", SMALL_PRESETS)
def test_every_small_preset_gives_its_run_time(name: str):
    """Each small preset says how long it takes on a 2-core CPU (docs/benchmarks.md has the runs)."""
    import re

    from cyclekit.config import PRESET_DIR, read_yaml

    description = read_yaml(PRESET_DIR / f"{name}.yaml")["description"]
    found = re.search(r"about ([\d.]+) minutes on a 2-core CPU", description)
    assert found and float(found.group(1)) <= 15, description


def test_maps_small_fits_fifteen_minutes():
    """1,096 training pairs at facades-small's measured step rate (8,000 steps in 549 s)."""
    from cyclekit.config import PRESET_DIR, read_yaml

    train = read_yaml(PRESET_DIR / "maps-small.yaml")["train"]
    steps = 1096 * (train["epochs"] + train["decay_epochs"])
    assert steps * 549 / 8000 <= 15 * 60, steps
