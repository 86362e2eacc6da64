#!/usr/bin/env bash
# The benchmark suite on an accelerator, in one call: prints the devices, runs
# `python -m benchmarks` with the sizes below and writes BACKEND.json and BACKEND.log
# (gpu.json on a GPU, tpu.json on a TPU) to $OUT (default: benchmarks/results).
# Uses the python3 that is there (jax with its GPU or TPU plugin, flax, optax, numpy and
# rich importable) and this checkout's jaxreg through PYTHONPATH: nothing is installed.
# Then, here:
#   python -m benchmarks.readme benchmarks/results/cpu.json benchmarks/results/gpu.json \
#       --write docs/performance.md
# Usage: bash benchmarks/device_run.sh [more arguments for python -m benchmarks]
# BENCHMARKS_TIME_LIMIT=SECONDS interrupts the suite after that long: the JSON then holds
# the cases measured so far and says "interrupted": true (so does a Ctrl-C: tee ignores it).
# Sizes: 2^20 to 2^26 elements for the dropout family (an accelerator idles at 2^16); the
# optimizer steps at their usual 25.2M parameters.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
backend=$(python3 -c 'import jax; print(jax.default_backend())')
python3 -c 'import jax; print("jax", jax.__version__, jax.devices())'
if [ "$backend" = cpu ]; then
  echo "device_run.sh: no accelerator: jax sees only the CPU" >&2
  exit 2
fi
limit=()
if [ -n "${BENCHMARKS_TIME_LIMIT:-}" ]; then
  # --foreground: a Ctrl-C still reaches the suite (timeout would put it in its own group)
  limit=(timeout --foreground --preserve-status -s INT "$BENCHMARKS_TIME_LIMIT")
fi
"${limit[@]}" python3 -m benchmarks --sizes 20,22,24,26 --json "$out/$backend.json" "$@" 2>&1 | tee -i "$out/$backend.log"
