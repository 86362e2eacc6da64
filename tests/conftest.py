"""pytest configuration shared by the test suite."""

# Scripts that live beside the tests but are not test modules: --doctest-modules must not import them.
# make_torch_reference.py needs torch (only to regenerate data/); sharding_checks.py runs in its own
# process with 8 simulated devices.
collect_ignore = ["make_torch_reference.py", "sharding_checks.py"]
