"""Would running the two CycleGAN generators concurrently (one intra-op thread each) beat running
them one after the other with every op split over all cores? Measured side by side, interleaved.

    python scripts/bench_concurrent.py --size 64 --filters 32 --rounds 25
    python scripts/bench_concurrent.py --size 256 --filters 64 --rounds 5

Each round does the generators' share of a CycleGAN step for both directions: G_AtoB and G_BtoA,
each forward on a batch of 2 (translation + identity) and backward. "sequential" runs them one
after the other with `torch.get_num_threads()` intra-op threads; "concurrent" runs each in its own
Python thread with one intra-op thread (torch releases the GIL inside ops). The best case for
concurrency: in a real step the cycle terms chain G_BtoA after G_AtoB and autograd runs the whole
backward on one thread, so only independent halves could overlap.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from cyclekit.models import build_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    opts = {"ngf": args.filters, "n_blocks": args.blocks}
    nets = [build_model("resnet", opts) for _ in range(2)]
    inputs = [torch.randn(2, 3, args.size, args.size) for _ in range(2)]

    def work(i: int) -> None:
        nets[i].zero_grad(set_to_none=True)
        nets[i](inputs[i]).abs().mean().backward()

    def sequential() -> float:
        t0 = time.perf_counter()
        work(0)
        work(1)
        return time.perf_counter() - t0

    def concurrent() -> float:
        def run(i: int) -> None:
            torch.set_num_threads(1)
            work(i)

        pool = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        t0 = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - t0
        torch.set_num_threads(threads)
        return elapsed

    seq, conc = [], []
    for r in range(args.warmup + args.rounds):
        if r % 2 == 0:  # alternate which goes first
            a, b = sequential(), concurrent()
        else:
            b, a = concurrent(), sequential()
        if r >= args.warmup:
            seq.append(a)
            conc.append(b)
    s, c = statistics.median(seq), statistics.median(conc)
    print(f"{args.size} px, {args.filters} filters, {args.blocks} blocks, {threads} threads, {args.rounds} rounds")
    print(f"sequential ({threads} intra-op threads): {s:.4f} s/round (median)")
    print(f"concurrent (2 threads x 1 intra-op):  {c:.4f} s/round (median)")
    print(f"concurrent speed-up: {s / c:.3f}x")


if __name__ == "__main__":
    main()
