"""SIGKILL and resume, for every recipe: a tiny run is trained once without a break, and once in a
subprocess that is SIGKILLed after a checkpoint and then resumed (`--resume auto`). The resumed run
must log every value the uninterrupted one logged, bit for bit (losses, BEGAN's M and k_t, WGAN's
estimate, the learning rate; only the wall-clock ``sec`` differs), and end with the same checkpoint
(networks, optimizers, schedules and the recipe's own state: k_t, StackGAN's stage, ...).

Each case keeps what its recipe's resume can get wrong: CycleGAN's image pool; Pix2Pix's sample grids
with test-time dropout drawn between steps; SGAN's labelled subset and labelled mini-batches; WGAN's
critic steps between generator steps; BEGAN's k_t; StackGAN killed in stage II, after stage I ended."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import write_images
from tests.helpers import cli, cli_subprocess, kill_when


@dataclass(frozen=True)
class Case:
    preset: str
    settings: tuple[str, ...]
    lines: int  # rows in metrics.jsonl of the whole run
    kill_at: int  # SIGKILL once this many rows are logged (and a checkpoint exists)
    data: Callable[[Path], Path] | None = None  # writes the data folder, returns --data-root
    slow: bool = False
    checkpoint_check: Callable[[dict[str, Any]], None] | None = field(default=None)


def _unpaired(root: Path) -> Path:
    write_images(root / "trainA", 8, seed=1)
    write_images(root / "trainB", 6, seed=2)
    return root


def _pairs(root: Path) -> Path:
    from tests.test_pix2pix import write_pairs

    return write_pairs(root, 8, 2)


def _images(root: Path) -> Path:
    write_images(root, 40, size=36)
    return root


def _in_stage_two(ckpt: dict[str, Any]) -> None:
    assert ckpt["step"] > 8 and ckpt["recipe"]["stage"] == {"stage": 2}, ckpt["step"]  # stage I is 8 steps


QUIET = ("train.log_every=1", "train.progress=false")
DIGITS = ("model.generator.ngf=16", "model.discriminator.ndf=16", *QUIET)

CASES = {
    # an epoch is max(|A|, |B|) = 8 steps at batch 1; the image pool holds 3 fakes. Slow (the dearest case):
    # by default test_first_hour's test_resume_by_name_after_ctrl_c_continues_bit_exact resumes a CycleGAN
    # bit-exactly after Ctrl-C (a checkpoint written on the way out, not a kill).
    "cyclegan": Case(
        "horse2zebra",
        (
            "data.load_size=36",
            "data.crop_size=32",
            "data.workers=0",
            "model.generator.ngf=8",
            "model.generator.n_blocks=2",
            "model.discriminator.ndf=8",
            "train.decay_epochs=0",
            "cyclegan.pool_size=3",
            "train.epochs=3",
            "train.checkpoint_every=3",
            "data.batch_size=1",
            *QUIET,
        ),
        lines=24,
        kill_at=10,
        data=_unpaired,
        slow=True,
    ),  # fmt: skip
    # n_downs 6 (64 px) has a dropout block: samples with test-time dropout and per-image batch statistics
    # are drawn between steps and must not disturb the training state or its random numbers. Slow only to
    # keep the default set under 9 minutes (CI runs it); nothing else resumes Pix2Pix by default.
    "pix2pix": Case(
        "facades",
        (
            "data.load_size=72",
            "data.crop_size=64",
            "data.workers=0",
            "model.generator.n_downs=6",
            "model.generator.ngf=8",
            "model.discriminator.ndf=8",
            "train.decay_epochs=0",
            "pix2pix.test_dropout=true",
            "train.sample_every=2",
            "train.epochs=3",
            "train.checkpoint_every=3",
            *QUIET,
        ),
        lines=24,
        kill_at=10,
        data=_pairs,
        slow=True,
    ),  # fmt: skip
    "gan": Case(
        "dcgan",
        (
            "data.load_size=32",
            "data.crop_size=32",
            "data.batch_size=4",
            "data.workers=0",
            "model.generator.ngf=8",
            "model.discriminator.ndf=8",
            "gan.latent_dim=16",
            "train.decay_epochs=0",
            "train.epochs=3",
            "train.checkpoint_every=3",
            *QUIET,
        ),
        lines=30,
        kill_at=12,
        data=_images,
    ),  # fmt: skip
    # the digits: 22 steps an epoch at batch 64. cGAN is slow only to keep the default set under 9 minutes
    # (CI runs it); by default ACGAN's case resumes a class-conditioned sampler on the same data.
    "cgan": Case(
        "digits-cgan", (*DIGITS, "train.epochs=2", "train.checkpoint_every=5"), lines=44, kill_at=12, slow=True
    ),
    "acgan": Case("digits-acgan", (*DIGITS, "train.epochs=2", "train.checkpoint_every=5"), lines=44, kill_at=12),
    "sgan": Case(
        "digits-sgan",
        # with D's weights averaged (sgan.average): the average is part of the checkpoint
        (*DIGITS, "train.epochs=2", "train.decay_epochs=0", "train.checkpoint_every=5", "sgan.average=0.01"),
        lines=44,
        kill_at=12,
    ),  # fmt: skip
    # 5 critic steps for each generator step, logged on generator steps; a checkpoint every 7 steps
    # lands between generator steps as well
    "wgan": Case(
        "digits-wgan",
        (
            "model.generator.ngf=16",
            "model.discriminator.ndf=16",
            "train.log_every=5",
            "train.progress=false",
            "train.epochs=3",
            "train.checkpoint_every=7",
        ),
        lines=14,
        kill_at=5,
    ),  # fmt: skip
    # the gradient penalty with the paper's Adam (0, 0.9): its moments resume with the critic. Slow: the
    # wgan case above resumes the same loop by default; CI runs this one.
    "wgan-gp": Case(
        "digits-wgan-gp",
        (
            "model.generator.ngf=16",
            "model.discriminator.ndf=16",
            "train.log_every=5",
            "train.progress=false",
            "train.epochs=3",
            "train.checkpoint_every=7",
        ),
        lines=14,
        kill_at=5,
        slow=True,
    ),  # fmt: skip
    # 44 steps an epoch at batch 32
    "began": Case(
        "digits-began",
        (
            "model.generator.n=8",
            "model.discriminator.n=8",
            "model.discriminator.h=8",
            "began.latent_dim=8",
            "data.batch_size=32",
            "train.epochs=2",
            "train.checkpoint_every=20",
            *QUIET,
        ),
        lines=88,
        kill_at=25,
    ),  # fmt: skip
    # 256 scenes at batch 32: 8 steps of stage I, then 16 of stage II; killed in stage II
    "stackgan": Case(
        "scenes-stackgan",
        (
            "data.scenes.train_scenes=256",
            "data.scenes.test_scenes=16",
            "data.batch_size=32",
            "stackgan.stage1_epochs=1",
            "stackgan.stage2_epochs=2",
            "train.checkpoint_every=3",
            *QUIET,
        ),
        lines=24,
        kill_at=13,
        checkpoint_check=_in_stage_two,
    ),  # fmt: skip
}


def _args(case: Case, root: Path | None, out: Path) -> list[str]:
    args = ["train", case.preset, "--out", str(out), "--quiet"]
    if root is not None:
        args += ["--data-root", str(root)]
    for item in case.settings:
        args += ["--set", item]
    return args


def _logged(run: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "sec"} for r in rows]  # all but the wall-clock time


def assert_same(a: Any, b: Any, where: str = "checkpoint") -> None:
    """``a`` and ``b`` equal all the way down, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, sorted(a), sorted(b))
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if c.slow else n for n, c in CASES.items()]
)  # fmt: skip
def test_sigkill_and_resume_is_bit_exact(name: str, tmp_path: Path):
    case = CASES[name]
    root = case.data(tmp_path / "data") if case.data is not None else None
    code, _, err = cli(*_args(case, root, tmp_path / "a"))
    assert code == 0, err
    run_a = next((tmp_path / "a").iterdir())
    full = _logged(run_a)
    assert len(full) == case.lines

    proc = cli_subprocess(*_args(case, root, tmp_path / "b"))
    run_b = tmp_path / "b" / run_a.name
    seen = kill_when(proc, run_b / "metrics.jsonl", min_lines=case.kill_at)
    assert case.kill_at <= seen < case.lines
    killed = torch.load(run_b / "checkpoints" / "last.pt", weights_only=False)
    assert 0 < killed["step"] < full[-1]["step"]  # resumed from the middle, not from the start or the end
    if case.checkpoint_check is not None:
        case.checkpoint_check(killed)

    code, out, err = cli(*_args(case, root, tmp_path / "b"), "--resume", "auto")
    assert code == 0 and f"resumed at step {killed['step']}" in out, err
    assert _logged(run_b) == full  # every logged value, bit for bit
    a, b = (torch.load(r / "checkpoints" / "last.pt", weights_only=False) for r in (run_a, run_b))
    assert a["step"] == b["step"] >= full[-1]["step"]
    assert_same(a["recipe"], b["recipe"], "recipe")
    # and the scores at the end, drawn from the same bundle with the same noise
    scores_a, scores_b = (r / "results.json" for r in (run_a, run_b))
    assert scores_a.is_file() == scores_b.is_file()
    if scores_a.is_file():
        same_folder = scores_a.read_text().replace(str(run_a), str(run_b))
        assert json.loads(same_folder) == json.loads(scores_b.read_text())


def test_the_table_covers_every_recipe():
    from cyclekit.recipes import RECIPES, load_config

    shipped = {name for name, cls in RECIPES.items() if cls.__module__.startswith("cyclekit.")}  # not a test's own
    assert {load_config(c.preset).recipe for c in CASES.values()} == shipped
