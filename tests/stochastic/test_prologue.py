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
from helpers import KEY, SHAPE, drop_input, keep_prob
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
CASE_LIST = [(fn, "fast") for _, fn in OPS] + [(jaxreg.dropout, "jax")]
CASES = [pytest.param(fn, sampler, id=f"{OP_IDS[OP_FNS.index(fn)]}-{sampler}") for fn, sampler in CASE_LIST]
# Ops whose output is D(key) * x with D independent of x (gradient = y / x).
LINEAR = {"dropout", "spatial_dropout", "gaussian_dropout", "drop_path", "dropblock", "dropconnect"}


DTYPES_32 = ["float16", "bfloat16", "float32"]  # the dtypes of the default (32-bit) mode
TRACED_RATES = (0.25, 1.0)


@functools.cache
def _jitted(op, sampler):
    """Every jitted result the transformation tests compare for one op and sampler, from one program.

    One program per op and sampler (compiled once, shared by the tests below; each test checks
    its own entries), in NumPy. Its parts, each as the test that uses it describes:

    * ``traced``: ``{rate: (y, d/dx sum(sin(y)))}`` for ``y = op(key, x, rate)``, key and rate
      traced (the rates are passed as Python floats: traced as weakly typed float32);
    * ``jit``: ``(y, d/dx sum(y))`` at the Python rate 0.3, the key an argument;
    * ``vmap``: the op vmapped over three keys and three inputs at the Python rate 0.5;
    * ``scan`` (``"fast"`` only, as the default sampler): a scan over three steps at the Python
      rate 0.3 with keys ``fold_in(KEY, t)`` (``KEY`` closed over);
    * ``checkpoint``: the gradients of a layer without and with ``jax.checkpoint``;
    * ``dtypes``: the op at rate 0.3 on inputs of the 32-bit mode's float dtypes.
    """
    x = drop_input()

    def traced(key, x, rate):
        def f(x):
            return op(key, x, rate, sampler=sampler)

        return f(x), jax.grad(lambda x: jnp.sum(jnp.sin(f(x))))(x)

    def scan():
        def step(carry, t):
            return carry, op(jax.random.fold_in(KEY, t), x, 0.3)  # the default sampler

        return lax.scan(step, 0, jnp.arange(3))[1]

    def checkpoint(w):
        # With remat the backward pass recomputes the op; the remat gradient keeps its
        # checkpoint (jit does not remove it).
        def layer(w, x):
            return jnp.tanh(op(KEY, x * w, 0.3, sampler=sampler))

        def loss(w, remat):
            f = jax.checkpoint(layer) if remat else layer
            return jnp.sum(f(w, x) ** 2)

        return jax.grad(loss)(w, False), jax.grad(loss)(w, True)

    def run(key, x, rates, keys, xs, w, dtype_xs):
        out = {
            "traced": {rate: traced(key, x, r) for rate, r in zip(TRACED_RATES, rates, strict=True)},
            "jit": (
                op(key, x, 0.3, sampler=sampler),
                jax.grad(lambda x: op(key, x, 0.3, sampler=sampler).sum())(x),
            ),
            "vmap": jax.vmap(lambda k, x: op(k, x, 0.5, sampler=sampler))(keys, xs),
            "checkpoint": checkpoint(w),
            "dtypes": [op(key, x, 0.3, sampler=sampler) for x in dtype_xs],
        }
        if sampler == "fast":
            out["scan"] = scan()
        return out

    keys, xs = jax.random.split(KEY, 3), jnp.stack([x] * 3)
    w = jnp.linspace(0.5, 1.5, x.shape[-1])
    dtype_xs = [drop_input(dtype=jnp.dtype(dtype)) for dtype in DTYPES_32]
    out = jax.jit(run)(KEY, x, TRACED_RATES, keys, xs, w, dtype_xs)
    return jax.tree.map(np.asarray, out)


@pytest.mark.parametrize("op", RATE_FNS, ids=RATE_IDS)
@pytest.mark.parametrize("traced", [False, True])
def test_rate_one_gives_zeros_and_nan_free_gradients(op, traced):
    x = drop_input()

    def loss(x, r):
        return jnp.sum(jnp.sin(op(KEY, x, r)))

    if traced:  # the output and the gradient of the same loss, in one program
        y, g = _jitted(op, "fast")["traced"][1.0]
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
    y_traced, _ = _jitted(op, sampler)["traced"][0.25]
    y_python = op(KEY, x, 0.25, sampler=sampler)
    np.testing.assert_allclose(y_traced, np.asarray(y_python), rtol=1e-6, atol=1e-7)


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


@functools.cache
def _float64_outputs():
    """Every case's op at rate 0.3 on a float64 input under x64, in one jitted program, in NumPy."""
    with jax.enable_x64(True):
        x = drop_input(dtype=jnp.float64)
        ys = jax.jit(lambda k, x: [op(k, x, 0.3, sampler=sampler) for op, sampler in CASE_LIST])(KEY, x)
        return [np.asarray(y) for y in ys]


@pytest.mark.parametrize("op, sampler", CASES)
def test_dtype_preserved(op, sampler):
    # The dtypes of the default (32-bit) mode in the shared program, float64 under x64 in its own.
    y64 = _float64_outputs()[CASE_LIST.index((op, sampler))]
    cases = [*zip(DTYPES_32, _jitted(op, sampler)["dtypes"], strict=True), ("float64", y64)]
    for dtype, y in cases:
        assert y.dtype == jnp.dtype(dtype) and y.shape == SHAPE, dtype
        assert np.all(np.isfinite(np.asarray(y, np.float64))), dtype
    y = jaxreg.gaussian_noise(KEY, drop_input(dtype=jnp.bfloat16), 0.5, sampler=sampler)
    assert y.dtype == jnp.bfloat16


@pytest.mark.parametrize("op, sampler", CASES)
def test_jit_matches_eager_and_gradient(op, sampler):
    name = OP_IDS[OP_FNS.index(op)]
    x = drop_input()
    y = op(KEY, x, 0.3, sampler=sampler)
    yj, g = _jitted(op, sampler)["jit"]  # the output and the gradient under one jit
    np.testing.assert_allclose(yj, np.asarray(y), rtol=1e-5, atol=1e-6)
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
    keys, x = jax.random.split(KEY, 3), drop_input()
    ys = _jitted(op, sampler)["vmap"]  # on the keys and three copies of x
    for i in range(3):
        np.testing.assert_allclose(
            ys[i], np.asarray(op(keys[i], x, 0.5, sampler=sampler)), rtol=1e-6, atol=1e-7
        )
    assert not np.array_equal(ys[0], ys[1])


@pytest.mark.parametrize("op", OP_FNS, ids=OP_IDS)
def test_scan_over_steps(op):
    x = drop_input()
    ys = _jitted(op, "fast")["scan"]  # the default sampler under scan, keys fold_in(KEY, t)
    for t in range(3):
        np.testing.assert_allclose(
            ys[t], np.asarray(op(jax.random.fold_in(KEY, t), x, 0.3)), rtol=1e-6, atol=1e-7
        )
    assert not np.array_equal(ys[0], ys[1])


@pytest.mark.parametrize("op, sampler", CASES)
def test_checkpoint_recomputes_the_same_mask(op, sampler):
    # With remat the backward pass recomputes the op; the gradient equals the
    # one without remat only if the recomputed mask is the same.
    g_plain, g_remat = _jitted(op, sampler)["checkpoint"]
    np.testing.assert_allclose(g_remat, g_plain, rtol=1e-5, atol=1e-6)
    assert np.any(g_plain != 0)


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
