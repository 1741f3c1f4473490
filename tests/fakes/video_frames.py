"""A data source the platform did not foresee, in one file: the frames of a generated video.

A square moves along a circle over a gradient, one frame after another; domain A is the video as
rendered, domain B the same frames recoloured (the colour channels rotated), so frame ``t`` of A and
of B are an aligned pair. `locate` renders the video into the data folder (``--data-root``, else
``data.video_frames.root``, else the cache) the first time, with a ``video.json`` saying what it
holds: ``trainA/``, ``trainB/`` (the first ``frames`` frames) and ``testA/``, ``testB/`` (the next
``test_frames``). Its datasets satisfy `cyclekit.data.protocol.Dataset`, and it gives the test
images a translation is scored on (`test_images`).

Importing this module registers the source as data kind ``video_frames`` in
`cyclekit.data.sources.SOURCES`; nothing in cyclekit is edited for it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np
import torch

from cyclekit.config import DataConfig
from cyclekit.data.sources import SOURCES, ImageOptions, Source
from cyclekit.errors import ConfigError, DataError

KIND = "video_frames"
MANIFEST = "video.json"


@dataclass(frozen=True)
class VideoFramesOptions(ImageOptions):
    """The `data.video_frames:` section."""

    shared_keys: ClassVar[tuple[str, ...]] = ("batch_size", "workers", "channels")

    load_size: int = 36
    crop_size: int = 32
    root: Optional[str] = None  # the rendered video (a run records it; null: rendered into the cache)
    frames: int = 16  # training frames
    test_frames: int = 4  # the frames after them, held out
    frame_size: int = 40  # px
    domain_a: str = "square"
    domain_b: str = "recoloured"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("frames", "frame_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.test_frames < 0:
            raise ConfigError(f"test_frames: must be >= 0, got {self.test_frames}")

    def video(self) -> dict[str, int]:
        """What the rendered folder holds (its video.json)."""
        return {"frames": self.frames, "test_frames": self.test_frames, "frame_size": self.frame_size}


def render_frame(t: int, n: int, size: int) -> np.ndarray:
    """Frame ``t`` of ``n`` (a full turn of the circle): HxWx3 uint8."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    frame = np.stack([40 + 60 * y, 60 + 40 * x, 90 + 80 * (1 - y)], axis=-1)
    side = max(2, size // 4)
    angle = 2 * np.pi * t / max(n, 1)
    cy = int(round((size - side) / 2 * (1 + 0.7 * np.sin(angle))))
    cx = int(round((size - side) / 2 * (1 + 0.7 * np.cos(angle))))
    frame[cy : cy + side, cx : cx + side] = (230, 200, 30)
    return frame.clip(0, 255).astype(np.uint8)


def recolour(frame: np.ndarray) -> np.ndarray:
    """Domain B: the colour channels rotated (R, G, B -> G, B, R)."""
    return np.ascontiguousarray(frame[..., [1, 2, 0]])


def render_video(root: Path, options: VideoFramesOptions) -> Path:
    """The video rendered into ``root`` (made whole in a sibling folder, then renamed into place:
    a kill leaves no half video)."""
    from PIL import Image

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        total = options.frames + options.test_frames
        for t in range(total):
            split = "train" if t < options.frames else "test"
            frame = render_frame(t, total, options.frame_size)
            for side, image in (("A", frame), ("B", recolour(frame))):
                folder = tmp / f"{split}{side}"
                folder.mkdir(exist_ok=True)
                Image.fromarray(image).save(folder / f"frame_{t:04d}.png")
        (tmp / MANIFEST).write_text(json.dumps(options.video()) + "\n")
        if root.is_dir():
            root.rmdir()  # empty (checked by the caller)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


class VideoFrames:
    """One split of the video as aligned (A, B) frames: `cyclekit.data.protocol.Dataset`.

    Items are ``(frame, sample_seed)`` pairs from `epoch_plan`; both frames of a pair get the same
    resize, crop and flip from the sample seed."""

    def __init__(self, root: Path, split: str, channels: int, transform: Any, seed: int) -> None:
        self.root = root
        self.split = split
        self.channels = channels
        self.transform = transform
        self.seed = seed
        self.paths_a = sorted((root / f"{split}A").glob("*.png"))
        self.paths_b = [root / f"{split}B" / p.name for p in self.paths_a]
        if not self.paths_a or not all(p.is_file() for p in self.paths_b):
            raise DataError(f"{root}: the {split} frames of A and B do not pair up; delete the folder to render again")

    def __len__(self) -> int:
        return len(self.paths_a)

    def epoch_plan(self, epoch: int) -> Sequence[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self))
        seeds = rng.integers(0, 2**63, size=len(self), dtype=np.int64)
        return [(int(i), int(s)) for i, s in zip(order, seeds, strict=True)]

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        from cyclekit.data.images import load_image

        index, seed = item
        a = load_image(self.paths_a[index], self.channels)
        b = load_image(self.paths_b[index], self.channels)
        frame_a, frame_b = self.transform.pair(a, b, seed)
        return {"A": frame_a, "B": frame_b}

    def summary(self) -> str:
        return f"{self.root}: {len(self)} frames of a moving square ({self.split}A), recoloured in {self.split}B"


class VideoFramesSource(Source):
    name = KIND
    description = "the frames of a generated video: a moving square (A) and the same frames recoloured (B)"
    Options = VideoFramesOptions
    batch_keys = ("A", "B")
    test_layout = "testA/ and testB/ (data.video_frames.test_frames > 0)"

    @classmethod
    def locate(cls, options: Any, data_root: Path | None, cache_dir: Path | None, seed: int) -> Path | None:
        from cyclekit.data.catalogue import default_cache_dir

        o: VideoFramesOptions = options
        root = data_root or (Path(o.root) if o.root else None)
        if root is None:
            name = f"video-frames-{o.frames}-{o.test_frames}-{o.frame_size}px"
            root = (cache_dir or default_cache_dir()) / name
        manifest = root / MANIFEST
        if manifest.is_file():
            if json.loads(manifest.read_text()) != o.video():
                raise DataError(f"{root} holds another video than data.video_frames asks for ({manifest})")
            return root
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise DataError(f"{root} is not a rendered video (no {MANIFEST}); give an empty or new folder")
        return render_video(root, o)

    @classmethod
    def build(cls, options: Any, data: DataConfig, root: Path | None, split: str, seed: int, train: bool) -> Any:
        from cyclekit.data.transforms import build_eval_transform, build_transform

        assert root is not None
        o: VideoFramesOptions = options
        channels = int(data.channels or 3)
        if train:
            transform = build_transform(o.preprocess, o.load_size, o.crop_size, o.flip, channels)
        else:
            transform = build_eval_transform(o.preprocess, o.load_size, o.crop_size, channels)
        return VideoFrames(Path(root), split, channels, transform, seed)

    @classmethod
    def has_split(cls, options: Any, root: Path | None, split: str) -> bool:
        return split == "train" or (root is not None and any((Path(root) / f"{split}A").glob("*.png")))

    @classmethod
    def probe(cls, root: Path) -> str | None:
        manifest = Path(root) / MANIFEST
        if not manifest.is_file():
            raise DataError(f"no {MANIFEST}: not a rendered video")
        video = json.loads(manifest.read_text())
        return f"a rendered video: {video['frames']} training and {video['test_frames']} test frames"

    @classmethod
    def test_images(cls, options: Any, data: DataConfig, root: Path | None, max_images: int | None = None) -> Any:
        """The test frames at the evaluation size, aligned pairs (each A frame with its recoloured B)."""
        from cyclekit.data.testimages import EvalImages

        if not cls.has_split(options, root, "test"):
            raise DataError(f"no test frames in {root} (data.video_frames.test_frames is 0)")
        test = cls.build(options, data, root, "test", 0, False)
        n = len(test) if max_images is None else min(max_images, len(test))
        items = [test[(i, 0)] for i in range(n)]
        return EvalImages({side: [item[side] for item in items] for side in "AB"}, paired=True)


def register() -> None:
    """Put the source into the registry (importing this module does)."""
    SOURCES[KIND] = VideoFramesSource


register()

__all__ = ["KIND", "VideoFrames", "VideoFramesOptions", "VideoFramesSource", "register"]
