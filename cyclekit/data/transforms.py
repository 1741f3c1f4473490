"""Training and evaluation preprocessing, mirroring the CycleGAN reference's ``--preprocess``.

A :class:`Transform` maps ``(PIL image, seed) -> (C,H,W) float tensor in [-1, 1]``. All
randomness (crop position, flip) comes from generators created from ``seed`` on every call, so a
sample is reproducible from its seed alone: no global RNG, identical results in any DataLoader
worker, and a resumed run can recreate the exact augmentation of every sample.
"""

from __future__ import annotations

import math
import numbers
import random
import threading
from typing import Any

import albumentations as A
import numpy as np
import torch
from PIL import Image

from cyclekit.choices import PREPROCESS_MODES
from cyclekit.data.images import array_to_tensor
from cyclekit.errors import ConfigError

# Modes that resize to ``load_size`` before cropping ``crop_size``: crop must fit inside.
_RESIZE_THEN_CROP = ("resize_and_crop", "scale_width_and_crop")
_CROPPING = ("resize_and_crop", "crop", "scale_width_and_crop")

# The reference resizes with PIL's bicubic filter, which (unlike cv2.INTER_CUBIC) widens its
# kernel when downscaling, i.e. antialiases. Resizing with PIL keeps our images like theirs.
_RESAMPLE = Image.Resampling.BICUBIC


def _round4(n: float) -> int:
    """Nearest multiple of 4, at least 4 (two stride-2 downsamplings need it)."""
    return max(4, int(n / 4.0 + 0.5) * 4)  # half-up, not banker's rounding


def _resize(img: Image.Image, w: int, h: int) -> Image.Image:
    return img if img.size == (w, h) else img.resize((w, h), _RESAMPLE)


class Transform:
    """Callable ``transform(img, seed) -> tensor`` built by :func:`build_transform`.

    Picklable (the albumentations pipeline is rebuilt after unpickling), so it can be shipped to
    DataLoader worker processes. Calls are serialised with a lock because the pipeline's random
    state is set per call; use one instance per thread if throughput from threads matters.
    """

    def __init__(
        self,
        preprocess: str,
        load_size: int,
        crop_size: int,
        flip: bool,
        channels: int,
        train: bool = True,
    ) -> None:
        _validate(preprocess, load_size, crop_size, channels)
        self.preprocess = preprocess
        self.load_size = int(load_size)
        self.crop_size = int(crop_size)
        self.flip = bool(flip) and train
        self.channels = int(channels)
        self.train = bool(train)
        self._setup()

    def _setup(self) -> None:
        ops: list[Any] = []
        if self.preprocess in _CROPPING:
            crop = A.RandomCrop if self.train else A.CenterCrop
            ops.append(crop(height=self.crop_size, width=self.crop_size))
        if self.flip:
            ops.append(A.HorizontalFlip(p=0.5))
        # `image_b` takes exactly the crop and flip drawn for `image` (paired data, see `pair`).
        self._compose = A.Compose(ops, p=1.0, additional_targets={"image_b": "image"}) if ops else None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_compose", None)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup()

    def __repr__(self) -> str:
        return (
            f"Transform(preprocess={self.preprocess!r}, load_size={self.load_size}, "
            f"crop_size={self.crop_size}, flip={self.flip}, channels={self.channels}, "
            f"train={self.train})"
        )

    def resize(self, img: Image.Image) -> Image.Image:
        """The deterministic resize step of this mode (before any crop/flip)."""
        w, h = img.size
        mode = self.preprocess
        if mode == "resize_and_crop":
            img = _resize(img, self.load_size, self.load_size)
        elif mode in ("scale_width", "scale_width_and_crop"):
            new_h = max(1, int(round(self.load_size * h / w)))
            if mode == "scale_width":
                # No crop follows, so the height must already suit the generator's strides.
                img = _resize(img, _round4(self.load_size), _round4(new_h))
            else:
                img = _resize(img, self.load_size, new_h)
        elif mode == "none":
            img = _resize(img, _round4(w), _round4(h))
        if mode in _CROPPING:
            # An image smaller than the crop is upscaled (aspect kept) rather than padded or
            # rejected: one small photo should not stop a training run.
            w, h = img.size
            short = min(w, h)
            if short < self.crop_size:
                scale = self.crop_size / short
                new_w = max(self.crop_size, math.ceil(w * scale - 1e-6))
                new_h = max(self.crop_size, math.ceil(h * scale - 1e-6))
                img = _resize(img, new_w, new_h)
        return img

    def _array(self, img: Image.Image) -> np.ndarray:
        want = "RGB" if self.channels == 3 else "L"
        arr = np.asarray(self.resize(img if img.mode == want else img.convert(want)))
        return arr[:, :, None] if arr.ndim == 2 else arr

    def _augment(self, seed: int, **arrays: np.ndarray) -> dict[str, np.ndarray]:
        if self._compose is None:
            return arrays
        seed = int(seed) % (2**64)
        with self._lock:
            # One numpy + one python generator shared by all ops, seeded per call: draws are
            # sequential within the sample (crop and flip are independent) and nothing carries
            # over from the previous call.
            self._compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
            out = self._compose(**arrays)
        return {k: out[k] for k in arrays}

    def __call__(self, img: Image.Image, seed: int = 0) -> torch.Tensor:
        """Preprocess ``img`` with randomness drawn only from ``seed``; returns (C,H,W) in [-1,1].

        Eval transforms have no randomness, so they are usually called without a seed.
        """
        arr = self._augment(seed, image=self._array(img))["image"]
        return array_to_tensor(np.ascontiguousarray(arr))

    def pair(self, img_a: Image.Image, img_b: Image.Image, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocess an aligned pair with the same resize, crop and flip (Isola et al. 2017, Sec. 6.2).

        A B image whose size differs from A's after the mode's resize is resized to A's size
        first, so the pair stays aligned pixel for pixel.
        """
        a = self._array(img_a)
        b = self._array(img_b)
        if b.shape[:2] != a.shape[:2]:
            b = np.asarray(Image.fromarray(b.squeeze(2) if b.shape[2] == 1 else b).resize(a.shape[1::-1], _RESAMPLE))
            b = b[:, :, None] if b.ndim == 2 else b
        out = self._augment(seed, image=a, image_b=b)
        return array_to_tensor(np.ascontiguousarray(out["image"])), array_to_tensor(
            np.ascontiguousarray(out["image_b"])
        )


def _validate(preprocess: str, load_size: int, crop_size: int, channels: int) -> None:
    if preprocess not in PREPROCESS_MODES:
        raise ConfigError(f"data.preprocess: unknown mode {preprocess!r}; valid: {', '.join(PREPROCESS_MODES)}")
    for key, value in (("data.load_size", load_size), ("data.crop_size", crop_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ConfigError(f"{key}: must be a positive integer, got {value!r}")
    if channels not in (1, 3):
        raise ConfigError(f"data.channels: must be 1 or 3, got {channels!r}")
    if preprocess in _RESIZE_THEN_CROP and crop_size > load_size:
        raise ConfigError(
            f"data.crop_size ({crop_size}) must not exceed data.load_size ({load_size}) with preprocess {preprocess!r}"
        )


def build_transform(preprocess: str, load_size: int, crop_size: int, flip: bool, channels: int) -> Transform:
    """Training transform: the mode's resize, a random ``crop_size`` crop, random h-flip (p=0.5).

    Modes: ``resize_and_crop`` (square ``load_size`` then crop), ``crop`` (crop only),
    ``scale_width`` (width ``load_size``, aspect kept, sides rounded to multiples of 4),
    ``scale_width_and_crop``, ``none`` (each side rounded to the nearest multiple of 4).
    """
    return Transform(preprocess, load_size, crop_size, flip, channels, train=True)


def build_eval_transform(preprocess: str, load_size: int, crop_size: int, channels: int) -> Transform:
    """Deterministic transform for test images and sample grids: no flip, centre crop.

    ``resize_and_crop`` resizes to ``load_size`` and centre-crops ``crop_size`` (the same scale
    the model saw in training); ``none``/``scale_width`` only resize. The seed is ignored.
    """
    return Transform(preprocess, load_size, crop_size, False, channels, train=False)
