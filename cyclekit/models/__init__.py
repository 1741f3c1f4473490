"""Generators and discriminators, built by name from plain option dicts (see `registry`)."""

from __future__ import annotations

from cyclekit.models.capabilities import Capabilities, Condition, FeatureTaps, Sizing
from cyclekit.models.dcgan import (
    DCGANDiscriminator,
    DCGANDiscriminatorOptions,
    DCGANGenerator,
    DCGANGeneratorOptions,
)
from cyclekit.models.mlp import MLPDiscriminator, MLPDiscriminatorOptions, MLPGenerator, MLPGeneratorOptions
from cyclekit.models.patchgan import PatchGAN, PatchGANOptions
from cyclekit.models.registry import (
    MODELS,
    ModelEntry,
    build_model,
    build_on_meta,
    capabilities,
    feature_channels,
    list_models,
    model_options,
    options_dict,
    resolve_options,
    sizing,
)
from cyclekit.models.resnet import ResnetGenerator, ResnetOptions
from cyclekit.nn.init import INIT_KINDS, count_parameters, init_weights

__all__ = [
    "INIT_KINDS",
    "MODELS",
    "Capabilities",
    "Condition",
    "DCGANDiscriminator",
    "DCGANDiscriminatorOptions",
    "DCGANGenerator",
    "DCGANGeneratorOptions",
    "FeatureTaps",
    "MLPDiscriminator",
    "MLPDiscriminatorOptions",
    "MLPGenerator",
    "MLPGeneratorOptions",
    "ModelEntry",
    "PatchGAN",
    "PatchGANOptions",
    "ResnetGenerator",
    "ResnetOptions",
    "Sizing",
    "build_model",
    "build_on_meta",
    "capabilities",
    "count_parameters",
    "feature_channels",
    "init_weights",
    "list_models",
    "model_options",
    "options_dict",
    "resolve_options",
    "sizing",
]
