"""Every list of valid names, in one place: the config types and the runtime checks share them.

The bottom layer (imports nothing from cyclekit), so config, nn, gan, data and inference can all
use it. A `Literal` here is the type a config field is declared with; the tuple beside it is what
error messages list. Add a name once, here, and both follow.
"""

from __future__ import annotations

from typing import Literal, get_args

GanMode = Literal["vanilla", "lsgan", "hinge", "wgan-gp"]
GAN_MODES: tuple[str, ...] = get_args(GanMode)

Preprocess = Literal["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"]
PREPROCESS_MODES: tuple[str, ...] = get_args(Preprocess)

InitKind = Literal["normal", "xavier", "kaiming", "orthogonal"]
INIT_KINDS: tuple[str, ...] = get_args(InitKind)

NormKind = Literal["instance", "batch", "layer", "none"]
NORMS: tuple[str, ...] = get_args(NormKind)

PaddingKind = Literal["reflect", "replicate", "zero"]
PADDINGS: tuple[str, ...] = get_args(PaddingKind)

# A translation direction; a bundle maps each direction it can translate to one network.
Direction = Literal["AtoB", "BtoA"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)
# Target domain letter -> the direction that produces it.
DIRECTION_TO: dict[str, str] = {"B": "AtoB", "A": "BtoA"}

# PIL modes that hold grey levels (with or without alpha).
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})

# Scores `cyclekit eval` reports per direction; lower is better for LOWER_IS_BETTER, higher otherwise.
EvalMetric = Literal["l1", "psnr", "ssim", "pixel_acc", "class_acc", "iou", "fid", "kid"]
EVAL_METRICS: tuple[str, ...] = get_args(EvalMetric)
LOWER_IS_BETTER: frozenset[str] = frozenset({"l1", "fid", "kid"})

# Where training logs go besides metrics.jsonl, which is always written (the source of truth).
Logger = Literal["jsonl", "tensorboard"]
LOGGERS: tuple[str, ...] = get_args(Logger)
