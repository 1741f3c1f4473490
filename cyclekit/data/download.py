"""Datasets on disk: fetch a catalogue dataset into the cache (through `cyclekit.fetch`), find a
dataset already there or in the folder a user named, and read MNIST's idx files.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import zlib
from pathlib import Path

import numpy as np

from cyclekit.data.catalogue import CATALOGUE, DatasetInfo, RemoteFile, default_cache_dir, get_dataset
from cyclekit.errors import DataError
from cyclekit.fetch import (
    DownloadError,
    ProgressFn,
    archive_kind,
    download_file,
    safe_extract_tar,
    safe_extract_zip,
)
from cyclekit.fetch import (
    reason as _reason,
)

logger = logging.getLogger(__name__)

__all__ = ["DownloadError", "download_file", "safe_extract_tar", "safe_extract_zip", "archive_kind"]


# ---------------------------------------------------------------------------------------------
# Datasets


def _is_present(folder: Path, info: DatasetInfo | None) -> bool:
    if info is not None and info.kind == "mnist":
        return all(_has_file(folder, f) for f in info.files)
    options = (info.splits, *info.alt_splits) if info is not None else (("trainA", "trainB"),)
    return folder.is_dir() and any(all((folder / s).is_dir() for s in splits) for splits in options)


def describe_folder(folder: Path, limit: int = 5) -> str:
    """What a folder holds, for messages: "holds photos/, labels/ and notes.txt", "is empty",
    "does not exist"."""
    if not folder.exists():
        return "does not exist"
    if not folder.is_dir():
        return "is a file, not a folder"
    try:
        entries = sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not entries:
        return "is empty"
    names = [p.name + ("/" if p.is_dir() else "") for p in entries[:limit]]
    more = f" and {len(entries) - limit} more" if len(entries) > limit else ""
    return "holds " + ", ".join(names) + more


def _needs(info: DatasetInfo) -> str:
    if info.kind == "mnist":
        return "its " + ", ".join(f.filename for f in info.files) + " files"

    def names(splits: tuple[str, ...]) -> str:
        return " and ".join(f"{s}/" for s in splits) + (" folders" if len(splits) > 1 else " folder")

    alternatives = "".join(f" (or {names(alt)})" for alt in info.alt_splits)
    return f"its {names(info.splits)}{alternatives}"


def is_cached(name: str, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether catalogue dataset ``name`` is complete in the cache."""
    info = get_dataset(name)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return _is_present(cache / info.name, info)


def _locate_root(folder: Path, info: DatasetInfo) -> Path | None:
    """The extracted folder holding the splits: ``folder`` itself or one level below."""
    if _is_present(folder, info):
        return folder
    preferred = folder / info.name
    if _is_present(preferred, info):
        return preferred
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))]
    found = [p for p in subdirs if _is_present(p, info)]
    return found[0] if len(found) == 1 else None


def _has_file(folder: Path, remote: RemoteFile) -> bool:
    # Accept an already-decompressed copy too (people often gunzip MNIST by hand).
    return (folder / remote.filename).is_file() or (folder / remote.filename.removesuffix(".gz")).is_file()


def _fetch_mnist(info: DatasetInfo, folder: Path, progress: ProgressFn | None) -> Path:
    for remote in info.files:
        if _has_file(folder, remote):
            continue
        reasons = []
        for url in remote.urls:
            try:
                download_file(
                    url,
                    folder / remote.filename,
                    md5=remote.md5,
                    sha256=remote.sha256,
                    progress=progress,
                    kind="gzip" if remote.filename.endswith(".gz") else None,
                )
                break
            except DownloadError as exc:
                logger.info("mirror failed: %s", exc)  # the final error lists every mirror
                reasons.append(f"{url}: {exc.reason}")
        else:
            raise DataError(
                f"could not download {remote.filename} ({'; '.join(reasons)}); put {_needs(info)} in {folder}"
            )
    return folder


def fetch_dataset(
    name: str, cache_dir: str | os.PathLike[str] | None = None, progress: ProgressFn | None = None
) -> Path:
    """Return the cached copy of catalogue dataset ``name``, downloading and extracting it once.

    For CycleGAN datasets the returned folder contains ``trainA``/``trainB`` (etc.); for MNIST
    it contains the four idx files.
    """
    info = get_dataset(name)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / info.name
    if _is_present(final, info):
        return final
    if info.kind == "mnist":
        return _fetch_mnist(info, final, progress)
    if not info.downloadable or info.url is None:
        raise DataError(
            f"{name} cannot be downloaded automatically: {info.note}; "
            f"put {_needs(info)} in {final} or pass --data-root DIR"
        )
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise DataError(
            f"{final} exists but does not contain {_needs(info)}; complete it, or remove it to download {name} again"
        )
    suffix = ".tar.gz" if info.url.endswith((".tar.gz", ".tgz")) else ".zip"
    zip_path = cache / f"{info.name}{suffix}"
    fetched_now = not zip_path.exists()
    try:
        download_file(
            info.url, zip_path, sha256=info.sha256, md5=info.md5, progress=progress, kind=archive_kind(info.url)
        )
    except DownloadError as exc:
        raise DataError(
            f"could not download {name} from {info.url} ({exc.reason}); "
            f"put {_needs(info)} in {final} or pass --data-root DIR"
        ) from exc
    staging = cache / f".{info.name}.unzipped"
    if staging.exists():
        shutil.rmtree(staging)  # left over from an interrupted earlier fetch
    try:
        (safe_extract_tar if suffix == ".tar.gz" else safe_extract_zip)(zip_path, staging)
    except DataError as exc:
        # A complete download that does not extract (truncated, damaged, or refused) must not stay
        # in the cache, where it would block every later download: delete the one fetched now;
        # one that was already there (perhaps put there by hand) is named, never deleted.
        if fetched_now:
            zip_path.unlink(missing_ok=True)
            raise DataError(f"{exc}; the downloaded file was deleted, so the next try downloads it again") from None
        raise DataError(f"{exc}; delete {zip_path} to download it again") from None
    try:
        root = _locate_root(staging, info)
        if root is None:
            raise DataError(f"{zip_path} (from {info.url}) does not contain {_needs(info)}")
        if final.exists():
            final.rmdir()
        os.replace(root, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    zip_path.unlink(missing_ok=True)
    logger.info("dataset %s ready in %s", name, final)
    return final


def find_dataset(
    name: str,
    data_root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Path:
    """Locate dataset ``name``: ``data_root`` (itself or ``data_root/name``), then the cache,
    then (catalogue datasets, ``download=True``) download it. Returns the dataset folder.
    """
    info = CATALOGUE.get(name)
    looked: list[Path] = []
    if data_root is not None:
        # A folder the user names is used as given, or refused: never swapped for a cached copy.
        data_root = Path(data_root)
        for candidate in (data_root, data_root / name):
            if _is_present(candidate, info):
                return candidate
        expected = _needs(info) if info is not None else "its trainA/ and trainB/ folders"
        raise DataError(
            f"{data_root} is not a {name} dataset folder: it {describe_folder(data_root)}; expected "
            f"{expected.removeprefix('its ')} in it (or in {data_root / name})"
        )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache / name
    if _is_present(cached, info):
        return cached
    looked.append(cached)
    where = ", ".join(str(p) for p in looked)
    if info is None:
        known = ", ".join(sorted(CATALOGUE))
        raise DataError(
            f"dataset {name!r} not found (looked in {where}) and it is not a downloadable "
            f"dataset (known: {known}); pass --data-root DIR with trainA/ and trainB/ folders"
        )
    if not download:
        raise DataError(
            f"dataset {name} not found (looked in {where}); put {_needs(info)} in {cached} or pass --data-root DIR"
        )
    return fetch_dataset(name, cache)


# ---------------------------------------------------------------------------------------------
# MNIST

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into a numpy array."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {_reason(exc)}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"cannot read {path}: not an IDX file (bad magic number)")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"cannot read {path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(shape)) if shape else 1
    if len(data) - header != count * dtype.itemsize:
        raise DataError(
            f"cannot read {path}: IDX data has {len(data) - header} bytes, "
            f"expected {count * dtype.itemsize} for shape {shape}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def load_mnist(
    cache_dir: str | os.PathLike[str] | None = None, split: str = "train", download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` ("train" or "test") as (uint8 images N x 28 x 28, uint8 labels N).

    Files are looked up in ``<cache_dir>/mnist`` (gzipped or not) and downloaded there, with MD5
    verification, if missing.
    """
    if split not in ("train", "test"):
        raise DataError(f"unknown MNIST split {split!r}; use 'train' or 'test'")
    folder = find_dataset("mnist", None, cache_dir, download=download)
    prefix = "train" if split == "train" else "t10k"

    def _read(stem: str) -> np.ndarray:
        gz = folder / f"{prefix}-{stem}.gz"
        return read_idx(gz if gz.is_file() else folder / f"{prefix}-{stem}")

    images, labels = _read("images-idx3-ubyte"), _read("labels-idx1-ubyte")
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"MNIST files in {folder} do not match: images {images.shape}, labels {labels.shape}")
    return images.astype(np.uint8, copy=False), labels.astype(np.uint8, copy=False)
