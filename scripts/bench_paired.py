"""Train a recipe on a paired folder with a stated CPU budget, evaluate it, and print its paired
scores next to the identity and mean-target baselines, with the time taken.

    python scripts/bench_paired.py --data ../shared/data/facades --recipe pix2pix --direction AtoB
    python scripts/bench_paired.py --data ../shared/data/facades --recipe cyclegan --direction AtoB

The budget (defaults): images loaded at --size + 1/8 and cropped to --size (64), --epochs 2 at the
full learning rate then --decay-epochs 1 of linear decay, batch 1, --filters 32 in G and D; Pix2Pix
with a U-Net of log2(size) downsamplings, CycleGAN with the preset's 9-block ResNet. The paired
folder is the Pix2Pix layout (trainA/trainB with _A/_B suffixes, testA/testB by name; facades'):
CycleGAN trains on the same folders without using the pairing. Scores are `cyclekit eval`'s on the
test pairs (label-map scores too when the targets are label maps); FID is left out (--fid adds it
when the Inception weights are available).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cyclekit.evaluation.evaluate import METRICS, EvalData, evaluate, load_fid_network, write_results  # noqa: E402
from cyclekit.recipes import load_config  # noqa: E402
from cyclekit.run import train_run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="paired folder (trainA/trainB/testA/testB)")
    ap.add_argument("--recipe", choices=("pix2pix", "cyclegan"), required=True)
    ap.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--decay-epochs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs-bench"))
    ap.add_argument("--fid", action="store_true", help="also FID/KID (needs the Inception weights)")
    args = ap.parse_args()

    load = args.size + args.size // 8
    common = [
        f"data.load_size={load}",
        f"data.crop_size={args.size}",
        f"model.generator.ngf={args.filters}",
        f"model.discriminator.ndf={args.filters}",
        f"train.epochs={args.epochs}",
        f"train.decay_epochs={args.decay_epochs}",
        "data.batch_size=1",
        "train.progress=false",
        f"name={args.recipe}-{args.direction}-{args.size}px",
    ]
    if args.recipe == "pix2pix":
        preset = "facades"
        extra = [f"pix2pix.direction={args.direction}", f"model.generator.n_downs={int(math.log2(args.size))}"]
    else:
        preset = "horse2zebra"
        extra = ["data.dataset=null"]
    cfg = load_config(preset, common + extra)
    started = time.perf_counter()
    report = train_run(cfg, args.out, overwrite=True, data_root=args.data)
    seconds = time.perf_counter() - started

    data = EvalData.of(cfg.data, args.data)
    fid = load_fid_network(None, required=True) if args.fid else None
    results = evaluate(report.run_dir, data, [args.direction], fid)
    write_results(results, report.run_dir / "results.json")
    row = results["directions"][args.direction]
    base = results["baselines"][args.direction]
    n = results["counts"][args.direction]["paired"]
    print(
        f"{args.recipe} {args.direction} on {args.data} ({n} test pairs), {args.size} px, {args.filters} filters, "
        f"{args.epochs}+{args.decay_epochs} epochs, batch 1: {report.fit.step} steps, training {seconds:.1f} s"
    )
    names = [m for m in METRICS if isinstance(row.get(m), (int, float))]
    print(f"{'':14s}" + "".join(f"{m:>11s}" for m in names))
    for label, values in (
        ("model", row),
        ("identity", base.get("identity", {})),
        ("mean target", base.get("mean_target", {})),
    ):
        print(f"{label:14s}" + "".join(f"{values[m]:11.4f}" if m in values else f"{'-':>11s}" for m in names))
    print(json.dumps({"recipe": args.recipe, "seconds": round(seconds, 1), "scores": row, "baselines": base}))


if __name__ == "__main__":
    main()
