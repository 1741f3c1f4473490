"""Atomic file writes: the one helper behind every checkpoint, bundle, config, log and image.

A file is written under a temporary name in its own folder, flushed to disk, then renamed over
the target. `os.replace` is atomic on POSIX and Windows, so a process killed at any moment leaves
either the old file or the new one, never a truncated file. Temporary names share one pattern
(`.NAME.PID-RANDOM.cyclekit-tmp`), so stale ones can be recognised and only ours removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".cyclekit-tmp"


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
    finally:
        tmp.unlink(missing_ok=True)


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
