"""keep_top_k, keep_n_of_m and sparsity_schedule: exact counts, a NumPy argsort oracle, the paper's formula."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import land, land_all, random_normal

import jaxreg


def _top_k_oracle(z, k):
    """``z`` with all but its k largest magnitudes zeroed; ties: lower (row-major) index first."""
    flat = np.asarray(z).ravel()
    order = np.argsort(-np.abs(flat), kind="stable")
    out = np.zeros_like(flat)
    out[order[:k]] = flat[order[:k]]
    return out.reshape(np.shape(z))


def _tree():
    return {
        "a": random_normal(0, (5, 4)),
        "b": random_normal(1, (3,)),
        "c": random_normal(2, (2, 3, 2)),
    }


def _zero_updates(params):
    return jax.tree.map(np.zeros_like, params)


# The parametrized tests below land all their cases in one jitted program (helpers.land_all, each
# case its own step), computed once and read case by case.


@functools.cache
def _per_leaf_landed():
    """``{k: landed params}`` of ``keep_top_k(k=k)`` for every k of the test below."""
    params = _tree()
    updates = jax.tree.map(lambda w: random_normal(9, w.shape, 0.1), params)
    ks = [0, 1, 3, 12]
    return dict(zip(ks, land_all([(jaxreg.keep_top_k(k=k), params, updates) for k in ks]), strict=True))


@pytest.mark.parametrize("k", [0, 1, 3, 12])
def test_keep_top_k_per_leaf_matches_argsort_and_keeps_exactly_k(k):
    params = _tree()
    updates = jax.tree.map(lambda w: random_normal(9, w.shape, 0.1), params)
    out = _per_leaf_landed()[k]
    for name, w in params.items():
        z = w + updates[name]
        np.testing.assert_array_equal(np.asarray(out[name]), _top_k_oracle(z, k))
        assert np.count_nonzero(np.asarray(out[name])) == min(k, w.size)


def test_keep_top_k_ties_are_broken_by_index():
    w = np.array([[1.0, -2.0, 2.0], [1.0, 0.5, -1.0]], np.float32)
    three, four = land_all([(jaxreg.keep_top_k(k=k), {"w": w}, {"w": np.zeros_like(w)}) for k in (3, 4)])
    np.testing.assert_array_equal(np.asarray(three["w"]), [[1.0, -2.0, 2.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(np.asarray(four["w"]), [[1.0, -2.0, 2.0], [1.0, 0.0, 0.0]])


def test_keep_top_k_global_keeps_k_over_all_selected_leaves():
    params = _tree()
    mask = {"a": True, "b": False, "c": True}
    out = land(jaxreg.keep_top_k(k=7, scope="global", mask=mask), params, _zero_updates(params), jit=True)
    joint = np.concatenate([params["a"].ravel(), params["c"].ravel()])
    want = _top_k_oracle(joint, 7)
    got = np.concatenate([np.asarray(out["a"]).ravel(), np.asarray(out["c"]).ravel()])
    np.testing.assert_array_equal(got, want)
    assert np.count_nonzero(got) == 7
    np.testing.assert_array_equal(out["b"], params["b"])  # not selected: untouched


@functools.cache
def _fraction_landed():
    """``{fraction: landed params}`` of ``keep_top_k(fraction=fraction)`` for the test below."""
    params = _tree()
    fractions = [0.0, 0.25, 0.5, 1.0]
    cases = [(jaxreg.keep_top_k(fraction=f), params, _zero_updates(params)) for f in fractions]
    return dict(zip(fractions, land_all(cases), strict=True))


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_keep_top_k_fraction_rounds_the_count(fraction):
    params = _tree()
    out = _fraction_landed()[fraction]
    for name, w in params.items():
        k = round(fraction * w.size)
        np.testing.assert_array_equal(np.asarray(out[name]), _top_k_oracle(w, k))


def test_keep_top_k_with_the_gradual_schedule_prunes_to_the_schedule():
    sparsity = jaxreg.sparsity_schedule(0.9, begin_step=0, end_step=4)
    tx = optax.chain(optax.sgd(0.01), jaxreg.keep_top_k(fraction=lambda c: 1 - sparsity(c)))
    params = {"w": jax.device_put(random_normal(3, (10, 10)))}
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(params, state, params)  # gradient of 1/2 ||w||^2
        return optax.apply_updates(params, updates), state

    for t in range(6):
        params, state = step(params, state)
        kept = round((1 - float(sparsity(t))) * 100)
        assert int(np.count_nonzero(np.asarray(params["w"]))) == kept


def test_keep_top_k_leaves_kept_entries_exactly_where_the_plain_step_puts_them():
    w = random_normal(4, (6, 6))
    u = random_normal(5, (6, 6), 0.1)
    # The plain step: optax.identity() lands on optax.apply_updates(w, u).
    out, plain = land_all(
        [(jaxreg.keep_top_k(k=10), {"w": w}, {"w": u}), (optax.identity(), {"w": w}, {"w": u})]
    )
    out, plain = np.asarray(out["w"]), np.asarray(plain["w"])
    kept = out != 0
    np.testing.assert_array_equal(out[kept], plain[kept])


def test_keep_top_k_rejects_bad_arguments():
    with pytest.raises(ValueError, match="exactly one of k and fraction"):
        jaxreg.keep_top_k()
    with pytest.raises(ValueError, match="exactly one of k and fraction"):
        jaxreg.keep_top_k(k=1, fraction=0.5)
    with pytest.raises(ValueError, match="k must be >= 0"):
        jaxreg.keep_top_k(k=-1)
    with pytest.raises(TypeError, match="k must be an int"):
        jaxreg.keep_top_k(k=1.5)
    with pytest.raises(ValueError, match="fraction"):
        jaxreg.keep_top_k(fraction=1.5)
    with pytest.raises(ValueError, match="scope"):
        jaxreg.keep_top_k(k=1, scope="layer")


def _n_of_m_oracle(z, n, m, axis):
    z = np.moveaxis(np.asarray(z), axis, -1)
    blocks = z.reshape(*z.shape[:-1], -1, m)
    order = np.argsort(-np.abs(blocks), axis=-1, kind="stable")
    keep = np.zeros(blocks.shape, bool)
    np.put_along_axis(keep, order[..., :n], True, axis=-1)
    return np.moveaxis(np.where(keep, blocks, 0).reshape(z.shape), -1, axis)


N_OF_M_CASES = [(2, 4, (8, 3), 0), (1, 2, (3, 4), 1), (2, 4, (2, 2, 8, 3), 2)]


@functools.cache
def _n_of_m_landed():
    """``{case: landed w}`` of ``keep_n_of_m`` for every case of the test below."""
    cases = []
    for n, m, shape, axis in N_OF_M_CASES:
        w = random_normal(6, shape)
        cases.append((jaxreg.keep_n_of_m(n, m, axis=axis), {"w": w}, {"w": np.zeros_like(w)}))
    return {case: out["w"] for case, out in zip(N_OF_M_CASES, land_all(cases), strict=True)}


@pytest.mark.parametrize(("n", "m", "shape", "axis"), N_OF_M_CASES)
def test_keep_n_of_m_matches_argsort_and_counts(n, m, shape, axis):
    w = random_normal(6, shape)
    out = np.asarray(_n_of_m_landed()[n, m, shape, axis])
    np.testing.assert_array_equal(out, _n_of_m_oracle(w, n, m, axis))
    blocks = np.moveaxis(out, axis, -1).reshape(-1, m)
    np.testing.assert_array_equal(np.count_nonzero(blocks, axis=-1), n)


def test_keep_n_of_m_errors_name_the_leaf():
    params = {"kernel": np.ones((6, 2), np.float32)}
    with pytest.raises(
        ValueError, match=r"keep_n_of_m: params leaf 'kernel' of shape \(6, 2\).*multiple of m=4"
    ):
        land(jaxreg.keep_n_of_m(2, 4), params, _zero_updates(params))
    with pytest.raises(ValueError, match="n must be <= m"):
        jaxreg.keep_n_of_m(3, 2)
    with pytest.raises(ValueError, match="m must be >= 1"):
        jaxreg.keep_n_of_m(0, 0)


def test_sparsity_schedule_is_zhu_and_gupta():
    sched = jaxreg.sparsity_schedule(0.8, begin_step=10, end_step=30, initial_sparsity=0.1, power=3)
    for t in [0, 10, 15, 20, 29, 30, 100]:
        tau = min(max((t - 10) / 20, 0), 1)
        want = 0.8 + (0.1 - 0.8) * (1 - tau) ** 3
        np.testing.assert_allclose(float(jax.jit(sched)(t)), want, rtol=1e-6)
    with pytest.raises(ValueError, match="end_step must be > begin_step"):
        jaxreg.sparsity_schedule(0.5, 10, 10)
    with pytest.raises(ValueError, match="final_sparsity"):
        jaxreg.sparsity_schedule(1.5, 0, 10)
    with pytest.raises(ValueError, match="power"):
        jaxreg.sparsity_schedule(0.5, 0, 10, power=0)


def _tied_tree():
    return {
        "a": np.array([1.0, -1.0, 2.0], np.float32),
        "b": np.array([[1.0, 0.5], [-1.0, 1.0]], np.float32),
    }


@functools.cache
def _global_ties_landed():
    """``{k: landed params}`` of ``keep_top_k(k=k, scope="global")`` for the test below."""
    params = _tied_tree()
    ks = [0, 1, 5, 9, 10]
    cases = [(jaxreg.keep_top_k(k=k, scope="global"), params, _zero_updates(params)) for k in ks]
    return dict(zip(ks, land_all(cases), strict=True))


@pytest.mark.parametrize("k", [0, 1, 5, 9, 10])
def test_keep_top_k_global_with_ties_across_leaves(k):
    params = _tied_tree()
    out = _global_ties_landed()[k]
    got = np.concatenate([np.asarray(out["a"]).ravel(), np.asarray(out["b"]).ravel()])
    want = _top_k_oracle(np.concatenate([params["a"], params["b"].ravel()]), k)
    np.testing.assert_array_equal(got, want)


def test_keep_top_k_random_sizes_and_traced_fraction_match_argsort():
    rng = np.random.default_rng(11)
    trials, cases = [], []
    for _ in range(5):
        w = np.round(rng.standard_normal(rng.integers(1, 60)), 1).astype(np.float32)  # many ties
        fraction = float(rng.uniform())
        tx = jaxreg.keep_top_k(fraction=lambda count, f=fraction: jnp.asarray(f, jnp.float32) + 0 * count)
        trials.append((w, fraction))
        cases.append((tx, {"w": w}, {"w": np.zeros_like(w)}))
    for trial, ((w, fraction), landed) in enumerate(zip(trials, land_all(cases), strict=True)):
        out = np.asarray(landed["w"])
        k = int(np.round(np.float32(fraction) * w.size))
        np.testing.assert_array_equal(out, _top_k_oracle(w, k), err_msg=f"trial {trial}")


def test_keep_top_k_freeze_keeps_pruned_entries_at_zero_for_good():
    w = np.array([3.0, 2.0, 1.0, 0.5], np.float32)
    push = np.array([0.0, 0.0, 0.0, 10.0], np.float32)  # the smallest entry would become the largest
    for freeze, want in [(False, [3.0, 0.0, 0.0, 10.0]), (True, [3.0, 2.0, 0.0, 0.0])]:
        tx = jaxreg.keep_top_k(k=2, freeze=freeze)
        state = tx.init({"w": w})
        step = jax.jit(tx.update)
        u, state = step({"w": np.zeros(4, np.float32)}, state, {"w": w})
        params = optax.apply_updates({"w": w}, u)
        np.testing.assert_array_equal(params["w"], [3.0, 2.0, 0.0, 0.0])
        u, state = step({"w": push}, state, params)
        np.testing.assert_array_equal(optax.apply_updates(params, u)["w"], want)
    assert isinstance(state, jaxreg.PruningState)


def test_keep_top_k_freeze_with_the_schedule_prunes_monotonically_to_exact_counts():
    sparsity = jaxreg.sparsity_schedule(0.8, begin_step=0, end_step=3)
    tx = optax.chain(
        optax.sgd(0.5), jaxreg.keep_top_k(fraction=lambda c: 1 - sparsity(c), scope="global", freeze=True)
    )
    params = _tree()
    state = tx.init(params)
    step = jax.jit(tx.update)
    n = sum(w.size for w in params.values())
    zero = None
    for t in range(5):
        grads = jax.tree.map(lambda w, t=t: random_normal(20 + t, w.shape), params)
        # A large step (+100) on every pruned entry: without freeze it would be among the largest.
        grads = jax.tree.map(lambda w, g: jnp.where(w == 0, -200.0, g), params, grads)
        u, state = step(grads, state, params)
        params = optax.apply_updates(params, u)
        flat = np.concatenate([np.asarray(w).ravel() for w in params.values()])
        assert np.count_nonzero(flat) == round((1 - float(sparsity(t))) * n)
        if zero is not None:
            assert (flat[zero] == 0).all()  # once pruned, pruned for good
        zero = flat == 0


def test_keep_n_of_m_freeze_fixes_the_first_pattern():
    w = np.array([[4.0], [3.0], [2.0], [1.0]], np.float32)
    tx = jaxreg.keep_n_of_m(2, 4, freeze=True)

    @jax.jit  # one compilation for both steps
    def step(updates, state, params):
        u, state = tx.update(updates, state, params)
        return optax.apply_updates(params, u), state

    params, state = step({"w": np.zeros_like(w)}, tx.init({"w": w}), {"w": w})
    params, state = step({"w": np.array([[0.0], [0.0], [0.0], [9.0]], np.float32)}, state, params)
    np.testing.assert_array_equal(np.asarray(params["w"]).ravel(), [4.0, 3.0, 0.0, 0.0])
