#!/usr/bin/env bash
# The test suite on an accelerator, in one call: prints the devices, then runs pytest with
# 8 workers over the library's tests and writes tests.log to $OUT (default: .).
# Uses the python3 that is there (jax with its GPU or TPU plugin, flax, optax, equinox, pytest,
# pytest-xdist importable) and this checkout through PYTHONPATH: nothing is installed.
# The tests that tie an op to an oracle's exact roundings compare bit for bit on the CPU and, on
# an accelerator, the same mask within an ulp (tests/helpers.py: assert_same_bits).
# Usage: bash tests/device_tests.sh [more pytest arguments, e.g. test paths]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}"
mkdir -p "$out"
export PYTHONPATH="$PWD:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false # 8 workers share one accelerator's memory
backend=$(python3 -c 'import jax; print(jax.default_backend())')
python3 -c 'import jax; print("jax", jax.__version__, jax.devices())'
if [ "$backend" = cpu ]; then
  echo "device_tests.sh: no accelerator: jax sees only the CPU" >&2
  exit 2
fi
paths=(tests/stochastic tests/transforms tests/penalties tests/reparam tests/linen tests/nnx tests/equinox
  tests/test_masks.py tests/test_norms.py tests/test_dtype_promotion.py tests/test_masking_regressions.py
  tests/test_helpers.py)
if [ "$#" -gt 0 ]; then
  paths=("$@")
fi
python3 -m pytest -q -p no:cacheprovider -o addopts="--import-mode=importlib" -n 8 -rfE \
  --continue-on-collection-errors "${paths[@]}" 2>&1 | tee -i "$out/tests.log"
