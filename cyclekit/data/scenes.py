"""The built-in text-to-image set: generated scenes of one shape, with captions whose truth can be
checked (offline, no download).

A scene is a shape (circle, square, triangle) of a colour from a small palette, at a position
(left, right, top, bottom, centre) and of a size (small, large), on a grey gradient. It is drawn
with PIL at four times the image size and scaled down (anti-aliased). Each scene gets several
captions, written from its parameters with varied phrasings ("a small red circle on the left",
"on the right side, a big blue square", ...). The scenes and the train/test split come from
``scene_seed`` alone, not the run's seed, so every run is scored on the same held-out captions.
`cyclekit.evaluation.scenes` reads colour, position, size and shape back from an image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 175, 60),
    "blue": (45, 85, 225),
    "yellow": (230, 205, 40),
    "purple": (150, 55, 195),
}
COLOURS = tuple(PALETTE)
POSITIONS: dict[str, tuple[float, float]] = {  # centre (x, y) as fractions of the side
    "left": (0.27, 0.5),
    "right": (0.73, 0.5),
    "top": (0.5, 0.27),
    "bottom": (0.5, 0.73),
    "centre": (0.5, 0.5),
}
SIZES: dict[str, float] = {"small": 0.12, "large": 0.2}  # radius as a fraction of the side
BACKGROUND = ((40, 40, 48), (78, 78, 88))  # top and bottom of the gradient (grey: unsaturated)
SUPERSAMPLE = 4
JITTER = 0.035  # of the side, each way, for the centre
_SPLIT_KEY = 0x5343454E  # "SCEN": the stream the scenes are drawn from

POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on the left", "on the left side", "to the left"),
    "right": ("on the right", "on the right side", "to the right"),
    "top": ("at the top", "near the top", "in the upper part"),
    "bottom": ("at the bottom", "near the bottom", "in the lower part"),
    "centre": ("in the centre", "in the middle", "at the center"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
TEMPLATES = (
    "a {size} {colour} {shape} {pos}",
    "{pos}, a {size} {colour} {shape}",
    "there is a {size} {shape} in {colour} {pos}",
    "a {colour} {shape}, {size}, {pos}",
    "one {size} {shape} coloured {colour} {pos}",
)


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    position: str
    size: str
    dx: float = 0.0  # jitter of the centre, fractions of the side
    dy: float = 0.0
    tint: tuple[int, int, int] = (0, 0, 0)  # small colour jitter


def random_scene(rng: np.random.Generator) -> Scene:
    return Scene(
        shape=SHAPES[rng.integers(len(SHAPES))],
        colour=COLOURS[rng.integers(len(COLOURS))],
        position=tuple(POSITIONS)[rng.integers(len(POSITIONS))],
        size=tuple(SIZES)[rng.integers(len(SIZES))],
        dx=float(rng.uniform(-JITTER, JITTER)),
        dy=float(rng.uniform(-JITTER, JITTER)),
        tint=tuple(int(t) for t in rng.integers(-12, 13, size=3)),  # type: ignore[arg-type]
    )


def render(scene: Scene, size: int) -> np.ndarray:
    """The scene as uint8 size x size x 3."""
    big = size * SUPERSAMPLE
    ramp = np.linspace(0.0, 1.0, big, dtype=np.float32)[:, None, None]
    top, bottom = (np.array(c, dtype=np.float32) for c in BACKGROUND)
    bg = np.broadcast_to(top + (bottom - top) * ramp, (big, big, 3)).round().astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(bg), "RGB")
    draw = ImageDraw.Draw(img)
    fx, fy = POSITIONS[scene.position]
    cx, cy = (fx + scene.dx) * big, (fy + scene.dy) * big
    r = SIZES[scene.size] * big
    colour = tuple(int(np.clip(c + t, 0, 255)) for c, t in zip(PALETTE[scene.colour], scene.tint, strict=True))
    if scene.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif scene.shape == "square":
        h = 0.9 * r
        draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=colour)
    else:
        draw.polygon([(cx, cy - 1.05 * r), (cx - 1.05 * r, cy + 0.8 * r), (cx + 1.05 * r, cy + 0.8 * r)], fill=colour)
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def caption(scene: Scene, template: int, rng: np.random.Generator) -> str:
    """One caption of ``scene`` with template ``template`` and phrase variants drawn from ``rng``."""
    pos = POSITION_PHRASES[scene.position]
    words = SIZE_WORDS[scene.size]
    return TEMPLATES[template % len(TEMPLATES)].format(
        size=words[rng.integers(len(words))],
        colour=scene.colour,
        shape=scene.shape,
        pos=pos[rng.integers(len(pos))],
    )


def make_scenes(n_train: int, n_test: int, per_scene: int, scene_seed: int) -> dict[str, list[tuple[Scene, list[str]]]]:
    """``n_train`` + ``n_test`` scenes with ``per_scene`` captions each, split into train and test;
    the same for a ``scene_seed`` on every machine."""
    rng = np.random.default_rng([_SPLIT_KEY, scene_seed])
    items = []
    for _ in range(n_train + n_test):
        scene = random_scene(rng)
        start = int(rng.integers(len(TEMPLATES)))
        items.append((scene, [caption(scene, start + k, rng) for k in range(per_scene)]))
    order = rng.permutation(len(items))
    test = set(order[:n_test].tolist())
    return {
        "train": [it for i, it in enumerate(items) if i not in test],
        "test": [it for i, it in enumerate(items) if i in test],
    }
