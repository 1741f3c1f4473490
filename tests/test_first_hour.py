"""The first hour of a real user, from the user's side (CLI in, files and messages out): own data is
never silently replaced, resume by name, small presets, one score record, the start line, export and
translate at the training scale, runs stopped mid-epoch, and docs that stay true."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cyclekit.config import list_presets
from tests.conftest import REPO, write_images
from tests.helpers import cli, cli_subprocess, losses
from tests.test_hardening import demo_args, one_error


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))


def _facades_like(root: Path, n_train: int = 4, n_test: int = 2, size: int = 40) -> Path:
    """The CycleGAN layout of facades: trainA/1_A.jpg <-> trainB/1_B.jpg, testA/1.jpg <-> testB/1.jpg."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for side in "AB":
            (root / f"{split}{side}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            suffix = ("_A", "_B") if split == "train" else ("", "")
            Image.fromarray(a).save(root / f"{split}A" / f"{i}{suffix[0]}.png")
            Image.fromarray(255 - a).save(root / f"{split}B" / f"{i}{suffix[1]}.png")
    return root


# ---------------------------------------------------------------------------------------------
# 1. own data is never silently replaced


def test_a_wrong_data_root_fails_in_one_line_even_with_the_dataset_cached(tmp_path: Path):
    cached = _facades_like(tmp_path / "cache" / "pix2pix-facades")  # facades is in the cache
    assert cached.is_dir()
    mine = tmp_path / "my photos"
    write_images(mine / "photos", 3)
    write_images(mine / "labels", 3)
    code, _, err = cli("train", "facades-small", "--data-root", str(mine), "--out", str(tmp_path / "runs"), "--quiet")
    line = one_error(err)
    assert code == 1 and f"{mine} is not a pix2pix-facades dataset folder: it holds labels/, photos/" in line, line
    assert "expected" in line and "train/" in line and "--data-root" not in line.split("expected")[1]
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written
    # data.root in a config is used as given too.
    code, _, err = cli("train", "facades-small", "--set", f"data.root={mine}", "--out", str(tmp_path / "runs"))
    assert code == 1 and "is not a pix2pix-facades dataset folder" in one_error(err)


# ---------------------------------------------------------------------------------------------
# 2. resume by name


def test_resume_by_name_after_ctrl_c_continues_bit_exact(tmp_path: Path):
    settings = ["train.epochs=3", "train.log_every=1", "model.generator.ngf=8"]
    code, _, err = cli(*demo_args(tmp_path / "a", *settings))
    assert code == 0, err
    proc = cli_subprocess(*demo_args(tmp_path / "b", *settings, "train.checkpoint_every=1"))
    metrics = tmp_path / "b" / "demo" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "checkpoint saved" in err, err
    # No preset, no settings: the run's own config.yaml, data and folder.
    code, out, err = cli("train", "--resume", str(tmp_path / "b" / "demo"), "--quiet")
    assert code == 0, err
    assert "resumed at step" in out
    assert losses(tmp_path / "b" / "demo") == losses(tmp_path / "a" / "demo")


def test_resume_by_name_uses_the_runs_data_folder_and_names_every_difference(tmp_path: Path):
    data = _facades_like(tmp_path / "facades")
    base = ["--out", str(tmp_path / "runs"), "--quiet", "--set", "train.max_steps=2", "--set", "model.generator.ngf=8"]
    code, _, err = cli("train", "facades-small", "--name", "mine", "--data-root", str(data), *base)
    assert code == 0, err
    # Later, with no --data-root, offline and nothing in the cache: the run's own data folder.
    code, out, err = cli("train", "facades-small", "--name", "mine", "--resume", "auto", *base[:-4],
                         "--set", "model.generator.ngf=8", "--set", "train.max_steps=3")  # fmt: skip
    assert code == 0, err
    assert "resumed at step 2" in out and not (tmp_path / "cache" / "pix2pix-facades").exists()
    # Other settings are refused, each named with both values.
    code, _, err = cli("train", "facades-small", "--name", "mine", "--resume", "auto", *base[:3],
                       "--set", "model.generator.ngf=16", "--set", "data.load_size=80")  # fmt: skip
    line = one_error(err)
    assert code == 1 and "was trained with other settings" in line, line
    assert "data.load_size: 72 in the run, 80 now" in line and "model.generator.ngf: 8 in the run, 16 now" in line
    # A --resume folder that is not there names no run: train asks for a preset; one that is there
    # but holds no run says so.
    code, _, err = cli("train", "--resume", str(tmp_path / "runs" / "nothing"))
    line = one_error(err)
    assert code == 1 and "train needs a preset or config file" in line and "--resume RUN_DIR" in line, line
    (tmp_path / "runs" / "empty").mkdir()
    code, _, err = cli("train", "--resume", str(tmp_path / "runs" / "empty"))
    line = one_error(err)
    assert code == 1 and f"{tmp_path / 'runs' / 'empty'} is not a run folder: it has no config.yaml" in line, line


# ---------------------------------------------------------------------------------------------
# 3. small presets

SMALL = sorted(p for p in list_presets() if p.endswith("-small"))


def test_every_image_recipe_has_a_small_preset():
    from cyclekit.recipes import load_config

    assert {"horse2zebra-small", "facades-small", "maps-small", "dcgan-small"} <= set(SMALL)
    for name in SMALL:
        cfg = load_config(name)
        assert cfg.data.crop_size <= 64 and cfg.data.workers == 0, name  # sized for a 2-core CPU


@pytest.mark.parametrize("preset", SMALL)
def test_every_small_preset_trains_translates_and_evaluates(preset: str, tmp_path: Path):
    from cyclekit.recipes import load_config

    cfg = load_config(preset)
    if cfg.data.kind == "folder":
        data = tmp_path / "faces"
        write_images(data, 6, size=40)
    else:
        data = _facades_like(tmp_path / "data", size=72)
    out = tmp_path / "runs"
    code, stdout, err = cli("train", preset, "--data-root", str(data), "--out", str(out), "--quiet",
                            "--set", "train.max_steps=3", "--set", "data.batch_size=2")  # fmt: skip
    assert code == 0, err
    run = out / preset
    assert (run / "bundle" / "config.json").is_file() and (run / "report.html").is_file()
    if cfg.recipe == "gan":
        code, _, err = cli("sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png"))
        assert code == 0, err
        return
    code, _, err = cli("translate", str(data / "testA"), "--model", str(run), "-o", str(tmp_path / "t"))
    assert code == 0 and len(list((tmp_path / "t").glob("*.png"))) == 2, err
    code, stdout, err = cli("eval", str(run), "--no-fid")
    assert code == 0, err
    assert json.loads((run / "results.json").read_text())["step"] == 3


def test_a_crop_that_does_not_fit_a_unet_names_the_fix():
    from cyclekit.errors import ConfigError
    from cyclekit.recipes import load_config

    with pytest.raises(ConfigError) as info:
        load_config("facades", ["data.load_size=72", "data.crop_size=64"])
    assert "use data.crop_size=256, or model.generator.n_downs=6 for 64 px" in str(info.value)
    with pytest.raises(ConfigError, match=r"data.crop_size: 4 is smaller than 8 px"):
        load_config("demo", ["data.load_size=4", "data.crop_size=4"])


# ---------------------------------------------------------------------------------------------
# 4 and 7. the start line; progress in a log


def test_the_start_line_says_where_what_and_how_long(tmp_path: Path):
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=2", "train.decay_epochs=1", "train.max_steps=10"))
    assert code == 0, err
    lines = err.splitlines()
    assert lines[0] == f"training demo (cyclegan) into {tmp_path / 'demo'}"
    assert lines[1].startswith("  data: ") and "trainA 4 images, trainB 4 images" in lines[1]
    assert lines[2] == (
        "  schedule: 4 steps/epoch x 3 epochs (2 at the initial lr + 1 decaying to 0) = 12 steps, "
        "stopping at step 10 (train.max_steps); cpu, fp32, 1 process"
    )


def test_progress_in_a_log_is_plain_lines_with_warnings_outside_them(tmp_path: Path):
    args = [a for a in demo_args(tmp_path, "train.epochs=1") if a not in ("--quiet", "train.progress=false")]
    args = [a for i, a in enumerate(args) if not (a == "--set" and args[i + 1] == "--set")]
    proc = subprocess.run(
        [sys.executable, "-m", "cyclekit.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("step ")]
    assert progress and progress[-1].startswith("step 4/4 (100%)") and "s/step" in progress[-1]


# ---------------------------------------------------------------------------------------------
# 5. one score record


def test_training_writes_the_score_record_the_report_and_compare_read(tmp_path: Path):
    code, out, err = cli(*demo_args(tmp_path, "train.epochs=1"))
    assert code == 0, err
    run = tmp_path / "demo"
    record = json.loads((run / "results.json").read_text())
    assert record["step"] == 4 and record["bundle"] == str(run / "bundle") and record["data"]["image_size"] == 32
    assert not (run / "eval.json").exists()
    assert "scores at step 4 (results.json):" in out and "mean_target" in out
    page = (run / "report.html").read_text()
    assert "no final scores yet" not in page and 'id="final-scores"' in page
    # `cyclekit eval` writes the same record, to the digit, and refreshes the report.
    before = record["directions"]
    code, out, err = cli("eval", str(run), "--no-fid")
    assert code == 0, err
    assert json.loads((run / "results.json").read_text())["directions"] == before
    assert f"wrote {run / 'report.html'}" in out


# ---------------------------------------------------------------------------------------------
# 6. export and translate know the training scale


# Slow: three ONNX exports. By default the naming by direction is checked in test_export
# (test_fp32_export_is_self_contained_with_metadata) and the refusal of a foreign file, through the same
# refuse_foreign_file, in test_int8 (test_int8_replaces_its_own_file_never_a_foreign_one); the training
# scale in the metadata and replacing its own fp32 file are checked only here.
@pytest.mark.slow
def test_export_names_by_direction_never_overwrites_foreign_files_and_records_the_scale(tmp_path: Path):
    import onnx

    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1"))
    assert code == 0, err
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "G_BtoA.onnx").write_text("my own file")
    code, _, err = cli("export", str(tmp_path / "demo"), "-o", str(out))
    assert code == 1 and "G_BtoA.onnx already exists and was not written by `cyclekit export`" in one_error(err)
    (out / "G_BtoA.onnx").unlink()
    code, _, err = cli("export", str(tmp_path / "demo"), "-o", str(out))
    assert code == 0, err
    code, _, err = cli("export", str(tmp_path / "demo"), "--direction", "AtoB", "-o", str(out))  # its own: replaced
    assert code == 0, err
    meta = {p.key: p.value for p in onnx.load(str(out / "G_AtoB.onnx")).metadata_props}
    assert (meta["train_size"], meta["load_size"], meta["preprocess"]) == ("32", "32", "resize_and_crop")


@pytest.mark.parametrize("model", ["bundle", "onnx"])
def test_translate_warns_once_about_images_far_larger_than_the_training_scale(tmp_path: Path, model: str):
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1"))
    assert code == 0, err
    path = tmp_path / "demo"
    if model == "onnx":
        code, _, err = cli("export", str(path), "--direction", "AtoB", "-o", str(tmp_path / "x"))
        assert code == 0, err
        path = tmp_path / "x" / "G_AtoB.onnx"
    big = tmp_path / "big"
    write_images(big, 3, size=100)  # 100 px against a training scale of 32 px
    code, _, err = cli("translate", str(big), "--model", str(path), "-o", str(tmp_path / "full"))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "far larger than the 32 px the model was trained at" in warnings[0]
    assert "--train-scale" in warnings[0]
    code, _, err = cli("translate", str(big), "--model", str(path), "-o", str(tmp_path / "scaled"), "--train-scale")
    assert code == 0 and "warning" not in err, err
    for name in ("img 00.png", "img 01.png"):
        full, scaled = Image.open(tmp_path / "full" / name), Image.open(tmp_path / "scaled" / name)
        assert full.size == scaled.size == (100, 100)
        assert np.abs(np.asarray(full, int) - np.asarray(scaled, int)).mean() > 1  # another scale, another image


# ---------------------------------------------------------------------------------------------
# 8. a run stopped mid-epoch; epoch numbers


def test_a_run_stopped_mid_epoch_leaves_timing_report_and_samples_at_its_last_step(tmp_path: Path):
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=3", "train.max_steps=6", "train.log_every=1"))
    assert code == 0, err
    run = tmp_path / "demo"
    assert (run / "samples" / "step_0000006.png").is_file()
    timing = json.loads((run / "timing.json").read_text())
    assert (timing["steps"], timing["epochs"]) == (6, 1)
    assert json.loads((run / "bundle" / "config.json").read_text())["epoch"] == 1
    # "epoch" is epochs completed, in the log as everywhere: step 4 ends epoch 1.
    rows = {r["step"]: r["epoch"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
    assert rows == {1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 6: 1}


# ---------------------------------------------------------------------------------------------
# 10. docs a person can read; messages


def test_the_generated_references_are_current():
    done = subprocess.run([sys.executable, "scripts/gen_docs.py", "--check"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_readme_is_a_front_page_whose_links_exist():
    import re

    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) < 250
    links = re.findall(r"\]\(((?:docs|scripts|configs)/[^)#]+)", text)
    assert links and all((REPO / link).exists() for link in links), links
    for name in ("guide-own-data", "training", "translate-export", "eval-report", "distributed", "config", "cli"):
        assert f"docs/{name}.md" in text, name


def test_data_check_ends_with_a_verdict(tmp_path: Path):
    data = _facades_like(tmp_path / "d")
    code, out, err = cli("data", "check", str(data))
    assert code == 0, err
    verdict = [line for line in out.splitlines() if line.startswith("verdict: ")]
    assert (
        verdict[0]
        == "verdict: usable for cyclegan (data.kind unpaired): trainA 4 images, trainB 4; test split: testA 2, testB 2"
    )
    assert (
        verdict[1].startswith("verdict: usable for cyclegan, pix2pix (data.kind paired): paired by file name")
        and "4 train pairs, 2 test pairs" in verdict[1]
    )
    assert len(verdict) == 2, verdict  # its trainA/ ... are not taken for class folders
    write_images(tmp_path / "faces", 3)
    code, out, _ = cli("data", "check", str(tmp_path / "faces"))
    assert code == 0 and "verdict: usable for gan, wgan, began (data.kind folder): 3 images" in out
    (tmp_path / "empty").mkdir()
    code, out, err = cli("data", "check", str(tmp_path / "empty"))
    assert code == 1 and "verdict: not usable" in out


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "facade"], "unknown preset 'facade' (did you mean facades?)"),
        (["train", "demo", "--set", "train.epoch=3"], "train.epoch: unknown key (did you mean epochs?)"),
        (["train", "demo", "--set", "model.generator.ngff=3"], "(did you mean ngf?)"),
        (["train", "missing.yaml"], "config file not found: missing.yaml"),
        (["eval", "missing-run"], "model path not found: missing-run"),
        (["bundle", "missing-run"], "missing-run is not a run folder: it has no config.yaml"),
        (["report", "missing-run"], "missing-run: no such run folder"),
    ],
)
def test_typos_and_missing_files_are_one_line_with_a_suggestion(args: list[str], expected: str, tmp_path: Path):
    code, _, err = cli(*args)
    assert code == 1 and expected in one_error(err), err
