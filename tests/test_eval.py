"""`cyclekit eval`, evaluation during training (best epoch), `cyclekit compare`, TensorBoard logs.

The scores' maths is tested against known answers in test_eval_metrics.py; here a model of the
true mapping must score near-perfectly and the identity poorly, through the real command."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cyclekit.inference.bundle import Bundle, NetworkEntry, write_bundle
from cyclekit.models.registry import MODELS, ModelEntry
from tests import helpers
from tests.helpers import cli


@dataclass(frozen=True)
class _NoOptions:
    pass


class Negate(nn.Module):
    """The true mapping of the test data below: B = 255 - A, i.e. -x in [-1, 1]."""

    def __init__(self, options: _NoOptions | None = None) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(-1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Identity(Negate):
    def __init__(self, options: _NoOptions | None = None) -> None:
        super().__init__(options)
        self.scale.data.fill_(1.0)


@pytest.fixture
def toy_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODELS, "negate", ModelEntry(_NoOptions, Negate, "generator"))
    monkeypatch.setitem(MODELS, "identity", ModelEntry(_NoOptions, Identity, "generator"))


def make_bundle(folder: Path, arch: str, size: int = 32) -> Path:
    net = MODELS[arch].build(_NoOptions())
    bundle = Bundle(
        recipe="cyclegan",
        networks={"G_AtoB": NetworkEntry(arch, {}), "G_BtoA": NetworkEntry(arch, {})},
        translates={"AtoB": "G_AtoB", "BtoA": "G_BtoA"},
        train_size=size,
        preprocess="resize_and_crop",
    )
    write_bundle(folder, bundle, {"G_AtoB": net, "G_BtoA": net})
    return folder


def label_scene(rng: np.random.Generator, size: int = 40) -> np.ndarray:
    """Flat blocks of 4 colours: a label map (and its negation is one too)."""
    colours = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]], dtype=np.uint8)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = colours[rng.integers(4)]
    for _ in range(4):
        y, x = rng.integers(0, size - 10, size=2)
        h, w = rng.integers(8, 20, size=2)
        img[y : y + h, x : x + w] = colours[rng.integers(4)]
    return img


def write_negated_pairs(root: Path, n: int, labels: bool, names_match: bool = True) -> Path:
    """testA/i.png and testB/i.png = 255 - testA/i.png (photo-like noise images or label maps)."""
    rng = np.random.default_rng(0)
    for side in "AB":
        (root / f"test{side}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        if labels:
            a = label_scene(rng)
        else:
            base = np.linspace(0, 255, 40)[None, :, None] * rng.uniform(0.2, 1.0, size=(1, 1, 3))
            a = np.clip(base + rng.normal(0, 30, size=(40, 40, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(root / "testA" / f"{i}.png")
        Image.fromarray(255 - a).save(root / "testB" / (f"{i}.png" if names_match else f"other{i}.png"))
    return root


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised FID Inception saved like the real weights file (same keys)."""
    from cyclekit.evaluation.fid import FIDInceptionV3

    torch.manual_seed(0)
    net = FIDInceptionV3()
    for m in net.modules():  # variance-preserving, so the random features do not vanish with depth
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / "pt_inception-random.pth"
    torch.save(net.state_dict(), path)
    return path


def run_eval(bundle: Path, data: Path, out: Path, *extra: str) -> dict:
    code, stdout, err = cli("eval", str(bundle), "--data", str(data), "-o", str(out), "--device", "cpu", *extra)
    assert code == 0, err
    assert f"wrote {out}" in stdout
    return json.loads(out.read_text())


# Slow: FID on a toy Inception. By default the metric is checked in test_eval_metrics and FID through
# `cyclekit eval` in test_unpaired_test_data_gets_fid_only.
@pytest.mark.slow
def test_true_mapping_scores_near_perfectly_and_identity_poorly(toy_models, inception_file: Path, tmp_path: Path):
    data = write_negated_pairs(tmp_path / "data", 6, labels=False)
    args = ("--inception", str(inception_file), "--fid")
    good = run_eval(make_bundle(tmp_path / "neg", "negate"), data, tmp_path / "neg.json", *args)
    bad = run_eval(make_bundle(tmp_path / "id", "identity"), data, tmp_path / "id.json", *args)
    for direction in ("AtoB", "BtoA"):
        g, b = good["directions"][direction], bad["directions"][direction]
        # Resizing commutes with negation up to 8-bit rounding: within half a grey level.
        assert g["l1"] < 0.002 and g["psnr"] > 45 and g["ssim"] > 0.999
        assert b["l1"] > 0.2 and b["psnr"] < 15 and b["ssim"] < 0.5
        # The model's own identity baseline is the identity model's score.
        assert good["baselines"][direction]["identity"]["l1"] == pytest.approx(b["l1"], abs=1e-6)
        assert g["fid"] < 1e-3 * b["fid"] and g["kid"] < b["kid"]
        assert good["counts"][direction] == {
            "translated": 6,
            "paired": 6,
            "reference": 6,
            "reference_split": f"test{direction[-1]} (paired targets)",
        }
    repro = good["reproducibility"]
    assert repro["image_size"] == 32 and repro["resize_filter"] == "PIL bicubic"
    assert len(repro["weights_sha256"]["G_AtoB"]) == 64 and repro["inception_weights"] == str(inception_file)


def test_label_maps_get_accuracy_and_iou_with_the_palette_written(toy_models, tmp_path: Path):
    data = write_negated_pairs(tmp_path / "data", 5, labels=True)
    good = run_eval(make_bundle(tmp_path / "neg", "negate"), data, tmp_path / "neg.json", "--no-fid")
    row = good["directions"]["AtoB"]
    assert row["pixel_acc"] > 0.99 and row["class_acc"] > 0.99 and row["iou"] > 0.98
    identity = good["baselines"]["AtoB"]["identity"]
    assert identity["pixel_acc"] < 0.5 and identity["iou"] < 0.3
    palette = good["palettes"]["AtoB"]
    assert len(palette) == 4
    assert sorted(map(tuple, palette)) == sorted(
        tuple(255 - c for c in rgb) for rgb in [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]
    )
    assert len(row["per_class"]["iou"]) == 4
    assert "fid" not in row
    # --no-labels turns them off; --labels forces them on photo-like targets
    off = run_eval(tmp_path / "neg", data, tmp_path / "off.json", "--no-fid", "--no-labels")
    assert "pixel_acc" not in off["directions"]["AtoB"] and "palettes" not in off
    photos = write_negated_pairs(tmp_path / "photos", 3, labels=False)
    assert "pixel_acc" not in run_eval(tmp_path / "neg", photos, tmp_path / "p.json", "--no-fid")["directions"]["AtoB"]
    # --labels on noise photos: no palette can be found, said in one line
    code, _, err = cli("eval", str(tmp_path / "neg"), "--data", str(photos), "--no-fid", "--labels")
    assert code == 1 and "palette" in err and err.count("\n") == 1


def test_unpaired_test_data_gets_fid_only(toy_models, inception_file: Path, tmp_path: Path):
    data = write_negated_pairs(tmp_path / "data", 4, labels=False, names_match=False)
    res = run_eval(
        make_bundle(tmp_path / "neg", "negate"), data, tmp_path / "r.json", "--inception", str(inception_file)
    )
    row = res["directions"]["AtoB"]
    assert set(row) == {"fid", "kid", "kid_std"}
    assert res["counts"]["AtoB"]["paired"] == 0 and res["counts"]["AtoB"]["reference_split"] == "testB"


def test_eval_errors_are_one_line(toy_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from cyclekit import fetch as download

    bundle = make_bundle(tmp_path / "neg", "negate")
    data = write_negated_pairs(tmp_path / "data", 3, labels=False)
    code, _, err = cli("eval", str(bundle))
    assert code == 1 and "pass --data DIR" in err and err.count("\n") == 1
    code, _, err = cli("eval", str(bundle), "--data", str(tmp_path / "nowhere"), "--no-fid")
    assert code == 1 and "not found" in err and err.count("\n") == 1
    code, _, err = cli("eval", str(bundle), "--data", str(data), "--direction", "CtoD", "--no-fid")
    assert code == 1 and "does not translate CtoD" in err

    def offline(*args, **kwargs):
        raise download.DownloadError(args[0], Path(args[1]), "network unreachable")

    monkeypatch.setattr(download, "download_file", offline)
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))
    code, _, err = cli("eval", str(bundle), "--data", str(data), "--fid")
    assert code == 1 and err.count("\n") == 1
    assert "pt_inception-2015-12-05-6726825d.pth" in err and str(tmp_path / "cache") in err
    # Without --fid the paired scores are still written, and the results say why FID is missing.
    code, _, err = cli("eval", str(bundle), "--data", str(data), "-o", str(tmp_path / "r.json"))
    assert code == 0 and "warning: no FID/KID" in err
    res = json.loads((tmp_path / "r.json").read_text())
    assert "l1" in res["directions"]["AtoB"] and "could not download" in res["reproducibility"]["fid_missing"]


def train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return helpers.train_args("horse2zebra", root, out, helpers.TINY_CYCLEGAN, *extra)


@pytest.fixture
def paired_root(tmp_path: Path) -> Path:
    from tests.conftest import write_images

    root = write_negated_pairs(tmp_path / "data", 4, labels=False)
    write_images(root / "trainA", 4, seed=1)
    write_images(root / "trainB", 4, seed=2)
    return root


def test_training_evaluates_keeps_the_best_bundle_and_writes_the_report(paired_root: Path, tmp_path: Path):
    code, _, err = cli(
        *train_args(paired_root, tmp_path, "train.epochs=3", "train.eval_every=1", "train.best_metric=BtoA.psnr")
    )
    assert code == 0, err
    run = tmp_path / "horse2zebra"
    rows = [json.loads(x) for x in (run / "evals.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and [r["step"] for r in rows] == [4, 8, 12]
    best = json.loads((run / "best.json").read_text())
    values = [r["directions"]["BtoA"]["psnr"] for r in rows]
    assert best["metric"] == "psnr" and best["direction"] == "BtoA" and best["value"] == max(values)
    assert best["epoch"] == rows[values.index(max(values))]["epoch"]
    kept = json.loads((run / "bundle-best" / "config.json").read_text())
    assert kept["epoch"] == best["epoch"] and kept["step"] == best["step"]
    assert (run / "report.html").is_file() and json.loads((run / "timing.json").read_text())["steps"] == 12
    # The best bundle translates like any other; compare puts runs side by side.
    code, _, err = cli(
        "eval", str(run / "bundle-best"), "--data", str(paired_root), "--no-fid", "-o", str(tmp_path / "b.json")
    )
    assert code == 0, err
    assert json.loads((tmp_path / "b.json").read_text())["directions"]["BtoA"]["psnr"] == pytest.approx(
        best["value"], abs=1e-5
    )
    code, out, err = cli("compare", str(run), str(tmp_path / "b.json"), "-o", str(tmp_path / "t.csv"))
    assert code == 0, err
    head, first, second = out.splitlines()[:3]
    assert head.split()[:2] == ["run", "step"] and "BtoA.psnr" in head
    assert first.split()[:2] == [str(run), "12"] and first.endswith("results.json")  # the end-of-training record
    assert second.split()[:2] == [str(tmp_path / "b.json"), str(best["step"])]
    assert ("the runs were scored at different steps" in out) == (best["step"] != 12)
    table = list(csv.reader((tmp_path / "t.csv").open()))
    assert table[0][:2] == ["run", "step"] and len(table) == 3
    # Without results.json the last evaluation during training is used, and says so.
    (run / "results.json").unlink()
    code, out, err = cli("compare", str(run))
    assert code == 0 and "evals.jsonl (epoch 3)" in out and out.splitlines()[1].split()[1] == "12"
    code, _, err = cli("compare", str(tmp_path / "nothing"))
    assert code == 1 and "run not found" in err


def test_resume_cuts_evaluations_back_to_the_checkpoint(paired_root: Path, tmp_path: Path):
    from cyclekit.train.checkpoint import load_checkpoint

    code, _, err = cli(*train_args(paired_root, tmp_path, "train.epochs=2", "train.eval_every=1"))
    assert code == 0, err
    run = tmp_path / "horse2zebra"
    evals = run / "evals.jsonl"
    evals.write_text(evals.read_text() + json.dumps({"epoch": 9, "step": 99, "directions": {}}) + "\n")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 8
    code, _, err = cli(*train_args(paired_root, tmp_path, "train.epochs=2", "train.eval_every=1"), "--resume", "auto")
    assert code == 0, err
    assert [json.loads(x)["step"] for x in evals.read_text().splitlines()] == [4, 8]


def test_eval_during_training_of_a_sampling_recipe_records_its_own_scores(tmp_path: Path):
    small = [
        "train.eval_every=1",
        "train.epochs=2",
        "train.decay_epochs=0",
        "data.epoch_size=1024",
        "data.batch_size=128",
    ]
    code, _, err = cli(
        "train", "gan-ring", "--out", str(tmp_path), "--quiet", *[a for s in small for a in ("--set", s)]
    )
    assert code == 0, err
    rows = [json.loads(r) for r in (tmp_path / "gan-ring" / "evals.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [8, 16] and all("modes_covered" in r["sampling"] for r in rows)


def test_tensorboard_logs_scalars_and_sample_images(paired_root: Path, tmp_path: Path):
    helpers.import_or_skip("tensorboard", "pip install -e '.[tensorboard]'; the dev extra holds it")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, _, err = cli(
        *train_args(paired_root, tmp_path, "train.epochs=2", "train.log_every=2", "train.loggers=[jsonl, tensorboard]")
    )
    assert code == 0, err
    events = EventAccumulator(str(tmp_path / "horse2zebra" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss/loss_G")] == [2, 4, 6, 8]
    logged = [json.loads(x) for x in (tmp_path / "horse2zebra" / "metrics.jsonl").read_text().splitlines()]
    assert [round(e.value, 5) for e in events.Scalars("loss/loss_G")] == [round(r["loss_G"], 5) for r in logged]
    assert [e.step for e in events.Images("samples")] == [4, 8]


def test_tensorboard_missing_is_one_line_before_anything_is_written(
    paired_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    code, _, err = cli(*train_args(paired_root, tmp_path, "train.epochs=1", "train.loggers=[tensorboard]"))
    assert code == 1 and "pip install tensorboard" in err
    assert not (tmp_path / "horse2zebra").exists()


def test_side_by_side_test_images_pair_up(toy_models, tmp_path: Path):
    """The pix2pix AB format (test/<i>.png holding A|B) is paired like two folders."""
    rng = np.random.default_rng(1)
    (tmp_path / "data" / "test").mkdir(parents=True)
    for i in range(3):
        a = np.clip(rng.normal(128, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(tmp_path / "data" / "test" / f"{i}.png")
    res = run_eval(make_bundle(tmp_path / "neg", "negate"), tmp_path / "data", tmp_path / "r.json", "--no-fid")
    assert res["counts"]["AtoB"]["paired"] == 3 and res["counts"]["AtoB"]["reference_split"] == "test (paired targets)"
    assert res["directions"]["AtoB"]["l1"] < 0.002 and res["baselines"]["AtoB"]["identity"]["l1"] > 0.1


def test_one_unreadable_test_file_is_named_and_the_other_pairs_scored(toy_models, tmp_path: Path):
    data = write_negated_pairs(tmp_path / "data", 5, labels=False)
    (data / "testB" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n then nothing of an image")
    out = tmp_path / "r.json"  # a bundle outside a run is never written into (issue 23)
    code, stdout, err = cli(
        "eval", str(make_bundle(tmp_path / "neg", "negate")), "--data", str(data), "--no-fid", "-o", str(out)
    )
    assert code == 0, err
    assert f"{data / 'testB' / '3.png'}" in err and err.startswith("warning:")
    res = json.loads(out.read_text())
    assert res["counts"]["AtoB"]["paired"] == 4 and res["directions"]["AtoB"]["l1"] < 0.002
    assert res["skipped"] == [str(data / "testB" / "3.png")]


def test_label_scores_are_decided_per_direction(toy_models, tmp_path: Path):
    """Photos in A, label maps in B (a CycleGAN on facades): label scores for AtoB only, by default."""
    data = tmp_path / "data"
    rng = np.random.default_rng(1)
    for side in "AB":
        (data / f"test{side}").mkdir(parents=True)
    for i in range(4):
        labels = label_scene(rng)
        photo = np.clip(labels.astype(int) + rng.normal(0, 40, labels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(photo).save(data / "testA" / f"{i}.png")
        Image.fromarray(labels).save(data / "testB" / f"{i}.png")
    res = run_eval(make_bundle(tmp_path / "neg", "negate"), data, tmp_path / "r.json", "--no-fid")
    assert "iou" in res["directions"]["AtoB"] and "iou" not in res["directions"]["BtoA"]
    assert list(res["palettes"]) == ["AtoB"]


def test_compare_names_the_settings_runs_differ_in_and_flags_models_worse_than_the_mean(toy_models, tmp_path: Path):
    data = write_negated_pairs(tmp_path / "data", 4, labels=False)
    runs = []
    for name, arch, lr in (("neg", "negate", "0.0002"), ("id", "identity", "0.001")):
        run = tmp_path / name
        make_bundle(run / "bundle", arch)
        (run / "config.yaml").write_text(f"recipe: cyclegan\nname: {name}\noptim: {{lr: {lr}}}\n")
        run_eval(run / "bundle", data, run / "results.json", "--no-fid")
        runs.append(run)
    code, out, err = cli("compare", *map(str, runs))
    assert code == 0, err
    head, good, bad = out.splitlines()[:3]
    assert "optim.lr" in head and "name" not in head.split()
    assert "*" not in good and "*" in bad  # identity is worse than the mean target image on L1
    assert "note: * worse than the mean-target image" in out and "note: the runs differ in optim.lr" in out
    # The score record says it too, and so does `cyclekit eval`.
    record = json.loads((runs[1] / "results.json").read_text())
    assert "l1" in record["worse_than_mean_target"]["AtoB"]
    code, stdout, err = cli(
        "eval", str(runs[1] / "bundle"), "--data", str(data), "--no-fid", "-o", str(tmp_path / "x.json")
    )
    assert "warning: AtoB scores worse than the mean-target image on l1" in stdout
