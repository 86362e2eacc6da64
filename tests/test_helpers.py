"""The test helpers that decide a pass (``assert_same_bits`` on the CPU and off it) and the script that
runs the tests on an accelerator."""

from __future__ import annotations

import helpers
import jax.numpy as jnp
import numpy as np
import pytest


@pytest.mark.parametrize("dtype", [np.float32, jnp.bfloat16, np.float16])
@pytest.mark.parametrize("on_cpu", [True, False])
def test_assert_same_bits(monkeypatch, dtype, on_cpu):
    monkeypatch.setattr(helpers, "ON_CPU", on_cpu)
    want = np.asarray([0.0, 1.0, -3.0, 0.7], dtype)
    bits = want.view(f"u{want.dtype.itemsize}")
    one_ulp = (bits + np.asarray([0, 0, 0, 1], bits.dtype)).view(want.dtype)
    two_ulps = (bits + np.asarray([0, 0, 2, 0], bits.dtype)).view(want.dtype)
    helpers.assert_same_bits(want.copy(), want)
    if on_cpu:
        with pytest.raises(AssertionError):
            helpers.assert_same_bits(one_ulp, want)
    else:
        helpers.assert_same_bits(one_ulp, want)
        helpers.assert_same_bits(two_ulps, want, ulps_elsewhere=2)
        with pytest.raises(AssertionError):
            helpers.assert_same_bits(two_ulps, want)
    # NaNs and infinities equal to themselves; a subnormal one ulp off (float16's own spacing).
    special = np.asarray([np.nan, np.inf, -np.inf, 0.0], dtype)
    helpers.assert_same_bits(special.copy(), special)
    tiny = np.asarray([0.0, np.finfo(np.float16).smallest_subnormal * 3, 1.0, 1.0], dtype)
    tiny_bits = tiny.view(f"u{tiny.dtype.itemsize}")
    tiny_next = (tiny_bits + np.asarray([0, 1, 0, 0], tiny_bits.dtype)).view(tiny.dtype)
    if on_cpu:
        with pytest.raises(AssertionError):
            helpers.assert_same_bits(tiny_next, tiny)
    else:
        helpers.assert_same_bits(tiny_next, tiny)
    # A different mask (a zero kept, a value dropped, the sign of a zero) fails everywhere.
    with pytest.raises(AssertionError):
        helpers.assert_same_bits(np.asarray([-0.0, 1.0, -3.0, 0.7], dtype), want)
    with pytest.raises(AssertionError):
        helpers.assert_same_bits(np.asarray([1e-3, 1.0, -3.0, 0.7], dtype), want)
    with pytest.raises(AssertionError):
        helpers.assert_same_bits(np.asarray([0.0, 0.0, -3.0, 0.7], dtype), want)


def test_device_tests_script_refuses_a_cpu(tmp_path):
    script = helpers.ROOT / "tests" / "device_tests.sh"
    helpers.assert_device_script_refuses_a_cpu(script, tmp_path)
    # Every default path exists (a renamed test file would otherwise be skipped there unnoticed).
    text = script.read_text()
    block = text[text.index("paths=(") : text.index(")\nif")]
    for path in block.removeprefix("paths=(").split():
        assert (helpers.ROOT / path).exists(), path
