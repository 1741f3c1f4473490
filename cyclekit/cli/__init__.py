"""The `cyclekit` command: the only package that knows typer and argv. It turns arguments into
library calls and library errors into one line on stderr with a non-zero exit.

`common` holds the app and the error boundary every command shares; each other module is one
group of commands (imported below in the order `cyclekit --help` lists them)."""

from __future__ import annotations

import sys

from cyclekit.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, OUT_OF_MEMORY, app, fail, friendly

# isort: off
# Each module registers its commands when imported: here in the order `cyclekit --help` lists them.
from cyclekit.cli import train as _train  # noqa: F401  (train, bundle, presets, recipes)
from cyclekit.cli import sample as _sample  # noqa: F401
from cyclekit.cli import data as _data  # noqa: F401
from cyclekit.cli import interop as _interop  # noqa: F401  (import, pretrained)
from cyclekit.cli import translate as _translate  # noqa: F401  (translate, export)
from cyclekit.cli import bench as _bench  # noqa: F401
from cyclekit.cli import evaluate as _evaluate  # noqa: F401  (eval, compare, report)
# isort: on

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "OUT_OF_MEMORY", "app", "fail", "friendly", "main"]


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except KeyboardInterrupt:  # outside a command (e.g. during imports)
        print("error: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        # A command line typer cannot parse (a missing value, an unknown option): one line, as for
        # every other bad input, instead of a framed box.
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print(f"error: {' '.join(exc.format_message().split())}{hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
