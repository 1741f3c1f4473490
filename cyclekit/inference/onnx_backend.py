"""Run an exported cyclekit generator with onnxruntime: numpy in, numpy out, no torch.

`cyclekit translate --model x.onnx` goes through here, so this module (and everything it imports)
must never import torch: a user who only translates with ONNX need not install it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cyclekit.choices import DIRECTIONS
from cyclekit.errors import CyclekitError
from cyclekit.inference.backend import Backend

# Written by `cyclekit.export`; a reader refuses files without it or with a newer value.
ONNX_FORMAT_KEY = "cyclekit_format"
ONNX_FORMAT_VERSION = 1


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device in ("auto", "cuda") or device.startswith("cuda:"):
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if device != "auto":
            raise CyclekitError(f"device {device} requested but onnxruntime has no CUDA provider (use --device cpu)")
        return ["CPUExecutionProvider"]
    if device == "cpu":
        return ["CPUExecutionProvider"]
    raise CyclekitError(f"device {device!r} is not supported with an ONNX model; use auto, cpu or cuda")


def _session(path: Path, device: str) -> Any:
    import onnxruntime as ort

    if not path.is_file():
        raise CyclekitError(f"model path not found: {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # onnxruntime warnings about unused initializers are noise here
    try:
        return ort.InferenceSession(str(path), options, providers=_providers(device))
    except CyclekitError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        first = " ".join(str(exc).split())[:300]
        raise CyclekitError(f"cannot load ONNX model {path}: {first}") from None


class OnnxBackend(Backend):
    """One exported direction (e.g. G_AtoB) in an onnxruntime session.

    ``meta`` holds the cyclekit metadata written at export: domains, channels, normalisation.
    """

    def __init__(self, path: Path, device: str = "auto"):
        self.path = Path(path)
        self.session = _session(self.path, device)
        raw = dict(self.session.get_modelmeta().custom_metadata_map)
        self.meta = parse_metadata(raw, self.path)
        self.input_name = self.session.get_inputs()[0].name
        self.device = "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"

    @property
    def directions(self) -> list[str]:
        return [self.meta["direction"]]

    def run(self, direction: str, x: np.ndarray) -> np.ndarray:
        """Translate a float32 NCHW batch in [-1, 1] (sides multiples of size_multiple)."""
        if direction != self.meta["direction"]:
            raise CyclekitError(f"{self.path} only translates {self.meta['direction']}, not {direction}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        try:
            return self.session.run(None, {self.input_name: x})[0]
        except Exception as exc:  # onnxruntime's own exception types (bad shape, out of memory, ...)
            first = " ".join(str(exc).split())[:300]
            raise CyclekitError(f"onnxruntime failed on a {x.shape[-1]}x{x.shape[-2]} image: {first}") from None


def parse_metadata(raw: dict[str, str], path: Path) -> dict[str, Any]:
    """Validate and decode cyclekit's metadata_props; a foreign ONNX file is a one-line error."""
    if ONNX_FORMAT_KEY not in raw:
        raise CyclekitError(f"{path} has no cyclekit metadata; export it with `cyclekit export`")
    try:
        version = int(raw[ONNX_FORMAT_KEY])
        meta = {
            "direction": raw["direction"],
            "domains": json.loads(raw["domains"]),
            "channels": int(raw["channels"]),
            "mean": float(json.loads(raw["mean"])),
            "std": float(json.loads(raw["std"])),
            "size_multiple": int(raw["size_multiple"]),
            "run": raw.get("run", ""),
        }
        # Files from cyclekit 0.1 (ResNet only) have no min_size: twice the multiple.
        meta["min_size"] = int(raw.get("min_size", 2 * meta["size_multiple"]))
        # The training scale (cyclekit 0.3 on; empty when unknown).
        for key in ("train_size", "load_size"):
            meta[key] = int(raw[key]) if raw.get(key) else None
    except (KeyError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        what = "nested too deeply" if isinstance(exc, RecursionError) else " ".join(str(exc).split())[:200]
        raise CyclekitError(
            f"{path} has incomplete cyclekit metadata ({what}); re-export it with `cyclekit export`"
        ) from None
    if version > ONNX_FORMAT_VERSION:
        raise CyclekitError(
            f"{path} has cyclekit ONNX format {version}; this cyclekit reads up to {ONNX_FORMAT_VERSION}"
        )
    if meta["direction"] not in DIRECTIONS:
        raise CyclekitError(f"{path}: unknown direction {meta['direction']!r} in its metadata")
    problems = []
    if not isinstance(meta["domains"], dict) or set(meta["domains"]) != {"A", "B"}:
        problems.append("domains must map A and B to names")
    if meta["channels"] not in (1, 3):
        problems.append(f"channels must be 1 or 3, got {meta['channels']}")
    if not (meta["std"] and np.isfinite(meta["std"]) and np.isfinite(meta["mean"])):
        problems.append("mean and std must be finite, std non-zero")
    if meta["size_multiple"] < 1 or meta["min_size"] < 1:
        problems.append("size_multiple and min_size must be >= 1")
    if problems:
        raise CyclekitError(f"{path} has invalid cyclekit metadata: {problems[0]}; re-export it with `cyclekit export`")
    return meta
