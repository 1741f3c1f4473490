"""Inference bundles: `config.json` + one `.safetensors` per network.

A bundle describes itself (architecture and options of every network, channels, normalisation,
domain names, cyclekit version), so loading it never needs the training config or flags.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cyclekit import __version__
from cyclekit.errors import CyclekitError

BUNDLE_FORMAT = "cyclekit-bundle"
BUNDLE_VERSION = 1
# Generators are fed (x / 255 - mean) / std, i.e. [-1, 1], and return tanh outputs in [-1, 1].
MEAN, STD = 0.5, 0.5
# Two stride-2 downsamplings in the ResNet generator: sides must be multiples of 4.
SIZE_MULTIPLE = 4


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_bundle(folder: Path, meta: Mapping[str, Any], networks: Mapping[str, tuple[str, dict, nn.Module]]) -> Path:
    """Write `networks` ({key: (arch name, resolved options, module)}) and `meta` into `folder`.

    Each weights file is written atomically and config.json last, so a reader never sees a
    config pointing at a missing file.
    """
    from safetensors.torch import save

    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for key, (arch, options, module) in networks.items():
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        data = save(state, metadata={"arch": arch})
        fname = f"{key}.safetensors"
        _atomic_write_bytes(folder / fname, data)
        entries[key] = {
            "arch": arch,
            "options": dict(options),
            "file": fname,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    config = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "cyclekit_version": __version__,
        "normalization": {"mean": MEAN, "std": STD},
        "size_multiple": SIZE_MULTIPLE,
        **meta,
        "networks": entries,
    }
    _atomic_write_bytes(folder / "config.json", (json.dumps(config, indent=2) + "\n").encode())
    return folder


def read_bundle_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise CyclekitError(f"{folder} is not a cyclekit bundle (no config.json)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CyclekitError(f"{path} is not valid JSON") from None
    if not isinstance(config, dict) or config.get("format") != BUNDLE_FORMAT:
        raise CyclekitError(f"{path} is not a cyclekit bundle config")
    if config.get("format_version", 0) > BUNDLE_VERSION:
        raise CyclekitError(
            f"{path} has bundle format {config['format_version']}; this cyclekit reads up to {BUNDLE_VERSION}"
        )
    return config


def load_network(folder: Path, config: Mapping[str, Any], key: str, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild network `key` from its recorded architecture and load its weights (eval mode)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from cyclekit.models import build_model

    nets = config.get("networks", {})
    if key not in nets:
        raise CyclekitError(f"bundle {folder} has no network {key!r}; it has {', '.join(nets) or 'none'}")
    entry = nets[key]
    net = build_model(entry["arch"], entry["options"], key=f"networks.{key}")
    path = folder / entry["file"]
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CyclekitError(f"cannot read weights {path}: {exc}") from None
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise CyclekitError(
            f"weights {path} do not fit the recorded architecture: {str(exc).splitlines()[0]}"
        ) from None
    return net.to(device).eval()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
