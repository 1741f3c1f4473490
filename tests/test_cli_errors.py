"""The CLI's error boundary: errors a user can act on become one line and an exit code."""

from __future__ import annotations

import errno

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
