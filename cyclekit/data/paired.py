"""Aligned image pairs for paired translation (Pix2Pix), in the two common layouts.

``folders``: ``root/{split}A`` and ``root/{split}B``, paired by file name. A file's pairing key is
its stem without its domain's suffix (``pair_suffixes``, default ``("_A", "_B")``), so
``trainA/100_A.jpg`` pairs with ``trainB/100_B.jpg`` and ``testA/1.jpg`` with ``testB/1.jpg``; the
extension may differ. ``side_by_side``: the original pix2pix format, ``root/{split}/*.jpg`` each
holding A in its left half and B in its right half (the reference's ``AlignedDataset``).

A file without a partner is named in a warning and left out (``strict``: the run stops). Both
images of a pair get the same resize, crop and flip (`Transform.pair`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cyclekit.data.folders import _rng, derive_seed, scan_images
from cyclekit.data.images import IMAGE_EXTENSIONS, list_images, load_image
from cyclekit.data.transforms import Transform
from cyclekit.errors import DataError

logger = logging.getLogger(__name__)

LAYOUTS = ("auto", "folders", "side_by_side")


def pair_key(path: Path, suffix: str) -> str:
    """The name a file is paired by: its stem without ``suffix`` at the end (if it has it)."""
    stem = path.stem
    return stem[: -len(suffix)] if suffix and stem.endswith(suffix) and len(stem) > len(suffix) else stem


def pair_files(
    dir_a: Path, dir_b: Path, suffixes: Sequence[str] = ("_A", "_B"), strict: bool = False
) -> list[tuple[Path, Path]]:
    """Match the images of ``dir_a`` and ``dir_b`` by `pair_key`; returns (A, B) pairs sorted by A.

    Unmatched files are named in warnings (``strict``: DataError naming the first one). Two files
    of one folder with the same key are an error: the pairing would be ambiguous.
    """
    keyed: list[dict[str, Path]] = []
    for folder, suffix in zip((dir_a, dir_b), suffixes, strict=True):
        files = list_images(folder)
        if not files:
            raise DataError(f"no images found in {folder} (looked for {', '.join(IMAGE_EXTENSIONS)})")
        by_key: dict[str, Path] = {}
        for path in files:
            key = pair_key(path, suffix)
            if key in by_key:
                raise DataError(
                    f"{by_key[key].name} and {path.name} in {folder} have the same pairing key {key!r}; "
                    "rename one (pairs are matched by file name)"
                )
            by_key[key] = path
        keyed.append(by_key)
    a, b = keyed
    pairs = [(a[k], b[k]) for k in sorted(a, key=lambda k: str(a[k])) if k in b]
    lonely = [a[k] for k in a if k not in b] + [b[k] for k in b if k not in a]
    if lonely:
        rule = f"stem without {suffixes[0]!r} / {suffixes[1]!r}"
        if strict or not pairs:
            other = dir_b if lonely[0].parent == dir_a else dir_a
            raise DataError(
                f"{lonely[0]} has no partner in {other} (pairs match by file name: {rule}; "
                f"{len(lonely)} unpaired file(s), {len(pairs)} pair(s))"
            )
        for path in lonely:
            logger.warning("no partner for %s; left out", path)
        logger.warning("left out %d unpaired file(s) of %s and %s (matched by %s)", len(lonely), dir_a, dir_b, rule)
    return pairs


def detect_layout(root: Path, split: str, layout: str = "auto") -> str:
    """``folders`` or ``side_by_side`` for ``root``'s ``split``; DataError naming both layouts if neither."""
    if layout not in LAYOUTS:
        raise DataError(f"unknown paired layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise DataError(f"dataset folder {'is not a folder' if root.exists() else 'not found'}: {root}")
    has_folders = (root / f"{split}A").is_dir() and (root / f"{split}B").is_dir()
    has_ab = (root / split).is_dir()
    if layout == "folders" and not has_folders:
        raise DataError(f"{root} has no {split}A/ and {split}B/ folders (data.layout is folders)")
    if layout == "side_by_side" and not has_ab:
        raise DataError(f"{root} has no {split}/ folder of A|B images (data.layout is side_by_side)")
    if layout != "auto":
        return layout
    if has_folders:
        return "folders"
    if has_ab:
        return "side_by_side"
    raise DataError(
        f"{root} holds no paired data: expected {split}A/ + {split}B/ (paired by file name) "
        f"or {split}/ (A|B side by side)"
    )


def split_side_by_side(img: Image.Image, path: Path | str = "") -> tuple[Image.Image, Image.Image]:
    """An A|B image -> (A, B): the left and right halves (as the reference's AlignedDataset)."""
    w, h = img.size
    if w < 2:
        raise DataError(f"{path}: {w}x{h} is too narrow to hold A and B side by side")
    half = w // 2
    return img.crop((0, 0, half, h)), img.crop((half, 0, 2 * half, h))


def paired_test_split(root: Path, layout: str = "auto") -> str | None:
    """The split that holds test pairs: test, then val; None when there is none."""
    for split in ("test", "val"):
        try:
            detect_layout(root, split, layout)
            return split
        except DataError:
            continue
    return None


class PairedImages(Dataset):
    """Aligned (A, B) pairs of one split, in either layout.

    Items are ``(index, sample_seed)`` from :meth:`epoch_plan`; each is a dict with tensors ``A``
    and ``B`` (the same crop and flip) and their source paths.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: Transform | None = None,
        *,
        channels: int = 3,
        layout: str = "auto",
        suffixes: Sequence[str] = ("_A", "_B"),
        strict: bool = False,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.channels = channels
        self.seed = int(seed)
        self.layout = detect_layout(self.root, split, layout)
        if self.layout == "folders":
            pairs = pair_files(self.root / f"{split}A", self.root / f"{split}B", suffixes, strict)
        else:
            folder = self.root / split
            files = list_images(folder)
            if not files:
                raise DataError(f"no images found in {folder} (looked for {', '.join(IMAGE_EXTENSIONS)})")
            pairs = [(f, f) for f in files]
        unique = sorted({p for pair in pairs for p in pair})
        side_by_side = self.layout == "side_by_side"
        good, bad = scan_images(unique, strict=strict, where=f"{self.root} ({split})", side_by_side=side_by_side)
        readable = set(good)
        self.pairs = [(a, b) for a, b in pairs if a in readable and b in readable]
        if not self.pairs:
            first, reason = bad[0] if bad else (self.root, "no pairs")
            raise DataError(f"no readable pairs in {self.root} ({split}); e.g. {first}: {reason}")
        self.skipped: list[tuple[Path, str]] = bad

    def __len__(self) -> int:
        return len(self.pairs)

    def summary(self) -> str:
        return f"{self.root}: {len(self)} {self.split} pairs ({self.layout})"

    def epoch_plan(self, epoch: int) -> list[tuple[int, int]]:
        """[(index, sample_seed)] in a shuffled order derived only from (seed, epoch)."""
        rng = _rng(self.seed, epoch)
        order = rng.permutation(len(self.pairs))
        seeds = rng.integers(0, 2**63, size=len(self.pairs), dtype=np.int64)
        return [(int(i), int(s)) for i, s in zip(order, seeds, strict=True)]

    def load_pair(self, index: int) -> tuple[Image.Image, Image.Image]:
        """The decoded (A, B) images of pair ``index``, before any transform."""
        path_a, path_b = self.pairs[index]
        if self.layout == "side_by_side":
            return split_side_by_side(load_image(path_a, self.channels), path_a)
        return load_image(path_a, self.channels), load_image(path_b, self.channels)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(item, (tuple, list)):
            index, seed = int(item[0]), int(item[1])
        else:
            index, seed = int(item), derive_seed(self.seed, index)
        img_a, img_b = self.load_pair(index)
        if self.transform is None:
            from cyclekit.data.images import image_to_tensor

            a, b = image_to_tensor(img_a), image_to_tensor(img_b)
        else:
            a, b = self.transform.pair(img_a, img_b, seed)
        path_a, path_b = self.pairs[index]
        return {"A": a, "B": b, "A_path": str(path_a), "B_path": str(path_b)}

    def stack(self, indices: Sequence[int], transform: Transform) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs ``indices`` through ``transform`` (e.g. the eval transform), stacked as (A, B)."""
        out = [transform.pair(*self.load_pair(i)) for i in indices]
        return torch.stack([a for a, _ in out]), torch.stack([b for _, b in out])
