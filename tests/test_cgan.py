"""The conditional GAN on the scikit-learn digits: it learns the classes (measured by the
classifier yardstick), samples by class from the CLI, exports to ONNX with a label input that
matches PyTorch for every class and samples torch-free. Resume after SIGKILL: tests/test_resume_table.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from tests.conftest import REPO
from tests.helpers import cli, one_error

# A reduced budget of the digits-cgan preset: 16 px, 32 filters, 12 epochs of 22 steps.
SMALL = ["model.generator.ngf=32", "model.discriminator.ndf=32", "train.log_every=1", "train.progress=false"]


def args(out: Path, *extra: str) -> list[str]:
    a = ["train", "digits-cgan", "--out", str(out), "--quiet"]
    for item in [*SMALL, *extra]:
        a += ["--set", item]
    return a


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cgan")
    code, _, err = cli(*args(out, "train.epochs=12"))
    assert code == 0, err
    return out / "digits-cgan"


def test_cgan_learns_the_classes_on_the_digits(run: Path):
    results = json.loads((run / "results.json").read_text())
    scores = results["sampling"]
    # Measured at seed 0 (12 epochs, 264 steps, 2,000 samples): conditional accuracy 0.695, the
    # classifier's own test accuracy 0.989, 9 of 10 classes covered. Chance is 0.1; the thresholds
    # leave 0.195 and one class of margin.
    assert scores["classifier_test_accuracy"] >= 0.95, scores
    assert scores["conditional_accuracy"] >= 0.5, scores
    assert scores["classes_covered"] >= 8 and scores["of_classes"] == 10, scores
    assert "not Inception FID" in scores["note"]


def test_sample_by_class_and_all_classes(run: Path, tmp_path: Path):
    code, out, err = cli("sample", str(run), "--class", "3", "-n", "16", "-o", str(tmp_path / "threes.png"))
    assert code == 0, err
    assert Image.open(tmp_path / "threes.png").size == (4 * 18 + 2, 4 * 18 + 2)
    code, out, err = cli("sample", str(run), "--class", "all", "-n", "5", "-o", str(tmp_path / "all.png"))
    assert code == 0 and "wrote 50 samples" in out, err
    grid = Image.open(tmp_path / "all.png")
    assert grid.height == 10 * 18 + 2 and grid.width > 5 * 18 + 2  # one labelled row per class
    code, _, err = cli("sample", str(run), "--class", "12", "-o", str(tmp_path / "x.png"))
    assert code == 1 and "--class 12: not a class of this generator; classes: 0, 1" in one_error(err)


def test_export_takes_the_label_and_matches_pytorch_for_every_class(run: Path, tmp_path: Path):
    import onnx

    code, out, err = cli("export", str(run), "-o", str(tmp_path))
    assert code == 0, err
    model = tmp_path / "G.onnx"
    meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert json.loads(meta["classes"]) == [str(k) for k in range(10)] and meta["kind"] == "sampler"
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("z", "tensor(float)"), ("label", "tensor(int64)")]

    from cyclekit.inference.bundle import load_network, read_bundle

    bundle = read_bundle(run / "bundle")
    generator = load_network(run / "bundle", bundle, "G", "cpu")
    z = torch.randn(10, bundle.samples.latent_dim, generator=torch.Generator().manual_seed(5))
    for k in range(10):
        label = torch.full((10,), k)
        with torch.no_grad():
            expected = generator(z, label).numpy()
        got = session.run(None, {"z": z.numpy(), "label": label.numpy()})[0]
        assert np.abs(got - expected).max() < 1e-4, k

    script = REPO / "scripts" / "onnx_sample.py"
    done = subprocess.run(
        [sys.executable, str(script), str(model), str(tmp_path / "s.png"), "--class", "7", "-n", "4"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "wrote 4 samples" in done.stdout, done.stderr
    done = subprocess.run([sys.executable, str(script), str(model), str(tmp_path / "s.png"), "--class", "x"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1 and done.stderr.strip().startswith("error: --class x: not one of 0, 1"), done.stderr


def test_a_cgan_config_on_data_without_labels_fails_in_one_line(tmp_path: Path):
    code, _, err = cli("train", "digits-cgan", "--set", "data.kind=folder", "--out", str(tmp_path))
    line = one_error(err)
    assert code == 1 and "recipe cgan trains on batches of image, label; the folder source gives image" in line


def test_eval_rescores_a_sampling_run_and_eval_every_scores_during_training(run: Path, tmp_path: Path):
    before = json.loads((run / "results.json").read_text())
    code, out, err = cli("eval", str(run))
    assert code == 0 and "conditional_accuracy" in out, err
    after = json.loads((run / "results.json").read_text())
    assert (
        after["sampling"] == before["sampling"] and after["step"] == before["step"]
    )  # the same bundle, the same noise
    assert "conditional_accuracy" in (run / "report.html").read_text()
    code, _, err = cli(*args(tmp_path, "train.epochs=2", "train.eval_every=1"))
    assert code == 0, err
    rows = [json.loads(r) for r in (tmp_path / "digits-cgan" / "evals.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [22, 44] and all("conditional_accuracy" in r["sampling"] for r in rows)
