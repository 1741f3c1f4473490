"""``cyclekit data check DIR``: a quick health report of an image dataset folder.

Per folder: image count, non-image files, sizes, PIL modes, unreadable files and byte-identical
duplicates. Each file is read once; its bytes are hashed and decoded (JPEGs at reduced scale),
so a few thousand images take a few seconds.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from cyclekit.choices import GRAY_MODES
from cyclekit.data.images import DECODE_ERRORS, describe_error, is_image_file
from cyclekit.errors import DataError

# Same "grayscale" notion a user has in mind: no colour channels at all.


@dataclass
class FolderReport:
    """Statistics for one folder (non-recursive)."""

    folder: Path
    image_count: int = 0
    non_image_files: list[Path] = field(default_factory=list)
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[list[Path]] = field(default_factory=list)

    @property
    def non_image_count(self) -> int:
        return len(self.non_image_files)

    @property
    def readable_count(self) -> int:
        return self.image_count - len(self.unreadable)

    @property
    def grayscale_count(self) -> int:
        return sum(n for mode, n in self.modes.items() if mode in GRAY_MODES)

    @property
    def duplicate_count(self) -> int:
        """Files that are copies of an earlier file (group size - 1, summed)."""
        return sum(len(g) - 1 for g in self.duplicates)

    @property
    def min_size(self) -> tuple[int, int] | None:
        return min(self.sizes, key=lambda s: (s[0] * s[1], s)) if self.sizes else None

    @property
    def max_size(self) -> tuple[int, int] | None:
        return max(self.sizes, key=lambda s: (s[0] * s[1], s)) if self.sizes else None


@dataclass
class CheckReport:
    """Result of :func:`check_folder`: one section per folder, plus cross-folder duplicates."""

    root: Path
    folders: list[FolderReport]
    # Identical files found in more than one folder (e.g. a test image also in train).
    cross_duplicates: list[list[Path]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No unreadable files and at least one image."""
        return all(not f.unreadable for f in self.folders) and any(f.readable_count for f in self.folders)

    def blocking_problems(self) -> list[str]:
        """Problems of a dataset split pair (trainA/ + trainB/, testA/ + testB/): a side missing or
        without a readable image. Whether any source can train on the folder at all is `verdict`'s
        question; some unreadable files alone are not blocking: training skips them."""
        readable = {f.folder: f.readable_count for f in self.folders}
        problems = []
        for split in ("train", "test"):
            sides = [self.root / f"{split}{side}" for side in ("A", "B")]
            if not any(s.exists() for s in sides):
                continue
            for side in sides:
                if not side.is_dir():
                    problems.append(f"{side} is missing (a dataset needs both {sides[0].name}/ and {sides[1].name}/)")
                elif not readable.get(side):
                    problems.append(f"{side} holds no readable images")
        return problems

    def verdict(self, recipe_needs: Mapping[str, Sequence[Sequence[str]]] | None = None) -> list[str]:
        """What this folder can train: every registered data source is asked (`Source.probe`, the
        code its training reads the folder with) and each one that can read it is listed with the
        recipes that train on its batches (``recipe_needs``: recipe name -> its ``needs``); else
        why none can. Sets `usable`."""
        from cyclekit.config import satisfies
        from cyclekit.data.sources import SOURCES

        lines, reasons = [], []
        quiet = logging.getLogger("cyclekit")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # a probe's skipped-file warnings: the report above lists those files
        try:
            for kind, source in SOURCES.items():
                try:
                    found = source.probe(self.root)
                except (DataError, OSError) as exc:
                    reasons.append(f"{kind}: {exc}")
                    continue
                if found is None:
                    continue  # reads no folder
                names = [r for r, needs in (recipe_needs or {}).items() if satisfies(needs, source.batch_keys)]
                who = ", ".join(names) if names else "no recipe"
                lines.append(f"usable for {who} (data.kind {kind}): {found}")
        finally:
            quiet.setLevel(level)
        self.usable = bool(lines)
        unreadable = sum(len(f.unreadable) for f in self.folders)
        if lines and unreadable:
            lines.append(f"{unreadable} unreadable file(s), listed above, will be skipped by training")
        if not lines:
            lines.append(f"not usable: no data source can read {self.root}; each one's reason:")
            lines += [f"  {reason}" for reason in reasons]
        return lines

    usable: bool = True


@dataclass
class _FileInfo:
    path: Path
    digest: str
    size: tuple[int, int] | None = None
    mode: str | None = None
    error: str | None = None


def _inspect(path: Path) -> _FileInfo:
    """Read one file: sha256 of its bytes, header size/mode, and a (draft) decode check."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _FileInfo(path, "", error=describe_error(exc))
    info = _FileInfo(path, hashlib.sha256(data).hexdigest())
    if not data:
        info.error = "file is empty (0 bytes)"
        return info
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                info.size, info.mode = img.size, img.mode
                if img.format == "JPEG":
                    img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()
    except DECODE_ERRORS as exc:
        if "cannot identify image file" in str(exc):
            info.error = "not a recognised image format"
        else:
            info.error = describe_error(exc)
    return info


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _image_dirs(root: Path) -> list[Path]:
    """``root`` and every folder below it (hidden ones skipped) that directly holds images."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if any(is_image_file(f) and not f.startswith(".") for f in filenames):
            found.append(Path(dirpath))
    return sorted(found, key=lambda p: (p != root, p))


def _duplicate_groups(infos: list[_FileInfo]) -> list[list[Path]]:
    by_hash: dict[str, list[Path]] = defaultdict(list)
    for info in infos:
        if info.digest:
            by_hash[info.digest].append(info.path)
    return sorted((sorted(g) for g in by_hash.values() if len(g) > 1), key=lambda g: g[0])


def check_folder(root: str | os.PathLike[str]) -> CheckReport:
    """Inspect ``root``: its own images, and each folder below it that directly holds images.

    A CycleGAN dataset (``trainA``, ``trainB``, ``testA``, ``testB``) is reported per split; a
    folder of datasets (e.g. the cache) per ``<name>/<split>``.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"expected a folder but found a file: {root}")
    targets = _image_dirs(root) or [root]  # nothing anywhere: report the empty root itself

    files_by_folder = {folder: _files(folder) for folder in targets}
    all_images = [p for fs in files_by_folder.values() for p in fs if is_image_file(p.name)]
    workers = min(8, os.cpu_count() or 1, max(1, len(all_images) // 64))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            infos = dict(zip(all_images, pool.map(_inspect, all_images), strict=True))
    else:
        infos = {p: _inspect(p) for p in all_images}

    reports = []
    for folder, files in files_by_folder.items():
        rep = FolderReport(folder)
        folder_infos = []
        for path in files:
            if not is_image_file(path.name):
                rep.non_image_files.append(path)
                continue
            info = infos[path]
            folder_infos.append(info)
            rep.image_count += 1
            if info.error is not None:
                rep.unreadable.append((path, info.error))
            else:
                assert info.size is not None and info.mode is not None
                rep.sizes[info.size] += 1
                rep.modes[info.mode] += 1
        rep.duplicates = _duplicate_groups(folder_infos)
        reports.append(rep)

    cross = [g for g in _duplicate_groups(list(infos.values())) if len({p.parent for p in g}) > 1]
    return CheckReport(root=root, folders=reports, cross_duplicates=cross)


def _fmt_size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def format_report(report: CheckReport, max_items: int = 10) -> str:
    """Human-readable multi-line summary of a :class:`CheckReport`."""
    root = report.root
    lines = [f"dataset check: {root}"]
    for rep in report.folders:
        name = "." if rep.folder == root else _rel(rep.folder, root)
        lines.append("")
        lines.append(f"{name}/")
        lines.append(f"  images: {rep.image_count} ({rep.readable_count} readable)")
        if rep.non_image_files:
            shown = ", ".join(p.name for p in rep.non_image_files[:5])
            more = f", ... (+{rep.non_image_count - 5})" if rep.non_image_count > 5 else ""
            lines.append(f"  non-image files: {rep.non_image_count} ({shown}{more})")
        else:
            lines.append("  non-image files: 0")
        if rep.sizes:
            common = ", ".join(f"{_fmt_size(s)} x{n}" for s, n in rep.sizes.most_common(3))
            assert rep.min_size is not None and rep.max_size is not None
            lines.append(
                f"  sizes: {len(rep.sizes)} distinct, smallest {_fmt_size(rep.min_size)}, "
                f"largest {_fmt_size(rep.max_size)}; most common: {common}"
            )
        if rep.modes:
            modes = ", ".join(f"{m} {n}" for m, n in sorted(rep.modes.items(), key=lambda kv: -kv[1]))
            lines.append(f"  modes: {modes} (grayscale: {rep.grayscale_count})")
        if rep.unreadable:
            lines.append(f"  unreadable: {len(rep.unreadable)}")
            for path, reason in rep.unreadable[:max_items]:
                lines.append(f"    {_rel(path, root)}: {reason}")
            if len(rep.unreadable) > max_items:
                lines.append(f"    ... and {len(rep.unreadable) - max_items} more")
        else:
            lines.append("  unreadable: 0")
        if rep.duplicates:
            lines.append(
                f"  duplicates: {rep.duplicate_count} extra copies in {len(rep.duplicates)} "
                f"group{'s' if len(rep.duplicates) != 1 else ''}"
            )
            for group in rep.duplicates[:max_items]:
                lines.append("    " + " = ".join(p.name for p in group))
            if len(rep.duplicates) > max_items:
                lines.append(f"    ... and {len(rep.duplicates) - max_items} more groups")
        else:
            lines.append("  duplicates: 0")
        if rep.image_count == 0:
            lines.append("  warning: no images found")
    if report.cross_duplicates:
        lines.append("")
        n = len(report.cross_duplicates)
        lines.append(f"identical files in different folders: {n} group{'s' if n != 1 else ''}")
        for group in report.cross_duplicates[:max_items]:
            lines.append("  " + " = ".join(_rel(p, root) for p in group))
        if len(report.cross_duplicates) > max_items:
            lines.append(f"  ... and {len(report.cross_duplicates) - max_items} more groups")
    return "\n".join(lines)
