"""No lost work: the last save of a run survives a kill at any of its writes, a bundle can always be
rebuilt from its checkpoint, and a run folder is never overwritten by accident."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cyclekit.atomic import recover_folder, staged_folder
from cyclekit.inference.bundle import load_network, read_bundle
from tests.conftest import REPO
from tests.helpers import cli, losses, one_error
from tests.test_hardening import demo_args


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))


# 2 epochs of 4 steps, evaluated every epoch (bundle-best/), a checkpoint every 2 steps.
RUN = ["train.epochs=2", "train.checkpoint_every=2", "train.eval_every=1"]


def _killed_run(out: Path, kill_after: int, log: Path | None = None, *extra: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "CYCLEKIT_TEST_KILL_AFTER": str(kill_after),
    }
    if log is not None:
        env["CYCLEKIT_TEST_RENAMES"] = str(log)
    args = [sys.executable, "-m", "tests.killpoint", *demo_args(out, *RUN, *extra), "--resume", "auto"]
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _sha(folder: Path) -> dict[str, str]:
    return {k: e.sha256 for k, e in read_bundle(folder).networks.items()}


def _usable(folder: Path) -> int:
    """A bundle every network of which loads (sha256 checked); returns its step."""
    bundle = read_bundle(folder)
    for key in bundle.networks:
        load_network(folder, bundle, key)
    return bundle.step


# A kill right after these renames of the last save (the default run; `-m slow` kills after every one):
# the checkpoint (all that follows it is stale), half a bundle swap, half a best-bundle swap, timing.
KEY_KILLS = ("last.pt", ".bundle.cyclekit-old", ".bundle-best.cyclekit-old", "timing.json")


# Both slow (62 s for the key writes alone): atomic writes and their recovery are unit-tested in
# test_hardening and test_lost_work's shorter tests by default.
@pytest.mark.parametrize(
    "every",
    [pytest.param(False, marks=pytest.mark.slow), pytest.param(True, marks=pytest.mark.slow)],
    ids=["key-writes", "every-write"],
)
def test_a_kill_at_any_write_of_the_last_save_is_completed_by_the_resume(tmp_path: Path, every: bool):
    """Kill the last stretch of a run (step 7 -> 8: checkpoint, bundle, samples, plot, evaluation,
    best bundle, timing, report, scores) after each of its renames in turn; a plain `--resume auto`
    then leaves exactly what the uninterrupted run left."""
    ref = tmp_path / "ref"
    code, _, err = cli(*demo_args(ref, *RUN))
    assert code == 0, err
    ref_run = ref / "demo"
    base = tmp_path / "base"
    code, _, err = cli(*demo_args(base, *RUN, "train.max_steps=7"))
    assert code == 0, err

    log = tmp_path / "renames.txt"
    shutil.copytree(base, tmp_path / "count")
    done = _killed_run(tmp_path / "count", 0, log)
    assert done.returncode == 0, done.stderr
    renames = log.read_text().splitlines()
    names = [Path(r).name for r in renames]
    # The last save renames all of these into place (the bundles are swapped in as folders).
    for expected in ("last.pt", "bundle", "bundle-best", "best.pt", "step_0000008.png", "timing.json"):
        assert expected in names, names
    assert names.count("bundle") == 1 and names.count("bundle-best") == 1  # one swap each: whole folders

    # The last save starts with the checkpoint; temporary plot files outside the run do not count.
    first = names.index("last.pt")
    points = [k for k in range(first + 1, len(renames) + 1) if str(tmp_path) in renames[k - 1]]
    if not every:
        points = [k for k in points if names[k - 1] in KEY_KILLS]
        assert len(points) == len(KEY_KILLS), [names[k - 1] for k in points]
    for k in points:
        run_copy = tmp_path / f"kill{k}"
        shutil.copytree(base, run_copy)
        killed = _killed_run(run_copy, k)
        assert killed.returncode == -9, f"kill {k} ({renames[k - 1]}): {killed.stderr}"
        run = run_copy / "demo"
        # Whatever the moment, the bundle on disk is usable: the previous one or the new one.
        assert _usable(run / "bundle") in (6, 7, 8), f"kill after {renames[k - 1]}"
        code, _, err = cli(*demo_args(run_copy, *RUN), "--resume", "auto")
        assert code == 0, f"resume after kill {k} ({renames[k - 1]}): {err}"
        assert _usable(run / "bundle") == 8
        assert _sha(run / "bundle") == _sha(ref_run / "bundle"), renames[k - 1]
        assert _sha(run / "bundle-best") == _sha(ref_run / "bundle-best"), renames[k - 1]
        assert losses(run) == losses(ref_run)
        for name in ("best.json", "results.json"):
            mine = (run / name).read_text().replace(str(run_copy), "ROOT")
            assert json.loads(mine) == json.loads((ref_run / name).read_text().replace(str(ref), "ROOT")), name
        assert [r["step"] for r in map(json.loads, (run / "evals.jsonl").read_text().splitlines())] == [4, 8]
        assert json.loads((run / "timing.json").read_text())["steps"] == 8
        assert (run / "samples" / "step_0000008.png").is_file() and (run / "report.html").is_file()
        assert json.loads((run / "checkpoints" / "outputs.json").read_text()) == {"step": 8}
        assert not list(run.rglob("*.cyclekit-tmp")) and not list(run.glob(".*cyclekit-old"))


def test_a_swap_interrupted_between_its_renames_is_undone(tmp_path: Path):
    target = tmp_path / "bundle"
    with staged_folder(target) as tmp:
        (tmp / "config.json").write_text("old")
    # A kill after the first rename of the next swap: the old folder is aside, nothing is in place.
    os.rename(target, tmp_path / ".bundle.cyclekit-old")
    assert recover_folder(target) == target and (target / "config.json").read_text() == "old"
    # A kill after the second rename: both are there; the old one goes.
    (tmp_path / ".bundle.cyclekit-old").mkdir()
    recover_folder(target)
    assert not (tmp_path / ".bundle.cyclekit-old").exists() and (target / "config.json").read_text() == "old"
    # A failing writer leaves the folder as it was, and no temporary folder.
    with pytest.raises(RuntimeError), staged_folder(target) as tmp:
        (tmp / "config.json").write_text("new")
        raise RuntimeError("disk on fire")
    assert (target / "config.json").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_files_that_are_not_the_bundles_own_survive_a_new_bundle(tmp_path: Path):
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1", "train.max_steps=2", "train.checkpoint_every=1"))
    assert code == 0, err
    bundle = tmp_path / "demo" / "bundle"
    (bundle / "G_AtoB.onnx").write_bytes(b"an export")
    (bundle / "notes.txt").write_text("mine")
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1", "train.checkpoint_every=1"), "--resume", "auto")
    assert code == 0, err
    assert read_bundle(bundle).step == 4
    assert (bundle / "G_AtoB.onnx").read_bytes() == b"an export" and (bundle / "notes.txt").read_text() == "mine"


def test_the_bundle_command_rebuilds_bundle_and_best_from_the_checkpoints(tmp_path: Path):
    code, _, err = cli(*demo_args(tmp_path, *RUN))
    assert code == 0, err
    run = tmp_path / "demo"
    want, want_best = _sha(run / "bundle"), _sha(run / "bundle-best")
    best_step = json.loads((run / "best.json").read_text())["step"]
    shutil.rmtree(run / "bundle")
    shutil.rmtree(run / "bundle-best")
    shutil.rmtree(tmp_path / "cache")  # the data is gone too: rebuilding needs only the run
    code, out, err = cli("bundle", str(run))
    assert code == 0, err
    assert out.strip() == f"wrote {run / 'bundle'} (step 8)" and _sha(run / "bundle") == want
    code, out, err = cli("bundle", str(run), "--best")
    assert code == 0, err
    assert out.strip() == f"wrote {run / 'bundle-best'} (step {best_step})" and _sha(run / "bundle-best") == want_best
    code, _, err = cli(
        "bundle", str(run), "--checkpoint", str(run / "checkpoints" / "best.pt"), "-o", str(tmp_path / "x")
    )
    assert code == 0 and _sha(tmp_path / "x") == want_best
    # Refusals: a folder that is not a bundle, a missing checkpoint, a checkpoint of another run.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("mine")
    code, _, err = cli("bundle", str(run), "-o", str(tmp_path / "mine"))
    assert code == 1 and "exists and is not a bundle folder" in one_error(err)
    (run / "checkpoints" / "best.pt").unlink()
    code, _, err = cli("bundle", str(run), "--best")
    assert code == 1 and "no checkpoint to rebuild the bundle from" in one_error(err)
    code, _, err = cli(*demo_args(tmp_path / "other", "train.epochs=1", "model.generator.ngf=8"))
    assert code == 0, err
    other = tmp_path / "other" / "demo" / "checkpoints" / "last.pt"
    code, _, err = cli("bundle", str(run), "--checkpoint", str(other), "-o", str(tmp_path / "y"))
    assert code == 1 and "was not written by the run of" in one_error(err)


def test_a_checkpoint_that_does_not_fit_names_the_file_key_shape_and_setting(tmp_path: Path):
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1"))
    assert code == 0, err
    ckpt = tmp_path / "demo" / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    # Weights of a generator with ngf=8 in place of the run's ngf=4 (the fingerprint still says 4).
    code, _, err = cli(*demo_args(tmp_path / "wide", "train.epochs=1", "model.generator.ngf=8"))
    assert code == 0, err
    wide = torch.load(tmp_path / "wide" / "demo" / "checkpoints" / "last.pt", weights_only=True)
    state["recipe"]["G_AtoB"] = wide["recipe"]["G_AtoB"]
    torch.save(state, ckpt)
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1"), "--resume", str(ckpt))
    line = one_error(err)
    assert code == 1 and f"{ckpt} (G_AtoB) does not fit the configured network" in line, line
    assert "model.1.weight has shape [8, 3, 7, 7] in the file, [4, 3, 7, 7] here" in line
    assert "the file fits ngf=8 (this configuration: 4; model.generator.ngf)" in line
    # A bundle whose weights were swapped for another architecture's names the option too.
    bundle = tmp_path / "demo" / "bundle"
    shutil.copy(tmp_path / "wide" / "demo" / "bundle" / "G_AtoB.safetensors", bundle / "G_AtoB.safetensors")
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["networks"]["G_AtoB"]["sha256"] = ""
    (bundle / "config.json").write_text(json.dumps(cfg))
    code, _, err = cli("translate", str(next((tmp_path / "cache").rglob("*.png"))), "--model", str(bundle))
    line = one_error(err)
    assert code == 1 and "G_AtoB.safetensors does not fit the configured network" in line
    assert "networks.G_AtoB.options.ngf" in line


# ---------------------------------------------------------------------------------------------
# a run folder is never overwritten by accident


def test_a_finished_run_without_checkpoints_is_never_overwritten(tmp_path: Path):
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1"))
    assert code == 0, err
    run = tmp_path / "demo"
    shutil.rmtree(run / "checkpoints")  # a common way to save space
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for extra in ([], ["--resume", "auto"]):
        code, _, err = cli(*demo_args(tmp_path, "train.epochs=1"), *extra)
        line = one_error(err)
        assert code == 1 and str(run) in line and "--overwrite" in line, line
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1"), "--overwrite")
    assert code == 0, err


def test_files_cyclekit_did_not_write_keep_a_folder_from_being_used_and_survive_overwrite(tmp_path: Path):
    run = tmp_path / "demo"
    (run / "samples").mkdir(parents=True)
    (run / "thesis.tex").write_text("three years of work")
    (run / "samples" / "favourite.png").write_bytes(b"mine")
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1"))
    line = one_error(err)
    assert code == 1 and "already holds a run (samples/) and files cyclekit did not write (thesis.tex)" in line, line
    assert not (run / "config.yaml").exists()
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1"), "--overwrite")
    assert code == 0, err
    assert (run / "thesis.tex").read_text() == "three years of work"
    assert (run / "samples" / "favourite.png").read_bytes() == b"mine"
    # A second --overwrite clears cyclekit's files only.
    (run / "samples" / "step_0000099.png").write_bytes(b"a grid of the earlier run")
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1"), "--overwrite")
    assert code == 0, err
    assert (run / "thesis.tex").exists() and sorted(p.name for p in (run / "samples").iterdir()) == [
        "favourite.png",
        "step_0000004.png",
    ]


def test_a_run_killed_before_its_first_checkpoint_starts_over_with_resume_auto(tmp_path: Path):
    run = tmp_path / "demo"
    run.mkdir()
    (run / "config.yaml").write_text("recipe: cyclegan\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss_G": 1.0}\n')
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1"), "--resume", "auto")
    assert code == 0, err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 4


def test_a_config_in_the_run_folder_it_starts_is_never_rewritten(tmp_path: Path):
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1", "train.max_steps=2"))
    assert code == 0, err
    run = tmp_path / "demo"
    config = run / "config.yaml"
    config.write_text("# my notes about this run\n" + config.read_text())
    before = config.read_bytes()
    base = ["train", str(config), "--out", str(tmp_path), "--quiet", "--name", "demo"]
    code, _, err = cli(*base, "--resume", "auto", "--set", "train.max_steps=3")
    assert code == 0, err
    assert config.read_bytes() == before
    code, _, err = cli(*base, "--resume", "auto", "--set", "optim.lr=0.1")
    line = one_error(err)
    assert code == 1 and f"{config} is the config this run was started from and is never rewritten" in line
    assert "optim" in line and config.read_bytes() == before


# ---------------------------------------------------------------------------------------------
# images of many sizes


@pytest.mark.parametrize("preprocess", ["none", "scale_width"])
def test_images_of_mixed_sizes_train_checkpoint_and_resume(tmp_path: Path, preprocess: str):
    """The image pools hold fakes of every size (a list, not one stacked tensor)."""
    from PIL import Image

    root = tmp_path / "mixed"
    rng = np.random.default_rng(0)
    for side in "AB":
        (root / f"train{side}").mkdir(parents=True)
        for i, (w, h) in enumerate([(36, 28), (44, 52), (52, 40)]):  # sizes and aspect ratios differ
            pixels = rng.integers(0, 256, (h + 4 * (side == "B"), w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"train{side}" / f"{i}.png")
    settings = [
        f"data.preprocess={preprocess}",
        "data.load_size=40",
        "train.decay_epochs=0",
        "train.checkpoint_every=1",
        "train.log_every=1",
        "model.generator.ngf=4",
        "model.generator.n_blocks=1",
        "model.discriminator.ndf=4",
        "cyclegan.pool_size=4",
    ]

    def train(out: Path, *extra: str, resume: bool = False) -> tuple[int, str]:
        args = ["train", "horse2zebra", "--data-root", str(root), "--out", str(out), "--quiet"]
        for item in [*settings, *extra]:
            args += ["--set", item]
        code, _, err = cli(*args, *(["--resume", "auto"] if resume else []))
        return code, err

    code, err = train(tmp_path / "full", "train.epochs=2")
    assert code == 0, err
    code, err = train(tmp_path / "cut", "train.epochs=2", "train.max_steps=4")
    assert code == 0, err
    state = torch.load(tmp_path / "cut" / "horse2zebra" / "checkpoints" / "last.pt", weights_only=True)
    sizes = {tuple(img.shape) for img in state["recipe"]["pool_b"]["images"]}
    assert len(sizes) > 1, sizes  # fakes of several sizes in one pool
    code, err = train(tmp_path / "cut", "train.epochs=2", resume=True)
    assert code == 0, err
    assert losses(tmp_path / "cut" / "horse2zebra") == losses(tmp_path / "full" / "horse2zebra")
