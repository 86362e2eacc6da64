"""DropBlock on zero-size inputs, and dropblock_gamma's argument checks (concrete and traced rates).

Oracle for gamma: the formula of Ghiasi et al. (eq. 1) with the block clipped to the map.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg


def _gamma(rate, b, h, w):
    b = min(b, h, w)
    return min(max(rate / b**2 * h * w / ((h - b + 1) * (w - b + 1)), 0.0), 1.0)


@pytest.mark.parametrize("shape", [(2, 0, 4, 3), (2, 4, 0, 3), (2, 0, 0, 3), (0, 4, 4, 3), (2, 4, 4, 0)])
@pytest.mark.parametrize("sampler", ["fast", "jax"])
def test_dropblock_on_zero_size_input_returns_it(shape, sampler):
    x = jnp.ones(shape, jnp.bfloat16)
    key = jax.random.key(0)
    for rate in (0.1, 1.0):
        y = jaxreg.dropblock(key, x, rate, 3, sampler=sampler)
        assert y.shape == shape and y.dtype == x.dtype
    y = jax.jit(lambda k, x, r: jaxreg.dropblock(k, x, r, 3, sampler=sampler))(key, x, jnp.float32(0.3))
    assert y.shape == shape and y.dtype == x.dtype


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((0.1, 0, 8, 8), "block_size"),
        ((0.1, -2, 8, 8), "block_size"),
        ((0.1, 3, 0, 8), "height"),
        ((0.1, 3, 8, 0), "width"),
        ((-0.1, 3, 8, 8), "rate"),
        ((1.5, 3, 8, 8), "rate"),
        ((float("nan"), 3, 8, 8), "rate"),
        ((np.float32("nan"), 3, 8, 8), "rate"),
    ],
)
def test_dropblock_gamma_rejects_invalid_arguments_by_name(args, name):
    with pytest.raises(ValueError, match=name) as info:
        jaxreg.dropblock_gamma(*args)
    value = args[("rate", "block_size", "height", "width").index(name)]
    assert repr(value) in str(info.value) or str(value) in str(info.value)


def test_dropblock_gamma_matches_the_formula_for_concrete_and_traced_rates():
    for rate, b, h, w in ((0.1, 7, 56, 56), (0.3, 3, 5, 9), (0.5, 9, 4, 6), (0.0, 1, 1, 1), (1.0, 3, 3, 3)):
        assert jaxreg.dropblock_gamma(rate, b, h, w) == pytest.approx(_gamma(rate, b, h, w), rel=1e-12)
        traced = jax.jit(lambda r, b=b, h=h, w=w: jaxreg.dropblock_gamma(r, b, h, w))(jnp.float32(rate))
        np.testing.assert_allclose(float(traced), _gamma(rate, b, h, w), rtol=1e-6)
