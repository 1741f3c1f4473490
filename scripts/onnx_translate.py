"""Translate one image with a cyclekit ONNX export, using only onnxruntime, numpy and pillow.

    python scripts/onnx_translate.py G_AtoB.onnx horse.jpg zebra.png

A template for using an exported generator from any program: everything the pre- and
post-processing needs (channels, mean/std, value range, size multiple) is read from the model's
metadata_props, written by `cyclekit export`. Deliberately imports neither cyclekit nor torch.
Bad input (a file that is not a cyclekit model, an unreadable image, an output it cannot write)
ends with one `error:` line and exit code 1, before any work.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps, UnidentifiedImageError


def fail(message: str) -> None:
    sys.exit(f"error: {message}")  # printed to stderr, exit code 1


def load_model(path: str) -> tuple[ort.InferenceSession, dict[str, float], dict[str, str]]:
    """The session, its checked numbers (channels, mean, std, size_multiple, min_size) and all its metadata."""
    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own types, for a missing, empty or garbage file
        fail(f"{path}: not a loadable ONNX model ({' '.join(str(exc).split())[:200]})")
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        fail(f"{path}: expected one image input (N, C, H, W), found {[list(i.shape) for i in inputs]}")
    raw = dict(session.get_modelmeta().custom_metadata_map)
    if "cyclekit_format" not in raw:
        fail(f"{path}: no cyclekit metadata; export the model with `cyclekit export`")
    try:
        meta = {key: float(json.loads(raw[key])) for key in ("channels", "mean", "std", "size_multiple")}
        meta["min_size"] = float(json.loads(raw.get("min_size", str(2 * meta["size_multiple"]))))
    except KeyError as exc:
        fail(f"{path}: its cyclekit metadata has no {exc.args[0]!r}; re-export it with `cyclekit export`")
    except (ValueError, TypeError, RecursionError):
        fail(f"{path}: its cyclekit metadata holds a non-number where a number belongs; re-export it")
    if raw.get("input_layout", "NCHW") != "NCHW":
        fail(f"{path}: unsupported input layout {raw['input_layout']!r} (expected NCHW)")
    declared = inputs[0].shape[1]  # a number, or a name when the graph leaves it open
    if meta["channels"] not in (1, 3) or (isinstance(declared, int) and declared != meta["channels"]):
        fail(f"{path}: channels must be 1 or 3 and match the model's input, got {meta['channels']:g}")
    if not all(math.isfinite(v) for v in meta.values()) or meta["std"] == 0:
        fail(f"{path}: mean and std must be finite numbers and std non-zero (got {meta['mean']:g}, {meta['std']:g})")
    if meta["size_multiple"] < 1 or meta["min_size"] < 1 or not meta["size_multiple"].is_integer():
        fail(f"{path}: size_multiple and min_size must be whole numbers >= 1")
    return session, meta, raw


def read_image(path: str) -> Image.Image:
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)  # phones store rotation in EXIF, not in the pixels
            img.load()
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        fail(f"{path}: not a readable image ({' '.join(str(exc).split())[:200]})")
    return img


def check_output(path: str) -> None:
    """Before any work: a folder that exists and an extension Pillow can write."""
    out = Path(path)
    if not out.parent.is_dir():
        fail(f"{path}: the folder {out.parent} does not exist")
    if out.suffix.lower() not in Image.registered_extensions():
        fail(f"{path}: unknown image extension {out.suffix or '(none)'!r}; use .png, for example")


def pad_to_multiple(x: np.ndarray, multiple: int, minimum: int) -> np.ndarray:
    """Reflect-pad the bottom/right of a CxHxW array to multiples of ``multiple`` (at least ``minimum``).

    A generator that halves the resolution n times needs sides divisible by 2**n (a ResNet: 4, a
    U-Net: 2**n_downs); reflection makes the border look like image content, and the padding is
    cropped off the result. Reflection needs at least 2 pixels, so tiny sides are edge-padded.
    """
    h, w = x.shape[1:]
    th = max(minimum, -(-h // multiple) * multiple)
    tw = max(minimum, -(-w // multiple) * multiple)
    mode = "reflect" if min(h, w) > 1 and th - h < h and tw - w < w else "edge"
    return np.pad(x, [(0, 0), (0, th - h), (0, tw - w)], mode=mode)


def translate(model_path: str, in_path: str, out_path: str) -> None:
    """Translate ``in_path`` with ``model_path`` and save the result (same size) to ``out_path``."""
    session, meta, raw = load_model(model_path)
    img = read_image(in_path)
    check_output(out_path)
    channels, mean, std = int(meta["channels"]), meta["mean"], meta["std"]

    grey_in = img.mode in ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
    alpha = None
    if img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info:
        alpha = img.convert("RGBA").getchannel("A")
    rgb = img.convert("RGB")
    pixels = np.array(rgb.convert("L") if channels == 1 else rgb, dtype=np.float32)
    pixels = pixels.reshape(img.height, img.width, channels)
    if alpha is not None:  # fully transparent pixels hold arbitrary colours; make them white
        pixels[np.asarray(alpha) == 0] = 255.0
    x = (pixels / 255.0 - mean) / std  # input_range [-1, 1] for mean = std = 0.5
    x = pad_to_multiple(x.transpose(2, 0, 1), int(meta["size_multiple"]), int(meta["min_size"]))

    try:
        y = session.run(None, {session.get_inputs()[0].name: x[None].astype(np.float32)})[0][0]
    except Exception as exc:  # onnxruntime's own types (a shape the model cannot take, out of memory)
        fail(f"{model_path} failed on {in_path}: {' '.join(str(exc).split())[:200]}")
    y = y[:, : img.height, : img.width]  # crop the padding back off
    if grey_in and channels == 3:  # a grey photo comes back grey (ITU-R 601 luma, as PIL's "L")
        y = np.tensordot(np.array([0.299, 0.587, 0.114], dtype=np.float32), y, axes=1)[None]
    out = np.clip(np.rint((y * std + mean) * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    result = Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out, "L" if out.shape[2] == 1 else "RGB")
    if alpha is not None:
        result.putalpha(alpha)  # transparency carried over unchanged
    try:
        result.save(out_path)
    except (OSError, ValueError) as exc:
        fail(f"cannot write {out_path}: {' '.join(str(exc).split())[:200]}")
    print(f"{in_path} -> {out_path} ({raw.get('source_domain', '?')} -> {raw.get('target_domain', '?')})")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python scripts/onnx_translate.py MODEL.onnx INPUT_IMAGE OUTPUT.png")
    translate(*sys.argv[1:])
