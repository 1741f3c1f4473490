"""The GAN recipe end to end: ring quality, DCGAN run files, bad input (SIGKILL + resume: test_resume_table)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cyclekit.data.ring import ring_modes, sample_ring, score_ring
from cyclekit.recipes import load_config
from cyclekit.run import train_run
from tests.conftest import write_images
from tests.helpers import cli, losses, one_error

TINY_DCGAN = [
    "data.load_size=32",
    "data.crop_size=32",
    "data.batch_size=4",
    "data.workers=0",
    "model.generator.ngf=8",
    "model.discriminator.ndf=8",
    "gan.latent_dim=16",
    "train.decay_epochs=0",
    "train.log_every=1",
    "train.progress=false",
]


def test_score_ring_on_true_samples():
    score = score_ring(sample_ring(4000, torch.Generator().manual_seed(0)))
    assert score.modes_covered == 8
    assert score.high_quality > 0.99  # 3 sd of a 2-D Gaussian holds 98.9%, the band is circular
    collapsed = ring_modes()[0] + 0.01 * torch.randn(1000, 2)
    assert score_ring(collapsed).modes_covered == 1


# Slow: the 2-D ring learning run, the only learning test of the plain gan recipe (the DCGAN test checks
# its files, not its learning); the digits recipes' learning tests (cgan, acgan, sgan, wgan, began) run by default.
@pytest.mark.slow
def test_gan_ring_reduced_budget(tmp_path: Path):
    """A reduced budget of the gan-ring preset (PacGAN-packed MLP GAN) must already cover the
    ring; the full preset reaches 8/8 modes (README). 3,000 steps at 2.5x the preset's lr (about
    30 s here). Measured with seed 0: 8 of 8 modes, 36.7% of samples within 3 sd of a mode; the
    thresholds leave a margin of one mode and a third of that fraction (seed 1: 8 modes, 32.5%;
    seed 2 is a hard one at this budget: 4 modes, so the test keeps its seed)."""
    cfg = load_config(
        "gan-ring",
        [
            "train.progress=false",
            "train.epochs=15",
            "train.decay_epochs=15",
            "optim.lr=5e-4",
            "train.log_every=100",
            "train.checkpoint_every=100000",
        ],
    )
    report = train_run(cfg, tmp_path)
    results = json.loads((tmp_path / "gan-ring" / "results.json").read_text())
    assert results == report.evaluation and results["step"] == 3000
    ev = results["sampling"]
    assert ev["modes_covered"] >= 7
    assert ev["high_quality"] >= 0.25


def dcgan_args(root: Path, out: Path, *extra: str) -> list[str]:
    args = ["train", "dcgan", "--data-root", str(root), "--out", str(out), "--quiet"]
    for item in TINY_DCGAN + list(extra):
        args += ["--set", item]
    return args


def test_dcgan_run_writes_exact_files(tmp_path: Path):
    write_images(tmp_path / "faces", 8, size=36)
    code, out, err = cli(
        *dcgan_args(tmp_path / "faces", tmp_path / "runs", "train.epochs=2", "train.checkpoint_every=100")
    )
    assert code == 0, err
    run = tmp_path / "runs" / "dcgan"
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert files == [
        "bundle/G.safetensors",
        "bundle/config.json",
        "checkpoints/last.pt",
        "checkpoints/outputs.json",
        "config.yaml",
        "loss.png",
        "metrics.jsonl",
        "report.html",
        "samples/step_0000002.png",
        "samples/step_0000004.png",
        "timing.json",
    ]
    assert sorted(losses(run)) == [1, 2, 3, 4]
    bundle = json.loads((run / "bundle" / "config.json").read_text())
    assert bundle["recipe"] == "gan" and bundle["networks"]["G"]["arch"] == "dcgan_g"
    assert (
        bundle["samples"]
        == {"network": "G", "latent_dim": 16, "output": "image", "classes": [], "condition": None, "stages": [32]}
        and not bundle["translates"]
    )
    assert bundle["networks"]["G"]["options"]["image_size"] == 32
    assert load_config(str(run / "config.yaml")).train.epochs == 2
    # `sample` rebuilds the generator from the bundle alone
    code, out, err = cli("sample", str(run), "-n", "16", "-o", str(tmp_path / "grid.png"))
    assert code == 0, err
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size == (4 * 34 + 2, 4 * 34 + 2)


@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_with_packing(tmp_path: Path, channels: int):
    """PacGAN (gan.pack) with the DCGAN discriminator: m samples side by side in the channel axis,
    so D takes m x the image's channels (a grey run once failed here: D only took 1 or 3)."""
    write_images(tmp_path / "faces", 8, size=36)
    code, out, err = cli(
        *dcgan_args(
            tmp_path / "faces",
            tmp_path / "runs",
            "train.epochs=1",
            "gan.pack=2",
            f"data.channels={channels}",
            "train.checkpoint_every=100",
        )
    )
    assert code == 0, err
    run = tmp_path / "runs" / "dcgan"
    checkpoint = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    first = [v for k, v in checkpoint["recipe"]["D"].items() if k.endswith("weight") and v.dim() == 4][0]
    assert first.shape[1] == 2 * channels
    assert sorted(losses(run)) == [1, 2]
    bundle = json.loads((run / "bundle" / "config.json").read_text())
    assert bundle["networks"]["G"]["options"]["channels"] == channels


def one_error_line(code: int, err: str, pattern: str) -> None:
    assert code != 0
    line = one_error(err)
    assert pattern in line, line
    assert "Traceback" not in err


def test_bad_inputs_one_line(tmp_path: Path):
    out = str(tmp_path / "runs")
    one_error_line(*cli("train", "no-such-preset", "--out", out)[::2], "unknown preset 'no-such-preset'")
    one_error_line(*cli("train", "dcgan", "--data-root", str(tmp_path / "missing"), "--out", out)[::2], "not found")
    (tmp_path / "empty").mkdir()
    one_error_line(*cli("train", "dcgan", "--data-root", str(tmp_path / "empty"), "--out", out)[::2], "no images found")
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(3):
        (texts / f"note{i}.txt").write_text("hello")
    one_error_line(*cli("train", "dcgan", "--data-root", str(texts), "--out", out)[::2], "no images found")
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    for i in range(3):
        (fakes / f"photo{i}.jpg").write_text("not a jpeg")
    one_error_line(*cli("train", "dcgan", "--data-root", str(fakes), "--out", out)[::2], str(fakes))
    one_error_line(
        *cli("train", "dcgan", "--set", "train.epochs=x", "--out", out)[::2], "train.epochs: expected an integer"
    )
    one_error_line(*cli("train", "dcgan", "--set", "oops", "--out", out)[::2], "expected KEY=VALUE")


def test_truncated_checkpoint_and_existing_run(tmp_path: Path):
    write_images(tmp_path / "imgs", 8, size=36)
    args = dcgan_args(tmp_path / "imgs", tmp_path / "runs", "train.epochs=1")
    assert cli(*args)[0] == 0
    # a second fresh run would clobber the first: refused unless --resume / --overwrite
    one_error_line(*cli(*args)[::2], "already has a checkpoint")
    ckpt = tmp_path / "runs" / "dcgan" / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    one_error_line(*cli(*args, "--resume", "auto")[::2], "is damaged or not a cyclekit checkpoint")
    one_error_line(*cli(*args, "--resume", str(tmp_path / "nope.pt"))[::2], "checkpoint not found")
    assert cli(*args, "--overwrite")[0] == 0


@pytest.mark.parametrize("preset", ["mnist-dcgan"])
def test_offline_download_is_one_line(tmp_path: Path, preset: str, monkeypatch):
    # Point the MNIST mirrors at a closed local port: the failure must say what to fetch and where.
    import cyclekit.data.catalogue as catalogue

    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))
    info = catalogue.CATALOGUE["mnist"]
    files = [f.__class__(**{**f.__dict__, "urls": ("http://127.0.0.1:9/" + f.filename,)}) for f in info.files]
    monkeypatch.setitem(catalogue.CATALOGUE, "mnist", info.__class__(**{**info.__dict__, "files": tuple(files)}))
    code, out, err = cli("train", preset, "--out", str(tmp_path / "runs"))
    one_error_line(code, err, str(tmp_path / "cache"))
