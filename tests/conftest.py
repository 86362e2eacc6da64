"""pytest configuration shared by the test suite."""

import os
import pathlib
import shutil
import sys
import tempfile

# The suite compiles thousands of small XLA programs, and LLVM's optimization of the compiled CPU
# code is most of that time; the tests check values, not speed, so they compile without it (about
# 40% less CPU time). Set before JAX starts its backend; subprocesses (examples, sharding checks,
# the benchmark smoke test) inherit it. `python -m benchmarks` run by hand is unaffected.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

# Many programs are compiled more than once in a run: by both pytest-xdist workers, by the example
# scripts and the documentation's code blocks, by the demo that the CLI tests run several times. A
# persistent compilation cache shared by this run's processes serves each program after its first
# compilation (5 to 10% less CPU time for the suite, measured). It is made here, in the first process that
# imports this file (the xdist controller, before it starts the workers), in a fresh temporary
# directory that this process removes at the end: nothing is kept from one run to the next. The
# workers and the subprocesses inherit it through the environment, and jax reads these variables
# when it is imported. jax's compile-time events still fire on a cache hit, so counts of them do
# not change; their durations do: `python -m benchmarks` turns the cache off in its own process
# (its compile case times cold compilations). A directory already set by the user is used as it is.
_OWN_CACHE = None
_SET_HERE: list[str] = []  # the variables this process set, unset again with the directory
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _OWN_CACHE = tempfile.mkdtemp(prefix="jaxreg-tests-xla-cache-")
    for _name, _value in (
        ("JAX_COMPILATION_CACHE_DIR", _OWN_CACHE),
        ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0"),
        ("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1"),  # every program
    ):
        if not os.environ.get(_name):
            os.environ[_name] = _value
            _SET_HERE.append(_name)


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
        for name in _SET_HERE:
            os.environ.pop(name, None)


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
