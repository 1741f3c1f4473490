"""WGAN-GP on the digits with the paper's optimizer against the RMSprop settings it trained with
before (cyclekit up to issue 24): coverage and Fréchet side by side.

    python scripts/bench_wgan_gp.py                    # the whole digits-wgan-gp preset, twice (~2 x 4 min)
    python scripts/bench_wgan_gp.py --steps 20         # a quick check that it works (scores mean nothing)

Trains the `digits-wgan-gp` preset twice through the CLI, same seed and same steps: once with its
own optimizer (Adam, lr 1e-4, betas (0, 0.9): Gulrajani et al. 2017, Algorithm 1), once with
`optim.kind=rmsprop optim.lr=5e-5` (what `wgan.constraint: gp` trained with before), then prints
each run's sampling scores from its results.json (classes covered by the samples, the Fréchet
distance in the yardstick classifier's features: lower is better) and its training time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = {
    "adam (paper)": [],  # the preset's own: Adam 1e-4, betas (0, 0.9)
    "rmsprop 5e-5 (before)": ["optim.kind=rmsprop", "optim.lr=5e-5"],
}


def train(out: Path, name: str, sets: list[str], steps: int | None, seed: int) -> tuple[dict, float]:
    """One run of the preset; (its results.json sampling scores, seconds)."""
    args = [sys.executable, "-m", "cyclekit.cli", "train", "digits-wgan-gp", "--out", str(out), "--name", name]
    args += ["--quiet", "--set", f"seed={seed}", "--set", "train.progress=false"]
    if steps is not None:
        args += ["--set", f"train.max_steps={steps}"]
    for item in sets:
        args += ["--set", item]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"error: the {name} run failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    results = out / name / "results.json"
    if not results.is_file():
        sys.exit(f"error: the {name} run wrote no {results}")
    return json.loads(results.read_text()).get("sampling", {}), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=None, help="critic steps per run (default: the preset's epochs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-wgan-gp"), help="folder for the two runs")
    args = ap.parse_args()
    if args.steps is not None and args.steps <= 0:
        sys.exit("error: --steps: must be > 0")
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"error: {args.out} is not empty; give another --out")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (label, sets) in enumerate(RUNS.items()):
        print(f"training {label} ...", flush=True)
        scores, seconds = train(args.out, f"run{i}", sets, args.steps, args.seed)
        rows.append((label, scores, seconds))
    steps = f"{args.steps} critic steps" if args.steps else "the preset's epochs"
    print(f"\ndigits-wgan-gp, seed {args.seed}, {steps} each:")
    print(f"{'optimizer':<24}{'classes covered':>17}{'Fréchet':>10}{'seconds':>10}")
    for label, s, seconds in rows:
        covered = f"{s.get('classes_covered', '?')} of {s.get('of_classes', '?')}"
        frechet = s.get("frechet_classifier")
        print(f"{label:<24}{covered:>17}{frechet if frechet is not None else '?':>10}{seconds:>10.0f}")


if __name__ == "__main__":
    main()
