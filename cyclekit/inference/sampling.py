"""Sampling a GAN bundle: noise in, images (or 2-D points) out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from cyclekit.device import resolve_device
from cyclekit.errors import CyclekitError
from cyclekit.inference.bundle import bundle_dir, load_network, read_bundle


def class_labels(classes: Sequence[str], choice: str, per_class: int) -> list[int]:
    """``--class`` as labels: ``all`` -> ``per_class`` of each class in order (one grid row per
    class), a class index or name -> ``per_class`` of it; one-line errors name the classes."""
    if not classes:
        raise CyclekitError("--class: this generator is not conditioned on a class")
    if choice == "all":
        return [k for k in range(len(classes)) for _ in range(per_class)]
    if choice in classes:
        return [classes.index(choice)] * per_class
    if choice.lstrip("-").isdigit() and 0 <= int(choice) < len(classes):
        return [int(choice)] * per_class
    raise CyclekitError(
        f"--class {choice}: not a class of this generator; classes: "
        + ", ".join(f"{i} ({name})" if name != str(i) else name for i, name in enumerate(classes))
        + ", or all"
    )


def sample_gan(
    path: Path, n: int, seed: int = 0, device: str = "auto", labels: Sequence[int] | None = None
) -> torch.Tensor:
    """``n`` samples from a bundle that samples, with noise from ``seed`` (CPU tensor). A
    class-conditional bundle needs ``labels`` (``n`` class indices; see `class_labels`)."""
    folder = bundle_dir(path)
    bundle = read_bundle(folder)
    if bundle.samples is None:
        raise CyclekitError(f"{folder} holds a model that translates, not samples (use `cyclekit translate`)")
    classes = bundle.samples.classes
    if classes and labels is None:
        raise CyclekitError(f"{folder} holds a class-conditional generator: name a class (--class N, or all)")
    if not classes and labels is not None:
        raise CyclekitError(f"--class: {folder} holds a generator that is not conditioned on a class")
    dev = resolve_device(device)
    generator = load_network(folder, bundle, bundle.samples.network, dev)
    z = torch.randn(n, bundle.samples.latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        if labels is None:
            return torch.cat([generator(chunk.to(dev)).cpu() for chunk in z.split(256)])
        y = torch.as_tensor(list(labels), dtype=torch.long)
        if len(y) != n or (y < 0).any() or (y >= len(classes)).any():
            raise CyclekitError(f"labels: expected {n} class indices in 0..{len(classes) - 1}")
        return torch.cat(
            [generator(zc.to(dev), yc.to(dev)).cpu() for zc, yc in zip(z.split(256), y.split(256), strict=True)]
        )
