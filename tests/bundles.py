"""Helpers for the translate/export tests: tiny random-init CycleGAN bundles, a torch blocker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def make_bundle(
    folder: Path, ngf: int = 8, n_blocks: int = 2, channels: int = 3, seed: int = 0, run: str = "tiny"
) -> Path:
    """A CycleGAN bundle (horse <-> zebra) with two small random-init ResNet generators; no training."""
    import torch

    from cyclekit.bundle import save_bundle
    from cyclekit.models import build_model, model_options

    torch.manual_seed(seed)
    opts = model_options(
        "resnet", {"ngf": ngf, "n_blocks": n_blocks, "in_channels": channels, "out_channels": channels}
    )
    nets = {key: ("resnet", opts, build_model("resnet", opts)) for key in ("G_AtoB", "G_BtoA")}
    meta = {
        "kind": "cyclegan",
        "channels": channels,
        "domains": {"A": "horse", "B": "zebra"},
        "train_size": 64,
        "preprocess": "resize_crop",
        "step": 1,
        "epoch": 1,
        "run": run,
    }
    return save_bundle(Path(folder), meta, nets)


def torch_blocker(folder: Path) -> Path:
    """A folder whose ``torch`` package raises ImportError: put it first on PYTHONPATH."""
    (folder / "torch").mkdir(parents=True, exist_ok=True)
    (folder / "torch" / "__init__.py").write_text('raise ImportError("torch is blocked in this test")\n')
    return folder


def env_without_torch(blocker: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(blocker), str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "NO_ALBUMENTATIONS_UPDATE": "1"}


def photo(height: int, width: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A smooth, photo-like test image (gradients, a disc, mild noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / max(width - 1, 1), yy / max(height - 1, 1), (xx + yy) / (height + width)], axis=2) * 200
    disc = ((yy - height / 2) ** 2 + (xx - width / 3) ** 2) < (min(height, width) / 4) ** 2
    base[disc] = rng.uniform(0, 255, size=3)
    arr = np.clip(base + rng.normal(0, 8, size=base.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    return img if mode == "RGB" else img.convert(mode)


PYTHON = sys.executable
