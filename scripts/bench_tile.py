"""Benchmark tiled translation of a very large image: wall time and peak memory.

    python scripts/bench_tile.py                                   # 6000x4000, reference generator, tile 512
    python scripts/bench_tile.py --size 3000x2000 --tile 256 --overlap 32 --ngf 32 --blocks 6

Builds a random-init ResNet generator (the work does not depend on the weight values), makes a
synthetic photo-like image of ``--size``, translates it with ``Translator(..., tile=, overlap=)``
exactly as ``cyclekit translate --tile`` does, and prints the time and the peak resident memory
(Linux /proc VmHWM), both absolute and as growth over the memory in use before translating.
It also prints what one untiled pass would need for the activations alone, for comparison.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_translate import reference_bundle  # scripts/ is on sys.path when run as a script
from PIL import Image

from cyclekit.inference import Translator


def proc_status(key: str) -> int:
    """A /proc/self/status memory field in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def synthetic_photo(width: int, height: int) -> Image.Image:
    """Smooth gradients plus noise: statistics roughly like a photo, built without float copies."""
    arr = np.empty((height, width, 3), np.uint8)
    arr[..., 0] = (np.arange(width) * 255 // width).astype(np.uint8)[None, :]
    arr[..., 1] = (np.arange(height) * 255 // height).astype(np.uint8)[:, None]
    arr[..., 2] = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
    return Image.fromarray(arr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="6000x4000", help="WIDTHxHEIGHT of the test image")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not Path("/proc/self/clear_refs").exists():
        sys.exit("error: this benchmark reads peak memory from Linux /proc")
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        sys.exit(f"error: --size must look like 6000x4000, got {args.size!r}")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        bundle = reference_bundle(Path(tmp) / "bundle", ngf=args.ngf, n_blocks=args.blocks)
        translator = Translator.load(bundle, device="cpu")
        translator(Image.new("RGB", (64, 64)), tile=64, overlap=16)  # load weights, warm up
        img = synthetic_photo(width, height)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current RSS
        before = proc_status("VmRSS")
        start = time.perf_counter()
        out = translator(img, tile=args.tile, overlap=args.overlap)
        seconds = time.perf_counter() - start
        peak = proc_status("VmHWM")
    assert out.size == img.size, (out.size, img.size)
    # One untiled pass holds at least ~3 full-resolution ngf-channel float32 maps at once.
    one_pass = 3 * args.ngf * width * height * 4
    print(
        f"tiled translate {width}x{height}, resnet ngf={args.ngf} blocks={args.blocks}, tile {args.tile} "
        f"overlap {args.overlap}, {args.threads} thread(s): {seconds:.1f} s, peak RSS {peak / 2**30:.2f} GiB "
        f"(+{(peak - before) / 2**30:.2f} GiB while translating; one untiled pass needs > {one_pass / 2**30:.1f} GiB)"
    )


if __name__ == "__main__":
    main()
