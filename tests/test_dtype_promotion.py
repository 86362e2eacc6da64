"""jaxreg under ``jax_numpy_dtype_promotion="strict"`` on bfloat16 and float16 inputs.

Strict promotion refuses implicit mixes such as (bfloat16, float32). jaxreg's choice of a float32
accumulator for low-precision inputs is its own, explicit, so it must not trip the strict mode:
each op below must run, give the input's dtype back where it documents so, and equal its value under
standard promotion.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg

KEY = jax.random.key(0)


def _transform_step(tx):
    params = {"w": jnp.linspace(-2, 2, 12).reshape(4, 3)}
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    return tx.update(params, tx.init(params), params)[0]["w"]


OPS = {
    "dropout": lambda x: jaxreg.dropout(KEY, x, 0.5),
    "alpha_dropout": lambda x: jaxreg.alpha_dropout(KEY, x, 0.5),
    "gaussian_dropout": lambda x: jaxreg.gaussian_dropout(KEY, x, 0.5),
    "gaussian_noise": lambda x: jaxreg.gaussian_noise(KEY, x, 0.5),
    "drop_path": lambda x: jaxreg.drop_path(KEY, x, 0.5),
    "spatial_dropout": lambda x: jaxreg.spatial_dropout(KEY, x[None], 0.5),
    "l2_penalty": lambda x: jaxreg.l2_penalty({"w": x}),
    "group_lasso_penalty": lambda x: jaxreg.group_lasso_penalty({"w": x}),
    "prox_l1": lambda x: _transform_step(jaxreg.prox_l1(0.1, 0.1)),
    "max_norm": lambda x: _transform_step(jaxreg.max_norm(1.0)),
    "add_l1": lambda x: _transform_step(optax.chain(jaxreg.add_l1(0.1))),
}


@pytest.mark.parametrize("dtype", [jnp.bfloat16])
@pytest.mark.parametrize("name", sorted(OPS))
def test_runs_under_strict_promotion_and_matches_standard(name, dtype):
    x = jax.device_put(np.linspace(-2, 2, 12, dtype=np.float32).reshape(4, 3).astype(dtype))
    op = jax.jit(OPS[name])  # traced (and compiled) once per promotion mode: the mode is in jit's cache key
    want = op(x)
    with jax.numpy_dtype_promotion("strict"):
        got = op(x)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))
