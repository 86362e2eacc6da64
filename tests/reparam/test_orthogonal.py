"""orthogonal_map against PyTorch's orthogonal parametrization; the linen and NNX wrappers train orthogonal kernels.

Oracles: ``tests/data/orthogonal_reference.npz``, values and gradients of
``torch.nn.utils.parametrizations.orthogonal`` (made by ``tests/make_orthogonal_reference.py``;
torch is not needed here), and the polar factor from NumPy's SVD.
"""

import functools
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxreg
import jaxreg.linen as jrl
import jaxreg.nnx as jrx

REFERENCE = pathlib.Path(__file__).resolve().parents[1] / "data" / "orthogonal_reference.npz"
METHODS = {"cayley": "cayley", "expm": "matrix_exp", "householder": "householder"}  # jaxreg: torch name


def _polar(w):
    u, _, vt = np.linalg.svd(np.asarray(w, np.float64), full_matrices=False)
    return u @ vt


def _assert_semi_orthogonal(q, atol):
    q = np.asarray(q, np.float64)
    gram = q.T @ q if q.shape[0] >= q.shape[1] else q @ q.T
    np.testing.assert_allclose(gram, np.eye(gram.shape[0]), atol=atol)


def _maps_and_gradients(inputs):
    """``{key: (q, grad of sum(g * q))}`` for every reference case: one jitted program for them all."""
    out = {}
    for tag, (a, a_householder, g, base) in inputs.items():
        for method, torch_name in METHODS.items():
            for kind, b in (("plain", None), ("base", base)):

                def loss(a, g=g, method=method, b=b):
                    q = jaxreg.orthogonal_map(a, method=method, base=b)
                    return jnp.sum(g * q), q

                # PyTorch's Householder map reads the diagonal as signs, +-1 in its parameters.
                grad, q = jax.grad(loss, has_aux=True)(a_householder if method == "householder" else a)
                out[f"{tag}/{torch_name}/{kind}"] = (q, grad)
    return out


def test_values_and_gradients_match_pytorch():
    ref = np.load(REFERENCE)
    tags = sorted({key.split("/")[0] for key in ref.files if "/" in key})
    assert tags == ["2x4x3", "3x5", "4x4", "5x3"]
    names = ("a", "a_householder", "g", "base")
    with jax.enable_x64(True):
        inputs = {tag: tuple(jnp.asarray(ref[f"{tag}/{k}"]) for k in names) for tag in tags}
        got = jax.jit(_maps_and_gradients)(inputs)
    assert len(got) == 24
    for key, (q, grad) in got.items():
        assert q.dtype == jnp.float64
        np.testing.assert_allclose(q, ref[f"{key}/q"], atol=1e-12, err_msg=key)
        np.testing.assert_allclose(grad, ref[f"{key}/grad"], atol=1e-12, err_msg=key)
    # float32: the same matrices to float32 accuracy.
    q32_expm, q32_householder = jax.jit(
        lambda a, a_householder: (
            jaxreg.orthogonal_map(a, method="expm"),
            jaxreg.orthogonal_map(a_householder, method="householder"),
        )
    )(jnp.asarray(ref["5x3/a"], jnp.float32), jnp.asarray(ref["3x5/a_householder"], jnp.float32))
    assert q32_expm.dtype == jnp.float32 and q32_householder.dtype == jnp.float32
    np.testing.assert_allclose(q32_expm, ref["5x3/matrix_exp/plain/q"], atol=1e-5)
    np.testing.assert_allclose(q32_householder, ref["3x5/householder/plain/q"], atol=1e-5)


def test_householder_diagonal_is_signs_where_pytorch_truncates_it():
    # PyTorch multiplies column i by int(a_ii): for the diagonal (-1, 0.5, 1.5, -0.25) its columns 1
    # and 3 are zero (not orthogonal); orthogonal_map uses the signs (-1, 1, 1, -1) and equals
    # PyTorch where int(a_ii) = sign(a_ii), with its diagonal set to those signs elsewhere.
    ref = np.load(REFERENCE)
    a = ref["4x4/householder/trunc/a"]
    np.testing.assert_array_equal(np.diag(a), [-1.0, 0.5, 1.5, -0.25])
    torch_q = ref["4x4/householder/trunc/q"]
    np.testing.assert_array_equal(torch_q[:, [1, 3]], 0.0)
    shapes = [(4, 4), (5, 3), (3, 5)]

    def maps(a, signs):
        householder = functools.partial(jaxreg.orthogonal_map, method="householder")
        return householder(a), householder(signs), [householder(jnp.zeros(shape)) for shape in shapes]

    with jax.enable_x64(True):
        signs = a - np.diag(np.diag(a) - [-1, 1, 1, -1])
        q, q_signs, q_zeros = jax.tree.map(np.asarray, jax.jit(maps)(jnp.asarray(a), jnp.asarray(signs)))
    _assert_semi_orthogonal(q, atol=1e-12)
    np.testing.assert_allclose(q[:, [0, 2]], torch_q[:, [0, 2]], atol=1e-12)
    np.testing.assert_array_equal(q, q_signs)
    # The zero parameter gives the first columns of the identity, as the other maps do.
    for q0, shape in zip(q_zeros, shapes, strict=True):
        np.testing.assert_array_equal(q0, np.eye(*shape))


@pytest.mark.parametrize("method", ["cayley", "expm", "householder"])
def test_orthonormal_columns_or_rows_in_float32(method):
    keys = jax.random.split(jax.random.key(0), 4)
    shapes = [(6, 6), (7, 3), (2, 5), (3, 4, 2)]  # square, tall, wide, a batch of tall
    maps = jax.jit(
        lambda ks: [
            jaxreg.orthogonal_map(0.5 * jax.random.normal(k, s), method=method)
            for k, s in zip(ks, shapes, strict=True)
        ]
    )(keys)
    for q, shape in zip(maps, shapes, strict=True):
        assert q.shape == shape and q.dtype == jnp.float32
        for matrix in np.asarray(q).reshape(-1, *shape[-2:]):
            _assert_semi_orthogonal(matrix, atol=1e-5)


def test_init_gives_the_polar_factor():
    rng = np.random.default_rng(1)
    ws = [rng.normal(size=shape).astype(np.float32) for shape in [(5, 3), (3, 5), (4, 4)]]

    @jax.jit
    def run(ws):  # for each w: the base, and the map of zeros from it by each method
        bases = [jaxreg.orthogonal_map_init(w) for w in ws]
        maps = [
            {m: jaxreg.orthogonal_map(jnp.zeros(w.shape), method=m, base=b) for m in METHODS}
            for w, b in zip(ws, bases, strict=True)
        ]
        return bases, maps

    for w, base, maps in zip(ws, *run(ws), strict=True):
        n = max(w.shape)
        assert base.shape == (n, n)
        np.testing.assert_allclose(np.asarray(base).T @ np.asarray(base), np.eye(n), atol=1e-5)
        for method, q in maps.items():
            np.testing.assert_allclose(q, _polar(w), atol=1e-5, err_msg=f"{w.shape} {method}")


def test_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        jaxreg.orthogonal_map(jnp.ones((3, 3)), method="svd")
    with pytest.raises(ValueError, match=r"base must have shape \(\.\.\., 5, 5\)"):
        jaxreg.orthogonal_map(jnp.ones((5, 3)), base=jnp.eye(3))
    with pytest.raises(ValueError, match="a must have at least 2 dimensions"):
        jaxreg.orthogonal_map(jnp.ones(3))
    with pytest.raises(
        ValueError, match=r"method must be one of \('cayley', 'expm', 'householder'\), got 'svd'"
    ):
        # The method is checked before the layer is used: a layer of shapes only (nothing compiled).
        jrx.Orthogonal(nnx.eval_shape(lambda: nnx.Linear(2, 2, rngs=nnx.Rngs(0))), method="svd")


def _regression(seed, n_in, n_out):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, n_in)).astype(np.float32)
    target = x @ np.linalg.qr(rng.normal(size=(max(n_in, n_out),) * 2))[0][:n_in, :n_out]
    return jnp.asarray(x), jnp.asarray(target.astype(np.float32))


def test_linen_wrapper_starts_at_the_polar_factor_and_trains_orthogonal():
    x, target = _regression(2, 5, 3)
    key = jax.random.key(3)
    raw = jrl.Orthogonal(nn.Dense(3), orthogonal_init=False).init(key, x)
    w0 = raw["params"]["layer_instance"]["kernel"]  # the Dense layer's own initial kernel
    assert "batch_stats" not in raw
    model = jrl.Orthogonal(nn.Dense(3), method="expm")
    variables = model.init(key, x)
    params, bases = variables["params"], variables["batch_stats"]
    np.testing.assert_array_equal(params["layer_instance"]["kernel"], 0.0)  # stored: unconstrained
    x_np = np.asarray(x)  # the oracle side in NumPy
    np.testing.assert_allclose(model.apply(variables, x), x_np @ _polar(w0), atol=1e-5)  # bias 0 at init

    def loss(p):
        return jnp.mean((model.apply({"params": p, "batch_stats": bases}, x) - target) ** 2)

    tx = optax.adam(0.05)

    @jax.jit
    def step(p, s):
        value, g = jax.value_and_grad(loss)(p)
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s, value

    opt_state, losses = tx.init(params), []
    for _ in range(20):
        params, opt_state, value = step(params, opt_state)
        losses.append(float(value))
    assert losses[-1] < 0.5 * losses[0]
    a = params["layer_instance"]["kernel"]
    assert np.abs(np.asarray(a)).max() > 0
    kernel = np.asarray(jaxreg.orthogonal_map(a, method="expm", base=bases["layer_instance/kernel/base"]))
    _assert_semi_orthogonal(kernel, atol=1e-5)
    out = model.apply({"params": params, "batch_stats": bases}, x)
    bias = np.asarray(params["layer_instance"]["bias"])
    np.testing.assert_allclose(out, x_np @ kernel + bias[None], atol=1e-5)


def test_nnx_wrapper_starts_at_the_polar_factor_and_trains_orthogonal():
    x, target = _regression(4, 3, 5)  # wide kernel (3, 5): orthonormal rows
    bare = nnx.Linear(3, 5, rngs=nnx.Rngs(5))
    model = jrx.Orthogonal(nnx.Linear(3, 5, rngs=nnx.Rngs(5)), method="householder")
    x_np = np.asarray(x)  # the oracle side in NumPy
    np.testing.assert_allclose(model(x), x_np @ _polar(bare.kernel[...]), atol=1e-5)
    base = np.asarray(model.bases["kernel"][...])
    optimizer = nnx.Optimizer(model, optax.adam(0.05), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        value, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - target) ** 2))(model)
        optimizer.update(model, grads)
        return value

    losses = [float(step(model, optimizer)) for _ in range(20)]
    assert losses[-1] < 0.5 * losses[0]
    np.testing.assert_array_equal(model.bases["kernel"][...], base)  # the base is not trained
    a = model.layer_instance.kernel[...]
    np.testing.assert_array_equal(np.diag(np.asarray(a).T), 0.0)  # the diagonal chooses signs: no gradient
    kernel = np.asarray(jaxreg.orthogonal_map(a, method="householder", base=base))
    _assert_semi_orthogonal(kernel, atol=1e-5)
    bias = np.asarray(model.layer_instance.bias[...])
    np.testing.assert_allclose(model(x), x_np @ kernel + bias[None], atol=1e-5)
    # Without the orthogonal init the stored kernel is the layer's own, mapped as it is.
    plain = jrx.Orthogonal(nnx.Linear(3, 5, rngs=nnx.Rngs(5)), orthogonal_init=False)
    np.testing.assert_array_equal(plain.layer_instance.kernel[...], bare.kernel[...])
    want = x_np @ np.asarray(jaxreg.orthogonal_map(bare.kernel[...])) + np.asarray(bare.bias[...])[None]
    np.testing.assert_allclose(plain(x), want, atol=1e-5)
