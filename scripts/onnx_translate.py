"""Translate one image with a cyclekit ONNX export, using only onnxruntime, numpy and pillow.

    python scripts/onnx_translate.py G_AtoB.onnx horse.jpg zebra.png

A template for using an exported generator from any program: everything the pre- and
post-processing needs (channels, mean/std, value range, size multiple) is read from the model's
metadata_props, written by `cyclekit export`. Deliberately imports neither cyclekit nor torch.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps


def read_metadata(session: ort.InferenceSession) -> dict[str, str]:
    """The model's metadata_props; exits with a message if it is not a cyclekit export."""
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if "cyclekit_format" not in meta:
        sys.exit("error: this ONNX file has no cyclekit metadata; export it with `cyclekit export`")
    if meta.get("input_layout", "NCHW") != "NCHW":
        sys.exit(f"error: unsupported input layout {meta['input_layout']}")
    return meta


def pad_to_multiple(x: np.ndarray, multiple: int, minimum: int) -> np.ndarray:
    """Reflect-pad the bottom/right of a CxHxW array to multiples of ``multiple`` (at least ``minimum``).

    A generator that halves the resolution n times needs sides divisible by 2**n (a ResNet: 4, a
    U-Net: 2**n_downs); reflection makes the border look like image content, and the padding is
    cropped off the result.
    """
    h, w = x.shape[1:]
    th = max(minimum, -(-h // multiple) * multiple)
    tw = max(minimum, -(-w // multiple) * multiple)
    return np.pad(x, [(0, 0), (0, th - h), (0, tw - w)], mode="reflect")


def translate(model_path: str, in_path: str, out_path: str) -> None:
    """Translate ``in_path`` with ``model_path`` and save the result (same size) to ``out_path``."""
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = read_metadata(session)
    channels = int(meta["channels"])
    mean, std = float(json.loads(meta["mean"])), float(json.loads(meta["std"]))
    multiple = int(meta["size_multiple"])
    minimum = int(meta.get("min_size", 2 * multiple))  # files from cyclekit 0.1 have no min_size

    with Image.open(in_path) as img:
        img = ImageOps.exif_transpose(img)  # phones store rotation in EXIF, not in the pixels
        img.load()
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
    x = pad_to_multiple(x.transpose(2, 0, 1), multiple, minimum)

    y = session.run(None, {session.get_inputs()[0].name: x[None].astype(np.float32)})[0][0]
    y = y[:, : img.height, : img.width]  # crop the padding back off
    if grey_in and channels == 3:  # a grey photo comes back grey (ITU-R 601 luma, as PIL's "L")
        y = np.tensordot(np.array([0.299, 0.587, 0.114], dtype=np.float32), y, axes=1)[None]
    out = np.clip(np.rint((y * std + mean) * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    result = Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out, "L" if out.shape[2] == 1 else "RGB")
    if alpha is not None:
        result.putalpha(alpha)  # transparency carried over unchanged
    result.save(out_path)
    print(f"{in_path} -> {out_path} ({meta.get('source_domain', '?')} -> {meta.get('target_domain', '?')})")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python scripts/onnx_translate.py MODEL.onnx INPUT_IMAGE OUTPUT.png")
    translate(*sys.argv[1:])
