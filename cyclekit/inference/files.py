"""Files in, files out: what `cyclekit translate` does, minus printing.

Expands files, folders and globs into jobs, checks the output folder, and translates in batches;
a file that cannot be read or written is reported and skipped, the others are still done.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from cyclekit.atomic import atomic_path, check_output_folder
from cyclekit.choices import GRAY_MODES
from cyclekit.errors import CyclekitError
from cyclekit.inference.translator import Translator

logger = logging.getLogger(__name__)
# An image whose shorter side is more than this many times the training scale gets a warning.
FAR_LARGER = 2


def find_default_model(runs: Path = Path("runs")) -> Path:
    """The run to use when no model is given: the only run in ``runs`` that has a bundle."""
    candidates = []
    if runs.is_dir():
        candidates = [d for d in runs.iterdir() if (d / "bundle" / "config.json").is_file()]
    candidates.sort(key=lambda d: (d / "bundle" / "config.json").stat().st_mtime, reverse=True)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise CyclekitError(
            f"no --model given and no run with a bundle in {runs}/; pass --model RUN_DIR, BUNDLE_DIR or FILE.onnx"
        )
    names = ", ".join(str(d) for d in candidates)
    raise CyclekitError(
        f"no --model given and {len(candidates)} runs have a bundle (newest first): {names}; pick one with --model"
    )


@dataclass
class InputSet:
    """Files to translate, each with the output path relative to the output folder."""

    jobs: list[tuple[Path, Path]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # inputs that named nothing usable


def collect_inputs(inputs: Sequence[str], recursive: bool = False) -> InputSet:
    """Expand files, folders and glob patterns into (source, relative output PNG) pairs.

    Folder inputs keep their sub-folder structure; files and glob matches are named after their
    stem. Globs are expanded here too, for shells (and Windows) that pass them through.
    Two inputs that would be written to the same output are an error.
    """
    from cyclekit.data.images import is_image_file, list_images

    result = InputSet()
    seen: dict[Path, Path] = {}  # resolved source -> itself, to skip repeats
    targets: dict[Path, Path] = {}  # relative output -> source

    def add(src: Path, rel: Path) -> None:
        key = src.resolve()
        if key in seen:
            return
        seen[key] = src
        if rel in targets:
            raise CyclekitError(f"{targets[rel]} and {src} would both be written to {rel}; translate them separately")
        targets[rel] = src
        result.jobs.append((src, rel))

    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            images = list_images(path, recursive=recursive)
            if not images:
                result.problems.append(f"{path}: no images found" + ("" if recursive else " (use --recursive?)"))
            for img in images:
                add(img, img.relative_to(path).with_suffix(".png"))
        elif path.exists():
            add(path, Path(path.stem + ".png"))
        elif any(c in raw for c in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(raw, recursive=recursive))]
            files = [m for m in matches if m.is_file() and is_image_file(m)]
            if not files:
                result.problems.append(f"{raw}: no image files match")
            for m in files:
                add(m, Path(m.stem + ".png"))
        else:
            result.problems.append(f"{raw}: no such file or folder")
    return result


def check_output_dir(out_dir: Path, jobs: Sequence[tuple[Path, Path]], overwrite: bool = False) -> None:
    """Create ``out_dir`` and make sure it is writable, that no output would overwrite an input,
    and (unless ``overwrite``) that no output would replace a file that is already there."""
    sources = {src.resolve() for src, _ in jobs}
    for src, rel in jobs:
        if (out_dir / rel).resolve() in sources:
            raise CyclekitError(f"output {out_dir / rel} would overwrite the input {src}; choose another -o folder")
    if not overwrite:
        existing = [out_dir / rel for _, rel in jobs if (out_dir / rel).exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise CyclekitError(
                f"{existing[0]}{more} already exists; pass --overwrite to replace it, or choose another -o folder"
            )
    check_output_folder(out_dir)
    try:
        probe = out_dir / f".cyclekit-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CyclekitError(f"cannot write to output folder {out_dir}: {exc.strerror or exc}") from None


def load_for_translation(path: Path) -> Image.Image:
    """Decode an image file as "RGB"/"L" (grey files stay grey) with alpha attached, EXIF applied."""
    from cyclekit.data.images import load_image_with_alpha

    # The header's mode tells grey from colour without decoding; load_image_with_alpha always
    # converts to the channel count it is given.
    try:
        with Image.open(path) as probe:
            gray = probe.mode in GRAY_MODES
    except Exception:  # undecodable: let load_image_with_alpha raise its DataError naming the file
        gray = False
    colour, alpha = load_image_with_alpha(path, channels=1 if gray else 3)
    if alpha is not None:
        colour = colour.copy()
        colour.putalpha(alpha)
    return colour


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    """``left | right`` in ``right``'s mode."""
    canvas = Image.new(right.mode, (left.width + right.width, max(left.height, right.height)))
    canvas.paste(left.convert(right.mode), (0, 0))
    canvas.paste(right, (left.width, 0))
    return canvas


@dataclass
class TranslateSummary:
    """What `translate_files` did."""

    written: list[Path]
    failed: list[tuple[Path, str]]
    seconds: float

    @property
    def images_per_second(self) -> float:
        return len(self.written) / self.seconds if self.seconds > 0 else 0.0


def _save_png(img: Image.Image, path: Path) -> None:
    """Write via a temporary name, so an interrupted run never leaves a truncated PNG."""
    with atomic_path(path, fsync=False) as tmp:
        img.save(tmp, format="PNG")


def translate_files(
    translator: Translator,
    jobs: Sequence[tuple[Path, Path]],
    out_dir: Path,
    to: str | None = None,
    *,
    batch_size: int = 4,
    side_by_side_output: bool = False,
    tile: int | None = None,
    overlap: int = 64,
    on_error: Callable[[Path, str], None] | None = None,
    at_train_scale: bool = False,
) -> TranslateSummary:
    """Translate every (source, relative output) job into ``out_dir`` as PNG.

    A file that cannot be read, translated or written is reported through ``on_error`` and
    skipped; the others are still written. ``at_train_scale``: translate each image at the scale
    the model was trained at (see `Translator.__call__`'s ``scale``) and resize the result back;
    otherwise images far larger than that scale get one warning saying so.
    """
    from cyclekit.errors import DataError

    start = time.perf_counter()
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []
    scale = translator.train_scale if at_train_scale else None
    warned = False

    def fail(src: Path, message: str) -> None:
        failed.append((src, message))
        if on_error is not None:
            on_error(src, message)

    for first in range(0, len(jobs), batch_size):
        loaded: list[tuple[Path, Path, Image.Image]] = []
        for src, rel in jobs[first : first + batch_size]:
            try:
                loaded.append((src, rel, load_for_translation(src)))
            except DataError as exc:
                fail(src, str(exc))
        if not loaded:
            continue
        if not warned and not at_train_scale and translator.train_scale:
            big = next((img for _, _, img in loaded if min(img.size) > FAR_LARGER * translator.train_scale), None)
            if big is not None:
                warned = True
                logger.warning(
                    "images like %s (%dx%d) are far larger than the %d px the model was trained at: it sees "
                    "details at a scale it never learned; --train-scale translates at the training scale",
                    next(src for src, _, img in loaded if img is big),
                    *big.size,
                    translator.train_scale,
                )
        try:
            outputs = translator.translate_many(
                [img for _, _, img in loaded], to, batch_size=batch_size, tile=tile, overlap=overlap, scale=scale
            )
        except CyclekitError as exc:
            if len(loaded) == 1 or tile is not None:
                for src, _, _ in loaded:
                    fail(src, f"{src}: {exc}")
                continue
            # Retry one by one so a single troublesome image does not sink its batch-mates.
            outputs = []
            for src, _, img in loaded:
                try:
                    outputs.append(translator(img, to, scale=scale))
                except CyclekitError as exc1:
                    fail(src, f"{src}: {exc1}")
                    outputs.append(None)
        for (src, rel, img), out in zip(loaded, outputs, strict=True):
            if out is None:
                continue
            dst = out_dir / rel
            try:
                _save_png(side_by_side(img, out) if side_by_side_output else out, dst)
            except OSError as exc:
                fail(src, f"cannot write {dst}: {exc.strerror or exc}")
                continue
            written.append(dst)
    return TranslateSummary(written, failed, time.perf_counter() - start)
