#!/usr/bin/env bash
# Create .venv if it is missing and install cyclekit with its dependencies. Safe to run again:
# it re-installs only when pyproject.toml or TORCH_SPEC changed.
#   TORCH_SPEC   which torch to install first (default torch==2.13.0, the CPU build here);
#                e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
#   PYTHON       the interpreter that creates .venv (default python3; needs 3.10+)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
export NO_ALBUMENTATIONS_UPDATE=1

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "cyclekit needs Python 3.10 or newer")'
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.cyclekit-installed
want="$(cat pyproject.toml | .venv/bin/python -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])') $TORCH_SPEC"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch first, pinned: the package's own "torch>=2.1" is then already satisfied, so pip never
  # swaps in the registry's newest (CUDA, several GB) build.
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install --quiet $TORCH_SPEC
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  echo "$want" > "$stamp"
fi
# The exported web page's onnxruntime-web (`cyclekit export --web`): fetched once into the cache
# ($CYCLEKIT_CACHE, else ~/.cache/cyclekit) so that later exports work offline. Quiet, and never a
# failure: offline, an export says what to do instead (--ort-dir, --cdn).
.venv/bin/python -m cyclekit.export.ortweb >/dev/null 2>&1 || true
