#!/usr/bin/env bash
# The GAN family on MNIST (issue 25's measurements): train each mnist-* preset, one after another,
# on the MNIST idx files in DIR (or any MNIST-format data set: four idx files, gzip or not, and an
# optional classes.txt); each run is scored at its end by the data's yardstick classifier. Then
# print one table of them all (ranked when one yardstick scored them all) and write the page.
#
#   bash scripts/mnist_family.sh DIR [OUT [PRESET...]]   (OUT: runs-mnist; PRESET: every mnist preset)
#
# Each preset trains for up to 20 minutes on a 2-core CPU (mnist-sgan up to 30). A finished run is
# resumed (nothing to do), so the script can be stopped and started again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    echo "usage: bash scripts/mnist_family.sh DIR [OUT] [PRESET...]" >&2
    exit 2
fi
data=$1
out=${2:-runs-mnist}
shift $(( $# >= 2 ? 2 : 1 ))
presets=("$@")
if [ ${#presets[@]} -eq 0 ]; then
    presets=(mnist-gan mnist-dcgan mnist-cgan mnist-acgan mnist-wgan mnist-wgan-gp mnist-began mnist-sgan)
fi
export NO_ALBUMENTATIONS_UPDATE=1
CK=.venv/bin/cyclekit
runs=()
for preset in "${presets[@]}"; do
    $CK train "$preset" --data-root "$data" --out "$out" --resume auto --quiet
    runs+=("$out/$preset")
done
$CK compare "${runs[@]}" --html "$out/compare.html" -o "$out/compare.csv"
