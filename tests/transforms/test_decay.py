"""Weight-decay variants: timm trajectories, NumPy transcriptions of the papers' algorithms, masks, jit, errors.

Oracles: ``tests/data/decay_reference.npz`` (timm's AdamW with and without ``corrected_weight_decay``,
written by ``tests/make_decay_reference.py``), and NumPy loops written here from Loshchilov and
Hutter's Algorithm 2 and Chen et al.'s Algorithm 1.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg

REF = pathlib.Path(__file__).parents[1] / "data" / "decay_reference.npz"


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


def _stack(traj, name):
    return np.stack([np.asarray(p[name]) for p in traj])


def _f64(schedule):
    """The schedule evaluated at a float64 count: at optax's int32 count it computes in float32, even under x64."""
    return lambda count: schedule(jnp.asarray(count, jnp.float64))


def _values(schedule, steps):
    """``schedule`` at the counts ``0 .. steps - 1``, in NumPy: one compilation for all of them."""
    return np.asarray(jax.jit(jax.vmap(schedule))(np.arange(steps)))


# ---------------------------------------------------------------- corrected_weight_decay against timm


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(REF))


def _timm_problem(ref):
    # jax.device_put, not jnp.asarray (which compiles a copy for each new shape): the same arrays.
    x, y = jax.device_put(ref["x"]), jax.device_put(ref["y"])
    params = {"w": jax.device_put(ref["w0"]), "b": jax.device_put(ref["b0"])}
    loss = lambda p: 0.5 * jnp.mean((x @ p["w"] + p["b"] - y) ** 2)  # noqa: E731
    sched = optax.warmup_cosine_decay_schedule(
        init_value=float(ref["init_lr"]),
        peak_value=float(ref["peak_lr"]),
        warmup_steps=int(ref["warmup_steps"]),
        decay_steps=len(ref["lr"]),
        end_value=float(ref["end_lr"]),
    )
    return params, loss, _f64(sched)


def test_corrected_weight_decay_follows_timm_adamc(ref):
    with jax.enable_x64(True):
        params, loss, sched = _timm_problem(ref)
        steps = len(ref["lr"])
        # The schedule is the one the script set by hand, step by step.
        np.testing.assert_allclose(_values(sched, steps), ref["lr"], rtol=1e-13)
        b1, b2, eps, wd = (float(ref[k]) for k in ("b1", "b2", "eps", "weight_decay"))
        tx = optax.chain(
            optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
            jaxreg.corrected_weight_decay(wd, sched, max_learning_rate=float(ref["peak_lr"])),
            optax.scale_by_learning_rate(sched),
        )
        traj = _run(tx, params, loss, steps)
        np.testing.assert_allclose(_stack(traj, "w"), ref["corrected_w"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(_stack(traj, "b"), ref["corrected_b"], rtol=1e-10, atol=1e-12)

        # The harness is right: optax.adamw follows timm's uncorrected AdamW on the same problem ...
        plain = _run(optax.adamw(sched, b1=b1, b2=b2, eps=eps, weight_decay=wd), params, loss, steps)
        np.testing.assert_allclose(_stack(plain, "w"), ref["plain_w"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(_stack(plain, "b"), ref["plain_b"], rtol=1e-10, atol=1e-12)
        # ... and the correction is far larger than the tolerance.
        assert np.max(np.abs(ref["corrected_w"] - ref["plain_w"])) > 1e-3


def test_corrected_weight_decay_with_a_constant_learning_rate_is_adamw():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x, y = jax.device_put(rng.normal(size=(8, 4))), jax.device_put(rng.normal(size=8))
        params = {"w": jax.device_put(rng.normal(size=4))}
        loss = lambda p: jnp.mean((x @ p["w"] - y) ** 2)  # noqa: E731
        tx = optax.chain(
            optax.scale_by_adam(),
            jaxreg.corrected_weight_decay(0.2, 0.01),
            optax.scale_by_learning_rate(0.01),
        )
        traj = _run(tx, params, loss, 10)
        expected = _run(optax.adamw(0.01, weight_decay=0.2), params, loss, 10)
        np.testing.assert_allclose(_stack(traj, "w"), _stack(expected, "w"), rtol=1e-12)


# ---------------------------------------------------------------- NumPy transcriptions of the papers


def _least_squares(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(12, 6))
    y = x @ np.array([1.5, -2.0, 0.5, 0.0, -0.3, 1.0]) + 0.1 * rng.normal(size=12)
    w0 = rng.normal(size=6)
    grad = lambda w: x.T @ (x @ w - y) / len(y)  # noqa: E731  (of 0.5 * mean((x @ w - y)**2))
    loss = lambda p: 0.5 * jnp.mean((jnp.asarray(x) @ p["w"] - jnp.asarray(y)) ** 2)  # noqa: E731
    return w0, grad, loss


def _numpy_adam_cautious(w0, grad, lrs, lams, b1, b2, eps):
    """Chen et al. 2025, Algorithm 1 with Adam's u_t: x <- x - eta_t (u_t + lam I(u_t x_t >= 0) x_t)."""
    x, m, v, traj, decayed = w0.copy(), np.zeros_like(w0), np.zeros_like(w0), [], []
    for t in range(1, len(lrs) + 1):
        g = grad(x)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        indicator = (u * x >= 0).astype(x.dtype)
        x = x - lrs[t - 1] * (u + lams[t - 1] * indicator * x)
        traj.append(x)
        decayed.append(indicator)
    return np.array(traj), np.array(decayed)


@pytest.mark.parametrize("wd_schedule", [False, True])
def test_cautious_weight_decay_follows_the_paper_with_adam(wd_schedule):
    steps, b1, b2, eps = 20, 0.9, 0.999, 1e-8
    lr = _f64(optax.cosine_decay_schedule(0.1, steps, alpha=0.1))
    wd = _f64(optax.linear_schedule(0.5, 0.1, steps)) if wd_schedule else 0.3
    with jax.enable_x64(True):
        w0, grad, loss = _least_squares(1)
        lrs = _values(lr, steps)
        lams = _values(wd, steps) if callable(wd) else np.full(steps, wd)
        expected, decayed = _numpy_adam_cautious(w0, grad, lrs, lams, b1, b2, eps)
        # The problem exercises both branches of the indicator.
        assert 0.2 < decayed.mean() < 0.95
        tx = optax.chain(
            optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
            jaxreg.cautious_weight_decay(wd),
            optax.scale_by_learning_rate(lr),
        )
        traj = _run(tx, {"w": jax.device_put(w0)}, loss, steps)
        np.testing.assert_allclose(_stack(traj, "w"), expected, rtol=1e-10, atol=1e-12)


def test_cautious_weight_decay_at_zero_and_opposite_signs():
    params = {"w": jnp.array([2.0, -2.0, 2.0, -2.0, 3.0, -3.0, 0.0, 0.0, -0.0])}
    u = {"w": jnp.array([1.0, -1.0, -1.0, 1.0, 0.0, -0.0, 1.0, -1.0, 0.0])}
    tx = jaxreg.cautious_weight_decay(0.5)
    tiny = {"w": jnp.array([1e-30], jnp.float32)}
    out, out_tiny = jax.jit(  # both cases in one compilation
        lambda u, params, u_tiny, tiny: (
            tx.update(u, tx.init(params), params)[0],
            tx.update(u_tiny, tx.init(tiny), tiny)[0],
        )
    )(u, params, {"w": jnp.array([-1e-30], jnp.float32)}, tiny)
    # agree: decayed; disagree: unchanged; u = 0 (either sign): decayed, as I(u w >= 0); w = 0: adds 0
    np.testing.assert_array_equal(out["w"], [2.0, -2.0, -1.0, 1.0, 1.5, -1.5, 1.0, -1.0, 0.0])
    # A product u * w that underflows to 0 in float32 does not count as agreement.
    np.testing.assert_array_equal(out_tiny["w"], np.array([-1e-30], np.float32))


def _numpy_adamw_algorithm2(w0, grad, alpha, etas, lam, b1, b2, eps):
    """Loshchilov and Hutter 2019, Algorithm 2: x_t = x_{t-1} - eta_t (alpha m_hat / (sqrt(v_hat) + eps) + lam x_{t-1})."""
    x, m, v, traj = w0.copy(), np.zeros_like(w0), np.zeros_like(w0), []
    for t in range(1, len(etas) + 1):
        g = grad(x)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        x = x - etas[t - 1] * (alpha * m_hat / (np.sqrt(v_hat) + eps) + lam * x)
        traj.append(x)
    return np.array(traj)


def test_decoupled_weight_decay_is_algorithm_2_of_adamw():
    steps, alpha, lam, b1, b2, eps = 20, 0.05, 0.02, 0.9, 0.999, 1e-8
    eta = _f64(optax.cosine_decay_schedule(1.0, steps, alpha=0.2))  # the schedule multiplier eta_t
    with jax.enable_x64(True):
        w0, grad, loss = _least_squares(2)
        etas = _values(eta, steps)
        expected = _numpy_adamw_algorithm2(w0, grad, alpha, etas, lam, b1, b2, eps)
        tx = optax.chain(
            optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
            optax.scale_by_learning_rate(lambda t: alpha * eta(t)),
            jaxreg.decoupled_weight_decay(lam, schedule=eta),
        )
        traj = _run(tx, {"w": jax.device_put(w0)}, loss, steps)
        np.testing.assert_allclose(_stack(traj, "w"), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("lr", [1e-3, 1.0])
def test_decoupled_weight_decay_does_not_scale_with_the_learning_rate(lr):
    params = {"w": jnp.array([2.0, -4.0])}
    tx = optax.chain(optax.sgd(lr), jaxreg.decoupled_weight_decay(0.25))
    u, _ = jax.jit(tx.update)({"w": jnp.zeros(2)}, tx.init(params), params)
    np.testing.assert_array_equal(u["w"], [-0.5, 1.0])  # -0.25 * w whatever the learning rate


def test_weight_decay_and_schedule_multiply_and_advance():
    params = {"w": jnp.array([1.0, -2.0])}
    zeros = {"w": jnp.zeros(2)}
    tx = jaxreg.decoupled_weight_decay(
        optax.linear_schedule(0.5, 0.25, 1), schedule=optax.linear_schedule(1.0, 0.5, 1)
    )
    state = tx.init(params)
    update = jax.jit(tx.update)  # one compilation for both steps
    u, state = update(zeros, state, params)
    np.testing.assert_array_equal(u["w"], [-0.5, 1.0])  # -0.5 * 1.0 * w
    u, state = update(zeros, state, params)
    np.testing.assert_array_equal(u["w"], [-0.125, 0.25])  # -0.25 * 0.5 * w
    assert int(optax.tree_utils.tree_get(state, "count")) == 2


# ---------------------------------------------------------------- shared behaviour of the three

FACTORIES = {
    "decoupled": lambda wd, **kw: jaxreg.decoupled_weight_decay(wd, **kw),
    "corrected": lambda wd, **kw: jaxreg.corrected_weight_decay(wd, 0.5, max_learning_rate=1.0, **kw),
    "cautious": lambda wd, **kw: jaxreg.cautious_weight_decay(wd, **kw),
}
# The update each adds for a positive direction u = 1 on a positive weight w: a multiple of wd * w.
SIGN = {"decoupled": -1.0, "corrected": 0.5, "cautious": 1.0}


@pytest.mark.parametrize("name", list(FACTORIES))
def test_masks_and_non_float_leaves(name):
    params = {"w": jnp.full((2, 3), 2.0), "b": jnp.full(3, 2.0), "step": jnp.array(7, jnp.int32)}
    ones = {"w": jnp.ones((2, 3)), "b": jnp.ones(3), "step": jnp.array(1, jnp.int32)}
    cases = (
        (None, {"w", "b"}),
        ({"w": True, "b": False, "step": True}, {"w"}),
        (jaxreg.masks.weights_only, {"w"}),
    )
    txs = [FACTORIES[name](0.5, mask=mask) for mask, _ in cases]
    updates = jax.jit(  # the three masks in one compilation
        lambda ones, params: [tx.update(ones, tx.init(params), params)[0] for tx in txs]
    )(ones, params)
    for (_, decayed), u in zip(cases, updates, strict=True):
        for leaf in ("w", "b"):
            expected = 1.0 + SIGN[name] * 0.5 * 2.0 if leaf in decayed else 1.0
            np.testing.assert_allclose(u[leaf], expected, rtol=1e-6)
        assert u["step"].dtype == jnp.int32 and int(u["step"]) == 1


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_leaves_keep_their_dtype(name, dtype):
    params = {"w": jnp.full(4, 2.0, dtype)}
    tx = FACTORIES[name](optax.linear_schedule(0.5, 0.1, 10))
    u, _ = jax.jit(tx.update)({"w": jnp.ones(4, dtype)}, tx.init(params), params)
    assert u["w"].dtype == dtype
    np.testing.assert_allclose(np.asarray(u["w"], np.float32), 1.0 + SIGN[name] * 0.5 * 2.0, rtol=1e-2)


def test_all_three_compile_once_in_a_chain_with_schedules():
    traces = []
    sched = optax.linear_schedule(0.1, 0.01, 50)
    tx = optax.chain(
        optax.scale_by_adam(),
        jaxreg.cautious_weight_decay(sched),
        jaxreg.corrected_weight_decay(sched, sched, max_learning_rate=0.1),
        optax.scale_by_learning_rate(sched),
        jaxreg.decoupled_weight_decay(1e-4, schedule=sched),
    )

    @jax.jit
    def step(p, s):
        traces.append(1)
        u, s = tx.update(jax.tree.map(jnp.ones_like, p), s, p)
        return optax.apply_updates(p, u), s

    p = {"w": jnp.linspace(-1.0, 1.0, 5, dtype=jnp.float32)}
    s = tx.init(p)
    for _ in range(50):
        p, s = step(p, s)
    assert len(traces) == 1
    assert bool(jnp.all(jnp.isfinite(p["w"])))


@pytest.mark.parametrize("name", list(FACTORIES))
def test_inject_hyperparams_changes_weight_decay_between_steps(name):
    factory = {
        "decoupled": jaxreg.decoupled_weight_decay,
        "corrected": jaxreg.corrected_weight_decay,
        "cautious": jaxreg.cautious_weight_decay,
    }[name]
    extra = {"corrected": {"learning_rate": 0.5, "max_learning_rate": 1.0}}.get(name, {})
    tx = optax.inject_hyperparams(factory)(weight_decay=0.1, **extra)
    p = {"w": jnp.array([2.0, 4.0])}
    ones = {"w": jnp.ones(2)}
    state = tx.init(p)
    update = jax.jit(tx.update)
    for wd in (0.1, 0.3):
        state.hyperparams["weight_decay"] = jnp.asarray(wd)
        u, state = update(ones, state, p)
        np.testing.assert_allclose(u["w"], 1.0 + SIGN[name] * wd * np.array([2.0, 4.0]), rtol=1e-6)


def test_inject_hyperparams_with_schedules():
    p = {"w": jnp.array([2.0, -4.0])}
    zeros = {"w": jnp.zeros(2)}
    lr = optax.linear_schedule(1.0, 0.25, 3)  # 1.0, 0.75, 0.5
    expected = [0.5 * r * np.array([2.0, -4.0]) for r in (1.0, 0.75, 0.5)]
    # inject_hyperparams evaluates the schedule itself: max_learning_rate gives lr_max ...
    injected = optax.inject_hyperparams(jaxreg.corrected_weight_decay)(
        weight_decay=0.5, learning_rate=lr, max_learning_rate=1.0
    )
    # ... or the schedule stays whole, evaluated at the transform's own count.
    static = optax.inject_hyperparams(jaxreg.corrected_weight_decay, static_args=("learning_rate",))(
        weight_decay=0.5, learning_rate=lr, max_learning_rate=1.0
    )
    for tx in (injected, static):
        state = tx.init(p)
        update = jax.jit(tx.update)
        for e in expected:
            u, state = update(zeros, state, p)
            np.testing.assert_allclose(u["w"], e, rtol=1e-6)
    # Without max_learning_rate, as the docstring warns, lr_max is the injected lr_t: AdamW's decay.
    bare = optax.inject_hyperparams(jaxreg.corrected_weight_decay)(weight_decay=0.5, learning_rate=lr)
    state = bare.init(p)
    update = jax.jit(bare.update)
    for _ in range(3):
        u, state = update(zeros, state, p)
        np.testing.assert_allclose(u["w"], 0.5 * np.array([2.0, -4.0]), rtol=1e-6)
    # decoupled_weight_decay's schedule multiplier, injected: evaluated by inject_hyperparams at its count.
    tx = optax.inject_hyperparams(jaxreg.decoupled_weight_decay)(weight_decay=0.5, schedule=lr)
    state = tx.init(p)
    for r in (1.0, 0.75, 0.5):
        u, state = jax.jit(tx.update)(zeros, state, p)
        np.testing.assert_allclose(u["w"], -0.5 * r * np.array([2.0, -4.0]), rtol=1e-6)


def test_traced_strengths_under_jit():
    p = {"w": jnp.array([2.0, -4.0])}

    @jax.jit
    def f(wd, lr, lr_max):
        tx = optax.chain(
            jaxreg.cautious_weight_decay(wd),
            jaxreg.corrected_weight_decay(wd, lr, max_learning_rate=lr_max),
            jaxreg.decoupled_weight_decay(wd, schedule=lr_max),
        )
        u, _ = tx.update({"w": jnp.ones(2)}, tx.init(p), p)
        return u["w"]

    # w = [2, -4]. cautious: 1 + [0.5 * 2, 0] = [2, 1]; corrected: + 0.5 * (0.5 / 1) * w = [2.5, 0];
    # decoupled: - 0.5 * 1 * w = [1.5, 2]
    np.testing.assert_allclose(f(0.5, 0.5, 1.0), [1.5, 2.0], rtol=1e-6)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), np.float32(-1), jnp.asarray(-0.5)])
@pytest.mark.parametrize(
    ("factory", "arg"),
    [
        (lambda v: jaxreg.decoupled_weight_decay(v), "weight_decay"),
        (lambda v: jaxreg.decoupled_weight_decay(0.1, schedule=v), "schedule"),
        (lambda v: jaxreg.corrected_weight_decay(v, 0.1), "weight_decay"),
        (lambda v: jaxreg.corrected_weight_decay(0.1, v, max_learning_rate=1.0), "learning_rate"),
        (lambda v: jaxreg.cautious_weight_decay(v), "weight_decay"),
    ],
)
def test_bad_strengths_are_named(factory, arg, bad):
    with pytest.raises(ValueError, match=rf"^{arg} must be finite and >= 0, got"):
        factory(bad)


def test_corrected_weight_decay_needs_a_max_learning_rate():
    sched = optax.cosine_decay_schedule(1e-3, 100)
    with pytest.raises(ValueError, match=r"learning_rate is a schedule, so max_learning_rate is required"):
        jaxreg.corrected_weight_decay(0.1, sched)
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match=r"^max_learning_rate must be finite and > 0"):
            jaxreg.corrected_weight_decay(0.1, sched, max_learning_rate=bad)
    with pytest.raises(
        TypeError, match=r"^max_learning_rate must be a number or a JAX scalar, not a schedule"
    ):
        jaxreg.corrected_weight_decay(0.1, sched, max_learning_rate=sched)
    # A float learning rate is its own maximum: it must then be > 0 (lr / lr_max) ...
    with pytest.raises(ValueError, match=r"^learning_rate must be finite and > 0"):
        jaxreg.corrected_weight_decay(0.1, 0.0)
    # ... and may not exceed a given maximum.
    with pytest.raises(ValueError, match=r"^learning_rate must be <= max_learning_rate"):
        jaxreg.corrected_weight_decay(0.1, 0.2, max_learning_rate=0.1)
    jaxreg.corrected_weight_decay(0.1, 0.0, max_learning_rate=0.1)  # a zero rate under a maximum is fine


@pytest.mark.parametrize("name", list(FACTORIES))
def test_update_needs_params(name):
    p = {"w": jnp.ones(2)}
    tx = FACTORIES[name](0.1)
    with pytest.raises(ValueError, match=r"_weight_decay.update needs params"):
        tx.update(p, tx.init(p))


def test_traced_bad_values_are_not_inspected():
    @jax.jit
    def traced(v):
        jaxreg.decoupled_weight_decay(v, schedule=v)
        jaxreg.corrected_weight_decay(v, v, max_learning_rate=v)
        jaxreg.cautious_weight_decay(v)
        return v

    traced(-0.5)
