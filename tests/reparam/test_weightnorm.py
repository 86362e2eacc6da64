"""weight_norm_init and weight_normalize against NumPy norms; gradients reach g and v."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import on_device, random_normal

import jaxreg


@pytest.mark.parametrize(
    ("shape", "feature_axes", "reduce"),
    [((5, 3), -1, (0,)), ((3, 3, 2, 4), -1, (0, 1, 2)), ((5, 3), None, (0, 1)), ((4, 2, 3), (0, 2), (1,))],
)
def test_weight_normalize_matches_numpy(shape, feature_axes, reduce):
    v = random_normal(0, shape)
    kept = [d for d in range(len(shape)) if d not in reduce]
    g = np.abs(random_normal(1, tuple(shape[d] for d in kept))) + 0.5
    norms = np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=reduce, keepdims=True))
    g_b = g.reshape([shape[d] if d in kept else 1 for d in range(len(shape))])
    expected = g_b * v / norms

    @jax.jit
    def run(v, g):  # w from g, the initial g0, and w from g0
        g0 = jaxreg.weight_norm_init(v, feature_axes=feature_axes)
        return [jaxreg.weight_normalize(v, s, feature_axes=feature_axes) for s in (g, g0)] + [g0]

    got, reproduced, g0 = run(v, g)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(g0).reshape(-1), norms.reshape(-1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(reproduced), v, rtol=1e-5, atol=1e-6)


def test_weight_normalize_gradients_reach_g_and_v_and_are_finite_at_zero():
    v, c = jnp.asarray(random_normal(0, (5, 3))), jnp.asarray(random_normal(1, (5, 3)))

    @jax.jit
    def run(v, zero):  # the gradients of <w, c> at v, and those of sum(w) at v = 0, both with g = ||v||
        g = jaxreg.weight_norm_init(v)
        at_v = jax.grad(lambda v, g: jnp.sum(jaxreg.weight_normalize(v, g) * c), argnums=(0, 1))(v, g)
        return at_v, jax.grad(lambda v, g: jnp.sum(jaxreg.weight_normalize(v, g)), argnums=(0, 1))(zero, g)

    (gv, gg), grads = run(v, on_device(np.zeros((5, 3))))
    assert np.all(np.abs(np.asarray(gg)) > 0) and np.any(np.abs(np.asarray(gv)) > 0)
    # The gradient w.r.t. v is orthogonal to v per column (the norm is invariant to scaling v).
    np.testing.assert_allclose(np.sum(np.asarray(gv) * np.asarray(v), axis=0), 0.0, atol=1e-5)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in grads)


def test_weight_normalize_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"g must have shape \(3,\)"):
        jaxreg.weight_normalize(on_device(np.ones((5, 3))), on_device(np.ones(5)))
    with pytest.raises(ValueError, match="feature_axes"):
        jaxreg.weight_normalize(on_device(np.ones((5, 3))), on_device(np.ones(3)), feature_axes=2)
    with pytest.raises(ValueError, match="eps"):
        jaxreg.weight_normalize(on_device(np.ones((5, 3))), on_device(np.ones(3)), eps=-1.0)


def _normalize_and_grads(v, g, c, feature_axes, batch_dims):
    """w = weight_normalize(v, g), the gradients of <w, c> w.r.t. v and g, and weight_norm_init(v)."""

    def loss(v, g):
        w = jaxreg.weight_normalize(v, g, feature_axes=feature_axes, batch_dims=batch_dims)
        return jnp.sum(w * c), w

    (_, w), (gv, gg) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(v, g)
    return w, gv, gg, jaxreg.weight_norm_init(v, feature_axes=feature_axes, batch_dims=batch_dims)


@pytest.mark.parametrize(
    ("shape", "batch_dims", "feature_axes"),
    [((3, 5, 4), 1, -1), ((3, 4, 2, 3), 1, 0), ((2, 3, 5, 4), 2, None)],
)
def test_weight_normalize_of_a_stack_equals_a_loop_over_its_weights(shape, batch_dims, feature_axes):
    # The oracle: a Python loop over the weights of the stack, each with the unbatched functions and
    # its own g; feature_axes counts the axes of one weight, so the loop passes the same value.
    v, c = jnp.asarray(random_normal(0, shape)), jnp.asarray(random_normal(1, shape))
    g_shape = jax.eval_shape(
        lambda v: jaxreg.weight_norm_init(v, feature_axes=feature_axes, batch_dims=batch_dims), v
    ).shape
    g = jnp.asarray(0.5 + np.abs(random_normal(2, g_shape)))
    run = jax.jit(_normalize_and_grads, static_argnums=(3, 4))  # one compilation for the loop
    got = [np.asarray(x) for x in run(v, g, c, feature_axes, batch_dims)]
    v_np, g_np, c_np = np.asarray(v), np.asarray(g), np.asarray(c)  # indexed in NumPy, not eagerly in JAX
    for index in np.ndindex(*shape[:batch_dims]):
        want = run(v_np[index], g_np[index], c_np[index], feature_axes, 0)
        for name, x, y in zip(("w", "grad v", "grad g", "init g"), got, want, strict=True):
            np.testing.assert_allclose(
                x[index], np.asarray(y), rtol=1e-5, atol=1e-6, err_msg=f"{name} {index}"
            )


def test_weight_normalize_batch_dims_errors_name_the_argument():
    v = on_device(np.ones((3, 5, 4)))
    with pytest.raises(
        ValueError, match=r"g must have shape \(3, 4\) \(v.shape at batch_dims=1 and feature_axes=-1\)"
    ):
        jaxreg.weight_normalize(v, on_device(np.ones(4)), batch_dims=1)
    with pytest.raises(ValueError, match=r"batch_dims=4 needs v with at least 4 dimensions"):
        jaxreg.weight_norm_init(v, batch_dims=4)
    with pytest.raises(
        ValueError, match="feature_axes=-1 is out of range for the 0-D array of each item of v"
    ):
        jaxreg.weight_norm_init(v, batch_dims=3)
    with pytest.raises(ValueError, match="feature_axes=2 is out of range for the 2-D array"):
        jaxreg.weight_normalize(v, on_device(np.ones((3, 4))), feature_axes=2, batch_dims=1)
    with pytest.raises(ValueError, match="batch_dims must be >= 0, got -1"):
        jaxreg.weight_normalize(v, on_device(np.ones(4)), batch_dims=-1)
    with pytest.raises(TypeError, match="batch_dims must be an int"):
        jaxreg.weight_norm_init(v, batch_dims=None)
