"""Reusable layers and initialisation; independent of `cyclekit.models`."""

from __future__ import annotations

from cyclekit.nn.init import INIT_KINDS, count_parameters, init_weights
from cyclekit.nn.layers import (
    NORMS,
    PADDINGS,
    NormKind,
    PaddingKind,
    ResnetBlock,
    conv_bias,
    conv_norm_act,
    norm_layer,
    padding_layers,
)

__all__ = [
    "INIT_KINDS",
    "NORMS",
    "PADDINGS",
    "NormKind",
    "PaddingKind",
    "ResnetBlock",
    "conv_bias",
    "conv_norm_act",
    "count_parameters",
    "init_weights",
    "norm_layer",
    "padding_layers",
]
