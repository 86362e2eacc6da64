"""pytest configuration shared by the test suite."""

import os
import pathlib
import sys

# The suite compiles thousands of small XLA programs, and LLVM's optimization of the compiled CPU
# code is most of that time; the tests check values, not speed, so they compile without it (about
# 40% less CPU time). Set before JAX starts its backend; subprocesses (examples, sharding checks,
# the benchmark smoke test) inherit it. `python -m benchmarks` run by hand is unaffected.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

# With --import-mode=importlib (pyproject.toml) no test folder is on sys.path: put this one there,
# so that tests/<area>/test_*.py can `from helpers import ...`. pytest imports this conftest before
# collecting any test module, in the main process and in each pytest-xdist worker alike.
_TESTS = str(pathlib.Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

# Modules that live beside the tests but are not test modules: --doctest-modules must not import them.
# make_torch_reference.py needs torch (only to regenerate data/); sharding_checks.py runs in its own
# process with 8 simulated devices; helpers.py is imported by the tests as `helpers`.
collect_ignore = ["make_torch_reference.py", "sharding_checks.py", "helpers.py"]
