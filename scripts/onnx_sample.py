"""Sample images from a cyclekit ONNX sampler (`cyclekit export` of a GAN run), using only
onnxruntime, numpy and pillow.

    python scripts/onnx_sample.py G.onnx digits.png               # a conditional GAN: one labelled row per class
    python scripts/onnx_sample.py G.onnx sevens.png --class 7 -n 16
    python scripts/onnx_sample.py G.onnx boots.png --class "Ankle boot"   # a class by its name
    python scripts/onnx_sample.py G.onnx faces.png -n 64 --seed 3  # an unconditional GAN

The inputs and outputs (the noise size, the class names) come from the signature in the model's
metadata_props; a stacked generator's final stage is written. A sampler that takes embeddings
(text-conditioned StackGAN) needs a program that computes them.
Deliberately imports neither cyclekit nor torch. Bad input ends with one `error:` line, exit 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


def fail(message: str) -> None:
    sys.exit(f"error: {message}")  # printed to stderr, exit code 1


class Signature:
    """What the sampler takes and gives, from its metadata's ``signature`` (or, for a file exported
    before cyclekit wrote one, its ``latent_dim`` and ``classes``): the noise input's name and size,
    the class input's name and class names (none: not conditioned on a class), the final output's name."""

    def __init__(self, noise: str, latent: int, label: str | None, classes: list[str], output: str) -> None:
        self.noise, self.latent, self.label, self.classes, self.output = noise, latent, label, classes, output

    @property
    def input_names(self) -> list[str]:
        return [self.noise, *([self.label] if self.label else [])]


def read_signature(path: str, raw: dict[str, str]) -> Signature:
    try:
        if "signature" not in raw:  # exported before the signature was written: z [, label] -> output
            latent, classes = int(raw["latent_dim"]), json.loads(raw["classes"])
            return Signature("z", latent, "label" if classes else None, classes, "output")
        declared = json.loads(raw["signature"])
        inputs, outputs = declared["inputs"], declared["outputs"]
        for spec in inputs:
            if spec["kind"] == "embedding":
                made = spec.get("model") or "an unnamed model"
                fail(
                    f"{path}: this sampler takes {spec['name']} ({spec['size']}-d embeddings made by {made}); "
                    "this script feeds noise and classes only: run it from your own program"
                )
        noise = next(spec for spec in inputs if spec["kind"] == "noise")
        label = next((spec for spec in inputs if spec["kind"] == "class"), None)
        classes = label["classes"] if label else []
        return Signature(noise["name"], int(noise["size"]), label and label["name"], classes, outputs[-1]["name"])
    except (KeyError, ValueError, TypeError, IndexError, StopIteration, RecursionError):
        fail(f"{path}: its cyclekit metadata lacks a usable signature (latent_dim, classes); re-export it")
    raise AssertionError  # fail exits


def load_sampler(path: str) -> tuple[ort.InferenceSession, Signature]:
    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own types, for a missing, empty or garbage file
        fail(f"{path}: not a loadable ONNX model ({' '.join(str(exc).split())[:200]})")
    raw = dict(session.get_modelmeta().custom_metadata_map)
    if raw.get("kind") != "sampler":
        fail(f"{path}: not a cyclekit sampler (export a GAN run with `cyclekit export`)")
    signature = read_signature(path, raw)
    classes = signature.classes
    if signature.latent < 1 or not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        fail(f"{path}: latent_dim must be >= 1 and classes a list of names")
    names = [i.name for i in session.get_inputs()]
    if names != signature.input_names:
        fail(f"{path}: inputs {names} do not match its metadata (classes: {len(classes)})")
    if signature.output not in [o.name for o in session.get_outputs()]:
        fail(f"{path}: it has no output {signature.output!r}, which its metadata names")
    return session, signature


def labels_for(classes: list[str], choice: str | None, n: int) -> tuple[np.ndarray | None, int]:
    """The label of each sample and the samples per grid row."""
    if not classes:
        if choice is not None:
            fail("--class: this sampler is not conditioned on a class")
        return None, max(1, int(math.sqrt(n)))
    if choice in (None, "all"):
        return np.repeat(np.arange(len(classes), dtype=np.int64), n), n
    if choice in classes:
        k = classes.index(choice)
    elif choice.isdigit() and int(choice) < len(classes):
        k = int(choice)
    else:
        fail(f"--class {choice}: not one of {', '.join(classes)} or all")
    return np.full(n, k, dtype=np.int64), max(1, int(math.sqrt(n)))


def label_text(name: str, limit: int = 32) -> str:
    """A class name as one short line to draw: control characters as "?", cut to ``limit`` ("~")."""
    text = "".join(ch if ch.isprintable() else "?" for ch in name)
    return text if len(text) <= limit else text[: limit - 1] + "~"


def grid(images: np.ndarray, per_row: int, row_labels: list[str] | None = None) -> Image.Image:
    """(N, C, H, W) in [-1, 1] -> one image, ``per_row`` samples a row, 2 px apart; ``row_labels``:
    a name written left of each row (the class of a conditional GAN's row)."""
    n, c, h, w = images.shape
    rows = math.ceil(n / per_row)
    canvas = np.zeros((rows * (h + 2) + 2, per_row * (w + 2) + 2, c), dtype=np.uint8)
    pixels = np.clip(np.rint((images + 1) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    for i, img in enumerate(pixels):
        r, col = divmod(i, per_row)
        canvas[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + col * (w + 2) : 2 + col * (w + 2) + w] = img
    image = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    if not row_labels:
        return image
    from PIL import ImageDraw

    labels = [label_text(name) for name in row_labels]
    margin = 8 + 7 * max(len(t) for t in labels)
    out = Image.new("RGB", (image.width + margin, image.height), (0, 0, 0))
    out.paste(image.convert("RGB"), (margin, 0))
    draw = ImageDraw.Draw(out)
    row_height = image.height / len(labels)
    for i, text in enumerate(labels):
        draw.text((4, int(i * row_height + row_height / 2 - 5)), text, fill=(255, 255, 255))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("output", help="a .png file to write")
    parser.add_argument("-n", type=int, default=None, help="samples (per class with all; default 10 / 64)")
    parser.add_argument("--class", dest="choice", default=None, help="a class index or name, or all")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.output)
    if out.suffix.lower() != ".png":
        fail(f"{out}: the output must be a .png file")
    if not out.parent.is_dir():
        fail(f"{out.parent}: no such folder")
    session, signature = load_sampler(args.model)
    latent, classes = signature.latent, signature.classes
    n = args.n if args.n is not None else (10 if classes and args.choice in (None, "all") else 64)
    if n < 1:
        fail(f"-n: must be >= 1, got {n}")
    labels, per_row = labels_for(classes, args.choice, n)
    count = len(labels) if labels is not None else n
    z = np.random.default_rng(args.seed).standard_normal((count, latent)).astype(np.float32)
    feed = {signature.noise: z} if labels is None else {signature.noise: z, signature.label: labels}
    images = session.run([signature.output], feed)[0]
    every_class = bool(classes) and args.choice in (None, "all")
    grid(images, per_row, classes if every_class else None).save(out)
    what = f" of class {classes[int(labels[0])]}" if labels is not None and not every_class else ""
    print(f"wrote {count} samples{what} to {out}")


if __name__ == "__main__":
    main()
