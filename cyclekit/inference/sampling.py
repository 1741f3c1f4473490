"""Sampling a GAN bundle: noise in, images (or 2-D points) out."""

from __future__ import annotations

from pathlib import Path

import torch

from cyclekit.device import resolve_device
from cyclekit.errors import CyclekitError
from cyclekit.inference.bundle import bundle_dir, load_network, read_bundle


def sample_gan(path: Path, n: int, seed: int = 0, device: str = "auto") -> torch.Tensor:
    """``n`` samples from a bundle that samples, with noise from ``seed`` (CPU tensor)."""
    folder = bundle_dir(path)
    bundle = read_bundle(folder)
    if bundle.samples is None:
        raise CyclekitError(f"{folder} holds a model that translates, not samples (use `cyclekit translate`)")
    dev = resolve_device(device)
    generator = load_network(folder, bundle, bundle.samples.network, dev)
    z = torch.randn(n, bundle.samples.latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return torch.cat([generator(chunk.to(dev)).cpu() for chunk in z.split(256)])
