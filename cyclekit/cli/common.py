"""What every command shares: the typer app, the error boundary (`friendly`, `fail`) that turns
library errors into one line on stderr with a non-zero exit, and warnings as `warning:` lines."""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import typer  # noqa: E402

from cyclekit.errors import CyclekitError, ReportedElsewhere, TrainingInterrupted  # noqa: E402
from cyclekit.train.launch import in_job, job_rank, lost_peer  # noqa: E402  (torch-free)

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="cyclekit: image-to-image translation (CycleGAN, Pix2Pix) and classic GANs.",
)

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class _StderrHandler(logging.Handler):
    """Library warnings (skipped files, ...) as `warning: ...` lines on the *current* stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        message = " ".join(record.getMessage().splitlines())  # one line per warning
        stderr_line(f"{record.levelname.lower()}: {message}")


def _warning_line(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """Library warnings (Pillow's decompression-bomb warning, ...) as one `warning:` line."""
    stderr_line(f"warning: {' '.join(str(message).split())}")


def stderr_line(line: str) -> None:
    """One line on stderr; with a progress bar on screen, above it rather than inside it."""
    tqdm = sys.modules.get("tqdm")  # only when training has imported it: translate stays light
    if tqdm is not None:
        tqdm.tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr)


def progress_line(line: str) -> None:
    """A line on stderr that never lands inside a progress bar."""
    import tqdm  # noqa: F401  (so that stderr_line goes through its lock)

    stderr_line(line)


@app.callback()
def _setup() -> None:
    root = logging.getLogger("cyclekit")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        root.addHandler(_StderrHandler(logging.WARNING))
        root.propagate = False
    if in_job():
        # A worker of a multi-process job: the launcher (or torchrun) stops the job with SIGTERM
        # and reports it; leave quietly rather than with a traceback from the interrupted collective.
        import signal

        signal.signal(signal.SIGTERM, _leave_quietly)
    if job_rank() != 0:
        # In a multi-process job every rank would repeat rank 0's warnings (skipped files, ...).
        root.setLevel(logging.ERROR)
        warnings.simplefilter("ignore")
    warnings.showwarning = _warning_line


def rank_prefix() -> str:
    """`rank N: ` before an error of a worker other than rank 0 of a multi-process job."""
    return f"rank {job_rank()}: " if job_rank() else ""


def fail(message: str, code: int = EXIT_ERROR) -> None:
    # One line, whatever a file name or a damaged file's key put into the message.
    message = " ".join(message.splitlines())
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


OUT_OF_MEMORY = "out of memory (training: a smaller data.crop_size or data.batch_size; translate: --tile 512)"


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can fix into one line on stderr, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ReportedElsewhere:
            raise typer.Exit(EXIT_ERROR) from None  # rank 0 of a multi-process job printed it
        except TrainingInterrupted as exc:
            if job_rank() != 0:
                raise typer.Exit(EXIT_INTERRUPTED) from None
            fail(str(exc), EXIT_INTERRUPTED)
        except CyclekitError as exc:
            fail(rank_prefix() + _one_line(str(exc)))
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except MemoryError:
            fail(OUT_OF_MEMORY)
        except RuntimeError as exc:  # torch.OutOfMemoryError (CUDA/MPS) is a RuntimeError; torch stays unimported
            if lost_peer(exc):
                if os.environ.get("CYCLEKIT_LAUNCHER"):
                    raise typer.Exit(EXIT_ERROR) from None  # the launcher names the process that stopped
                fail(f"{rank_prefix()}lost the connection to another process of the job (it stopped or was killed)")
            if not _is_out_of_memory(exc):
                raise
            fail(OUT_OF_MEMORY)
        except OSError as exc:  # disk full, permission denied, ...
            if exc.errno == errno.EPIPE:  # `cyclekit presets | head`: the reader left; so do we, quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise typer.Exit(EXIT_ERROR) from None
            if exc.errno == errno.ENOMEM:
                fail(OUT_OF_MEMORY)
            where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
            fail(f"{exc.strerror or (str(exc).strip().splitlines() or [type(exc).__name__])[0]}{where}")

    return wrapper


_OOM_SPELLINGS = ("out of memory", "can't allocate memory", "cannot allocate memory", "defaultcpuallocator")


def _leave_quietly(signum: int, frame: Any) -> None:
    """Exit at once, as an unhandled SIGTERM would (no unwinding through data-loader teardown,
    which would print tracebacks); files are written atomically, so none is left half-written."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + signum)


def _is_out_of_memory(exc: BaseException) -> bool:
    """Every way torch and the OS say "out of memory": CUDA/MPS OOM, the CPU allocator's
    "DefaultCPUAllocator: can't allocate memory", ENOMEM."""
    text = str(exc).lower()
    return any(s in text for s in _OOM_SPELLINGS)


def _one_line(message: str) -> str:
    """Errors raised in DataLoader workers come back wrapped in the worker's traceback text;
    keep only the original message (the last line, without its exception class)."""
    if "Original Traceback" in message:
        last = [line for line in message.splitlines() if line.strip()][-1]
        return last.split(": ", 1)[1] if ": " in last and last.split(": ", 1)[0].endswith("Error") else last
    return message
