"""The 2-D ring of 8 Gaussians, the classic mode-collapse test for GANs (Metz et al. 2017, Sec. 3.1):
eight modes evenly spaced on a circle of radius 2, each with standard deviation 0.02."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw

N_MODES, RADIUS, STD = 8, 2.0, 0.02


def ring_modes(n_modes: int = N_MODES, radius: float = RADIUS) -> torch.Tensor:
    angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    return (torch.stack([angles.cos(), angles.sin()], dim=1) * radius).float()


def sample_ring(n: int, generator: torch.Generator, std: float = STD) -> torch.Tensor:
    """`n` points of the mixture, drawn with `generator` (never the global RNG: resumable)."""
    modes = ring_modes()
    idx = torch.randint(0, len(modes), (n,), generator=generator)
    return modes[idx] + std * torch.randn(n, 2, generator=generator)


@dataclass(frozen=True)
class RingScore:
    modes_covered: int
    high_quality: float  # fraction of samples within 3 std of their nearest mode
    n_samples: int


def score_ring(samples: torch.Tensor, std: float = STD, min_share: float = 0.01) -> RingScore:
    """Mode coverage and sample quality as in Srivastava et al. 2017 (VEEGAN), Sec. 5.1.

    A sample is high quality when it lies within 3 std of its nearest mode; a mode counts as
    covered when at least `min_share` of all samples are high-quality samples of that mode
    (a stricter reading than "one sample", so a few stray points don't count as a mode).
    """
    modes = ring_modes().to(samples)
    dist = torch.cdist(samples.float(), modes)
    nearest_dist, nearest = dist.min(dim=1)
    good = nearest_dist <= 3 * std
    counts = torch.bincount(nearest[good], minlength=len(modes))
    covered = int((counts >= max(1, math.ceil(min_share * len(samples)))).sum())
    return RingScore(covered, float(good.float().mean()), len(samples))


def draw_ring(samples: torch.Tensor, path: Path, size: int = 480, extent: float = 3.0) -> None:
    """Scatter plot of 2-D samples (blue) over the true modes (red circles of radius 3 std)."""
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)

    def to_px(x: float, y: float) -> tuple[float, float]:
        return ((x + extent) / (2 * extent) * size, (extent - y) / (2 * extent) * size)

    r = 3 * STD / (2 * extent) * size
    for mx, my in ring_modes().tolist():
        cx, cy = to_px(mx, my)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(214, 39, 40), width=2)
    for x, y in samples.detach().cpu().tolist():
        px, py = to_px(x, y)
        draw.point((px, py), fill=(31, 119, 180))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def save_samples(samples: torch.Tensor, path: Path) -> None:
    """Generator output to a PNG: 2-D points (N, 2) -> scatter plot; images (N, C, H, W) -> grid."""
    if samples.dim() == 2:
        draw_ring(samples, path)
        return
    from cyclekit.data.images import save_grid

    path.parent.mkdir(parents=True, exist_ok=True)
    save_grid([samples], path, nrow=max(1, int(len(samples) ** 0.5)))
