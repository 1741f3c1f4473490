"""Checkpoints: one dict, written atomically, loaded with `weights_only=True`."""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cyclekit.atomic import atomic_write
from cyclekit.errors import CyclekitError


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write `state` to a temp file in the same folder, fsync, then rename over `path`.

    `os.replace` is atomic on POSIX and Windows, so a process killed at any moment leaves
    either the previous checkpoint or the new one, never a truncated file.
    """
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without unpickling arbitrary objects; a damaged file is one clear error."""
    if not path.is_file():
        raise CyclekitError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CyclekitError(f"checkpoint {path} is damaged or not a cyclekit checkpoint ({reason})") from None
    if not isinstance(state, dict) or "step" not in state or "recipe" not in state:
        raise CyclekitError(f"checkpoint {path} is not a cyclekit training checkpoint")
    return state


def rng_state() -> dict[str, Any]:
    """Every global random state a training step may touch, in `weights_only`-loadable types."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
