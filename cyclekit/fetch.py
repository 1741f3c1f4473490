"""Fetch files over HTTP(S) into a cache, and unpack archives safely: the part of downloading that
knows no catalogue (datasets, FID weights and pretrained models all come through it).

Only the standard library touches the network (urllib). Downloads go to ``<dest>.part`` and are
resumed with an HTTP Range request; the final file appears (atomically) only once complete and,
where a checksum is known, verified. Archive extraction refuses unsafe members and is atomic too,
so an interrupted fetch never leaves a half-written folder that later looks complete.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import posixpath
import re
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from cyclekit import __version__
from cyclekit.atomic import staged_folder
from cyclekit.errors import DataError

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int | None], None]

_CHUNK = 1 << 16
_NET_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)


class DownloadError(DataError):
    """A network failure (not a checksum mismatch); carries the URL and a short reason."""

    def __init__(self, url: str, dest: Path, reason: str) -> None:
        self.url, self.dest, self.reason = url, dest, reason
        super().__init__(f"could not download {url} ({reason}); download it manually and save it as {dest}")


def reason(exc: BaseException) -> str:
    """A short one-line reason for a network/file error."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}".strip()
    if isinstance(exc, urllib.error.URLError):
        inner = exc.reason
        if isinstance(inner, BaseException):
            return reason(inner)
        return " ".join(str(inner).split()) or "URLError"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _checksum_problem(path: Path, sha256: str | None, md5: str | None, sha512: str | None = None) -> str | None:
    """None if ``path`` matches the given checksums (hex digests), else "expected ..., got ..."."""
    for algorithm, expected in (("sha256", sha256), ("md5", md5), ("sha512", sha512)):
        if expected:
            got = _file_digest(path, algorithm)
            if got.lower() != expected.lower():
                return f"expected {algorithm} {expected.lower()}, got {got}"
    return None


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    md5: str | None = None,
    timeout: float = 30,
    progress: ProgressFn | None = None,
    kind: str | None = None,
    sha512: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (resumable, verified, atomic); returns ``dest``.

    ``kind`` ("zip", "gzip"): the file must start with that format's signature; anything else
    (say an HTML error page sent with status 200) is deleted and reported, never renamed into
    place, and an existing ``dest`` without it is replaced.

    An existing ``dest`` that matches the checksums (or any existing ``dest`` when none is
    given) is kept as is. Partial data stays in ``<dest>.part`` and is resumed next time with a
    Range request (a server that ignores Range makes it start over). A checksum mismatch deletes
    the partial file and raises DataError; network failures raise :class:`DownloadError`.
    ``progress(done_bytes, total_bytes_or_None)`` is called after each chunk.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if dest.is_file():
        if _checksum_problem(dest, sha256, md5, sha512) is None and _format_problem(dest, kind) is None:
            return dest
        logger.warning("existing %s is not the expected file; downloading it again", dest)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)

    for _attempt in range(3):
        offset = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": f"cyclekit/{__version__}", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https only)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                # The .part is already as long as (or longer than) the file: start over.
                part.unlink(missing_ok=True)
                continue
            raise DownloadError(url, dest, reason(exc)) from exc
        except _NET_ERRORS as exc:
            raise DownloadError(url, dest, reason(exc)) from exc

        with response:
            total: int | None
            mode = "wb"
            if offset and response.status == 206:
                match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                if match is None or int(match.group(1)) != offset:
                    # A range we did not ask for: cannot append safely, start over.
                    part.unlink(missing_ok=True)
                    continue
                mode = "ab"
                total = int(match.group(3)) if match.group(3) != "*" else None
            else:
                # 200 (server ignored Range, or a fresh download): the body is the whole file.
                offset = 0
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            done = offset
            with open(part, mode) as out:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except _NET_ERRORS as exc:
                        # Keep the .part: the next call resumes from here.
                        raise DownloadError(url, dest, reason(exc)) from exc
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            if total is not None and done < total:
                raise DownloadError(url, dest, f"connection closed after {done} of {total} bytes")
        break
    else:
        raise DownloadError(url, dest, "server keeps answering the resume request inconsistently")

    problem = _checksum_problem(part, sha256, md5, sha512)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise DataError(f"checksum mismatch for {url} ({problem}); the partial download was deleted")
    problem = _format_problem(part, kind)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise DownloadError(url, dest, f"the server sent {problem}, not a {kind} archive; nothing was kept")
    os.replace(part, dest)
    return dest


_SIGNATURES = {"zip": (b"PK\x03\x04", b"PK\x05\x06"), "gzip": (b"\x1f\x8b",)}


def _format_problem(path: Path, kind: str | None) -> str | None:
    """None if ``path`` starts like a ``kind`` file (or no kind is asked for), else what it looks like."""
    if kind is None:
        return None
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(_SIGNATURES[kind]):
        return None
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "an HTML page"
    return "an empty file" if not head else f"a file starting with {head[:8]!r}"


def archive_kind(url: str) -> str:
    return "gzip" if url.endswith((".tar.gz", ".tgz", ".gz")) else "zip"


_DRIVE = re.compile(r"^[A-Za-z]:")


def _unsafe_path(name: str) -> str | None:
    """Why an archive member's path must not be extracted, or None if it stays inside the target."""
    name = name.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        return "absolute path"
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        return "path escapes the target folder"
    if "\x00" in name:
        return "NUL in file name"
    return None


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member must not be extracted, or None if it is safe."""
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    return _unsafe_path(info.filename)


def _unsafe_tar_member(info: tarfile.TarInfo) -> str | None:
    """Why a tar member must not be extracted, or None if it is a safe file or folder."""
    if not (info.isfile() or info.isdir()):
        return "link or special file"  # symlinks, hard links, devices and fifos are never needed
    return _unsafe_path(info.name)


def _extract_all_or_nothing(
    archive: Path,
    target: Path,
    members: list[tuple[str, str | None]],
    needed: int,
    extract: Callable[[Path], None],
    errors: tuple[type[BaseException], ...],
) -> Path:
    """Refuse the archive if any member is unsafe ((name, reason) pairs) or the disk too full;
    else ``extract`` into a temporary folder beside ``target``, renamed into place when complete."""
    for name, why in members:
        if why is not None:
            raise DataError(f"refusing to extract {archive}: member {name!r} ({why})")
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if needed > free:
        raise DataError(
            f"cannot extract {archive}: needs {needed / 1e6:.0f} MB, only {free / 1e6:.0f} MB free in {target.parent}"
        )
    try:
        with staged_folder(target) as tmp:
            extract(tmp)
    except errors as exc:
        raise DataError(f"cannot extract {archive}: {reason(exc)}") from exc
    return target


def _refuse_non_empty(archive: Path, target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataError(f"cannot extract {archive}: {target} already exists and is not empty")


def safe_extract_zip(zip_path: str | os.PathLike[str], target_dir: str | os.PathLike[str]) -> Path:
    """Extract ``zip_path`` into ``target_dir`` (which must not exist or be empty), all or nothing.

    Members with absolute paths, drive letters, ``..`` escapes or symlinks make the whole
    archive refused (DataError, nothing written). Extraction happens in a temporary folder beside
    the target, renamed into place only when complete.
    """
    zip_path, target = Path(zip_path), Path(target_dir)
    _refuse_non_empty(zip_path, target)
    try:
        zf = zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise DataError(f"zip file not found: {zip_path}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"cannot open {zip_path}: not a valid zip file ({reason(exc)})") from exc
    with zf:
        infos = zf.infolist()
        return _extract_all_or_nothing(
            zip_path,
            target,
            [(i.filename, _unsafe_member(i)) for i in infos],
            sum(i.file_size for i in infos),
            zf.extractall,
            (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError),
        )


def safe_extract_tar(tar_path: str | os.PathLike[str], target_dir: str | os.PathLike[str]) -> Path:
    """Extract a .tar(.gz) into ``target_dir`` (must not exist or be empty), all or nothing.

    The same rules as `safe_extract_zip`: absolute paths, ``..`` escapes, links and special files
    make the whole archive refused before anything is written.
    """
    tar_path, target = Path(tar_path), Path(target_dir)
    _refuse_non_empty(tar_path, target)
    errors = (tarfile.TarError, OSError, EOFError, zlib.error)
    try:
        tf = tarfile.open(tar_path, "r:*")
    except FileNotFoundError:
        raise DataError(f"archive not found: {tar_path}") from None
    except errors as exc:
        raise DataError(f"cannot open {tar_path}: not a valid tar archive ({reason(exc)})") from exc
    with tf:
        try:
            infos = tf.getmembers()
        except errors as exc:
            raise DataError(f"cannot read {tar_path}: damaged archive ({reason(exc)})") from exc

        def extract(tmp: Path) -> None:
            # Member by member, as plain files and folders (links were refused above).
            for info in infos:
                dest = tmp / posixpath.normpath(info.name.replace("\\", "/"))
                if info.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(info)
                if src is not None:
                    with src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)

        return _extract_all_or_nothing(
            tar_path,
            target,
            [(i.name, _unsafe_tar_member(i)) for i in infos],
            sum(i.size for i in infos),
            extract,
            errors,
        )
