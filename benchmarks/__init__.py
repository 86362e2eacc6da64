"""jaxreg's benchmark suite: ``python -m benchmarks`` from the repository root.

Every case times a jaxreg function and its baselines side by side in one
process, after compilation, interleaved (A B A B ...), each call followed by
``jax.block_until_ready``. Results are reported as ratios
``baseline_ms / jaxreg_ms`` (above 1: jaxreg is faster), which hold on a busy
machine where absolute times drift.

Modules:
  _harness: timing, environment, the row format of the JSON file.
  cases_dropout, cases_attention, cases_optim, cases_compile: the cases.
  readme: renders a results JSON as the README's performance section.
  figure: draws the performance page's figures from a results JSON.
  dieharder: streams the mask sampler's raw words into dieharder.
  normal_exhaustive: the law of the fast sampler's normals over all 2**32 words
    (``python benchmarks/normal_exhaustive.py``).
  memory: peak memory of one call per case, each in its own subprocess
    (``python -m benchmarks.memory``).
"""
