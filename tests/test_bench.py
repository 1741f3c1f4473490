"""`cyclekit bench`: every number is measured, positive and written to JSON; --compare times
another checkout's training step in separate processes and reports the ratio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import cli

TINY = ["data.demo_train=4", "data.demo_test=2", "data.demo_size=32", "data.load_size=32", "data.crop_size=32",
        "model.generator.ngf=4", "model.generator.n_blocks=1", "model.discriminator.ndf=4",
        "data.batch_size=1"]  # fmt: skip


@pytest.mark.slow  # times two checkouts side by side; the bad-argument test stays in the default run
def test_bench_measures_and_compares(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench.json"
    args = ["bench", "demo", "--steps", "2", "--warmup", "1", "-o", str(out), "--compare", str(REPO), "--rounds", "1"]
    code, stdout, err = cli(*args, *[a for item in TINY for a in ("--set", item)])
    assert code == 0, err
    result = json.loads(out.read_text())
    for key in ("matmul_gflops", "train_s_per_step", "train_gflop_per_step", "peak_memory_mib", "eager_ms", "onnx_ms",
                "generator_gflop", "translate_images_per_s"):  # fmt: skip
        assert result[key] > 0, key
    # FLOPs counted by torch.utils.flop_counter, rates as fractions of this machine's matmul rate
    assert 0 < result["train_fraction_of_matmul"] < 5 and 0 < result["eager_fraction_of_matmul"] < 5
    assert 0 < result["translate_fraction_of_model"] < 5
    # The step is timed in the training loop itself: median with its spread, data loading included.
    assert result["train_s_min"] <= result["train_s_per_step"] <= result["train_s_max"]
    assert "s/step median" in stdout and "max over 2 steps of the training loop" in stdout
    assert "GFLOP/step at 32 px" in stdout and "of the fp32 matmul rate above" in stdout
    assert result["translate_size"] == "32x32" and "of the raw eager model rate at that size" in stdout
    assert f"vs {REPO}:" in stdout and "alternating rounds" in stdout
    compare = [n for n in result["notes"] if n.startswith("compare:")]
    assert compare and "speedup" in compare[0]


def test_bench_bad_arguments_are_one_line(tmp_path: Path):
    code, _, err = cli("bench", "demo", "--steps", "0", "-o", str(tmp_path / "b.json"))
    assert code == 1 and err.startswith("error: --steps")
    code, _, err = cli("bench", "demo", "-o", str(tmp_path / "b.txt"))
    assert code == 1 and "unknown extension '.txt'; use .json" in err
    code, _, err = cli("bench", "demo", "--compare", str(tmp_path / "nowhere"), "-o", str(tmp_path / "b.json"),
                       *[a for item in TINY for a in ("--set", item)], "--steps", "1")  # fmt: skip
    assert code == 1 and "neither a cyclekit checkout nor a git commit" in err


@pytest.mark.parametrize("preset", ["digits-cgan", "digits-wgan-gp"])
def test_bench_times_a_sampling_recipe(tmp_path: Path, preset: str):
    """A recipe that samples has no crop size (its images come from a labelled source), and a
    gradient penalty's double backward escapes torch's FLOP counter: both are measured all the same."""
    small = ["model.generator.ngf=8", "model.discriminator.ndf=8", "data.batch_size=8"]
    args = ["bench", preset, "--steps", "2", "--warmup", "1", "-o", str(tmp_path / "b.json")]
    code, out, err = cli(*args, *[a for item in small for a in ("--set", item)])
    assert code == 0, err
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["size"] == 16 and result["train_s_per_step"] > 0
    if preset == "digits-wgan-gp":
        assert "not counted" in out and any("FLOPs not counted" in n for n in result["notes"])
    else:
        assert result["train_gflop_per_step"] > 0
