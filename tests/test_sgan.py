"""The semi-supervised GAN on the scikit-learn digits with a few labels per class: D is a K-class
classifier with "fake" implicit; it is scored on the test split next to the same classifier the
yardstick uses, trained on only the same labels. Resume after SIGKILL (labelled subset and labelled
mini-batches included) is in tests/test_resume_table.py."""

from __future__ import annotations

import json
from pathlib import Path

from cyclekit.recipes import load_config
from cyclekit.run import build_recipe
from tests.helpers import cli, one_error

SMALL = ["model.generator.ngf=32", "model.discriminator.ndf=32", "train.log_every=1", "train.progress=false"]


def args(out: Path, *extra: str) -> list[str]:
    a = ["train", "digits-sgan", "--out", str(out), "--quiet"]
    for item in [*SMALL, *extra]:
        a += ["--set", item]
    return a


def test_sgan_keeps_k_labels_per_class_and_records_them():
    recipe = build_recipe(load_config("digits-sgan", ["model.generator.ngf=8", "model.discriminator.ndf=8"]))
    labels = recipe.dataset.labels
    assert int((labels >= 0).sum()) == 100 and len(labels) == 1438
    assert "100 labelled: 10 per class" in recipe.data_summary()
    x, y = recipe.labelled_batch(3)
    x2, y2 = recipe.labelled_batch(3)
    assert (y == y2).all() and (x == x2).all() and (y >= 0).all()  # drawn from (seed, step) alone


def test_sgan_discriminator_learns_to_classify_from_ten_labels_per_class(tmp_path: Path):
    code, _, err = cli(*args(tmp_path, "train.epochs=30", "train.decay_epochs=0", "train.log_every=22"))
    assert code == 0, err
    scores = json.loads((tmp_path / "digits-sgan" / "results.json").read_text())["sampling"]
    # Measured at seed 0 (30 epochs, 660 steps, 32 filters): D's test accuracy 0.908 from 100
    # labelled images (chance 0.1); threshold 0.85. It does not beat the yardstick's classifier
    # trained on the same 100 images (0.95 at the full preset, D 0.953): see docs/benchmarks.md.
    assert scores["discriminator_test_accuracy"] >= 0.85, scores
    # The yardstick's classifier trained on the same 100 labelled images alone depends on the seed and the
    # labelled subset only, not on the GAN: 0.9554 measured (here and at the full preset, docs/benchmarks.md).
    # The floor 0.9 leaves 0.055 of margin (all 1,438 labelled training digits give 0.989; chance is 0.1).
    assert scores["labelled_images"] == 100 and scores["supervised_only_test_accuracy"] >= 0.9, scores


def test_labels_per_class_is_for_sgan_only(tmp_path: Path):
    code, _, err = cli("train", "digits-cgan", "--out", str(tmp_path), "--set", "data.labels_per_class=10")
    assert code == 1 and "recipe cgan trains on labelled images only" in one_error(err)
    code, _, err = cli(*args(tmp_path, "data.labels_per_class=500"))
    assert code == 1 and "labels" in one_error(err)
