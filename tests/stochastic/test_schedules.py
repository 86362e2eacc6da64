"""Rates over depth and training: drop_path_rates, early/late dropout, per-layer rates in stacked models.

Oracles: NumPy transcriptions of ``torch.linspace`` (timm's
``calculate_drop_path_rates``) and of the early/late schedules' piecewise
formulas (Liu et al. 2023). Statistical bound: a kept count ``k`` of ``n``
independent Bernoulli(``p``) decisions satisfies ``|k - n p| < 5 sqrt(n p (1 - p))``
(5 standard deviations: a false failure has probability below 1e-6 per check;
keys are fixed, so the tests are reproducible).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxreg
import jaxreg.linen as jrl
import jaxreg.nnx as jrx

DEPTH = 4
N = 4000  # examples per layer: the binomial bound is ~5 * sqrt(4000 * 0.25) = 158 at worst


def _torch_linspace(start, end, steps):
    """torch.linspace in float32 (aten's CPU kernel: from the start below the middle, from the end above)."""
    out = np.empty(steps, np.float32)
    if steps == 1:
        out[0] = start
        return out
    step = np.float32((np.float32(end) - np.float32(start)) / np.float32(steps - 1))
    half = steps // 2
    for i in range(steps):
        if i < half:
            out[i] = np.float32(start) + step * np.float32(i)
        else:
            out[i] = np.float32(end) - step * np.float32(steps - i - 1)
    return out


def _assert_binomial(kept, n, p):
    if p in (0.0, 1.0):
        assert kept == n * p
        return
    bound = 5 * np.sqrt(n * p * (1 - p))
    assert abs(kept - n * p) < bound, (kept, n * p, bound)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 0.5])
@pytest.mark.parametrize("depth", [1, 2, 12, 24])
def test_drop_path_rates_linear_is_timms_linspace(rate, depth):
    got = np.asarray(jaxreg.drop_path_rates(rate, depth))
    assert got.dtype == np.float32 and got.shape == (depth,)
    np.testing.assert_allclose(got, _torch_linspace(0.0, rate, depth), rtol=2e-7, atol=0)
    assert got[0] == 0.0 and got[-1] == np.float32(rate if depth > 1 else 0.0)


def test_drop_path_rates_constant_and_traced():
    np.testing.assert_array_equal(
        jaxreg.drop_path_rates(0.2, 3, kind="constant"), np.full(3, 0.2, np.float32)
    )
    traced = jax.jit(lambda r: jaxreg.drop_path_rates(r, 12))(jnp.float32(0.3))
    np.testing.assert_allclose(traced, jaxreg.drop_path_rates(0.3, 12), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rate": 1.5, "depth": 3}, ValueError, r"rate must lie in \[0, 1\], got 1.5"),
        ({"rate": 0.1, "depth": 0}, ValueError, "depth must be >= 1, got 0"),
        ({"rate": 0.1, "depth": 2.0}, TypeError, "depth must be an int"),
        ({"rate": 0.1, "depth": 3, "kind": "cosine"}, ValueError, "kind must be one of"),
    ],
)
def test_drop_path_rates_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxreg.drop_path_rates(**kwargs)


def _early_oracle(rate, cutoff, mode, t):
    if t >= cutoff:
        return 0.0
    return rate if mode == "constant" else rate * (1 - t / cutoff)


@pytest.mark.parametrize("mode", ["constant", "linear"])
def test_early_dropout_values_eager_and_under_jit(mode):
    sched = jaxreg.early_dropout(0.1, 50, mode=mode)
    steps = np.array([0, 1, 25, 49, 50, 51, 1000])
    jitted = jax.jit(jax.vmap(sched))(jnp.asarray(steps))
    for t, v in zip(steps, np.asarray(jitted), strict=True):
        assert float(sched(int(t))) == pytest.approx(_early_oracle(0.1, 50, mode, t), abs=1e-7)
        assert float(v) == pytest.approx(_early_oracle(0.1, 50, mode, t), abs=1e-7)


def test_late_dropout_values_and_start_zero_is_standard_dropout():
    sched = jaxreg.late_dropout(0.3, 10)
    steps = jnp.array([0, 9, 10, 11, 10_000])
    np.testing.assert_allclose(jax.jit(jax.vmap(sched))(steps), [0.0, 0.0, 0.3, 0.3, 0.3], rtol=1e-6)
    assert float(jaxreg.late_dropout(0.3, 0)(0)) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: jaxreg.early_dropout(-0.1, 10), ValueError, "rate must lie"),
        (lambda: jaxreg.early_dropout(0.1, 0), ValueError, "cutoff_step must be >= 1, got 0"),
        (lambda: jaxreg.early_dropout(0.1, 10, mode="cosine"), ValueError, "mode must be one of"),
        (lambda: jaxreg.late_dropout(0.1, -1), ValueError, "start_step must be >= 0, got -1"),
        (lambda: jaxreg.late_dropout(0.1, 1.5), TypeError, "start_step must be an int"),
    ],
)
def test_schedule_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_rate_schedule_changes_the_kept_fraction_over_steps():
    """A jitted step evaluates the schedule at a traced count; one compilation serves every step."""
    early = jaxreg.early_dropout(0.5, 100, mode="linear")
    late = jaxreg.late_dropout(0.4, 100)

    @jax.jit
    def kept(step, key):
        x = jnp.ones(N)
        k1, k2 = jax.random.split(key)
        return (
            jnp.sum(jaxreg.dropout(k1, x, early(step)) != 0),
            jnp.sum(jaxreg.dropout(k2, x, late(step)) != 0),
        )

    for i, step in enumerate([0, 50, 99, 100, 400]):
        k_early, k_late = kept(jnp.int32(step), jax.random.key(i))
        _assert_binomial(int(k_early), N, 1 - _early_oracle(0.5, 100, "linear", step))
        _assert_binomial(int(k_late), N, 1 - (0.4 if step >= 100 else 0.0))


# ---- Per-layer rates in stacked models: the rates travel with the layers, one key per layer. ----

RATES = jaxreg.drop_path_rates(0.6, DEPTH)  # [0, 0.2, 0.4, 0.6]


def _check_per_layer(branch_out):
    """``branch_out``: (DEPTH, N, 1) drop-path outputs of ones; layer l keeps about (1 - r_l) N examples."""
    out = np.asarray(branch_out)
    assert out.shape == (DEPTH, N, 1)
    for layer, rate in enumerate(np.asarray(RATES).tolist()):
        kept = int((out[layer] != 0).sum())
        _assert_binomial(kept, N, 1 - rate)
        np.testing.assert_allclose(out[layer][out[layer] != 0], 1 / (1 - rate), rtol=1e-6)


def test_functional_scan_with_per_layer_rates_under_jit():
    @jax.jit
    def forward(key, x, rates):
        def layer(h, xs):
            rate, k = xs
            branch = jaxreg.drop_path(k, jnp.ones_like(h), rate)
            return h, branch

        return jax.lax.scan(layer, x, (rates, jax.random.split(key, DEPTH)))[1]

    _check_per_layer(forward(jax.random.key(0), jnp.zeros((N, 1)), RATES))


def test_linen_scan_with_per_layer_rates_under_jit():
    class Block(nn.Module):
        @nn.compact
        def __call__(self, h, rate):
            h = h + nn.Dense(1)(h) * 0.0  # a parameter per layer, stacked by the scan
            return h, jrl.DropPath(rate)(jnp.ones_like(h), deterministic=False)

    Stack = nn.scan(
        Block,
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=0,
        length=DEPTH,
    )
    model, x = Stack(), jnp.zeros((N, 1))
    variables = jax.jit(lambda k0, k1: model.init({"params": k0, "dropout": k1}, x, RATES))(
        jax.random.key(0), jax.random.key(1)
    )
    assert variables["params"]["Dense_0"]["kernel"].shape == (DEPTH, 1, 1)
    apply = jax.jit(lambda v, x, r, k: model.apply(v, x, r, rngs={"dropout": k})[1])
    _check_per_layer(apply(variables, x, RATES, jax.random.key(2)))


class _NNXBlock(nnx.Module):
    def __init__(self, rate, rngs: nnx.Rngs):
        self.linear = nnx.Linear(1, 1, rngs=rngs)
        self.path = jrx.DropPath(rate, rngs=rngs)

    def __call__(self, h):
        return self.path(jnp.ones_like(h))


@nnx.jit  # built in one program
def _nnx_stack(rates, rngs):
    @nnx.split_rngs(splits=DEPTH)
    @nnx.vmap(in_axes=(0, 0))
    def make(rate, rngs):
        return _NNXBlock(rate, rngs)

    return make(rates, rngs)


@nnx.jit
def _nnx_forward(stack, x):
    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=(nnx.Carry, 0))
    def body(block, h):
        return h, block(h)

    return body(stack, x)[1]


def test_nnx_vmap_scan_with_per_layer_rates_under_jit():
    stack = _nnx_stack(RATES, nnx.Rngs(params=0, dropout=1))
    assert stack.linear.kernel.shape == (DEPTH, 1, 1) and stack.path.rate.shape == (DEPTH,)
    x = jnp.zeros((N, 1))
    first = _nnx_forward(stack, x)
    _check_per_layer(first)
    second = _nnx_forward(stack, x)  # each layer's stream advanced: new masks
    assert not np.array_equal(np.asarray(first[1:]), np.asarray(second[1:]))
    stack.eval()
    np.testing.assert_array_equal(_nnx_forward(stack, x), np.ones((DEPTH, N, 1), np.float32))


def test_nnx_layers_get_independent_keys():
    stack = _nnx_stack(jaxreg.drop_path_rates(0.5, DEPTH, kind="constant"), nnx.Rngs(params=0, dropout=1))
    masks = np.asarray(_nnx_forward(stack, jnp.zeros((N, 1))))[:, :, 0] != 0
    for a in range(DEPTH):
        for b in range(a + 1, DEPTH):
            # two independent Bernoulli(1/2) masks agree on N/2 +- 5 sqrt(N/4) examples
            _assert_binomial(int((masks[a] == masks[b]).sum()), N, 0.5)


def test_flax_dropout_with_a_vmapped_rate_is_the_failing_pattern():
    """The pattern the docs warn against: a traced rate stored as a static attribute escapes the vmap."""

    @nnx.split_rngs(splits=DEPTH)
    @nnx.vmap(in_axes=(0, 0))
    def make(rate, rngs):
        return nnx.Dropout(rate, rngs=rngs)

    stack = make(RATES, nnx.Rngs(dropout=0))

    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=(nnx.Carry, 0))
    def body(drop, h):
        return h, drop(h)

    with pytest.raises(jax.errors.UnexpectedTracerError):
        body(stack, jnp.ones((8, 1)))
