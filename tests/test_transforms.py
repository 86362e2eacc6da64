"""optax transforms: PyTorch trajectories, prox formulas against NumPy, masks, dtypes, jit, errors."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg

REF = pathlib.Path(__file__).parent / "data" / "torch_sgd_reference.npz"


def _run(tx, params, loss, steps):
    @jax.jit
    def step(p, s):
        u, s = tx.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, u), s

    state, traj = tx.init(params), []
    for _ in range(steps):
        params, state = step(params, state)
        traj.append(params)
    return traj


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(REF))


def _mse(ref):
    x, y = jnp.asarray(ref["x"]), jnp.asarray(ref["y"])
    return lambda p: jnp.mean((x @ p["w"] + p["b"] - y) ** 2)


def test_add_l1_follows_torch_sgd_on_l1_loss(ref):
    with jax.enable_x64(True):
        params = {"w": jnp.asarray(ref["w0"]), "b": jnp.asarray(ref["b0"])}
        tx = optax.chain(
            jaxreg.add_l1(float(ref["lam_l1"]), mask={"w": True, "b": False}), optax.sgd(float(ref["lr"]))
        )
        traj = _run(tx, params, _mse(ref), len(ref["l1_w"]))
        np.testing.assert_allclose(np.stack([p["w"] for p in traj]), ref["l1_w"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.stack([p["b"] for p in traj]), ref["l1_b"], rtol=1e-10, atol=1e-12)


def test_add_decayed_weights_follows_torch_sgd_weight_decay_momentum(ref):
    with jax.enable_x64(True):
        params = {"w": jnp.asarray(ref["w0"]), "b": jnp.asarray(ref["b0"])}
        tx = optax.chain(
            jaxreg.add_decayed_weights(float(ref["lam_wd"])),
            optax.sgd(float(ref["lr"]), momentum=float(ref["momentum"])),
        )
        traj = _run(tx, params, _mse(ref), len(ref["wd_w"]))
        np.testing.assert_allclose(np.stack([p["w"] for p in traj]), ref["wd_w"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.stack([p["b"] for p in traj]), ref["wd_b"], rtol=1e-10, atol=1e-12)
        # ... and SGD(weight_decay=lam) is the gradient of lam/2 ||w||^2, i.e. lam * l2_penalty, not lam * ||w||^2.
        lam = float(ref["lam_wd"])
        loss = lambda p: _mse(ref)(p) + lam * jaxreg.l2_penalty(p)  # noqa: E731
        traj2 = _run(
            optax.sgd(float(ref["lr"]), momentum=float(ref["momentum"])), params, loss, len(ref["wd_w"])
        )
        np.testing.assert_allclose(np.stack([p["w"] for p in traj2]), ref["wd_w"], rtol=1e-10, atol=1e-12)


def _np_soft(z, t):
    return np.sign(z) * np.maximum(np.abs(z) - t, 0.0)


def _land(tx, params, updates):
    u, _ = jax.jit(tx.update)(updates, tx.init(params), params)
    return optax.apply_updates(params, u)


def test_prox_formulas_against_numpy():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 4)).astype(np.float32)
    g = rng.normal(size=(6, 4)).astype(np.float32) * 0.3
    z = w + g
    lr, s, l2 = 0.5, 0.8, 0.6
    got = _land(jaxreg.prox_l1(s, lr), {"w": w}, {"w": g})["w"]
    np.testing.assert_allclose(got, _np_soft(z, lr * s), rtol=1e-6, atol=1e-6)
    assert np.any(np.asarray(got) == 0.0)
    got = _land(jaxreg.prox_elastic_net(s, l2, lr), {"w": w}, {"w": g})["w"]
    np.testing.assert_allclose(got, _np_soft(z, lr * s) / (1 + lr * l2), rtol=1e-6, atol=1e-6)
    for axis in (0, 1):
        norms = np.linalg.norm(z, axis=1 - axis, keepdims=True)
        expected = z * np.maximum(1 - lr * s / norms, 0)
        got = _land(jaxreg.prox_group_lasso(s, lr, axis=axis), {"w": w}, {"w": g})["w"]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_prox_group_lasso_zero_group_is_finite_and_rows_vanish():
    w = jnp.array([[0.0, 0.0], [3.0, 4.0], [0.1, 0.1]])
    got = _land(jaxreg.prox_group_lasso(1.0, 1.0, axis=0), {"w": w}, {"w": jnp.zeros_like(w)})["w"]
    assert bool(jnp.all(jnp.isfinite(got)))
    np.testing.assert_array_equal(got[0], 0.0)
    np.testing.assert_array_equal(got[2], 0.0)  # ||(0.1, 0.1)|| < 1: the whole input feature is pruned
    np.testing.assert_allclose(got[1], np.array([3.0, 4.0]) * 0.8, rtol=1e-6)
    vec = _land(jaxreg.prox_group_lasso(1.0, 1.0), {"b": jnp.array([3.0, 4.0])}, {"b": jnp.zeros(2)})["b"]
    np.testing.assert_allclose(vec, [2.4, 3.2], rtol=1e-6)  # ndim < 2: one group


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
    for tx in (
        jaxreg.add_l1(0.5),
        jaxreg.add_decayed_weights(0.5),
        jaxreg.add_decayed_weights(optax.linear_schedule(0.1, 0.5, 10)),
        jaxreg.prox_l1(jnp.asarray(0.5), 0.1),
        jaxreg.prox_elastic_net(0.1, 0.2, 0.3),
        jaxreg.prox_group_lasso(0.5, 0.1),
    ):
        u, _ = jax.jit(tx.update)(updates, tx.init(params), params)
        assert u["bf16"].dtype == jnp.bfloat16 and u["f16"].dtype == jnp.float16
        assert u["count"].dtype == jnp.int32 and int(u["count"]) == 0
        assert u["flag"].dtype == jnp.bool_ and not bool(u["flag"])
        assert u["none"] is None
        assert float(jnp.abs(u["bf16"]).sum()) > 0


def test_composes_with_optax_masked_and_masked_nodes():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    inner = optax.chain(jaxreg.add_l1(1.0), jaxreg.add_decayed_weights(1.0), jaxreg.prox_l1(0.1, 1.0))
    tx = optax.masked(inner, {"w": True, "b": False})
    u, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_array_equal(u["b"], 0.0)
    # z = w + (0 + sign(w) + w) = 3, soft-thresholded by 0.1 to 2.9: the update is 1.9.
    np.testing.assert_allclose(u["w"], 1.9, rtol=1e-6)


def test_masks_by_path_on_linen_and_nnx_and_weights_only():
    import flax.linen as nn
    from flax import nnx

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(3)(x)
            x = nn.LayerNorm()(x)
            return nn.Embed(5, 3)(jnp.zeros((1,), jnp.int32)) + x

    variables = Net().init(jax.random.key(0), jnp.ones((1, 2)))
    got = jaxreg.masks.by_path(exclude=r"(bias|scale|embedding)")(variables)
    assert got == {
        "params": {
            "Dense_0": {"kernel": True, "bias": False},
            "LayerNorm_0": {"scale": False, "bias": False},
            "Embed_0": {"embedding": False},
        }
    }
    assert jaxreg.masks.weights_only(variables)["params"]["Embed_0"]["embedding"] is True
    assert (
        jaxreg.masks.by_path(include=r"^params/Dense_0/")(variables)["params"]["LayerNorm_0"]["scale"]
        is False
    )

    model = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.LayerNorm(3, rngs=nnx.Rngs(0)))
    state = nnx.state(model, nnx.Param)
    mask = jaxreg.masks.by_path(exclude=r"(bias|scale)")(state)
    flat = {"/".join(map(str, k)): v for k, v in nnx.to_flat_state(mask)}
    assert flat == {
        "layers/0/bias": False,
        "layers/0/kernel": True,
        "layers/1/bias": False,
        "layers/1/scale": False,
    }
    # The mask drives a transform on nnx State directly.
    tx = jaxreg.add_decayed_weights(1.0, mask=jaxreg.masks.by_path(exclude=r"(bias|scale)"))
    u, _ = tx.update(jax.tree.map(jnp.zeros_like, state), tx.init(state), state)
    np.testing.assert_allclose(u["layers"][0]["kernel"][...], state["layers"][0]["kernel"][...])
    np.testing.assert_array_equal(u["layers"][1]["scale"][...], 0.0)


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
    u, _ = tx.update(jax.tree.map(jnp.zeros_like, p), s, p)
    np.testing.assert_array_equal(optax.apply_updates(p, u)["w"], 0.0)


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


def test_prox_group_lasso_with_inject_hyperparams_needs_static_axis():
    w = jnp.array([[3.0, 4.0], [0.3, 0.4], [1.0, 0.0]])
    p, zeros = {"w": w}, {"w": jnp.zeros_like(w)}
    # The documented form: axis static, strength injected (and changed between steps).
    tx = optax.inject_hyperparams(jaxreg.prox_group_lasso, static_args=("axis",))(
        strength=1.0, learning_rate=1.0, axis=0
    )
    state = tx.init(p)
    update = jax.jit(tx.update)
    for strength in (1.0, 2.0):
        state.hyperparams["strength"] = jnp.asarray(strength)
        u, state = update(zeros, state, p)
        norms = np.linalg.norm(np.asarray(w), axis=1, keepdims=True)
        expected = np.asarray(w) * np.maximum(1 - strength / norms, 0)
        np.testing.assert_allclose(optax.apply_updates(p, u)["w"], expected, rtol=1e-6, atol=1e-7)
    # Without static_args optax turns the int axis into an array, which cannot index axes: say so.
    msg = r"^axis must be a Python int.*with optax.inject_hyperparams pass static_args=\('axis',\)"
    for kwargs in ({}, {"axis": 1}):
        bare = optax.inject_hyperparams(jaxreg.prox_group_lasso)(strength=1.0, learning_rate=1.0, **kwargs)
        with pytest.raises(TypeError, match=msg):
            bare.init(p)
    with pytest.raises(TypeError, match=msg):
        jaxreg.group_lasso_penalty(p, axis=jnp.asarray(0))


@pytest.mark.parametrize("bad", ["junk", 1.5, True, (0, 1), None])
def test_group_lasso_axis_type_is_checked_even_for_1d_leaves(bad):
    vector = {"b": jnp.ones(3)}  # a single group whatever the axis: the axis used to go unchecked
    with pytest.raises(TypeError, match=r"^axis must be an int, got"):
        jaxreg.group_lasso_penalty(vector, axis=bad)
    with pytest.raises(TypeError, match=r"^axis must be an int, got"):
        jaxreg.prox_group_lasso(0.1, 0.1, axis=bad)  # at construction, before any update


@pytest.mark.parametrize("mask", [jaxreg.masks.weights_only, jaxreg.masks.by_path(exclude="b")])
def test_callable_mask_with_inject_hyperparams_needs_static_args(mask):
    p = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    zeros = jax.tree.map(jnp.zeros_like, p)
    # The documented form: the mask is static, the strength injected.
    tx = optax.inject_hyperparams(jaxreg.add_l1, static_args=("mask",))(strength=0.1, mask=mask)
    state = tx.init(p)
    update = jax.jit(tx.update)
    for strength in (0.1, 0.3):
        state.hyperparams["strength"] = jnp.asarray(strength)
        u, state = update(zeros, state, p)
        np.testing.assert_allclose(u["w"], strength, rtol=1e-6)
        np.testing.assert_array_equal(u["b"], 0.0)
    # Without it optax calls the mask as a schedule of the step count: jaxreg's masks say so
    # instead of selecting nothing (which silently disabled the regularization).
    bare = optax.inject_hyperparams(jaxreg.add_l1)(strength=0.1, mask=mask)
    with pytest.raises(TypeError, match=r"step count.*static_args=\('mask',\)"):
        bare.init(p)


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


def test_prox_errors_name_the_key_path():
    params = {"dense": {"bias": jnp.ones(2), "kernel": jnp.ones((2, 2))}}
    tx = jaxreg.prox_group_lasso(0.1, 0.1, axis=2)
    with pytest.raises(
        ValueError, match=r"^prox_group_lasso: params leaf 'dense/kernel' of shape \(2, 2\): axis=2 is out"
    ):
        tx.update(params, tx.init(params), params)


def test_mask_mismatch_in_a_transform_says_where():
    tx = jaxreg.prox_l1(0.1, 0.1, mask={"a": True, "c": True})
    with pytest.raises(ValueError, match=r"(?s)mask does not match the structure of params.*'c'"):
        tx.init({"a": jnp.ones(1), "b": jnp.ones(1)})


def test_traced_strength_under_jit():
    p = {"w": jnp.array([0.3, -2.0])}

    @jax.jit
    def f(lam):
        tx = optax.chain(optax.sgd(1.0), jaxreg.prox_l1(lam, 1.0))
        u, _ = tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)
        return optax.apply_updates(p, u)["w"]

    np.testing.assert_allclose(f(0.5), [0.0, -1.5])
