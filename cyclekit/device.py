"""Device selection shared by training and inference."""

from __future__ import annotations

import torch

from cyclekit.errors import CyclekitError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` -> first CUDA GPU, else Apple MPS, else CPU. An unavailable explicit choice is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CyclekitError(f"device {name} requested but no CUDA GPU is available (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise CyclekitError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
