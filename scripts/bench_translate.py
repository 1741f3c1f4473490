"""Benchmark translation: PyTorch eager vs onnxruntime latency, and Translator throughput on a folder.

    python scripts/bench_translate.py                      # random-init reference generator (ngf 64, 9 blocks)
    python scripts/bench_translate.py --model runs/horse2zebra --folder path/to/testA --runs 20

(a) latency of one 256x256 image through the generator: median of ``--runs`` after ``--warmup``
    runs, PyTorch eager (no_grad) vs onnxruntime fp32 (and fp16 weights/maths with ``--fp16``);
(b) images/s of `cyclekit.inference.Translator` (both backends) over ``--folder``: the model alone
    on decoded images, and end to end as `cyclekit translate` does it (decode, translate, write PNG).
Random weights time exactly like trained ones: the work does not depend on the values.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from cyclekit.export.onnx import export_bundle
from cyclekit.inference.bundle import bundle_dir
from cyclekit.inference.files import collect_inputs, load_for_translation, translate_files
from cyclekit.inference.translator import Translator

# The dev machines keep the canonical datasets beside the checkout (../shared); pass --folder elsewhere.
DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "horse2zebra" / "testA"


def reference_bundle(folder: Path, ngf: int = 64, n_blocks: int = 9) -> Path:
    """A bundle with random-init ResNet generators (default: the reference ngf 64, 9 blocks; Zhu et al. 2017)."""
    from cyclekit.inference.bundle import Bundle, NetworkEntry, write_bundle
    from cyclekit.models import build_model, model_options

    torch.manual_seed(0)
    opts = model_options("resnet", {"ngf": ngf, "n_blocks": n_blocks})
    bundle = Bundle(
        recipe="cyclegan",
        networks={k: NetworkEntry("resnet", opts) for k in ("G_AtoB", "G_BtoA")},
        translates={"AtoB": "G_AtoB", "BtoA": "G_BtoA"},
        size_multiple=4,
        min_size=8,
        train_size=256,
        preprocess="resize_and_crop",
        run="reference",
    )
    write_bundle(folder, bundle, {k: build_model("resnet", opts) for k in bundle.networks})
    return folder


def median_ms(fn, warmup: int, runs: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def latency(bundle: Path, onnx_files: dict[str, Path], warmup: int, runs: int, threads: int) -> None:
    x = np.random.default_rng(0).uniform(-1, 1, size=(1, 3, 256, 256)).astype(np.float32)
    translator = Translator.load(bundle, device="cpu")
    net = translator.backend.network("AtoB")
    xt = torch.from_numpy(x)

    def torch_run() -> None:
        with torch.no_grad():
            net(xt)

    print(f"(a) latency, 1x3x256x256, median of {runs} after {warmup} warm-up runs, {threads} thread(s)")
    print(f"    PyTorch {torch.__version__} eager      {median_ms(torch_run, warmup, runs):8.1f} ms")
    for label, path in onnx_files.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        ms = median_ms(lambda s=session: s.run(None, {"input": x}), warmup, runs)
        print(f"    onnxruntime {ort.__version__} {label:5s} {ms:8.1f} ms")


def throughput(model: Path, folder: Path, batch_size: int, limit: int | None) -> None:
    jobs = collect_inputs([str(folder)]).jobs[:limit]
    if not jobs:
        sys.exit(f"no images in {folder}")
    images = [load_for_translation(src) for src, _ in jobs]
    translator = Translator.load(model, device="cpu")
    translator(images[0])  # load and warm up
    start = time.perf_counter()
    translator.translate_many(images, batch_size=batch_size)
    model_only = len(images) / (time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as out:
        summary = translate_files(translator, jobs, Path(out), batch_size=batch_size)
    backend = "onnxruntime" if model.suffix == ".onnx" else "PyTorch"
    print(
        f"    {backend:11s} {model.name:22s} model only {model_only:6.2f} images/s, "
        f"end to end {summary.images_per_second:6.2f} images/s  ({len(jobs)} images, batch {batch_size})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="run or bundle dir (default: random-init ngf 64, 9 blocks)")
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help="images for the throughput part")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--limit", type=int, help="use only the first N images of the folder")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for both runtimes")
    parser.add_argument("--fp16", action="store_true", help="also time an fp16 ONNX export")
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"error: image folder {args.folder} not found; pass --folder DIR (e.g. horse2zebra/testA)")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        bundle = bundle_dir(args.model) if args.model else reference_bundle(Path(tmp) / "bundle")
        out = Path(tmp) / "onnx"
        onnx_files = {"fp32": export_bundle(bundle, "AtoB", out_dir=out)[0].path}
        if args.fp16:
            onnx_files["fp16"] = export_bundle(bundle, "AtoB", fp16=True, out_dir=out)[0].path
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"CPU: {os.cpu_count()} cores, load average before {load:.2f}")
        latency(bundle, onnx_files, args.warmup, args.runs, args.threads)
        print(f"(b) Translator throughput over {args.folder}")
        throughput(bundle, args.folder, args.batch_size, args.limit)
        throughput(onnx_files["fp32"], args.folder, args.batch_size, args.limit)


if __name__ == "__main__":
    main()
