"""Atomic file writes: the one helper behind every checkpoint, bundle, config, log and image.

A file is written under a temporary name in its own folder, flushed to disk, then renamed over
the target. `os.replace` is atomic on POSIX and Windows, so a process killed at any moment leaves
either the old file or the new one, never a truncated file. Temporary names share one pattern
(`.NAME.PID-RANDOM.cyclekit-tmp`), so stale ones can be recognised and only ours removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from cyclekit.errors import CyclekitError

TEMP_SUFFIX = ".cyclekit-tmp"
_OURS = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + "$")
# cyclekit 0.1 named its temporary files like this: checkpoints (mkstemp), bundle files, configs, logs.
_LEGACY = re.compile(
    r"^(last\.pt\.\w+\.tmp|(config\.json|config\.yaml|metrics\.jsonl|\w+\.safetensors)\.tmp|loss\.tmp\.png)$"
)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def temp_name(path: Path) -> Path:
    """A fresh temporary path beside ``path`` in cyclekit's naming."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on success it replaces ``path``.

    For writers that want a file name (PIL, onnx). On any exception the temporary file is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        if not is_disk_full(exc):
            raise
        raise CyclekitError(
            f"cannot write {path}: no space left on device; "
            + ("the previous version is intact" if path.exists() else "nothing was written")
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT however it arrives: an OSError, or torch's RuntimeError around a failed write."""
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
        return True
    return "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc)


def clean_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove cyclekit's temporary files in ``folder`` left by a killed process (and only
    those: our naming, and a writer process that is no longer alive). Returns what was removed."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        ours = _OURS.match(entry.name)
        if ours is not None and _alive(int(ours["pid"])):
            continue  # another live process is writing it right now
        if (ours is not None or _LEGACY.match(entry.name)) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours from an earlier run in this process: not in use now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write(path: str | os.PathLike[str], content: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write ``content`` (bytes, UTF-8 text, or a function writing to a binary file) to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path, fsync=False) as tmp:
        with open(tmp, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
    return path


def check_output_file(path: str | os.PathLike[str], suffixes: tuple[str, ...]) -> Path:
    """One clear error now, not a traceback after the work: ``path``'s extension must be one of
    ``suffixes`` and its folder creatable and writable (not under a file)."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise CyclekitError(f"{path}: unknown extension {path.suffix or '(none)'!r}; use {' or '.join(suffixes)}")
    check_output_folder(path.parent)
    if path.is_dir():
        raise CyclekitError(f"cannot write {path}: it is a folder")
    return path


def check_output_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed and make sure files can be written in it."""
    folder = Path(folder)
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise CyclekitError(f"cannot write to {folder}: {parent} is a file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CyclekitError(f"cannot create {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CyclekitError(f"cannot write to {folder}: permission denied")
    return folder
