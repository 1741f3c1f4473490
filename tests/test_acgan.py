"""ACGAN on the scikit-learn digits: D names the class as well as real or fake, both players add the
class log-likelihood, and the generator learns to draw the class it is asked for."""

from __future__ import annotations

import json
from pathlib import Path

from cyclekit.recipes import load_config
from cyclekit.run import build_recipe
from tests.helpers import cli, one_error

SMALL = ["model.generator.ngf=32", "model.discriminator.ndf=32", "train.log_every=11", "train.progress=false"]


def test_acgan_learns_the_classes_on_the_digits(tmp_path: Path):
    a = ["train", "digits-acgan", "--out", str(tmp_path), "--quiet"]
    for item in [*SMALL, "train.epochs=20"]:
        a += ["--set", item]
    code, _, err = cli(*a)
    assert code == 0, err
    run = tmp_path / "digits-acgan"
    scores = json.loads((run / "results.json").read_text())["sampling"]
    # Measured at seed 0 (20 epochs, 440 steps): conditional accuracy 0.8145, 10 of 10 classes
    # covered; chance is 0.1. Thresholds: 0.65 (0.16 below) and 8 classes.
    assert scores["conditional_accuracy"] >= 0.65, scores
    assert scores["classes_covered"] >= 8, scores
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"class_D", "class_G", "D_class_acc"} <= set(rows[-1])
    assert rows[-1]["D_class_acc"] > 0.8  # D classifies the real digits


def test_the_discriminator_has_the_auxiliary_head():
    recipe = build_recipe(load_config("digits-acgan", ["model.generator.ngf=8", "model.discriminator.ndf=8"]))
    batch = next(iter(recipe.batches(0, 0)))
    logit, classes = recipe.state.nets["D"](batch["image"])
    assert logit.shape == (64,) and classes.shape == (64, 10)
    out = recipe.train_step(batch, 0)
    assert {"loss_D", "loss_G", "class_D", "class_G"} <= set(out)


def test_acgan_needs_the_aux_head_and_no_gradient_penalty(tmp_path: Path):
    code, _, err = cli("train", "digits-acgan", "--out", str(tmp_path), "--set", "model.discriminator.head=concat")
    assert code == 1 and "acgan needs D(x) -> (logit, class logits)" in one_error(err)
    code, _, err = cli("train", "digits-acgan", "--out", str(tmp_path), "--set", "acgan.gan_mode=wgan-gp")
    assert code == 1 and "acgan has no gradient penalty step" in one_error(err)
