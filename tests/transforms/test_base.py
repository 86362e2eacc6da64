"""What every optax transform of jaxreg shares: leaf dtypes, optax.masked, schedules, hyperparameter checks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg


def test_leaves_pass_through_and_keep_dtype():
    params = {
        "bf16": jnp.ones((3, 2), jnp.bfloat16),
        "f16": jnp.ones((2,), jnp.float16),
        "count": jnp.array(7, jnp.int32),
        "flag": jnp.array(True),
        "none": None,
    }
    updates = {
        "bf16": jnp.zeros((3, 2), jnp.bfloat16),
        "f16": jnp.zeros((2,), jnp.float16),
        "count": jnp.array(0, jnp.int32),
        "flag": jnp.array(False),
        "none": None,
    }
    txs = (
        jaxreg.add_l1(0.5),
        jaxreg.add_decayed_weights(0.5),
        jaxreg.add_decayed_weights(optax.linear_schedule(0.1, 0.5, 10)),
        jaxreg.prox_l1(jnp.asarray(0.5), 0.1),
        jaxreg.prox_elastic_net(0.1, 0.2, 0.3),
        jaxreg.prox_group_lasso(0.5, 0.1),
    )
    every = jax.jit(  # the six updates in one compilation
        lambda updates, params: [tx.update(updates, tx.init(params), params)[0] for tx in txs]
    )(updates, params)
    for i, u in enumerate(every):
        assert u["bf16"].dtype == jnp.bfloat16 and u["f16"].dtype == jnp.float16, i
        assert u["count"].dtype == jnp.int32 and int(u["count"]) == 0, i
        assert u["flag"].dtype == jnp.bool_ and not bool(u["flag"]), i
        assert u["none"] is None, i
        assert np.abs(np.asarray(u["bf16"], np.float32)).sum() > 0, i


def test_composes_with_optax_masked_and_masked_nodes():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    inner = optax.chain(jaxreg.add_l1(1.0), jaxreg.add_decayed_weights(1.0), jaxreg.prox_l1(0.1, 1.0))
    tx = optax.masked(inner, {"w": True, "b": False})
    u, _ = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_array_equal(u["b"], 0.0)
    # z = w + (0 + sign(w) + w) = 3, soft-thresholded by 0.1 to 2.9: the update is 1.9.
    np.testing.assert_allclose(u["w"], 1.9, rtol=1e-6)


def test_compiles_once_over_100_steps_and_schedules_advance():
    traces = []
    sched = optax.linear_schedule(0.0, 1.0, 100)
    tx = optax.chain(jaxreg.add_l1(sched), optax.sgd(0.01), jaxreg.prox_l1(sched, 0.01))

    @jax.jit
    def step(p, s):
        traces.append(1)
        u, s = tx.update(jax.tree.map(jnp.zeros_like, p), s, p)
        return optax.apply_updates(p, u), s

    p = {"w": jnp.full((3,), 10.0, jnp.float32)}  # not weak-typed, as real params are
    s = tx.init(p)
    for _ in range(100):
        p, s = step(p, s)
    assert len(traces) == 1
    # sum over steps k=0..99 of 0.01 * (k/100) for add_l1 and the prox each: 2 * 0.01 * 49.5 = 0.99
    np.testing.assert_allclose(p["w"], 10.0 - 0.99, rtol=1e-5)


def test_inject_hyperparams_changes_strength_between_steps():
    tx = optax.inject_hyperparams(jaxreg.add_l1)(strength=0.1)
    p = {"w": jnp.array([1.0, -1.0])}
    s = tx.init(p)
    update = jax.jit(tx.update)
    u, s = update(jax.tree.map(jnp.zeros_like, p), s, p)
    np.testing.assert_allclose(u["w"], [0.1, -0.1], rtol=1e-6)
    s.hyperparams["strength"] = jnp.asarray(0.5)
    u, s = update(jax.tree.map(jnp.zeros_like, p), s, p)
    np.testing.assert_allclose(u["w"], [0.5, -0.5], rtol=1e-6)
    tx = optax.inject_hyperparams(jaxreg.prox_l1)(strength=0.1, learning_rate=1.0)
    s = tx.init(p)
    s.hyperparams["strength"] = jnp.asarray(2.0)
    landed = jax.jit(
        lambda s, p: optax.apply_updates(p, tx.update(jax.tree.map(jnp.zeros_like, p), s, p)[0])
    )(s, p)
    np.testing.assert_array_equal(landed["w"], 0.0)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), np.float32(-1)])
@pytest.mark.parametrize(
    ("factory", "arg"),
    [
        (lambda v: jaxreg.add_l1(v), "strength"),
        (lambda v: jaxreg.add_decayed_weights(v), "weight_decay"),
        (lambda v: jaxreg.prox_l1(v, 0.1), "strength"),
        (lambda v: jaxreg.prox_l1(0.1, v), "learning_rate"),
        (lambda v: jaxreg.prox_elastic_net(v, 0.1, 0.1), "l1"),
        (lambda v: jaxreg.prox_elastic_net(0.1, v, 0.1), "l2"),
        (lambda v: jaxreg.prox_group_lasso(0.1, v), "learning_rate"),
    ],
)
def test_bad_hyperparameters_are_named(factory, arg, bad):
    with pytest.raises(ValueError, match=rf"^{arg} must be finite and >= 0, got"):
        factory(bad)


@pytest.mark.parametrize(
    ("factory", "arg"),
    [
        (lambda v: jaxreg.add_l1(v), "strength"),
        (lambda v: jaxreg.add_decayed_weights(v), "weight_decay"),
        (lambda v: jaxreg.prox_l1(0.1, v), "learning_rate"),
        (lambda v: jaxreg.prox_elastic_net(0.1, v, 0.1), "l2"),
        (lambda v: jaxreg.prox_group_lasso(v, 0.1), "strength"),
        (lambda v: jaxreg.elastic_net_penalty({"w": jnp.ones(2)}, v, 0.1), "l1"),
    ],
)
def test_concrete_jax_scalars_are_checked_too(factory, arg):
    # A concrete (not traced) JAX scalar is inspected like a Python number ...
    for bad in (jnp.asarray(-0.5), jnp.asarray(float("nan")), jnp.asarray(-1, jnp.int32)):
        with pytest.raises(ValueError, match=rf"^{arg} must be finite and >= 0, got"):
            factory(bad)
    factory(jnp.asarray(0.5))

    # ... while a traced one never is: no Python check runs on it under jit.
    @jax.jit
    def traced(v):
        factory(v)
        return v

    traced(-0.5)


def test_schedules_are_rejected_where_they_cannot_be_used():
    sched = optax.linear_schedule(0.1, 0.2, 10)
    for l1, l2, arg in ((sched, 0.1, "l1"), (0.1, sched, "l2")):
        with pytest.raises(TypeError, match=rf"^{arg} must be a number or a JAX scalar, not a schedule"):
            jaxreg.elastic_net_penalty({"w": jnp.ones(2)}, l1, l2)
    # Transforms evaluate schedules at their step count: accepted there.
    tx = jaxreg.prox_elastic_net(sched, sched, sched)
    tx.init({"w": jnp.ones(2)})


def test_type_errors_and_missing_params():
    with pytest.raises(TypeError, match="strength must be a number"):
        jaxreg.add_l1("0.1")
    with pytest.raises(TypeError, match="strength must be a number, got the bool"):
        jaxreg.add_l1(True)
    with pytest.raises(ValueError, match="strength must be a scalar"):
        jaxreg.add_l1(jnp.ones(2))
    p = {"w": jnp.ones(2)}
    for tx in (jaxreg.prox_l1(0.1, 0.1), jaxreg.add_l1(0.1), jaxreg.prox_group_lasso(0.1, 0.1)):
        with pytest.raises(ValueError, match=r"update needs params"):
            tx.update(p, tx.init(p))


# --- factors= : per-leaf multipliers of the strength ------------------------------------------------

_FACTOR_PARAMS = {
    "embed": {"embedding": np.array([[0.5, -2.0], [1.5, 0.0]], np.float32)},
    "dense": {
        "kernel": np.array([[1.0, -0.25], [3.0, -4.0]], np.float32),
        "bias": np.array([0.3, -0.7], np.float32),
    },
}
_FACTOR_UPDATES = {
    "embed": {"embedding": np.array([[0.1, 0.2], [-0.3, 0.4]], np.float32)},
    "dense": {
        "kernel": np.array([[-0.5, 0.05], [0.2, 0.1]], np.float32),
        "bias": np.array([0.01, 0.02], np.float32),
    },
}
_FACTOR_RULES = [(r"embedding", 0.0), (r"kernel$", 2.0)]  # bias: the default 0.5


def _soft(z, t):
    return np.sign(z) * np.maximum(np.abs(z) - t, 0)


# (build(strength, **kw), oracle(u, w, effective strength)), strengths as NumPy formulas of the papers
_FACTOR_CASES = {
    "add_l1": (lambda s, **kw: jaxreg.add_l1(s, **kw), lambda u, w, s: u + s * np.sign(w)),
    "add_decayed_weights": (lambda s, **kw: jaxreg.add_decayed_weights(s, **kw), lambda u, w, s: u + s * w),
    "decoupled_weight_decay": (
        lambda s, **kw: jaxreg.decoupled_weight_decay(s, **kw),
        lambda u, w, s: u - s * w,
    ),
    "corrected_weight_decay": (
        lambda s, **kw: jaxreg.corrected_weight_decay(s, 0.5, **kw),
        lambda u, w, s: u + s * w,  # constant learning rate: lr / lr_max = 1
    ),
    "cautious_weight_decay": (
        lambda s, **kw: jaxreg.cautious_weight_decay(s, **kw),
        lambda u, w, s: u + s * np.where(np.sign(u) * np.sign(w) >= 0, w, 0),
    ),
    "prox_l1": (lambda s, **kw: jaxreg.prox_l1(s, 0.5, **kw), lambda u, w, s: _soft(w + u, 0.5 * s) - w),
    "prox_elastic_net": (
        lambda s, **kw: jaxreg.prox_elastic_net(s, 2 * s, 0.5, **kw),
        lambda u, w, s: _soft(w + u, 0.5 * s) / (1 + 0.5 * 2 * s) - w,
    ),
    "prox_group_lasso": (
        lambda s, **kw: jaxreg.prox_group_lasso(s, 0.5, axis=0, **kw),
        lambda u, w, s: (
            (w + u)
            * np.maximum(
                1
                - 0.5
                * s
                / np.maximum(
                    np.sqrt(
                        np.sum(
                            (w + u) ** 2, axis=tuple(range(1, w.ndim)) if w.ndim >= 2 else None, keepdims=True
                        )
                    ),
                    1e-30,
                ),
                0,
            )
            - w
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(_FACTOR_CASES))
def test_factors_multiply_the_strength_leaf_by_leaf(name):
    build, oracle = _FACTOR_CASES[name]
    strength = 0.2
    factors = jaxreg.masks.factors(_FACTOR_RULES, default=0.5)
    tx = build(strength, factors=factors)
    params = jax.tree.map(jnp.asarray, _FACTOR_PARAMS)
    updates, state = jax.jit(tx.update)(jax.tree.map(jnp.asarray, _FACTOR_UPDATES), tx.init(params), params)
    assert len(state) == 2  # factors 0.5 and 2: one state per distinct nonzero factor
    # factor 0: the update comes back exactly as it came in
    np.testing.assert_array_equal(
        np.asarray(updates["embed"]["embedding"]), _FACTOR_UPDATES["embed"]["embedding"]
    )
    for key, f in (("kernel", 2.0), ("bias", 0.5)):
        u, w = _FACTOR_UPDATES["dense"][key], _FACTOR_PARAMS["dense"][key]
        want = oracle(u.astype(np.float64), w.astype(np.float64), strength * f)
        np.testing.assert_allclose(np.asarray(updates["dense"][key]), want, rtol=1e-5, atol=1e-6, err_msg=key)


def test_factors_as_a_pytree_prefix_with_a_mask_and_a_schedule():
    params = jax.tree.map(jnp.asarray, _FACTOR_PARAMS)
    grads = jax.tree.map(jnp.asarray, _FACTOR_UPDATES)
    factors = {"embed": 3.0, "dense": {"kernel": 1.0, "bias": 1.0}}  # a prefix: one factor for all of embed
    mask = jaxreg.masks.by_path(exclude="bias")
    tx = jaxreg.add_decayed_weights(optax.linear_schedule(0.1, 0.3, 2), mask=mask, factors=factors)
    state = tx.init(params)
    update = jax.jit(tx.update)  # one compilation for both steps
    for step, lam in enumerate((0.1, 0.2)):
        out, state = update(grads, state, params)
        np.testing.assert_allclose(
            out["embed"]["embedding"],
            grads["embed"]["embedding"] + 3.0 * lam * params["embed"]["embedding"],
            rtol=1e-6,
        )
        np.testing.assert_allclose(
            out["dense"]["kernel"],
            grads["dense"]["kernel"] + lam * params["dense"]["kernel"],
            rtol=1e-6,
            atol=1e-7,
        )
        np.testing.assert_array_equal(out["dense"]["bias"], grads["dense"]["bias"]), step


def test_factors_errors_name_the_leaf():
    params = {"w": jnp.ones(2), "b": jnp.ones(2)}
    with pytest.raises(ValueError, match="factors at 'w'"):
        jaxreg.add_l1(0.1, factors={"w": -1.0, "b": 1.0}).init(params)
    with pytest.raises(ValueError, match="factors does not match"):
        jaxreg.add_l1(0.1, factors={"x": 1.0}).init(params)

    @jax.jit
    def traced(f):
        return jaxreg.add_l1(0.1, factors={"w": f, "b": 1.0}).init(params)

    with pytest.raises(TypeError, match="concrete number"):
        traced(jnp.float32(2.0))
