"""The CLI's error boundary: errors a user can act on become one line and an exit code."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import typer

from cyclekit.cli import EXIT_ERROR, friendly
from cyclekit.errors import ConfigError


def run(exc: BaseException) -> int:
    @friendly
    def command() -> None:
        raise exc

    with pytest.raises(typer.Exit) as info:
        command()
    return info.value.exit_code


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConfigError("train.epochs: expected an integer, got 'x'"), "error: train.epochs: expected an integer"),
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "error: out of memory (training:"),
        (MemoryError(), "error: out of memory"),
        (OSError(errno.ENOSPC, "No space left on device", "runs/x/checkpoints/last.pt.tmp"), "error: No space left"),
        (OSError("first line\nsecond line"), "error: first line"),
        (OSError(), "error: OSError"),
    ],
)
def test_user_errors_become_one_line(exc: BaseException, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(exc) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1, err


def test_programming_errors_are_not_hidden() -> None:
    # A bug must still show its traceback: only out-of-memory RuntimeErrors are translated.
    @friendly
    def command() -> None:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes"):
        command()


def test_a_device_this_machine_lacks_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--device mps (or cuda) where PyTorch has none: one line for every command that takes --device."""
    import torch

    from tests.bundles import make_bundle, photo
    from tests.helpers import cli

    if torch.backends.mps.is_available() or torch.cuda.is_available():
        pytest.skip("this machine has the device")
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))
    bundle = make_bundle(tmp_path / "bundle")
    photo(20, 20).save(tmp_path / "x.png")
    for device in ("mps", "cuda", "cuda:3"):
        for args in (
            ["translate", str(tmp_path / "x.png"), "--model", str(bundle), "-o", str(tmp_path / "out")],
            ["train", "demo", "--out", str(tmp_path / "runs"), "--set", "train.epochs=1"],
            ["eval", str(bundle), "--data", str(tmp_path), "--size", "32"],
        ):
            code, _, err = cli(*args, "--device", device)
            lines = err.strip().splitlines()
            assert code == 1 and len(lines) == 1 and lines[0].startswith("error:"), (args, err)
            assert f"device {device} requested but" in lines[0], lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()
