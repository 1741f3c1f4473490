"""`cyclekit bench`: what a config costs on this machine, as numbers.

For a config (and size) it measures, in one process:
- training: seconds per step after warm-up, peak memory, FLOPs per step (torch.utils.flop_counter);
- the generator: inference latency in PyTorch eager and onnxruntime (batch 1 at the crop size);
- `translate`: images/s end to end on a folder (decode, translate, encode PNG) and as a fraction of
  the raw model rate;
- this machine's fp32 matmul rate, so every rate is also a fraction of it (achieved FLOP/s).

`compare_train_steps` times the training step of this checkout against another one (a path or a
git commit) in alternating rounds of separate processes, so machine noise (1.5x between runs here)
hits both alike and only their ratio is reported as a speed-up.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from cyclekit.config import Config
from cyclekit.data.protocol import RunData
from cyclekit.errors import CyclekitError

REPO = Path(__file__).resolve().parent.parent


@dataclass
class BenchResult:
    """Every number `cyclekit bench` prints, in the units of its name."""

    config: str
    recipe: str
    device: str
    threads: int
    size: int
    matmul_gflops: float
    train_s_per_step: float  # median over the timed steps
    train_gflop_per_step: float
    train_fraction_of_matmul: float
    peak_memory_mib: float
    eager_ms: float | None = None
    onnx_ms: float | None = None
    generator_gflop: float | None = None
    eager_fraction_of_matmul: float | None = None
    onnx_fraction_of_matmul: float | None = None
    translate_images_per_s: float | None = None
    translate_fraction_of_model: float | None = None
    steps: int = 0
    train_s_min: float | None = None  # the spread of the timed steps
    train_s_max: float | None = None
    translate_size: str | None = None  # the images translate was timed on (and the raw model rate with them)
    precision: str = "fp32"
    compiled: bool = False
    notes: list[str] = field(default_factory=list)


def matmul_gflops(device: torch.device, n: int = 2048, seconds: float = 2.0) -> float:
    """Best fp32 GFLOP/s of an n x n matmul over about ``seconds`` (2 n^3 FLOPs each)."""
    a = torch.randn(n, n, device=device, generator=None)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    _sync(device)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn: Callable[[], Any], device: torch.device, warmup: int, runs: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux: the process's peak RSS


def bench(
    config: Config,
    name: str,
    data_root: Path | None = None,
    steps: int = 10,
    warmup: int = 2,
    images: Path | None = None,
    n_images: int = 16,
    latency_runs: int = 10,
) -> BenchResult:
    """Measure ``config`` (see the module docstring); ``images``: a folder for the translate row
    (default: ``n_images`` generated photo-like images at the crop size)."""
    from cyclekit.recipes import get_recipe
    from cyclekit.recipes.common import seed_everything
    from cyclekit.run import open_data

    seed_everything(config.seed)
    config, data = open_data(config, data_root)  # located and opened once, for both recipes built here
    recipe = get_recipe(config.recipe)(config, data)
    device = recipe.device
    result = BenchResult(
        config=name,
        recipe=config.recipe,
        device=str(device),
        threads=torch.get_num_threads(),
        size=_image_side(config),
        matmul_gflops=round(matmul_gflops(device), 1),
        train_s_per_step=0.0,
        train_gflop_per_step=0.0,
        train_fraction_of_matmul=0.0,
        peak_memory_mib=0.0,
        steps=steps,
    )
    # FLOPs are counted on one eager fp32 step of a recipe built for it; the timing is the training
    # loop itself (`cyclekit.train.loop.fit`, the same data loader, precision and compile setting,
    # a fresh recipe), so the numbers are what `cyclekit train` does with this config.
    batches = recipe.batches(0, 0)
    try:
        with FlopCounterMode(display=False) as counter:
            recipe.train_step(next(iter(batches)), 0)
        flops: int | None = counter.get_total_flops()
    except RuntimeError as exc:  # e.g. a gradient penalty's double backward, which the counter cannot follow
        flops = None
        result.notes.append(f"FLOPs not counted: torch's counter cannot follow this step ({_first_line(exc)})")
    del batches
    seconds = _loop_step_times(config, data, warmup, steps)
    from cyclekit.train.precision import resolve_precision

    result.precision, result.compiled = resolve_precision(config.train.precision, device).name, config.train.compile
    result.train_s_per_step = round(statistics.median(seconds), 4)
    result.train_s_min, result.train_s_max = round(min(seconds), 4), round(max(seconds), 4)
    if flops is not None:
        result.train_gflop_per_step = round(flops / 1e9, 3)
        result.train_fraction_of_matmul = round(flops / result.train_s_per_step / 1e9 / result.matmul_gflops, 3)
    result.peak_memory_mib = round(_peak_memory_mib(device), 1)

    bundle, _ = recipe.make_bundle(recipe.config, recipe.state.nets, 0, 0)
    if bundle.translates:
        _bench_inference(recipe, result, images, n_images, latency_runs, device)
    else:
        result.notes.append("the recipe samples rather than translates: no inference or translate rows")
    return result


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _image_side(config: Config) -> int | None:
    """The side of the images the config trains on: the crop of an image folder, the size of a
    labelled source (MNIST, the digits), None for points (the ring)."""
    if config.data.has("crop_size"):
        return config.data.crop_size
    from cyclekit.data.sources import SOURCES

    shape = SOURCES[config.data.kind].image_shape(config.data)
    return None if shape is None else shape[-1]


def _loop_step_times(config: Config, data: RunData, warmup: int, steps: int) -> list[float]:
    """Seconds of each of ``steps`` training steps after ``warmup`` ones, as the training loop
    logs them (data loading included), from a real `fit` in a temporary run folder."""
    import dataclasses

    from cyclekit.recipes import get_recipe
    from cyclekit.recipes.common import seed_everything
    from cyclekit.records import read_json_lines
    from cyclekit.train.loop import fit

    seed_everything(config.seed)
    recipe = get_recipe(config.recipe)(config, data)
    train = dataclasses.replace(
        config.train,
        max_steps=warmup + steps,
        log_every=1,
        checkpoint_every=10**9,
        sample_every=0,
        eval_every=0,
        progress=False,
    )
    with tempfile.TemporaryDirectory(prefix="cyclekit-bench-run-") as tmp:
        fit(recipe, Path(tmp), train)
        rows = read_json_lines(Path(tmp) / "metrics.jsonl")
    times = [float(r["sec"]) for r in rows if isinstance(r.get("step"), int) and r["step"] > warmup]
    if not times:
        raise CyclekitError("the benchmark run logged no timed steps")
    return times


def _bench_inference(
    recipe: Any, result: BenchResult, images: Path | None, n_images: int, runs: int, device: torch.device
) -> None:
    from cyclekit.export.onnx import export_bundle
    from cyclekit.inference.files import collect_inputs, translate_files
    from cyclekit.inference.translator import Translator

    with tempfile.TemporaryDirectory(prefix="cyclekit-bench-") as tmp:
        folder = Path(tmp) / "bundle"
        recipe.write_bundle(folder, 0, 0)
        torch_t = Translator.load(folder, device=str(device))
        direction = next(iter(torch_t.backend.directions))
        net = torch_t.backend.network(direction)
        side = max(result.size, torch_t.min_size)
        side += -side % torch_t.size_multiple
        x = torch.rand(1, torch_t.channels, side, side, device=device) * 2 - 1
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(x)
        gflop = counter.get_total_flops() / 1e9
        with torch.no_grad():
            eager = _median_seconds(lambda: net(x), device, 2, runs)
        (exported,) = export_bundle(folder, direction, out_dir=Path(tmp) / "onnx")
        onnx_t = Translator.load(exported.path, device="cpu" if device.type == "cpu" else "auto")
        xn = x.cpu().numpy()
        onnx_s = _median_seconds(lambda: onnx_t.backend.run(direction, xn), torch.device("cpu"), 2, runs)
        result.generator_gflop = round(gflop, 3)
        result.eager_ms = round(eager * 1000, 2)
        result.onnx_ms = round(onnx_s * 1000, 2)
        result.eager_fraction_of_matmul = round(gflop / eager / result.matmul_gflops, 3)
        result.onnx_fraction_of_matmul = round(gflop / onnx_s / result.matmul_gflops, 3)

        if images is None:
            images = Path(tmp) / "images"
            _photos(images, n_images, side, torch_t.channels)
        jobs = collect_inputs([str(images)]).jobs
        if not jobs:
            raise CyclekitError(f"no images in {images} to time translate on")
        target = "B" if direction == "AtoB" else "A"
        torch_t.prepare(target)
        summary = translate_files(torch_t, jobs, Path(tmp) / "out", target, batch_size=4)
        # The raw model rate at the size of the images translated (their median), so the fraction
        # compares the same work: decoding, padding and PNG encoding are what it leaves out.
        from PIL import Image

        with Image.open(jobs[len(jobs) // 2][0]) as probe:
            w, h = probe.size
        model_s = eager
        if (h, w) != (side, side):
            ph, pw = (-(-n // torch_t.size_multiple) * torch_t.size_multiple for n in (h, w))
            xi = torch.rand(1, torch_t.channels, max(ph, torch_t.min_size), max(pw, torch_t.min_size), device=device)
            with torch.no_grad():
                model_s = _median_seconds(lambda: net(xi * 2 - 1), device, 1, max(3, runs // 3))
        result.translate_size = f"{w}x{h}"
        result.translate_images_per_s = round(summary.images_per_second, 3)
        result.translate_fraction_of_model = round(summary.images_per_second * model_s, 3)


def _photos(folder: Path, n: int, side: int, channels: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side] / side
    for i in range(n):
        base = np.stack([xx, yy, (xx + yy) / 2], axis=2) * rng.uniform(60, 200, size=3)
        img = np.clip(base + rng.normal(0, 10, size=base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img if channels == 3 else img[:, :, 0]).save(folder / f"{i:03d}.png")


def format_table(result: BenchResult) -> str:
    """The numbers as aligned lines for the terminal."""

    def fmt(value: Any, unit: str = "") -> str:
        return "-" if value is None else f"{value}{unit}"

    rows = [
        ("device, threads", f"{result.device}, {result.threads}"),
        ("precision", f"{result.precision}{', compiled' if result.compiled else ''}"),
        ("fp32 matmul rate", fmt(result.matmul_gflops, " GFLOP/s (2048x2048, the best of 2 s)")),
        ("train step", f"{result.train_s_per_step} s/step median, {result.train_s_min} min, {result.train_s_max} "
                       f"max over {result.steps} steps of the training loop (data loading included)"),
        ("train FLOPs", f"{result.train_gflop_per_step} GFLOP/step at {result.size} px: "
                        f"{result.train_fraction_of_matmul:.0%} of the fp32 matmul rate above"
                        if result.train_gflop_per_step else "not counted (see the note)"),
        ("peak memory", fmt(result.peak_memory_mib, " MiB")),
        ("generator, eager", f"{fmt(result.eager_ms, ' ms')} at {result.size}x{result.size}, batch 1 "
                             f"({fmt(result.generator_gflop, ' GFLOP')}: {_pct(result.eager_fraction_of_matmul)} "
                             "of the matmul rate)"),
        ("generator, onnxruntime", f"{fmt(result.onnx_ms, ' ms')} at {result.size}x{result.size} "
                                   f"({_pct(result.onnx_fraction_of_matmul)} of the matmul rate)"),
        ("translate", f"{fmt(result.translate_images_per_s, ' images/s')} on {result.translate_size} images "
                      f"({_pct(result.translate_fraction_of_model)} of the raw eager model rate at that size)"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    head = f"{result.config} ({result.recipe}, {result.size} px)"
    return "\n".join([head, *(f"  {k:<{width}}  {v}" for k, v in rows), *(f"  note: {n}" for n in result.notes)])


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def write_json(result: BenchResult, path: Path) -> None:
    from cyclekit.atomic import atomic_write

    atomic_write(path, json.dumps(asdict(result), indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# side by side with another checkout

# Runs in a child process with the other checkout first on sys.path. It uses only APIs that every
# cyclekit version has (a config loader and a recipe with batches/train_step), so it also times
# commits from before `cyclekit bench` existed.
_CHILD = r"""
import json, os, statistics, sys, time
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
repo, config, overrides, data_root = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
steps, warmup = int(sys.argv[5]), int(sys.argv[6])
sys.path.insert(0, repo)
import torch
try:
    from cyclekit.recipes import load_config
except ImportError:
    from cyclekit.config import load_config
from cyclekit.run import build_recipe
from cyclekit.recipes.common import seed_everything
cfg = load_config(config, overrides)
seed_everything(cfg.seed)
recipe = build_recipe(cfg, data_root=None if data_root == "-" else __import__("pathlib").Path(data_root))
batches = recipe.batches(0, 0)
times = []
for i in range(warmup + steps):
    t0 = time.perf_counter()
    recipe.train_step(next(batches), i)
    if i >= warmup:
        times.append(time.perf_counter() - t0)
print("CYCLEKIT_BENCH " + json.dumps({"times": times, "file": __import__("cyclekit").__file__}))
"""


def _checkout(ref: str, tmp: Path) -> Path:
    """``ref`` as a folder holding a cyclekit/ package: a path as it is, else a git commit-ish
    checked out (git worktree) into ``tmp``."""
    path = Path(ref)
    if (path / "cyclekit" / "__init__.py").is_file():
        return path.resolve()
    target = tmp / "ref"
    done = subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(target), ref], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise CyclekitError(f"--compare {ref}: neither a cyclekit checkout nor a git commit of {REPO}")
    return target


def compare_train_steps(
    config: str,
    overrides: Sequence[str],
    ref: str,
    data_root: Path | None = None,
    rounds: int = 3,
    steps: int = 5,
    warmup: int = 2,
) -> dict[str, Any]:
    """Median s/step of this checkout and of ``ref`` over ``rounds`` alternating child processes."""
    times: dict[str, list[float]] = {"this": [], "ref": []}
    with tempfile.TemporaryDirectory(prefix="cyclekit-compare-") as tmp:
        other = _checkout(ref, Path(tmp))
        try:
            for _ in range(rounds):
                for side, repo in (("ref", other), ("this", REPO)):
                    times[side] += _child_times(repo, config, overrides, data_root, steps, warmup)
        finally:
            if other.parent == Path(tmp):
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(other)], capture_output=True
                )
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "ref": ref,
        "this_s_per_step": round(med["this"], 4),
        "ref_s_per_step": round(med["ref"], 4),
        "speedup": round(med["ref"] / med["this"], 3),
        "steps_each": len(times["this"]),
    }


def _child_times(
    repo: Path, config: str, overrides: Sequence[str], data_root: Path | None, steps: int, warmup: int
) -> list[float]:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    env.pop("PYTHONPATH", None)
    args = [
        sys.executable,
        "-c",
        _CHILD,
        str(repo),
        config,
        json.dumps(list(overrides)),
        str(Path(data_root).resolve() if data_root else "-"),
    ]
    done = subprocess.run([*args, str(steps), str(warmup)], capture_output=True, text=True, env=env, cwd=repo)
    for line in done.stdout.splitlines():
        if line.startswith("CYCLEKIT_BENCH "):
            payload = json.loads(line.split(" ", 1)[1])
            if not payload["file"].startswith(str(repo)):
                raise CyclekitError(f"the measurement of {repo} imported cyclekit from {payload['file']}")
            return payload["times"]
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise CyclekitError(f"could not time the training step of {repo}: {last}")
