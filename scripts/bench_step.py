"""CycleGAN step time with and without batched network calls, interleaved in one process.

    python scripts/bench_step.py --data-root ../shared/data/horse2zebra --size 64 --filters 32 --steps 25

Both recipes start from the same weights and see the same batches; their steps alternate
(separate, batched, separate, ...), so machine noise hits both alike, and the medians are
compared as a ratio. These machines swing 1.5x between runs: only the ratio means something.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from cyclekit.recipes import load_config  # noqa: E402
from cyclekit.recipes.common import seed_everything  # noqa: E402
from cyclekit.recipes.cyclegan import CycleGanRecipe  # noqa: E402
from cyclekit.run.data import open_data  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    cfg = load_config(
        "horse2zebra",
        [
            f"data.load_size={round(args.size * 286 / 256)}",
            f"data.crop_size={args.size}",
            "data.workers=0",
            f"model.generator.ngf={args.filters}",
            f"model.generator.n_blocks={args.blocks}",
            f"model.discriminator.ndf={args.filters}",
        ],
    )
    recipes = {}
    for name, batched in (("separate", False), ("batched", True)):
        seed_everything(0)
        recipes[name] = CycleGanRecipe(*open_data(cfg, args.data_root))
        recipes[name].batch_g = recipes[name].batch_d = batched
    batches = recipes["batched"].batches(0, 0)
    times: dict[str, list[float]] = {k: [] for k in recipes}
    for step in range(args.warmup + args.steps):
        batch = next(batches)
        for name, recipe in recipes.items():
            t0 = time.perf_counter()
            recipe.train_step(batch, step)
            if step >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"cyclegan {args.size}px filters={args.filters} blocks={args.blocks} threads={torch.get_num_threads()}, "
        f"medians of {args.steps} interleaved steps: separate calls {med['separate']:.3f} s/step, "
        f"batched {med['batched']:.3f} s/step: {med['separate'] / med['batched']:.2f}x"
    )


if __name__ == "__main__":
    main()
