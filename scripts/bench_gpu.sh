#!/usr/bin/env bash
# The GPU benchmark matrix of docs/benchmarks.md: CycleGAN at 256 px, 64 filters (the reference
# networks), batch 1 and 4, in fp32, bf16 and with torch.compile, plus a 1-GPU torchrun/DDP smoke run.
# Usage (on a CUDA machine, after scripts/setup.sh): bash scripts/bench_gpu.sh DATA_ROOT [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: bash scripts/bench_gpu.sh DATA_ROOT [OUT_DIR] (a horse2zebra-style folder)}
OUT=${2:-bench-gpu}
mkdir -p "$OUT"
export NO_ALBUMENTATIONS_UPDATE=1
PY=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
for batch in 1 4; do
  for mode in fp32 bf16 compile; do
    set_args=(--set data.batch_size="$batch" --set data.workers=4 --set train.device=cuda)
    case $mode in
      fp32) set_args+=(--set train.precision=fp32) ;;
      bf16) set_args+=(--set train.precision=bf16) ;;
      compile) set_args+=(--set train.precision=bf16 --set train.compile=true) ;;
    esac
    $PY -m cyclekit bench horse2zebra --data-root "$DATA" "${set_args[@]}" --steps 20 --warmup 5 \
      -o "$OUT/bench-b$batch-$mode.json" | tee "$OUT/bench-b$batch-$mode.txt"
  done
done
# DDP smoke: one GPU through torchrun, a few hundred steps, then the same through --nproc.
.venv/bin/torchrun --standalone --nproc-per-node 1 -m cyclekit train horse2zebra --data-root "$DATA" \
  --out "$OUT/runs" --name ddp-smoke --overwrite --quiet --set train.max_steps=200 | tee "$OUT/ddp-smoke.txt"
