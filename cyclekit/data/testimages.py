"""The test images a translation is scored on (`cyclekit eval`, `train.eval_every`), read once for
every direction at the evaluation size: what the translation sources' `Source.test_images` gives.

The test files pair up when they do by the paired source's own rules, read by its own dataset
(`cyclekit.data.paired.PairedImages`: ``testA/1.jpg <-> testB/1.jpg``, ``100_A.jpg <-> 100_B.jpg``,
or A|B side by side in ``test/``), whatever source trained the run: the demo's unpaired training
data has paired test images. Otherwise they are the two folders ``testA/`` and ``testB/``. An
unreadable file is named in a warning and left out (``skipped``); the others are scored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cyclekit.data.images import list_images, load_image
from cyclekit.data.paired import PairedImages, detect_layout, pair_files
from cyclekit.errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class EvalImages:
    """The test images of both domains (see the module docstring)."""

    images: dict[str, list[torch.Tensor]]  # "A", "B"; aligned when paired
    paired: bool
    side_by_side: bool = False
    skipped: list[str] = field(default_factory=list)  # unreadable files, left out of the scores


def read_test_images(
    root: Path,
    transform: Callable[..., torch.Tensor],
    channels: int,
    max_images: int | None = None,
    layout: str = "auto",
    suffixes: Sequence[str] = ("_A", "_B"),
) -> EvalImages:
    """The test images in ``root`` through ``transform`` (the evaluation transform), at most
    ``max_images`` a domain; ``layout`` and ``suffixes``: how test pairs are found (the paired
    source's options)."""
    pairs = _try_pairs(root, channels, layout, suffixes)
    if pairs is not None:
        images: dict[str, list[torch.Tensor]] = {"A": [], "B": []}
        skipped = [str(path) for path, _ in pairs.skipped]
        for i in range(len(pairs)):
            if max_images is not None and len(images["A"]) >= max_images:
                break
            try:
                a, b = pairs.stack([i], transform)  # type: ignore[arg-type]
            except DataError as exc:  # decodes in the quick scan, fails in full: score the others
                logger.warning("skipping the test pair of %s: %s", pairs.pairs[i][0], exc)
                skipped.append(str(pairs.pairs[i][0]))
                continue
            images["A"].append(a[0])
            images["B"].append(b[0])
        if not images["A"]:
            raise DataError(f"none of the test pairs in {root} can be read")
        return EvalImages(images, True, pairs.layout == "side_by_side", skipped)
    folders = {side: root / f"test{side}" for side in "AB"}
    for folder in folders.values():
        if not folder.is_dir():
            raise DataError(
                f"no test split to evaluate on: {folder} not found (pass --data DIR with testA/ and testB/)"
            )
    skipped = []
    images = {side: _read_folder(f, channels, transform, max_images, skipped) for side, f in folders.items()}
    return EvalImages(images, False, skipped=skipped)


def _try_pairs(root: Path, channels: int, layout: str, suffixes: Sequence[str]) -> PairedImages | None:
    """The test pairs, if the test files pair up by the paired source's rules (every one of them by
    name; an unreadable file is left out with a warning naming it, and the other pairs are scored)."""
    try:
        layout = detect_layout(root, "test", layout)
        if layout == "folders":
            pair_files(root / "testA", root / "testB", suffixes, strict=True)
    except DataError:
        return None
    try:
        pairs = PairedImages(root, "test", layout=layout, channels=channels, suffixes=suffixes, strict=False)
    except DataError as exc:
        raise DataError(f"no readable test pairs: {exc}") from None
    return pairs if len(pairs) else None


def _read_folder(
    folder: Path, channels: int, transform: Callable[..., torch.Tensor], limit: int | None, skipped: list[str]
) -> list[torch.Tensor]:
    files = list_images(folder)
    if not files:
        raise DataError(f"no images found in {folder}")
    out = []
    for path in files:
        try:
            out.append(transform(load_image(path, channels), 0))
        except DataError as exc:
            logger.warning("skipping %s", exc)
            skipped.append(str(path))
            continue
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise DataError(f"none of the images in {folder} can be read")
    return out


__all__ = ["EvalImages", "read_test_images"]
