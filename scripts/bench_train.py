"""Seconds per CycleGAN training iteration on real data (batch 1, the reference recipe).

    python scripts/bench_train.py --data-root ../shared/data/horse2zebra --size 64 --filters 32
    python scripts/bench_train.py --data-root ../shared/data/horse2zebra --size 256 --filters 64

Prints the mean and spread of s/iteration after warm-up, data loading included, and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from cyclekit.recipes import load_config  # noqa: E402
from cyclekit.recipes.cyclegan import CycleGanRecipe  # noqa: E402
from cyclekit.run.data import open_data  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--size", type=int, default=256, help="crop size (load size = size * 286 / 256)")
    ap.add_argument("--filters", type=int, default=64, help="ngf = ndf")
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = round(args.size * 286 / 256)
    cfg = load_config(
        "horse2zebra",
        [
            f"data.load_size={load}",
            f"data.crop_size={args.size}",
            f"data.workers={args.workers}",
            f"model.generator.ngf={args.filters}",
            f"model.generator.n_blocks={args.blocks}",
            f"model.discriminator.ndf={args.filters}",
            "train.progress=false",
        ],
    )
    recipe = CycleGanRecipe(*open_data(cfg, args.data_root))
    times = []
    batches = recipe.batches(0, 0)
    t0 = time.perf_counter()
    for step in range(args.warmup + args.steps):
        batch = next(batches)
        recipe.train_step(batch, step)
        t1 = time.perf_counter()
        if step >= args.warmup:
            times.append(t1 - t0)
        t0 = t1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"cyclegan {args.size}px filters={args.filters} blocks={args.blocks} threads={torch.get_num_threads()} "
        f"device={recipe.device}: {statistics.mean(times):.3f} s/iter "
        f"(min {min(times):.3f}, max {max(times):.3f}, n={len(times)}), peak RSS {rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()
