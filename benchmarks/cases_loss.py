"""Loss-side regularizers: a Jacobian penalty in a training step, a conv's operator norm, the orthogonal maps.

* ``jacobian_penalty`` (one projection) in the loss of an MLP classifier, one
  ``jax.value_and_grad`` step with respect to the parameters, against the plain
  cross-entropy step and against the exact squared Frobenius norm of the
  Jacobian (``jax.vmap(jax.jacrev)``, one backward pass per class).
* ``conv_spectral_normalize`` (one power iteration through the convolution and
  its transpose, on one example) against ``spectral_normalize`` of the same
  kernel reshaped to a matrix, the cheaper number that is not the operator norm.
* ``orthogonal_map(method="householder")`` (``k`` reflections, accumulated as
  ``I - V S^{-1} V^T``: products and a ``k x k`` triangular solve) against the
  Cayley map (an ``n x n`` solve) and the matrix exponential, value and gradient
  of ``sum(g * Q(a))`` for a tall ``n x k`` ``a``.

Both jitted; the timed calls return their outputs, blocked on by the harness.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import optax

import jaxreg
from benchmarks._harness import NONE, REFERENCE, Baseline, Bench, Case, Config, normal

LAMBDA = 0.01
FULL_MLP = (256, 784, 512, 10)  # batch, inputs, hidden, classes
QUICK_MLP = (32, 64, 32, 10)
FULL_CONV = (32, 32, 64, 64)  # input height, width, in and out channels of a 3x3 kernel
QUICK_CONV = (8, 8, 8, 8)
FULL_ORTHOGONAL = (512, 256)  # rows and columns of the unconstrained matrix
QUICK_ORTHOGONAL = (16, 8)


def _mlp(params, x):
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]


def _cross_entropy(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(_mlp(params, x), y).mean()


def _with_jacobian_penalty(params, x, y, key):
    fro2 = jaxreg.jacobian_penalty(key, lambda x: _mlp(params, x), x)
    return _cross_entropy(params, x, y) + LAMBDA / 2 * fro2


def _with_exact_jacobian(params, x, y, key):
    del key
    jac = jax.vmap(jax.jacrev(lambda xi: _mlp(params, xi[None])[0]))(x)  # (batch, classes, inputs)
    return _cross_entropy(params, x, y) + LAMBDA / 2 * jnp.mean(jnp.sum(jac**2, axis=(1, 2)))


@functools.cache
def _step(loss):
    return jax.jit(jax.value_and_grad(loss))


def _build_jacobian(dims) -> Bench | str:
    if not hasattr(jaxreg, "jacobian_penalty"):
        return "jaxreg.jacobian_penalty does not exist yet"
    batch, d_in, hidden, classes = dims
    params = {
        "w1": normal(0, (d_in, hidden), d_in**-0.5),
        "b1": normal(1, (hidden,), 0.1),
        "w2": normal(2, (hidden, classes), hidden**-0.5),
    }
    x = normal(3, (batch, d_in))
    y = jnp.arange(batch) % classes
    key = jax.random.key(0)

    def thunk(loss):
        fn = _step(loss)
        return lambda: fn(params, x, y, key)

    return Bench(
        name="jacobian_penalty(n_proj=1) in an MLP's loss, value_and_grad",
        size=batch * d_in,
        group="loss",
        jaxreg=thunk(_with_jacobian_penalty),
        baselines=[
            Baseline("plain cross-entropy", thunk(lambda p, x, y, key: _cross_entropy(p, x, y)), NONE),
            Baseline(
                f"exact ||J||_F^2 (vmap(jacrev), {classes} classes)", thunk(_with_exact_jacobian), REFERENCE
            ),
        ],
        extra={"dims": {"batch": batch, "inputs": d_in, "hidden": hidden, "classes": classes}},
    )


def _build_conv(dims) -> Bench | str:
    if not hasattr(jaxreg, "conv_spectral_normalize"):
        return "jaxreg.conv_spectral_normalize does not exist yet"
    h, w, c_in, c_out = dims
    kernel = normal(0, (3, 3, c_in, c_out), (9 * c_in) ** -0.5)
    conv_state = jaxreg.conv_spectral_norm_init(jax.random.key(0), kernel, (h, w, c_in))
    matrix_state = jaxreg.spectral_norm_init(jax.random.key(0), kernel)
    conv_fn = jax.jit(lambda k, s: jaxreg.conv_spectral_normalize(k, s, padding="SAME"))
    matrix_fn = jax.jit(jaxreg.spectral_normalize)
    return Bench(
        name=f"conv_spectral_normalize, 3x3 conv on {h}x{w}x{c_in}, 1 power iteration",
        size=h * w * c_in,
        group="loss",
        jaxreg=lambda: conv_fn(kernel, conv_state),
        baselines=[
            Baseline(
                "spectral_normalize of the reshaped kernel",
                lambda: matrix_fn(kernel, matrix_state),
                REFERENCE,
            )
        ],
        extra={"dims": {"height": h, "width": w, "in": c_in, "out": c_out}},
    )


@functools.cache
def _orthogonal_step(method):
    return jax.jit(jax.value_and_grad(lambda a, g: jnp.sum(g * jaxreg.orthogonal_map(a, method=method))))


def _build_orthogonal(dims) -> Bench | str:
    try:
        jaxreg.orthogonal_map(jnp.zeros((2, 1)), method="householder")
    except ValueError:
        return "jaxreg.orthogonal_map has no method='householder' yet"
    n, k = dims
    a, g = normal(0, (n, k), n**-0.5), normal(1, (n, k))

    def thunk(method):
        fn = _orthogonal_step(method)
        return lambda: fn(a, g)

    return Bench(
        name=f"orthogonal_map(method='householder'), {n} x {k}, value_and_grad",
        size=n * k,
        group="loss",
        jaxreg=thunk("householder"),
        baselines=[Baseline(f"method={m!r}", thunk(m)) for m in ("cayley", "expm")],
        extra={"dims": {"rows": n, "columns": k}},
    )


def cases(cfg: Config) -> Iterator[Case]:
    mlp = QUICK_MLP if cfg.quick else FULL_MLP
    conv = QUICK_CONV if cfg.quick else FULL_CONV
    yield Case(
        "jacobian_penalty in the loss", mlp[0] * mlp[1], "loss", functools.partial(_build_jacobian, mlp)
    )
    yield Case(
        "conv_spectral_normalize", conv[0] * conv[1] * conv[2], "loss", functools.partial(_build_conv, conv)
    )
    ortho = QUICK_ORTHOGONAL if cfg.quick else FULL_ORTHOGONAL
    yield Case(
        "orthogonal_map methods", ortho[0] * ortho[1], "loss", functools.partial(_build_orthogonal, ortho)
    )
