"""The CycleGAN recipe end to end on tiny generated data: files, odd inputs, demo scoring (SIGKILL and resume:
tests/test_resume_table.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cyclekit.data.demo import generate_demo, render_scene, to_autumn
from cyclekit.recipes import load_config
from cyclekit.run import build_recipe, train_run
from tests.conftest import write_images
from tests.helpers import TINY_CYCLEGAN, cli, losses, train_args
from tests.test_train_gan import one_error_line

TINY = [*TINY_CYCLEGAN, "train.log_every=1", "train.progress=false", "cyclegan.pool_size=3"]


def args(root: Path, out: Path, *extra: str) -> list[str]:
    return train_args("horse2zebra", root, out, TINY, *extra)


def test_two_step_run_writes_exact_files(unpaired_root: Path, tmp_path: Path):
    code, out, err = cli(*args(unpaired_root, tmp_path / "runs", "train.epochs=1", "data.batch_size=2"))
    assert code == 0, err
    run = tmp_path / "runs" / "horse2zebra"
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert files == [
        "bundle/G_AtoB.safetensors",
        "bundle/G_BtoA.safetensors",
        "bundle/config.json",
        "checkpoints/last.pt",
        "checkpoints/outputs.json",
        "config.yaml",
        "loss.png",
        "metrics.jsonl",
        "report.html",  # refreshed every epoch
        "results.json",  # the fixture's test images pair up by name, so they are scored
        "samples/step_0000002.png",
        "timing.json",
    ]
    rows = losses(run)
    assert sorted(rows) == [1, 2]
    assert {"loss_G", "loss_cycle_A", "loss_cycle_B", "loss_idt_A", "loss_idt_B", "loss_D_A", "loss_D_B"} <= set(
        rows[1]
    )
    bundle = json.loads((run / "bundle" / "config.json").read_text())
    assert bundle["recipe"] == "cyclegan" and bundle["domains"] == {"A": "horse", "B": "zebra"}
    assert bundle["translates"] == {"AtoB": "G_AtoB", "BtoA": "G_BtoA"} and bundle["size_multiple"] == 4
    assert bundle["networks"]["G_AtoB"]["options"]["ngf"] == 8 and bundle["step"] == 2
    # 4 fixed images per side (2 test + 2 train) -> 8 rows of 3 tiles (32 px + 2 px padding)
    assert Image.open(run / "samples" / "step_0000002.png").size == (3 * 34 + 2, 8 * 34 + 2)


def test_odd_inputs_train_or_fail_clearly(tmp_path: Path):
    root = tmp_path / "odd"
    write_images(root / "trainA", 2, seed=1)
    write_images(root / "trainB", 3, seed=2)
    (root / "trainA" / "empty.png").write_bytes(b"")
    (root / "trainA" / "notes.jpg").write_text("this is text")
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(root / "trainA" / "cmyk.jpg")
    Image.fromarray(np.linspace(0, 65535, 48 * 48).reshape(48, 48).astype(np.uint16)).save(root / "trainB" / "deep.png")
    Image.new("RGB", (10, 10), (200, 10, 10)).save(root / "trainB" / "tiny.png")
    Image.new("LA", (40, 40), (128, 200)).save(root / "trainB" / "gray alpha.png")

    code, out, err = cli(*args(root, tmp_path / "runs", "train.epochs=1"))
    assert code == 0, err
    assert "skipped 2 unreadable" in err and "empty.png" in err and "notes.jpg" in err
    # usable: 3 in trainA (2 + CMYK), 6 in trainB (3 + 16-bit + 10x10 + LA); an epoch is max(3, 6)
    assert len(losses(tmp_path / "runs" / "horse2zebra")) == 6

    one_error_line(*cli(*args(root, tmp_path / "strict", "train.epochs=1", "data.strict=true"))[::2], "empty.png")

    no_b = tmp_path / "no_b"
    write_images(no_b / "trainA", 2)
    one_error_line(*cli(*args(no_b, tmp_path / "r2", "train.epochs=1"))[::2], "trainB")
    empty_a = tmp_path / "empty_a"
    (empty_a / "trainA").mkdir(parents=True)
    write_images(empty_a / "trainB", 2)
    one_error_line(*cli(*args(empty_a, tmp_path / "r3", "train.epochs=1"))[::2], "trainA")


def test_one_channel_end_to_end(unpaired_root: Path, tmp_path: Path):
    code, _, err = cli(
        *args(unpaired_root, tmp_path / "runs", "train.epochs=1", "data.channels=1", "data.batch_size=4")
    )
    assert code == 0, err
    bundle = json.loads((tmp_path / "runs" / "horse2zebra" / "bundle" / "config.json").read_text())
    assert bundle["channels"] == 1 and bundle["networks"]["G_AtoB"]["options"]["in_channels"] == 1


def test_demo_data_is_deterministic_and_paired(tmp_path: Path):
    a = generate_demo(tmp_path / "d1", n_train=6, n_test=3, size=32, seed=4)
    b = generate_demo(tmp_path / "d2", n_train=6, n_test=3, size=32, seed=4)
    for split in ("trainA", "trainB", "testA", "testB"):
        names = sorted(p.name for p in (a / split).iterdir())
        assert len(names) == (6 if split.startswith("train") else 3)
        for name in names:
            assert (a / split / name).read_bytes() == (b / split / name).read_bytes()
    for name in sorted(p.name for p in (a / "testA").iterdir()):
        day = np.asarray(Image.open(a / "testA" / name))
        assert np.array_equal(np.asarray(Image.open(a / "testB" / name)), to_autumn(day))
    # train A and B are different scenes (unpaired), not autumn versions of each other
    day0 = np.asarray(Image.open(a / "trainA" / "scene_0000.png"))
    assert not np.array_equal(np.asarray(Image.open(a / "trainB" / "scene_0000.png")), to_autumn(day0))
    assert render_scene(1, 32).shape == (32, 32, 3)


def test_demo_preset_short_run(tmp_path: Path, monkeypatch):
    """The demo preset runs through train_run on a reduced budget and reports its scores."""
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))
    cfg = load_config(
        "demo",
        [
            "data.demo_train=8",
            "data.demo_test=2",
            "data.demo_size=32",
            "data.load_size=36",
            "data.crop_size=32",
            "train.epochs=1",
            "train.decay_epochs=0",
            "train.progress=false",
        ],
    )
    report = train_run(cfg, tmp_path / "runs")
    scores = report.evaluation
    assert scores == json.loads((tmp_path / "runs" / "demo" / "results.json").read_text())
    assert (scores["step"], scores["epoch"]) == (2, 1) and scores["bundle"].endswith("demo/bundle")
    assert scores["data"]["image_size"] == 32 and scores["data"]["load_size"] == 36
    for direction in ("AtoB", "BtoA"):  # the demo's test pairs: testB = autumn(testA), by file name
        assert scores["counts"][direction]["paired"] == 2
        assert set(scores["baselines"][direction]) == {"identity", "mean_target"}
        assert {"l1", "psnr", "ssim"} <= set(scores["directions"][direction])
    assert report.fit.step == 2


def test_a_checkpoint_of_cyclekit_0_1_still_resumes(tmp_path: Path):
    """0.1 stored a fingerprint of its flat config layout (loss.lambda_cycle, train.pool_size,
    model.latent_dim, ...); it is rebuilt in today's layout and compared, so such a run resumes,
    while a really different config is still refused."""
    from cyclekit.train.checkpoint import load_checkpoint, save_checkpoint

    root = tmp_path / "data"
    write_images(root / "trainA", 3, seed=1)
    write_images(root / "trainB", 3, seed=2)
    code, _, err = cli(*args(root, tmp_path / "runs", "train.epochs=1"))
    assert code == 0, err
    ckpt = tmp_path / "runs" / "horse2zebra" / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt)
    new = state["fingerprint"]
    data = {**new["data"], "epoch_size": 8192, "recursive": False, "demo_train": 160, "demo_test": 16, "demo_size": 64}
    state["fingerprint"] = {
        "recipe": "cyclegan",
        "seed": 0,
        "model": {**new["model"], "latent_dim": 100, "pack": 1},
        "data": data,
        "loss": {"gan_mode": "lsgan", "gp_weight": 10.0, "lambda_cycle": 10.0, "lambda_identity": 0.5, "d_scale": 0.5},
        "optim": {**new["optim"], "d_steps": 1},
        "train": {"epochs": 1, "decay_epochs": 0, "pool_size": 3},
    }
    save_checkpoint(state, ckpt)
    code, out, err = cli(*args(root, tmp_path / "runs", "train.epochs=2"), "--resume", "auto")
    assert code == 1 and "other settings: train.epochs: 1 in the run, 2 now" in err  # epochs changed: refused
    code, out, err = cli(*args(root, tmp_path / "runs", "train.epochs=1"), "--resume", "auto")
    assert code == 0 and "resumed at step 3" in out, err


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")  # the test skips updates
def test_batched_network_calls_change_nothing_but_speed(unpaired_root: Path):
    """G_AtoB on [real A; real B] and each D on [real; fake] in one call each: instance norm is per
    sample, so the gradients of a step match the one-call-per-input step to float rounding (measured
    2.1e-6 of each tensor's scale; tolerance 1e-4), and so
    do the losses of the following steps.

    Not the raw weights after Adam: a conv bias right before instance norm has a true gradient of
    exactly zero (the norm removes the mean), so its computed gradient is rounding noise of ~1e-8
    whose sign depends on the summation order, and Adam's first update g / (|g| + eps) turns that
    sign into +-lr (measured: 3.6e-4 = 1.8 lr on such biases, everything else ~1e-7)."""
    from itertools import islice

    from cyclekit.recipes.common import seed_everything

    cfg = load_config("horse2zebra", [*TINY, "data.batch_size=2", "train.epochs=1"])
    seed_everything(0)
    batched = build_recipe(cfg, data_root=unpaired_root)
    seed_everything(0)
    separate = build_recipe(cfg, data_root=unpaired_root)
    separate.batch_g = separate.batch_d = False
    assert batched.batch_g and batched.batch_d
    batches = list(islice(batched.batches(0, 0), 2))

    # Step 1 without the optimizer updates: identical gradients everywhere.
    worst = 0.0
    for recipe in (batched, separate):
        for opt in recipe.state.optimizers.values():
            opt.step = lambda *a, **k: None  # noqa: E731 (keep the grads, skip the update)
        recipe.train_step(batches[0], 0)
    for name, net in batched.state.nets.items():
        others = dict(separate.state.nets[name].named_parameters())
        for pname, p in net.named_parameters():
            ref = others[pname].grad
            scale = ref.abs().max().item()
            if scale < 1e-4:  # a bias before instance norm: true gradient 0, both are rounding noise
                assert p.grad.abs().max().item() < 1e-4, (name, pname)
                continue
            # float32 sums in another order: differences relative to the tensor's scale
            rel = (p.grad - ref).abs().max().item() / scale
            worst = max(worst, rel)
            assert rel < 1e-4, (name, pname, rel)
    print(f"max relative gradient difference: {worst:.2e}")

    # Real steps: the losses stay the same step after step.
    for recipe in (batched, separate):
        for opt in recipe.state.optimizers.values():
            del opt.step
    for step, batch in enumerate(batches * 2, start=1):
        la, lb = batched.train_step(batch, step), separate.train_step(batch, step)
        for k in la:
            assert abs(la[k].item() - lb[k].item()) <= 1e-4 * max(1.0, abs(lb[k].item())), (step, k)

    # With batch norm the statistics would mix, so those nets keep separate calls.
    bn = build_recipe(
        load_config("horse2zebra", [*TINY, "model.generator.norm=batch", "model.discriminator.norm=batch"]),
        data_root=unpaired_root,
    )
    assert not bn.batch_g and not bn.batch_d


def test_mixed_precision_on_cpu_runs_correctly_and_resumes_across_precisions(unpaired_root: Path, tmp_path: Path):
    """bf16 autocast on a CPU (asked for: `auto` is fp32 there) gives the fp32 step's losses to
    bf16's ~3 significant digits (measured: 1.0% at most; tolerance 5%); fp16 trains with a GradScaler
    whose state goes into the checkpoint, and a run resumes across precisions."""
    from cyclekit.train.checkpoint import load_checkpoint

    def run(out: str, *extra: str) -> dict[int, dict[str, float]]:
        code, _, err = cli(*args(unpaired_root, tmp_path / out, *extra))
        assert code == 0, err
        return losses(tmp_path / out / "horse2zebra")

    fp32 = run("fp32", "train.epochs=1", "train.precision=fp32")
    bf16 = run("bf16", "train.epochs=1", "train.precision=bf16")
    for key, value in fp32[1].items():
        assert abs(bf16[1][key] - value) <= 0.05 * max(abs(value), 0.1), (key, value, bf16[1][key])
    assert all(np.isfinite(v) for row in bf16.values() for v in row.values())

    fp16 = run("fp16", "train.epochs=2", "train.max_steps=4", "train.precision=fp16")
    assert all(np.isfinite(v) for row in fp16.values() for v in row.values())
    ckpt = load_checkpoint(tmp_path / "fp16" / "horse2zebra" / "checkpoints" / "last.pt")
    assert ckpt["recipe"]["grad_scaler"]["scale"] > 0
    code, out, err = cli(
        *args(unpaired_root, tmp_path / "fp16", "train.epochs=2", "train.precision=fp32"), "--resume", "auto"
    )
    assert code == 0 and "resumed at step 4" in out, err
