"""Datasets over folders of images: one domain (:class:`ImageFolder`) or two unpaired domains
(:class:`UnpairedFolders`, the CycleGAN ``trainA``/``trainB`` layout).

Sampling order and augmentation seeds come from an explicit per-epoch *plan* derived from
``(seed, epoch)`` with local generators, never the global RNG. Loading a slice of the plan
(`cyclekit.train.batches`) gives batches that do not depend on the number of loader workers and
that a resumed run can continue mid-epoch, sample for sample.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cyclekit.data.images import IMAGE_EXTENSIONS, image_to_tensor, list_images, load_image, probe_image
from cyclekit.errors import DataError

logger = logging.getLogger(__name__)

TransformFn = Callable[[Image.Image, int], torch.Tensor]

_U64 = 2**64


def derive_seed(*keys: int) -> int:
    """Mix integers (e.g. ``seed, epoch, index``) into one well-spread 63-bit seed."""
    seq = np.random.SeedSequence([int(k) % _U64 for k in keys])
    hi, lo = seq.generate_state(2, dtype=np.uint32)
    return ((int(hi) << 32) | int(lo)) & (2**63 - 1)


def _rng(*keys: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) % _U64 for k in keys])))


def _folder_label(files: Sequence[Path]) -> str:
    parents = {p.parent for p in files}
    return str(parents.pop()) if len(parents) == 1 else "the given files"


def scan_images(
    files: Sequence[str | os.PathLike[str]],
    strict: bool = False,
    where: str | None = None,
    side_by_side: bool = False,
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Probe every file; return (readable files, [(unreadable file, reason), ...]).

    ``strict=True`` raises DataError on the first bad file. Otherwise each bad file is logged as
    a warning, followed by a summary ("skipped 3 unreadable files in trainA"). ``where`` names
    the folder in the summary (default: the files' common parent). ``side_by_side``: an image
    too narrow to hold A|B is a bad file too (see `probe_image`).
    """
    paths = [Path(f) for f in files]

    def probe(path: Path) -> str | None:
        return probe_image(path, side_by_side=side_by_side)

    # PIL releases the GIL while decoding, so threads overlap the reads and the draft decodes.
    workers = min(8, os.cpu_count() or 1, max(1, len(paths) // 64))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            reasons = list(pool.map(probe, paths))
    else:
        reasons = [probe(p) for p in paths]
    good: list[Path] = []
    bad: list[tuple[Path, str]] = []
    for path, reason in zip(paths, reasons, strict=True):
        if reason is None:
            good.append(path)
            continue
        if strict:
            raise DataError(f"unreadable image {path}: {reason}")
        bad.append((path, reason))
    # Warn only when something is really skipped: if nothing is readable the caller's error says so.
    if bad and good:
        for path, reason in bad:
            logger.warning("skipping unreadable image %s: %s", path, reason)
        label = where if where is not None else _folder_label(paths)
        noun = "file" if len(bad) == 1 else "files"
        logger.warning("skipped %d unreadable %s in %s", len(bad), noun, label)
    return good, bad


def _scan_folder(folder: Path, strict: bool, recursive: bool = False) -> tuple[list[Path], list[tuple[Path, str]]]:
    """List + probe one folder, with the "empty" and "all unreadable" errors."""
    files = list_images(folder, recursive=recursive)
    if not files:
        raise DataError(f"no images found in {folder} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    good, bad = scan_images(files, strict=strict, where=str(folder))
    if not good:
        first, reason = bad[0]
        raise DataError(f"none of the {len(bad)} images in {folder} can be read (e.g. {first.name}: {reason})")
    return good, bad


def _as_tensor(path: Path, channels: int, transform: TransformFn | None, seed: int) -> torch.Tensor:
    img = load_image(path, channels=channels)  # DataError naming the file if it fails now
    return transform(img, seed) if transform is not None else image_to_tensor(img)


class ImageFolder(Dataset):
    """One folder of images as a Dataset of ``{"image": (C,H,W) tensor in [-1, 1]}`` (e.g. for a DCGAN).

    ``ds[i]`` uses seed ``derive_seed(seed, epoch, i)`` (see :meth:`set_epoch`);
    ``ds[(i, sample_seed)]`` / :meth:`get` use an explicit seed, as produced by
    :meth:`epoch_plan`.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        transform: TransformFn | None = None,
        channels: int = 3,
        strict: bool = False,
        recursive: bool = False,
        seed: int = 0,
    ) -> None:
        self.folder = Path(folder)
        self.root = self.folder  # the folder read (the `cyclekit.data.protocol.Dataset` interface)
        self.transform = transform
        self.channels = channels
        self.seed = int(seed)
        self.epoch = 0
        self.paths, self.skipped = _scan_folder(self.folder, strict=strict, recursive=recursive)

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Change the seeds used by integer indexing (for a plain shuffled DataLoader)."""
        self.epoch = int(epoch)

    def get(self, index: int, seed: int) -> torch.Tensor:
        """The transformed image ``index`` with augmentation drawn from ``seed``."""
        return _as_tensor(self.paths[index], self.channels, self.transform, seed)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        if isinstance(item, (tuple, list)):
            index, seed = item
            return {"image": self.get(int(index), int(seed))}
        index = int(item)
        if index < 0:
            index += len(self.paths)
        return {"image": self.get(index, derive_seed(self.seed, self.epoch, index))}

    def summary(self) -> str:
        return f"{self.folder}: {len(self.paths):,} images"

    def epoch_plan(self, epoch: int) -> list[tuple[int, int]]:
        """[(index, sample_seed)] in a shuffled order derived only from (seed, epoch)."""
        rng = _rng(self.seed, epoch)
        order = rng.permutation(len(self.paths))
        seeds = rng.integers(0, 2**63, size=len(self.paths), dtype=np.int64)
        return [(int(i), int(s)) for i, s in zip(order, seeds, strict=True)]


class UnpairedFolders(Dataset):
    """The CycleGAN layout: ``root/{split}A`` and ``root/{split}B``, sampled without pairing.

    Items are ``(a_index, b_index, sample_seed)`` triples from :meth:`epoch_plan`; an integer
    index ``i`` means ``epoch_plan(self.epoch)[i]``. Each item is a dict with tensors ``A`` and
    ``B`` and their file paths ``A_path`` / ``B_path``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: TransformFn | None = None,
        channels: int = 3,
        strict: bool = False,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.channels = channels
        self.seed = int(seed)
        self.epoch = 0
        self._plan_cache: tuple[int, list[tuple[int, int, int]]] | None = None

        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "not found"
            raise DataError(f"dataset folder {what}: {self.root}")
        dir_a, dir_b = self.root / f"{split}A", self.root / f"{split}B"
        missing = [d.name for d in (dir_a, dir_b) if not d.is_dir()]
        if missing:
            raise DataError(f"dataset folder {self.root} has no {' or '.join(missing)} (expected {dir_a} and {dir_b})")
        self.dir_a, self.dir_b = dir_a, dir_b
        self.paths_a, bad_a = _scan_folder(dir_a, strict=strict)
        self.paths_b, bad_b = _scan_folder(dir_b, strict=strict)
        self.skipped: list[tuple[Path, str]] = bad_a + bad_b

    def __len__(self) -> int:
        # As in the reference, an epoch is max(|A|, |B|) samples.
        return max(len(self.paths_a), len(self.paths_b))

    def summary(self) -> str:
        a, b = len(self.paths_a), len(self.paths_b)
        return (
            f"{self.root}: {self.split}A {a} images, {self.split}B {b} images "
            f"(unpaired; an epoch draws {max(a, b)} of each)"
        )

    def set_epoch(self, epoch: int) -> None:
        """Select the plan used by integer indexing."""
        self.epoch = int(epoch)

    def epoch_plan(self, epoch: int) -> list[tuple[int, int, int]]:
        """[(a_index, b_index, sample_seed)] for one epoch, derived only from (seed, epoch).

        A is visited in a per-epoch shuffled order (wrapping when |A| < |B|); B is drawn
        uniformly at random, so no fixed A/B pairing is learned.
        """
        n_a, n_b = len(self.paths_a), len(self.paths_b)
        n = max(n_a, n_b)
        rng = _rng(self.seed, epoch)
        perm = rng.permutation(n_a)
        b_idx = rng.integers(0, n_b, size=n)
        seeds = rng.integers(0, 2**63, size=n, dtype=np.int64)
        return [(int(perm[i % n_a]), int(b_idx[i]), int(seeds[i])) for i in range(n)]

    def _plan_for(self, epoch: int) -> list[tuple[int, int, int]]:
        if self._plan_cache is None or self._plan_cache[0] != epoch:
            self._plan_cache = (epoch, self.epoch_plan(epoch))
        return self._plan_cache[1]

    def __getitem__(self, item: int | Sequence[int]) -> dict[str, Any]:
        if isinstance(item, (tuple, list)):
            a_index, b_index, sample_seed = (int(v) for v in item)
        else:
            a_index, b_index, sample_seed = self._plan_for(self.epoch)[int(item)]
        path_a, path_b = self.paths_a[a_index], self.paths_b[b_index]
        # Independent streams for the two domains: A's crop must not predict B's.
        return {
            "A": _as_tensor(path_a, self.channels, self.transform, derive_seed(sample_seed, 0)),
            "B": _as_tensor(path_b, self.channels, self.transform, derive_seed(sample_seed, 1)),
            "A_path": str(path_a),
            "B_path": str(path_b),
        }
