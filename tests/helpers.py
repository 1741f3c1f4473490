"""Test helpers shared by the training tests: running the CLI, SIGKILL-and-resume."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cyclekit.cli import app


def cli(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def cli_subprocess(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "cyclekit.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def losses(run_dir: Path) -> dict[int, dict[str, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if k.startswith(("loss", "D_"))} for r in rows}


def kill_when(proc: subprocess.Popen, metrics: Path, min_lines: int, timeout: float = 120) -> int:
    """SIGKILL `proc` once `metrics` has `min_lines` lines (and a checkpoint exists).
    Returns the number of lines seen at the kill."""
    ckpt = metrics.parent / "checkpoints" / "last.pt"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"run ended before it could be killed: {proc.stderr.read()}")
        n = len(metrics.read_text().splitlines()) if metrics.exists() else 0
        if n >= min_lines and ckpt.exists():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return n
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("timed out waiting for the run to make progress")


# The smallest CycleGAN the training tests use: 36 px loaded, 32 px crops, 8 filters, 2 blocks.
TINY_CYCLEGAN = [
    "data.load_size=36",
    "data.crop_size=32",
    "data.workers=0",
    "model.generator.ngf=8",
    "model.generator.n_blocks=2",
    "model.discriminator.ndf=8",
    "train.decay_epochs=0",
]


def train_args(preset: str, root: Path, out: Path, settings: list[str], *extra: str) -> list[str]:
    """`cyclekit train` arguments: ``preset`` on the data at ``root`` into ``out``, quiet, with
    every item of ``settings`` and ``extra`` as a ``--set``."""
    args = ["train", preset, "--data-root", str(root), "--out", str(out), "--quiet"]
    for item in [*settings, *extra]:
        args += ["--set", item]
    return args


def skip_or_fail_in_ci(reason: str) -> None:
    """Skip a test that cannot run on this machine, except under CI (``CI`` set), where every
    prerequisite is installed by the test set-up: there a missing one fails the test."""
    import pytest

    if "CI" in os.environ:
        pytest.fail(f"cannot run under CI: {reason}")
    pytest.skip(reason)


def import_or_skip(module: str, install: str):
    """``module`` imported, or skip locally; under CI (``CI`` set), where scripts/test.sh installs the
    dev extra that holds every optional package the tests use, a missing one fails the test."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        skip_or_fail_in_ci(f"{module} is not installed ({install})")


def chromium_or_skip() -> str:
    """Debian's chromium (its path) and playwright, or skip locally; under CI (``CI`` set) a missing one fails."""
    import shutil

    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install playwright)"
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    if chromium is None:
        reason = reason or "chromium is not installed (apt-get install chromium)"
    if reason is not None:
        skip_or_fail_in_ci(f"browser test: {reason}")
    return chromium


def one_error(err: str) -> str:
    """The one error line in ``err``; warnings and a training run's start lines may come before it."""
    start = ("training ", "  data: ", "  schedule: ", "warning:")
    lines = [line for line in err.strip().splitlines() if not line.startswith(start)]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# Debian's chromium without the network it would otherwise flood (a new empty profile each time)
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@contextlib.contextmanager
def browser_page(profile: Path, chromium: str, width: int, height: int = 900) -> Iterator[tuple[Any, list, list]]:
    """A page of Debian's ``chromium`` (headless, no network; a persistent context is how playwright
    takes a --user-data-dir: ``profile``, a new empty one) with the URLs it requested and the page
    errors it raised, as (page, requests, errors); the browser is closed after the block."""
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium,
            headless=True,
            args=BROWSER_FLAGS,
            viewport={"width": width, "height": height},
        )
        try:
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, requests, errors
        finally:
            context.close()
