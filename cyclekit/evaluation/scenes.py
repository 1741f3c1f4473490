"""A deterministic reader of the built-in scenes (`cyclekit.data.scenes`): colour, position, size and
shape read back from an image, so a text-to-image run can be scored by whether what it draws
matches the caption it was given.

The background is grey (unsaturated) and every palette colour is saturated, so the shape is the set
of pixels whose channel spread (max - min) exceeds `SPREAD`. From that mask:

- colour: the palette colour nearest (RGB) to the mask's median colour;
- position: the anchor (left, right, top, bottom, centre) nearest to the mask's centroid;
- shape: the fill ratio of its bounding box (square ~1, circle ~pi/4, triangle ~1/2);
- size: the radius of a disc of the mask's area, against the mean of the small and large radii.

An image with too few saturated pixels (under `MIN_AREA` of it) has no shape: every attribute is
None, which never matches a caption.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cyclekit.data.scenes import PALETTE, POSITIONS, SIZES

SPREAD = 60  # channel spread (0-255) above which a pixel belongs to the shape
MIN_AREA = 0.01  # fraction of the image the shape must cover
# fill ratio of the bounding box: squares are near 1, circles pi/4 = 0.785, triangles 1/2
SQUARE_FILL = 0.9
TRIANGLE_FILL = 0.64
# shape area / r^2 (see cyclekit.data.scenes.render): the disc-equivalent radius of each shape
_AREA_PER_R2 = {"circle": math.pi, "square": 3.24, "triangle": 1.932}


@dataclass(frozen=True)
class Reading:
    colour: str | None
    position: str | None
    size: str | None
    shape: str | None


NOTHING = Reading(None, None, None, None)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] N x 3 x H x W tensors -> uint8 N x H x W x 3."""
    arr = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return arr.permute(0, 2, 3, 1).numpy()


def read_scene(image: np.ndarray) -> Reading:
    """What a uint8 H x W x 3 image shows (see the module docstring)."""
    img = image.astype(np.int32)
    h, w = img.shape[:2]
    mask = (img.max(axis=2) - img.min(axis=2)) > SPREAD
    area = int(mask.sum())
    if area < MIN_AREA * h * w:
        return NOTHING
    ys, xs = np.nonzero(mask)
    median = np.median(img[mask], axis=0)
    colour = min(PALETTE, key=lambda c: float(np.sum((np.array(PALETTE[c]) - median) ** 2)))
    cx, cy = (xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h
    position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)
    box = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
    fill = area / box
    shape = "square" if fill > SQUARE_FILL else "triangle" if fill < TRIANGLE_FILL else "circle"
    radius = math.sqrt(area / (h * w) / _AREA_PER_R2[shape])
    size = "large" if radius > (SIZES["small"] + SIZES["large"]) / 2 else "small"
    return Reading(colour, position, size, shape)


def read_scenes(images: torch.Tensor) -> list[Reading]:
    """`read_scene` of each of a batch of [-1, 1] N x 3 x H x W images."""
    return [read_scene(a) for a in to_uint8(images)]


def sharpness(images: torch.Tensor) -> float:
    """Mean gradient magnitude (finite differences, on the grey image in [0, 1]) of a batch: how much
    edge and detail it has. Compare images at the same size."""
    grey = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).mean(dim=1)
    gx = grey[:, :, 1:] - grey[:, :, :-1]
    gy = grey[:, 1:, :] - grey[:, :-1, :]
    return float((gx[:, :-1, :] ** 2 + gy[:, :, :-1] ** 2).sqrt().mean())
