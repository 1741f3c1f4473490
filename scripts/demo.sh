#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv (if needed), train the CycleGAN demo
# (summer -> autumn, built-in generated data, offline, a few minutes on a CPU), then translate a
# test image with the trained model. Safe to run again: a finished run is resumed (nothing to do)
# and re-evaluated.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_ALBUMENTATIONS_UPDATE=1
CK=.venv/bin/cyclekit

$CK train demo --resume auto
data=$($CK data demo)
$CK translate "$data/testA/scene_0000.png" "$data/testA/scene_0001.png" --model runs/demo --to B \
    --side-by-side -o results/demo --overwrite
$CK eval runs/demo --no-fid          # paired scores of both directions vs. baselines -> runs/demo/results.json
$CK report runs/demo                 # runs/demo/report.html, now with the final scores
echo
echo "Done. Training results: runs/demo/ (report.html, samples/, loss.png, results.json, bundle/);"
echo "translated test images (input | output): results/demo/"
