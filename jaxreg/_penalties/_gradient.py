r"""Loss-side penalties: functions of a model's outputs or of its derivatives with respect to its inputs.

Unlike the weight penalties, these take the *function* (or its outputs) and the
inputs, and return a float32 scalar (float64 if the inputs are float64) to add
to the loss with a strength factor of your choice. They are pure and compose
with ``jax.jit`` and ``jax.grad``: the gradient penalties differentiate ``fn``
with respect to its input inside the loss, so the loss's gradient with respect
to the parameters is a second-order derivative, which JAX computes exactly.

**Batches.** ``fn`` maps a batch ``x`` of shape ``(batch, ...)`` to one output
per example (``(batch,)`` or ``(batch, 1)`` for scores and per-example losses;
``(batch, ...)`` for :func:`jacobian_penalty`). The gradients are the
per-example gradients $\nabla_{x_i} f(x_i)$, computed with one backward pass of
the *sum* of the outputs: exact when the examples do not interact inside ``fn``.
Layers that mix examples (batch normalization in training mode) add
cross-example terms; Gulrajani et al. replace batch normalization in the critic
by layer normalization for that reason. A batch-mean output (a scalar) is
rejected: its gradient is the per-example gradient divided by the batch size.
The penalties are means over the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxreg._norms import acc_dtype, safe_norm
from jaxreg._validation import check_count, check_ndim, check_non_negative


def _batch(name: str, x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    check_ndim(name, x, 1, at_least=True)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating dtype to be differentiated, got {x.dtype}")
    return x


def _per_example_sq_norms(g: jax.Array) -> jax.Array:
    """``||g_i||^2`` over all axes but the first, in the accumulation dtype."""
    g = g.astype(acc_dtype(g.dtype))
    return jnp.sum(jnp.square(g), axis=tuple(range(1, g.ndim)))


def _input_gradients(fn: Callable[[jax.Array], jax.Array], x: jax.Array, name: str) -> jax.Array:
    """The per-example gradients ``grad_{x_i} fn(x)_i``: one VJP of the batch sum."""
    x = _batch(name, x)
    out, vjp = jax.vjp(fn, x)
    batch = x.shape[0]
    if jnp.shape(out) not in ((batch,), (batch, 1)):
        raise ValueError(
            f"fn must return one score per example, of shape ({batch},) or ({batch}, 1) for {name} of "
            f"shape {x.shape}, got shape {jnp.shape(out)}; return per-example values, not their mean "
            "(the gradient of a batch mean is the per-example gradient divided by the batch size)"
        )
    (g,) = vjp(jnp.ones_like(out))
    return g


def input_gradient_penalty(fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    r"""Input-gradient norm penalty $\frac{1}{B} \sum_i \|\nabla_{x_i} f(x_i)\|_2^2$.

    The squared Euclidean norm of each example's gradient with respect to its own
    input (over all the example's axes), averaged over the batch. With ``fn`` the
    per-example loss it is Drucker and LeCun's double backpropagation; with
    ``fn`` a per-example score (a log-probability, a critic) it is the
    gradient-norm penalty of Ross and Doshi-Velez. :func:`r1_penalty` is the same
    quantity for a GAN's critic. Multiply by your strength factor.

    Args:
      fn: maps a batch ``x`` to one value per example, shape ``(batch,)`` or
        ``(batch, 1)``; close over parameters and other inputs
        (``lambda x: loss(params, x, labels)``).
      x: the batch, ``(batch, ...)``, floating.

    Returns:
      A float32 scalar (float64 for float64 ``x``).

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> w = jnp.array([3.0, 4.0])
      >>> float(jaxreg.input_gradient_penalty(lambda x: x @ w, jnp.ones((5, 2))))  # ||w||^2
      25.0

    References:
      Drucker and LeCun, 1992, `Improving generalization performance using
      double backpropagation <https://doi.org/10.1109/72.165600>`_;
      Ross and Doshi-Velez, 2018, `Improving the Adversarial Robustness and
      Interpretability of Deep Neural Networks by Regularizing their Input
      Gradients <https://arxiv.org/abs/1711.09404>`_.
    """
    return jnp.mean(_per_example_sq_norms(_input_gradients(fn, x, "x")))


def r1_penalty(critic: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    r"""R1 gradient penalty $\frac{1}{B} \sum_i \|\nabla_{x_i} D(x_i)\|_2^2$ on real samples.

    Mescheder et al. add $\frac{\gamma}{2} \mathbb{E}_{x \sim p_{data}}
    \|\nabla_x D(x)\|^2$ to the discriminator's loss: ``gamma / 2 *
    r1_penalty(critic, real)``. R2 is the same penalty on generated samples,
    ``gamma / 2 * r1_penalty(critic, fake)``. ``D`` is the discriminator's logit
    (before any sigmoid), per example; the gradient of each example is taken
    with respect to that example (see the module notes on batches). Pass the
    samples as they are (no interpolation, no noise): the penalty is zero-centred
    at the data.

    Args:
      critic: maps a batch to one score per example, ``(batch,)`` or ``(batch, 1)``.
      x: real samples (R1) or generated samples (R2), ``(batch, ...)``.

    Returns:
      A float32 scalar (float64 for float64 ``x``).

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> critic = lambda x: 0.5 * jnp.sum(x**2, axis=1)   # gradient x_i
      >>> float(jaxreg.r1_penalty(critic, jnp.array([[3.0, 4.0], [1.0, 0.0]])))  # (25 + 1) / 2
      13.0

    References:
      Mescheder, Geiger and Nowozin, 2018, `Which Training Methods for GANs do
      actually Converge? <https://arxiv.org/abs/1801.04406>`_ (section 4.1).
    """
    return jnp.mean(_per_example_sq_norms(_input_gradients(critic, x, "x")))


def gradient_penalty(
    key: jax.Array,
    critic: Callable[[jax.Array], jax.Array],
    real: jax.Array,
    fake: jax.Array,
    *,
    target: float = 1.0,
    one_sided: bool = False,
) -> jax.Array:
    r"""WGAN-GP gradient penalty $\frac{1}{B} \sum_i (\|\nabla_{\hat x_i} D(\hat x_i)\|_2 - t)^2$.

    Each $\hat x_i = \epsilon_i x_i + (1 - \epsilon_i) \tilde x_i$ is a random
    point on the segment between the real sample $x_i$ and the generated sample
    $\tilde x_i$, with one $\epsilon_i \sim U[0, 1]$ per example drawn from
    ``key``; the norm is over all the example's axes and $t$ is ``target`` (1 in
    Gulrajani et al., who add $\lambda = 10$ times this to the critic's loss).
    ``one_sided=True`` penalizes only norms above the target,
    $\max(0, \|\nabla D(\hat x_i)\| - t)^2$ (Petzka et al.'s Lipschitz
    penalty). ``target=0`` gives the zero-centred penalty at interpolates of
    Thanh-Tung et al.

    The norm has gradient 0 where the gradient of the critic is exactly 0
    (instead of NaN). ``real`` and ``fake`` enter as given: the penalty is
    differentiable with respect to them too, which matters only if you
    differentiate the critic's loss with respect to the generator.

    Args:
      key: a ``jax.random`` key for the interpolation weights.
      critic: maps a batch to one score per example, ``(batch,)`` or ``(batch, 1)``.
      real: real samples, ``(batch, ...)``.
      fake: generated samples, the shape of ``real``.
      target: the gradient norm $t \ge 0$ the penalty pulls towards.
      one_sided: penalize only norms above ``target``.

    Returns:
      A float32 scalar (float64 for float64 samples).

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> critic = lambda x: x @ jnp.array([3.0, 4.0])   # gradient norm 5 everywhere
      >>> real, fake = jnp.ones((4, 2)), jnp.zeros((4, 2))
      >>> float(jaxreg.gradient_penalty(jax.random.key(0), critic, real, fake))  # (5 - 1)^2
      16.0

    References:
      Gulrajani et al., 2017, `Improved Training of Wasserstein GANs
      <https://arxiv.org/abs/1704.00028>`_ (algorithm 1);
      Petzka, Fischer and Lukovnikov, 2018, `On the regularization of Wasserstein
      GANs <https://arxiv.org/abs/1709.08894>`_; Thanh-Tung, Tran and Venkatesh,
      2019, `Improving Generalization and Stability of Generative Adversarial
      Networks <https://arxiv.org/abs/1902.03984>`_.
    """
    check_non_negative("target", target)
    real, fake = _batch("real", real), _batch("fake", fake)
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {real.shape} and {fake.shape}")
    dtype = jnp.promote_types(real.dtype, fake.dtype)
    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), dtype)
    x_hat = eps * real.astype(dtype) + (1 - eps) * fake.astype(dtype)
    g = _input_gradients(critic, x_hat, "real")
    norms = safe_norm(g.reshape(g.shape[0], -1), axis=1, keepdims=False)
    excess = norms - jnp.asarray(target, norms.dtype)
    if one_sided:
        excess = jnp.maximum(excess, 0)
    return jnp.mean(jnp.square(excess))


def jacobian_penalty(
    key: jax.Array, fn: Callable[[jax.Array], jax.Array], x: jax.Array, *, n_proj: int = 1
) -> jax.Array:
    r"""Unbiased random-projection estimate of $\frac{1}{B} \sum_i \|J(x_i)\|_F^2$.

    $J(x_i) = \partial f(x_i) / \partial x_i$ is the Jacobian of example $i$'s
    outputs (all of ``fn(x)[i]``, $C$ values) with respect to its input. For each
    example and each of the ``n_proj`` projections, $v$ is drawn uniformly on
    the sphere of radius $\sqrt{C}$ in the output space (so $\mathbb{E}[v v^\top]
    = I$), and

    $$\widehat{\|J\|_F^2} = \frac{1}{n_{proj}} \sum_{p} \|v_p^\top J\|_2^2,
      \qquad \mathbb{E}\big[\widehat{\|J\|_F^2}\big] = \operatorname{tr}(J J^\top) = \|J\|_F^2,$$

    with variance $\frac{2}{n_{proj}} \frac{C \operatorname{tr}((JJ^\top)^2) -
    \|J\|_F^4}{C + 2}$ per example. Each $v^\top J$ is one reverse-mode pass
    (``jax.vjp``, vectorized over the projections), so the cost is that of
    ``n_proj`` backward passes, whatever $C$ and the input size; the exact norm
    needs $C$ of them. For $C = 1$ the estimate is exact and equals
    :func:`input_gradient_penalty`. Hoffman et al. add $\frac{\lambda_{JR}}{2}$
    times this to the loss, with ``n_proj=1``.

    Args:
      key: a ``jax.random`` key for the projections.
      fn: maps a batch ``(batch, ...)`` to per-example outputs ``(batch, ...)``
        (logits, embeddings); examples must not interact inside ``fn``.
      x: the batch, ``(batch, ...)``, floating.
      n_proj: projections per example (``>= 1``).

    Returns:
      A float32 scalar (float64 for float64 ``x``).

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> w = jnp.array([[1.0, 0.0], [0.0, 2.0], [2.0, 0.0]])   # J = w.T, ||J||_F^2 = 9
      >>> est = jaxreg.jacobian_penalty(jax.random.key(0), lambda x: x @ w, jnp.ones((256, 3)))
      >>> bool(abs(float(est) - 9.0) < 1.0)
      True

    References:
      Hoffman, Roberts and Yaida, 2019, `Robust Learning with Jacobian
      Regularization <https://arxiv.org/abs/1908.02729>`_ (algorithm 1).
    """
    n_proj = check_count("n_proj", n_proj, minimum=1)
    x = _batch("x", x)
    out, vjp = jax.vjp(fn, x)
    if jnp.ndim(out) < 1 or jnp.shape(out)[0] != x.shape[0]:
        raise ValueError(
            f"fn must return per-example outputs of shape ({x.shape[0]}, ...) for x of shape {x.shape}, "
            f"got shape {jnp.shape(out)}"
        )
    batch, c = out.shape[0], max(out.size // max(out.shape[0], 1), 1)
    dtype = acc_dtype(out.dtype)
    v = jax.random.normal(key, (n_proj, batch, c), dtype)
    v = v * jnp.sqrt(jnp.asarray(c, dtype)) / safe_norm(v, axis=2, eps=1e-30)
    (g,) = jax.vmap(vjp)(v.reshape((n_proj, *out.shape)).astype(out.dtype))
    return jnp.mean(jax.vmap(_per_example_sq_norms)(g))


def _batch_mean(values: jax.Array, where: jax.Array | None) -> jax.Array:
    if where is None:
        return jnp.mean(values)
    where = jnp.asarray(where)
    if where.shape != values.shape:
        raise ValueError(f"where must have shape {values.shape} (logits.shape[:-1]), got {where.shape}")
    count = jnp.sum(where, dtype=values.dtype)
    return jnp.sum(jnp.where(where, values, 0)) / jnp.maximum(count, 1)


def _logits(logits: jax.Array) -> jax.Array:
    logits = jnp.asarray(logits)
    check_ndim("logits", logits, 1, at_least=True)
    return logits.astype(acc_dtype(logits.dtype))


def confidence_penalty(logits: jax.Array, *, where: jax.Array | None = None) -> jax.Array:
    r"""Confidence penalty: the negative entropy of the predictions, $-H(p)$, averaged over the batch.

    With $p = \mathrm{softmax}(z)$ over the last axis of ``logits`` $z$,

    $$-H(p) = \sum_k p_k \log p_k \in [-\log K, 0],$$

    averaged over every other axis (the batch, and positions for sequences; only
    where ``where`` is true if given). Pereyra et al. minimize
    $\mathcal{L} - \beta H(p)$, i.e. ``loss + beta * confidence_penalty(logits)``
    (they use $\beta$ between 0.1 and 4). It is computed with ``log_softmax`` in
    float32 (float64 for float64 logits), so saturated logits give no NaN.

    Args:
      logits: unnormalized log-probabilities, ``(..., classes)``.
      where: optional bool mask of shape ``logits.shape[:-1]`` (e.g. padding):
        the mean runs over the true entries only.

    Returns:
      A float32 scalar (float64 for float64 logits).

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> round(float(jaxreg.confidence_penalty(jnp.zeros((3, 4)))), 4)  # uniform: -log 4
      -1.3863

    References:
      Pereyra et al., 2017, `Regularizing Neural Networks by Penalizing Confident
      Output Distributions <https://arxiv.org/abs/1701.06548>`_.
    """
    log_p = jax.nn.log_softmax(_logits(logits), axis=-1)
    return _batch_mean(jnp.sum(jnp.exp(log_p) * log_p, axis=-1), where)


def spectral_decoupling_penalty(logits: jax.Array, *, where: jax.Array | None = None) -> jax.Array:
    r"""Spectral decoupling $\frac{1}{2} \|z_i\|_2^2$, the squared norm of the logits, averaged over the batch.

    The norm runs over the last axis of ``logits`` $z$ and the mean over every
    other axis (only where ``where`` is true if given). Pezeshki et al. replace
    weight decay by $\frac{\lambda}{2} \|\hat y\|^2$ on the network's outputs:
    ``loss + lam * spectral_decoupling_penalty(logits)``, with the loss a batch
    mean as this penalty is.

    Args:
      logits: the network's outputs, ``(..., classes)``.
      where: optional bool mask of shape ``logits.shape[:-1]``.

    Returns:
      A float32 scalar (float64 for float64 logits).

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> float(jaxreg.spectral_decoupling_penalty(jnp.array([[3.0, 4.0], [0.0, 1.0]])))  # (25 + 1) / 2 / 2
      6.5

    References:
      Pezeshki et al., 2021, `Gradient Starvation: A Learning Proclivity in
      Neural Networks <https://arxiv.org/abs/2011.09468>`_ (section 4).
    """
    return _batch_mean(0.5 * jnp.sum(jnp.square(_logits(logits)), axis=-1), where)
