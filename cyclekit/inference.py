"""Using trained generators: load a bundle, sample a GAN, translate images with a CycleGAN.

Imports neither `cyclekit.train` nor `cyclekit.recipes`: translating needs only the bundle.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cyclekit.bundle import load_network, read_bundle_config
from cyclekit.device import resolve_device
from cyclekit.errors import CyclekitError


def bundle_dir(path: Path) -> Path:
    """A run dir (holding bundle/) or a bundle dir (holding config.json) -> the bundle dir."""
    path = Path(path)
    if not path.exists():
        raise CyclekitError(f"model path not found: {path}")
    if (path / "bundle" / "config.json").is_file():
        return path / "bundle"
    if (path / "config.json").is_file():
        return path
    raise CyclekitError(f"{path} is neither a run dir with bundle/ nor a bundle dir with config.json")


@torch.no_grad()
def sample_gan(path: Path, n: int, seed: int = 0, device: str = "auto") -> torch.Tensor:
    """`n` samples from a GAN bundle's generator with noise from `seed` (CPU tensor)."""
    folder = bundle_dir(path)
    config = read_bundle_config(folder)
    if config.get("kind") != "gan":
        raise CyclekitError(f"{folder} holds a {config.get('kind')} model; `sample` needs a GAN (use translate)")
    dev = resolve_device(device)
    generator = load_network(folder, config, "G", dev)
    z = torch.randn(n, config["latent_dim"], generator=torch.Generator().manual_seed(seed))
    out = []
    for chunk in z.split(256):
        out.append(generator(chunk.to(dev)).cpu())
    return torch.cat(out)
