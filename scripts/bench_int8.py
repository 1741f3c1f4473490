"""int8 vs fp32 onnxruntime on the reference CycleGAN generator: speed side by side, PSNR, sizes, profile.

    .venv/bin/python scripts/bench_int8.py --model runs/x          # a trained generator (run, bundle or checkpoint)
    .venv/bin/python scripts/bench_int8.py                         # N(0, 0.02)-initialised (PSNR not meaningful)
    .venv/bin/python scripts/bench_int8.py --variants default --rounds 3   # quicker

The generator is the reference one (ResNet, ngf 64, 9 blocks, instance norm; Zhu et al. 2017) at
--size px, exported to fp32 ONNX by `cyclekit.export.onnx` and quantized by
`cyclekit.export.quantize` in several variants (the default of `cyclekit export --int8` and the
alternatives it was chosen over). For each variant it prints:

- speed: every model has its own onnxruntime session with the same options (--threads intra-op
  threads, 1 inter-op, sequential, the same graph optimisation level as the fp32 model it is
  compared with). Rounds alternate the models (the order rotates every round); each round times
  --runs runs of each and keeps their median. The ratio is fp32 / int8 within a round, so load
  on the machine hits both sides alike; the table gives its median and range over the rounds.
- PSNR of the int8 output against the fp32 output on held-out images (not used to calibrate).
- file sizes.

and an onnxruntime per-operator profile (time per op type) of fp32, the default int8 variant and
onnxruntime's own default (every op type it can quantize). Images: --images, else the
horse2zebra testA beside the checkout (../shared/data/horse2zebra/testA), else generated.

Untrained weights time like trained ones but do not quantize like them: the PSNR of a randomly
initialised generator says little. Pass --model with trained weights for a fair quality number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from cyclekit.export.onnx import export_bundle
from cyclekit.export.quantize import Int8Settings, load_calibration, psnr_db, quantize_model
from cyclekit.inference.bundle import Bundle, NetworkEntry, bundle_dir, load_network, read_bundle, write_bundle
from cyclekit.models import build_model, init_weights, model_options

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "horse2zebra" / "testA"
ALL = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
EXTENDED = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
LEVEL_NAMES = {ALL: "all", EXTENDED: "extended"}


@dataclass
class Variant:
    name: str
    what: str
    settings: Int8Settings
    level: ort.GraphOptimizationLevel = ALL


def variants() -> list[Variant]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    no_conv_transpose = tuple(sorted((set(QDQRegistry) | set(QLinearOpsRegistry)) - {"ConvTranspose"}))
    return [
        # First: it calibrates every tensor, so the later static variants reuse its ranges.
        Variant(
            "ort-default", "static, every op type onnxruntime quantizes", Int8Settings(op_types=(), float_ends=False)
        ),
        Variant(
            "ort-default-per-channel",
            "the same, per-channel weights",
            Int8Settings(op_types=(), float_ends=False, per_channel=True),
        ),
        Variant(
            "all-but-ConvTranspose",
            "static, every op type but ConvTranspose",
            Int8Settings(op_types=no_conv_transpose, float_ends=False),
        ),
        Variant("conv-only", "static, Conv only (Add, Pad, ReLU ... float)", Int8Settings(float_ends=False)),
        Variant(
            "conv-only-per-channel", "the same, per-channel weights", Int8Settings(float_ends=False, per_channel=True)
        ),
        Variant("default", "static, Conv only, first/last Conv float", Int8Settings()),
        Variant("default-per-channel", "the same, per-channel weights", Int8Settings(per_channel=True)),
        Variant("default-opt-extended", "default; both sessions at ORT_ENABLE_EXTENDED", Int8Settings(), EXTENDED),
        Variant("dynamic-conv", "dynamic (quantize_dynamic), Conv", Int8Settings(mode="dynamic", float_ends=False)),
    ]


def reference_bundle(folder: Path, model: Path | None, size: int) -> tuple[Path, str]:
    """A one-direction bundle with the reference generator at training size ``size``; weights from
    ``model`` (a run/bundle dir, or a training checkpoint's G_AtoB) or N(0, 0.02) as training starts."""
    opts = model_options("resnet", {"ngf": 64, "n_blocks": 9})
    if model is None:
        torch.manual_seed(0)
        net, source = init_weights(build_model("resnet", opts), "normal", 0.02), "N(0, 0.02) initialised, untrained"
    elif model.suffix == ".pt":
        state = torch.load(model, map_location="cpu", weights_only=True)
        net = build_model("resnet", opts)
        net.load_state_dict(state["recipe"]["G_AtoB"])
        source = f"G_AtoB of {model} (step {state.get('step')})"
    else:
        b = read_bundle(bundle_dir(model))
        key = b.network_for("AtoB")
        opts = b.networks[key].options
        net = load_network(bundle_dir(model), b, key, "cpu")
        source = f"{key} of {model} (step {b.step})"
    bundle = Bundle(
        recipe="cyclegan",
        networks={"G_AtoB": NetworkEntry("resnet", opts)},
        translates={"AtoB": "G_AtoB"},
        size_multiple=4,
        min_size=8,
        domains={"A": "horse", "B": "zebra"},
        train_size=size,
        load_size=size * 286 // 256,  # the reference resize-then-crop (286 -> 256)
        preprocess="resize_and_crop",
        run="reference",
    )
    write_bundle(folder, bundle, {"G_AtoB": net})
    return folder, f"{source}; ngf {opts['ngf']}, {opts['n_blocks']} blocks, {opts['norm']} norm"


def pick_images(source: Path | None, folder: Path, count: int, size: int) -> str:
    """``count`` images linked (or generated) into ``folder``: the first ``count`` of the sorted source."""
    folder.mkdir(parents=True)
    src = source or (DEFAULT_IMAGES if DEFAULT_IMAGES.is_dir() else None)
    if src is not None:
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
        if len(files) < count:
            raise SystemExit(f"{src} has {len(files)} images; --calibrate + --holdout need {count}")
        for f in files:
            (folder / f.name).symlink_to(f.resolve())
        return str(src)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(count):  # smooth gradients, a few flat discs, mild noise: photo-like statistics
        img = np.stack([rng.uniform(40, 200) + rng.uniform(-60, 60) * (xx + yy) for _ in range(3)], axis=2)
        for _ in range(4):
            cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, size=3)
        img += rng.normal(0, 6, size=img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"gen_{i:03d}.png")
    return "generated (no image folder found)"


def cpu_name() -> str:
    """The CPU model and its int8 dot-product extensions (what onnxruntime's int8 kernels use)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    int8 = [f for f in ("avx2", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{name} ({', '.join(int8) or 'no AVX2/VNNI'})"


def session(path: Path, threads: int, level: ort.GraphOptimizationLevel, profile: str | None = None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = level
    options.log_severity_level = 3
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def op_profile(path: Path, x: np.ndarray, threads: int, runs: int, prefix: str) -> dict[str, tuple[float, int]]:
    """ms per run and node count per op type (after onnxruntime's graph optimisation, as it runs)."""
    s = session(path, threads, ALL, profile=prefix)
    s.run(None, {"input": x})  # warm-up (also profiled; dropped below by taking the last ``runs``)
    for _ in range(runs):
        s.run(None, {"input": x})
    events = json.loads(Path(s.end_profiling()).read_text())
    per_run, counts = _by_run(events)
    last = per_run[-runs:]
    ops = sorted({k for c in last for k in c}, key=lambda k: -statistics.median(c[k] for c in last))
    return {k: (statistics.median(c[k] for c in last), counts[-1][k]) for k in ops}


def _by_run(events: list[dict]) -> tuple[list[Counter], list[Counter]]:
    """Node kernel times grouped by the model_run they belong to (by time window)."""
    runs = sorted(
        (e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e["name"] == "model_run"
    )
    times = [Counter() for _ in runs]
    counts = [Counter() for _ in runs]
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            for i, (start, end) in enumerate(runs):
                if start <= e["ts"] <= end:
                    times[i][e["args"]["op_name"]] += e["dur"] / 1000
                    counts[i][e["args"]["op_name"]] += 1
                    break
    return times, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="run dir, bundle dir or training checkpoint (.pt) with G_AtoB")
    parser.add_argument("--images", type=Path, help="image folder (default: ../shared horse2zebra testA, or generated)")
    parser.add_argument("--calibrate", type=int, default=32, help="calibration images")
    parser.add_argument("--holdout", type=int, default=12, help="held-out images for the PSNR")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, the same for every session")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per model per round")
    parser.add_argument("--variants", default="all", help="comma-separated names, or 'all' (the static ones)")
    parser.add_argument("--work", type=Path, help="folder for the files (default: a temporary one)")
    args = parser.parse_args()
    known = variants()
    if args.variants == "all":
        # dynamic-conv runs ~10 s per 256 px image here (ConvInteger): alone it doubles the run; ask for it by name.
        chosen = [v for v in known if v.settings.mode == "static"]
    else:
        chosen = [v for v in known if v.name in args.variants.split(",")]
    if not chosen:
        raise SystemExit(f"--variants: none of {args.variants}; known: {', '.join(v.name for v in known)}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        work = args.work or Path(tmp)
        folder, source = reference_bundle(work / "bundle", args.model, args.size)
        fp32 = export_bundle(folder, "AtoB", check_sizes=[(args.size, args.size)])[0].path
        where = pick_images(args.images, work / "images", args.calibrate + args.holdout, args.size)
        data = load_calibration(folder, work / "images", args.holdout / (args.calibrate + args.holdout), "AtoB")
        print(f"generator: {source}; {args.size}x{args.size} input, batch 1")
        print(
            f"images: {where}: {len(data.calibration)} calibrate, {len(data.holdout)} held out "
            f"(PSNR vs fp32 on the held-out ones only)"
        )
        print(
            f"onnxruntime {ort.__version__}, CPUExecutionProvider, {args.threads} intra-op thread(s), 1 inter-op, "
            f"sequential; {cpu_name()}, {os.cpu_count()} cores"
        )

        # fp32 reference outputs once; each variant is compared with them.
        ref_session = session(fp32, args.threads, ALL)
        reference = [ref_session.run(None, {"input": x[None]})[0] for x in data.holdout]
        models: dict[str, tuple[Path, ort.GraphOptimizationLevel]] = {}
        rows: dict[str, dict] = {}
        cache = work / "calibration.json"
        for v in chosen:
            path = work / f"{v.name}.onnx"
            t = time.perf_counter()
            quantize_model(
                fp32, path, data.calibration, v.settings, cache=cache if v.settings.mode == "static" else None
            )
            took = time.perf_counter() - t
            s = session(path, args.threads, ALL)
            psnr = [
                psnr_db(r, s.run(None, {"input": x[None]})[0]) for r, x in zip(reference, data.holdout, strict=True)
            ]
            models[v.name] = (path, v.level)
            rows[v.name] = {"psnr": psnr, "mb": path.stat().st_size / 1e6, "quantize_s": took}
            print(f"  {v.name}: quantized in {took:.0f} s, PSNR mean {np.mean(psnr):.1f} dB", flush=True)
        for level in dict.fromkeys(v.level for v in chosen):
            models[f"fp32@{LEVEL_NAMES[level]}"] = (fp32, level)

        # Side by side: all sessions open at once, alternating rounds with a rotating order.
        sessions = {name: session(path, args.threads, level) for name, (path, level) in models.items()}
        x = data.holdout[0][None]
        runs = {}
        for name, s in sessions.items():
            t = time.perf_counter()
            s.run(None, {"input": x})
            runs[name] = args.runs if time.perf_counter() - t < 3 else 1  # a very slow model: one run a round
        medians: dict[str, list[float]] = {name: [] for name in sessions}
        names = list(sessions)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                times = []
                for _ in range(runs[name]):
                    t = time.perf_counter()
                    sessions[name].run(None, {"input": x})
                    times.append(time.perf_counter() - t)
                medians[name].append(statistics.median(times))
        del sessions

        fp32_mb = fp32.stat().st_size / 1e6
        print()
        print(
            f"| variant | int8 settings | graph opt | fp32 s/img | int8 s/img | speed ratio fp32/int8 "
            f"(median, range over {args.rounds} rounds) | PSNR vs fp32 dB (mean, worst) | MB fp32 -> int8 |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for v in chosen:
            base = medians[f"fp32@{LEVEL_NAMES[v.level]}"]
            mine = medians[v.name]
            ratios = [a / b for a, b in zip(base, mine, strict=True)]
            row = rows[v.name]
            print(
                f"| {v.name} | {v.what} | {LEVEL_NAMES[v.level]} "
                f"| {statistics.median(base):.3f} ({min(base):.3f}-{max(base):.3f}) "
                f"| {statistics.median(mine):.3f} ({min(mine):.3f}-{max(mine):.3f}) "
                f"| **{statistics.median(ratios):.2f}x** ({min(ratios):.2f}-{max(ratios):.2f}) "
                f"| {np.mean(row['psnr']):.1f} ({min(row['psnr']):.1f}) | {fp32_mb:.1f} -> {row['mb']:.1f} |"
            )

        # Where the time goes: per op type, as onnxruntime ran the optimised graphs.
        profiled = {"fp32": fp32}
        for name in ("ort-default", "default"):
            if name in models:
                profiled[name] = models[name][0]
        profiles = {name: op_profile(p, x, args.threads, 3, str(work / f"prof-{name}")) for name, p in profiled.items()}
        ops = sorted(
            {k for p in profiles.values() for k in p},
            key=lambda k: -max(p.get(k, (0, 0))[0] for p in profiles.values()),
        )
        print()
        print("| op type (after graph optimisation) | " + " | ".join(f"{n} ms (nodes)" for n in profiles) + " |")
        print("|---|" + "---|" * len(profiles))
        for op in ops:
            cells = [f"{p[op][0]:.1f} ({p[op][1]})" if op in p else "-" for p in profiles.values()]
            print(f"| {op} | " + " | ".join(cells) + " |")
        totals = [f"**{sum(t for t, _ in p.values()):.1f}**" for p in profiles.values()]
        print("| total kernel time | " + " | ".join(totals) + " |")
    print(f"\n(benchmark took {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
