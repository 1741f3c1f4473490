"""Device selection shared by training and inference."""

from __future__ import annotations

import torch

from cyclekit.errors import CyclekitError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` -> first CUDA GPU, else Apple MPS, else CPU. An unavailable explicit choice is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CyclekitError(f"device {name} requested but no CUDA GPU is available (use --device cpu)")
    if name.startswith("cuda:") and name[5:].isdigit() and int(name[5:]) >= torch.cuda.device_count():
        raise CyclekitError(f"device {name} requested but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if name == "mps" and not _mps_available():
        raise CyclekitError("device mps requested but Apple's Metal (MPS) is not available here (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise CyclekitError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()
