"""Run the cyclekit CLI and SIGKILL it right after its N-th rename: a kill aimed at one write.

Every file cyclekit writes is renamed into place (`cyclekit.atomic`), and every folder it replaces
is swapped in by renames, so "after the N-th rename" walks through every write of a run, one at a
time. Used by the tests as ``python -m tests.killpoint ARGS...`` with

    CYCLEKIT_TEST_KILL_AFTER=N        kill after the N-th os.replace / os.rename (0: never)
    CYCLEKIT_TEST_RENAMES=FILE        append each rename's target to FILE (one per line)
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any


def _counted(fn: Callable[..., Any], kill_after: int, log: str | None, count: list[int]) -> Callable[..., Any]:
    def wrapped(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        result = fn(src, dst, *args, **kwargs)
        count[0] += 1
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"{os.fspath(dst)}\n")
        if count[0] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    return wrapped


def main() -> None:
    kill_after = int(os.environ.get("CYCLEKIT_TEST_KILL_AFTER", "0"))
    log = os.environ.get("CYCLEKIT_TEST_RENAMES")
    count = [0]
    os.replace = _counted(os.replace, kill_after, log, count)  # type: ignore[assignment]
    os.rename = _counted(os.rename, kill_after, log, count)  # type: ignore[assignment]
    from cyclekit.cli import main as cli_main

    sys.argv = ["cyclekit", *sys.argv[1:]]
    cli_main()


if __name__ == "__main__":
    main()
