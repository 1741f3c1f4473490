"""Helpers for the translate/export tests: tiny random-init bundles (CycleGAN, Pix2Pix), a torch blocker."""

from __future__ import annotations

import json
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

    from cyclekit.inference.bundle import Bundle, NetworkEntry, write_bundle
    from cyclekit.models import build_model, model_options

    torch.manual_seed(seed)
    opts = model_options(
        "resnet", {"ngf": ngf, "n_blocks": n_blocks, "in_channels": channels, "out_channels": channels}
    )
    bundle = Bundle(
        recipe="cyclegan",
        networks={key: NetworkEntry("resnet", opts) for key in ("G_AtoB", "G_BtoA")},
        translates={"AtoB": "G_AtoB", "BtoA": "G_BtoA"},
        channels=channels,
        size_multiple=4,
        min_size=8,
        domains={"A": "horse", "B": "zebra"},
        train_size=64,
        preprocess="resize_and_crop",
        step=1,
        epoch=1,
        run=run,
    )
    write_bundle(Path(folder), bundle, {key: build_model("resnet", opts) for key in bundle.networks})
    return Path(folder)


def make_pix2pix_bundle(
    folder: Path, n_downs: int = 5, ngf: int = 4, direction: str = "BtoA", dropout: bool = False, seed: int = 0
) -> Path:
    """A Pix2Pix bundle (photo / label, one direction) with a small random-init batch-norm U-Net
    whose running statistics are not the identity, so per-image statistics really matter."""
    import torch

    from cyclekit.inference.bundle import Bundle, NetworkEntry, TestTime, write_bundle
    from cyclekit.models import build_model, model_options

    torch.manual_seed(seed)
    opts = model_options("unet", {"n_downs": n_downs, "ngf": ngf, "norm": "batch"})
    net = build_model("unet", opts)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    bundle = Bundle(
        recipe="pix2pix",
        networks={"G": NetworkEntry("unet", opts)},
        translates={direction: "G"},
        size_multiple=2**n_downs,
        min_size=2**n_downs,
        domains={"A": "photo", "B": "label"},
        test_time=TestTime(dropout=dropout, batch_norm="sample"),
        train_size=2**n_downs,
        preprocess="resize_and_crop",
        run="p2p",
    )
    write_bundle(Path(folder), bundle, {"G": net})
    return Path(folder)


def make_sampler_bundle(folder: Path) -> Path:
    """A GAN bundle that samples (a tiny DCGAN generator, 32 px, latent 8): nothing to translate."""
    from cyclekit.inference.bundle import Bundle, NetworkEntry, Sampling, write_bundle
    from cyclekit.models import build_model, model_options

    opts = model_options("dcgan_g", {"image_size": 32, "latent_dim": 8, "ngf": 4})
    bundle = Bundle(recipe="gan", networks={"G": NetworkEntry("dcgan_g", opts)}, samples=Sampling("G", 8), run="g")
    write_bundle(Path(folder), bundle, {"G": build_model("dcgan_g", opts)})
    return Path(folder)


def write_format1_bundle(folder: Path) -> Path:
    """A bundle exactly as cyclekit 0.1 wrote it (format 1: a free dict with `kind`), from a current one."""
    make_bundle(folder)
    cfg = json.loads((folder / "config.json").read_text())
    old = {
        "format": "cyclekit-bundle",
        "format_version": 1,
        "cyclekit_version": "0.1.0",
        "normalization": {"mean": 0.5, "std": 0.5},
        "size_multiple": 4,
        "kind": "cyclegan",
        "channels": 3,
        "domains": {"A": "horse", "B": "zebra"},
        "train_size": 64,
        "preprocess": "resize_crop",  # 0.1's invalid value, which the reader tolerates for format 1
        "step": 1,
        "epoch": 1,
        "run": "tiny",
        "networks": {k: {f: v[f] for f in ("arch", "options", "file", "sha256")} for k, v in cfg["networks"].items()},
    }
    (folder / "config.json").write_text(json.dumps(old, indent=2))
    return folder


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
