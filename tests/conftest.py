"""Shared fixtures: tiny generated image folders (never ../shared data)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parent.parent


def write_images(folder: Path, n: int, size: int = 40, seed: int = 0, prefix: str = "img") -> list[Path]:
    """`n` random smooth RGB images (noise + gradient) as PNG."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        base = np.linspace(0, 255, size)[None, :, None] * rng.uniform(0.2, 1.0, size=(1, 1, 3))
        img = np.clip(base + rng.normal(0, 20, size=(size, size, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{prefix} {i:02d}.png"  # a space in every name on purpose
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def unpaired_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_images(root / "trainA", 4, seed=1)
    write_images(root / "trainB", 4, seed=2)
    write_images(root / "testA", 2, seed=3)
    write_images(root / "testB", 2, seed=4)
    return root
