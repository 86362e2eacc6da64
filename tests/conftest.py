"""pytest configuration shared by the test suite."""

import pathlib
import sys

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
