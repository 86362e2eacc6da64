"""Rules every op of the dropout family shares (the prologue of jaxreg._stochastic._prologue).

Rate 0 and evaluation are the identity with no random work, a rate of 1 gives zeros with NaN-free
gradients, rates and keys are checked, dtypes are kept, and every op commutes with jit, grad,
vmap, scan and checkpoint (the recomputed mask is the same).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import KEY, drop_input, keep_prob
from jax import lax

import jaxreg


def _dropconnect_op(key, x, rate, **kw):
    """dropconnect on a one-leaf params tree (it has no ``deterministic``: evaluation uses W)."""
    return jaxreg.dropconnect(key, {"w": x}, rate, **kw)["w"]


# (name, op(key, x, rate, **kw)); every op takes rate third and keyword options.
# gaussian_noise takes its stddev in the rate's place (no rate-1 or rate <= 1 rules).
OPS = [
    ("dropout", jaxreg.dropout),
    ("spatial_dropout", jaxreg.spatial_dropout),
    ("gaussian_dropout", jaxreg.gaussian_dropout),
    ("alpha_dropout", jaxreg.alpha_dropout),
    ("drop_path", jaxreg.drop_path),
    ("dropblock", lambda k, x, r, **kw: jaxreg.dropblock(k, x, r, 3, **kw)),
    ("dropconnect", _dropconnect_op),
    ("gaussian_noise", jaxreg.gaussian_noise),
]
OP_IDS = [o[0] for o in OPS]
OP_FNS = [o[1] for o in OPS]
# Ops whose third argument is a drop rate in [0, 1].
RATE_OPS = [o for o in OPS if o[0] != "gaussian_noise"]
RATE_IDS = [o[0] for o in RATE_OPS]
RATE_FNS = [o[1] for o in RATE_OPS]
# Transformation tests run every op with the default (fast) sampler, and plain
# dropout with sampler="jax" too (the other ops share its code path).
CASES = [pytest.param(fn, "fast", id=f"{name}-fast") for name, fn in OPS] + [
    pytest.param(jaxreg.dropout, "jax", id="dropout-jax")
]
# Ops whose output is D(key) * x with D independent of x (gradient = y / x).
LINEAR = {"dropout", "spatial_dropout", "gaussian_dropout", "drop_path", "dropblock", "dropconnect"}


@functools.cache
def _traced(op, sampler):
    """``(y, d/dx sum(sin(y)))`` for ``y = op(key, x, rate)``, key and rate traced, jitted.

    One program per op and sampler, shared by the traced-rate tests (the rate is passed as a
    Python float: traced as a weakly typed float32).
    """

    def run(key, x, rate):
        def f(x):
            return op(key, x, rate, sampler=sampler)

        return f(x), jax.grad(lambda x: jnp.sum(jnp.sin(f(x))))(x)

    return jax.jit(run)


@pytest.mark.parametrize("op", RATE_FNS, ids=RATE_IDS)
@pytest.mark.parametrize("traced", [False, True])
def test_rate_one_gives_zeros_and_nan_free_gradients(op, traced):
    x = drop_input()

    def loss(x, r):
        return jnp.sum(jnp.sin(op(KEY, x, r)))

    if traced:  # the output and the gradient of the same loss, in one program
        y, g = _traced(op, "fast")(KEY, x, 1.0)
    else:
        y = op(KEY, x, 1.0)
        g = jax.grad(loss)(x, 1.0)
    np.testing.assert_array_equal(np.asarray(y), 0.0)
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_array_equal(np.asarray(g), 0.0)


@pytest.mark.parametrize("op", RATE_FNS, ids=RATE_IDS)
@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_invalid_python_rate_raises(op, rate):
    with pytest.raises(ValueError, match=rf"rate.*{rate}"):
        op(KEY, drop_input(), rate)


@pytest.mark.parametrize("op, sampler", CASES)
def test_traced_rate_under_jit(op, sampler):
    # 0.25 is exact in float32, so the traced and the Python rate give the same
    # keep threshold and the same result.
    x = drop_input()
    y_traced, _ = _traced(op, sampler)(KEY, x, 0.25)
    y_python = op(KEY, x, 0.25, sampler=sampler)
    np.testing.assert_allclose(np.asarray(y_traced), np.asarray(y_python), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("op", OP_FNS, ids=OP_IDS)
def test_rate_zero_or_deterministic_is_identity_without_random_work(op):
    x = drop_input()
    cases = [({}, 0.0), ({"deterministic": True}, 0.3), ({"deterministic": True}, 1.0)]
    if op is _dropconnect_op:  # no evaluation mode: only rate 0 applies
        cases = cases[:1]
    for kwargs, rate in cases:
        np.testing.assert_array_equal(np.asarray(op(None, x, rate, **kwargs)), np.asarray(x))
        jaxpr = jax.make_jaxpr(lambda x, rate=rate, kwargs=kwargs: op(None, x, rate, **kwargs))(x)
        assert not jaxpr.eqns  # no random bits, no arithmetic


@pytest.mark.parametrize("op", OP_FNS, ids=OP_IDS)
def test_missing_key_in_training_raises(op):
    with pytest.raises(ValueError, match="key"):
        op(None, drop_input(), 0.3)


@pytest.mark.parametrize("op, sampler", CASES)
def test_dtype_preserved(op, sampler):
    # One program for the dtypes of the default (32-bit) mode, one for float64 under x64.
    for dtypes in (["float16", "bfloat16", "float32"], ["float64"]):
        with jax.enable_x64(dtypes == ["float64"]):
            xs = [drop_input(dtype=jnp.dtype(dtype)) for dtype in dtypes]
            ys = jax.jit(lambda k, xs: [op(k, x, 0.3, sampler=sampler) for x in xs])(KEY, xs)
            for dtype, x, y in zip(dtypes, xs, ys, strict=True):
                assert y.dtype == x.dtype == jnp.dtype(dtype) and y.shape == x.shape, dtype
                assert np.all(np.isfinite(np.asarray(y, np.float64))), dtype
    y = jaxreg.gaussian_noise(KEY, drop_input(dtype=jnp.bfloat16), 0.5, sampler=sampler)
    assert y.dtype == jnp.bfloat16


@pytest.mark.parametrize("op, sampler", CASES)
def test_jit_matches_eager_and_gradient(op, sampler):
    name = OP_IDS[OP_FNS.index(op)]
    x = drop_input()
    y = op(KEY, x, 0.3, sampler=sampler)
    # The output and the gradient under one jit.
    yj, g = jax.jit(
        lambda k, x: (
            op(k, x, 0.3, sampler=sampler),
            jax.grad(lambda x: op(k, x, 0.3, sampler=sampler).sum())(x),
        )
    )(KEY, x)
    np.testing.assert_allclose(np.asarray(yj), np.asarray(y), rtol=1e-5, atol=1e-6)
    if name in LINEAR:  # y = D(key) x, so d sum(y) / dx = D = y / x
        np.testing.assert_allclose(np.asarray(g), np.asarray(y / x), rtol=1e-5, atol=1e-6)
    elif name == "gaussian_noise":  # y = x + stddev z: gradient 1, and y - x has sd 0.3
        np.testing.assert_array_equal(np.asarray(g), 1.0)
        assert not np.array_equal(np.asarray(y), np.asarray(x))
    else:  # alpha dropout: y = a * select(m, x, alpha') + b, gradient a * m
        q = keep_prob(0.3, sampler)
        a = (q * (1 + (1 - q) * 1.7580993408473766**2)) ** -0.5
        np.testing.assert_allclose(np.unique(np.asarray(g)), [0.0, a], rtol=1e-6)
        sat = np.asarray(y)[np.asarray(g) == 0]
        assert np.allclose(sat, sat[0])  # dropped units all sit at a * alpha' + b


@pytest.mark.parametrize("op, sampler", CASES)
def test_vmap_per_example_keys(op, sampler):
    keys = jax.random.split(KEY, 3)
    xs = jnp.stack([drop_input()] * 3)
    ys = jax.jit(jax.vmap(lambda k, x: op(k, x, 0.5, sampler=sampler)))(keys, xs)
    for i in range(3):
        np.testing.assert_allclose(
            np.asarray(ys[i]), np.asarray(op(keys[i], xs[i], 0.5, sampler=sampler)), rtol=1e-6, atol=1e-7
        )
    assert not np.array_equal(np.asarray(ys[0]), np.asarray(ys[1]))


@pytest.mark.parametrize("op", OP_FNS, ids=OP_IDS)
def test_scan_over_steps(op):
    x = drop_input()

    def step(carry, t):
        return carry, op(jax.random.fold_in(KEY, t), x, 0.3)

    _, ys = jax.jit(lambda: lax.scan(step, 0, jnp.arange(3)))()
    for t in range(3):
        np.testing.assert_allclose(
            np.asarray(ys[t]), np.asarray(op(jax.random.fold_in(KEY, t), x, 0.3)), rtol=1e-6, atol=1e-7
        )
    assert not np.array_equal(np.asarray(ys[0]), np.asarray(ys[1]))


@pytest.mark.parametrize("op, sampler", CASES)
def test_checkpoint_recomputes_the_same_mask(op, sampler):
    # With remat the backward pass recomputes the op; the gradient equals the
    # one without remat only if the recomputed mask is the same.
    x = drop_input()
    w = jnp.linspace(0.5, 1.5, x.shape[-1])

    def layer(w, x):
        return jnp.tanh(op(KEY, x * w, 0.3, sampler=sampler))

    def loss(w, remat):
        f = jax.checkpoint(layer) if remat else layer
        return jnp.sum(f(w, x) ** 2)

    # Both gradients in one program; the remat one keeps its checkpoint (jit does not remove it).
    g_plain, g_remat = jax.jit(lambda w: (jax.grad(loss)(w, False), jax.grad(loss)(w, True)))(w)
    np.testing.assert_allclose(np.asarray(g_remat), np.asarray(g_plain), rtol=1e-5, atol=1e-6)
    assert np.any(np.asarray(g_plain) != 0)


# Ops that draw a keep mask with the sampler's quantized q (dropblock draws
# seeds, whose q is 1 - gamma; its rate-1 handling is tested above).
MASK_OPS = [o for o in OPS if o[0] in {"dropout", "spatial_dropout", "drop_path", "alpha_dropout"}]


@pytest.mark.parametrize("op", [o[1] for o in MASK_OPS], ids=[o[0] for o in MASK_OPS])
def test_rate_quantized_to_nothing_kept_gives_zeros(op):
    # rate = 1 - 2**-26: the fast sampler's threshold round(2**-26 * 2**24) = 0,
    # so q = 0 and nothing is kept. Every op must then return zeros (the rate-1
    # rule), with zero, NaN-free gradients.
    rate, x = 1.0 - 2.0**-26, drop_input()
    assert round((1 - rate) * 2**24) == 0
    y = op(KEY, x, rate)
    np.testing.assert_array_equal(np.asarray(y), 0.0)
    g = jax.grad(lambda x: jnp.sum(jnp.sin(op(KEY, x, rate))))(x)
    np.testing.assert_array_equal(np.asarray(g), 0.0)


@pytest.mark.parametrize("op", OP_FNS, ids=OP_IDS)
def test_concrete_jax_scalar_rate_zero_needs_no_key(op):
    # A concrete (non-traced) JAX scalar is as known as a Python number: rate 0 is the identity.
    x = drop_input()
    np.testing.assert_array_equal(np.asarray(op(None, x, jnp.float32(0.0))), np.asarray(x))


def test_missing_key_message_is_the_same_everywhere():
    with pytest.raises(ValueError, match="dropout needs a PRNG key in training mode") as e1:
        jaxreg.dropout(None, jnp.ones(3), 0.5)
    from jaxreg._stochastic import _sampling

    with pytest.raises(ValueError, match="needs a PRNG key in training mode") as e2:
        _sampling.bits(None, (3,))
    assert str(e1.value).split(" needs")[1] == str(e2.value).split(" needs")[1]
