"""Atomic writes: the one helper behind every checkpoint, config, log and image (`atomic_write`,
`atomic_path`), and the one behind every folder that must change as a whole (`staged_folder`:
bundles, the best bundle, the demo set, extracted datasets).

A file is written under a temporary name in its own folder, flushed to disk, then renamed over
the target. `os.replace` is atomic on POSIX and Windows, so a process killed at any moment leaves
either the old file or the new one, never a truncated file. A folder is filled under a temporary
name beside the target, then swapped in by two renames (the old one aside, the new one in); a kill
between them leaves the old one aside under a fixed name, which `recover_folder` (called by every
writer and reader) puts back. Temporary names share one pattern (`.NAME.PID-RANDOM.cyclekit-tmp`),
so stale ones can be recognised and only ours removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from cyclekit.errors import CyclekitError

TEMP_SUFFIX = ".cyclekit-tmp"
OLD_SUFFIX = ".cyclekit-old"  # a folder set aside while its replacement is swapped in
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
        if not (is_disk_full(exc) or _nearly_full(path.parent)):
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


def _nearly_full(folder: Path) -> bool:
    """Under 1 MiB free where a write just failed: some writers (torch's zip writer: "unexpected
    pos ...") report a full disk without saying so."""
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


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
        if ours is not None and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)  # a folder staged by a killed process
            removed.append(entry)
        elif (ours is not None or _LEGACY.match(entry.name)) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _old_name(target: Path) -> Path:
    return target.with_name(f".{target.name}{OLD_SUFFIX}")


def recover_folder(target: str | os.PathLike[str]) -> Path:
    """Finish or undo a folder swap that a kill interrupted: with ``target`` missing, the old
    folder set aside is put back; with both there, the old one is removed. Returns ``target``.
    Safe to call anywhere (it only renames or removes what a swap set aside); on a read-only
    disk the old folder stays where it is (see `readable_folder`)."""
    target = Path(target)
    old = _old_name(target)
    if not old.is_dir() or old.is_symlink():
        return target
    try:
        if target.exists():
            shutil.rmtree(old)
        else:
            os.rename(old, target)
    except OSError:
        pass
    return target


def readable_folder(target: str | os.PathLike[str]) -> Path:
    """``target`` after `recover_folder`; where the disk refused the recovery, the intact old
    folder set aside by an interrupted swap."""
    target = recover_folder(target)
    old = _old_name(target)
    return old if not target.exists() and old.is_dir() else target


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike[str], keep: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; when the block succeeds, its content
    replaces ``target`` as a whole. A reader sees the old folder or the new one, never a mix.

    ``keep(name)``: files of the old folder for which it is true are carried into the new one
    (hard links, else copies) unless the new one has a file of that name, e.g. the exports and
    the user's own files in a bundle folder. On any exception the temporary folder is removed
    and ``target`` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(target)
    tmp = temp_name(target)
    tmp.mkdir()
    try:
        yield tmp
        if keep is not None and target.is_dir():
            for entry in target.iterdir():
                if entry.is_file() and not entry.is_symlink() and keep(entry.name) and not (tmp / entry.name).exists():
                    try:
                        os.link(entry, tmp / entry.name)
                    except OSError:
                        shutil.copy2(entry, tmp / entry.name)
        for entry in tmp.iterdir():
            if entry.is_file():
                _fsync(entry)
        _swap_in(tmp, target)
    except (OSError, RuntimeError) as exc:
        if not (is_disk_full(exc) or _nearly_full(target.parent)):
            raise
        raise CyclekitError(
            f"cannot write {target}: no space left on device; "
            + ("the previous version is intact" if target.exists() else "nothing was written")
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, target: Path) -> None:
    """``new`` becomes ``target``: the old one aside (under a fixed name), the new one in, the old
    one removed. A kill between the renames is undone by `recover_folder`."""
    old = _old_name(target)
    if target.exists():
        os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


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


def refuse_existing(path: str | os.PathLike[str], overwrite: bool) -> None:
    """A command that writes one file: one that is already there (a link included) is replaced only
    with --overwrite. Checked once the arguments are known to be good, before any work."""
    if not overwrite and os.path.lexists(path):
        raise CyclekitError(f"{path} already exists; pass --overwrite to replace it, or choose another -o file")


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
