r"""Spectral normalization of a convolution as an operator, with an explicit power-iteration state.

:func:`jaxreg.spectral_normalize` divides a conv kernel by the largest singular
value of the kernel reshaped to a ``(-1, out)`` matrix. That matrix is not the
convolution: the layer is the linear map $A_W$ from inputs of a given shape to
outputs, and its operator norm $\sigma(A_W) = \max_x \|A_W x\| / \|x\|$ depends
on the padding, the strides and the input size as well as on the kernel. With $M$
the reshaped kernel and $k$ its number of taps ($3 \times 3 = 9$),

$$\sigma(M) \le \sigma(A_W) \le \sqrt{k}\, \sigma(M):$$

each input pixel meets at most $k$ windows, which gives the upper bound, and an
input supported on one window that fits inside the image is mapped by $M^\top$,
which gives the lower one (for ``feature_group_count=1`` and no input dilation).
So ``spectral_normalize`` of a conv kernel leaves a Lipschitz constant of up to
$\sqrt{k}$ (Miyato et al. 2018 note the gap; Sedghi et al. 2019 and Gouk et al.
2021 compute the operator norm). :func:`conv_spectral_normalize` estimates $\sigma(A_W)$ by
power iteration through the convolution and its transpose
(``jax.lax.conv_general_dilated`` and ``jax.linear_transpose``), on a vector
with the shape of one input example kept between calls (Gouk et al. 2021).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg._norms import acc_dtype, safe_norm
from jaxreg._validation import check_count, check_ndim, check_positive

_HIGHEST = jax.lax.Precision.HIGHEST  # full float32 convolutions on GPU/TPU too (no TF32/bf16 passes)
_PADDINGS = ("SAME", "VALID", "CIRCULAR", "REFLECT", "CAUSAL")

Padding = str | int | Sequence[int | tuple[int, int]]
IntOrSeq = int | Sequence[int]


class ConvSpectralNormState(NamedTuple):
    """State of :func:`conv_spectral_normalize`: the power-iteration input."""

    u: jax.Array  # shape (*spatial, in_features) of one input example, unit norm, float32 (float64 if w is)


def _per_axis(name: str, value: IntOrSeq, rank: int) -> tuple[int, ...]:
    values = (value,) * rank if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != rank:
        raise ValueError(f"{name} must be an int or a sequence of {rank} ints, got {value!r}")
    return tuple(check_count(name, v, minimum=1) for v in values)


def _padding(padding: Padding, rank: int) -> str | list[tuple[int, int]]:
    """Flax's padding formats (``flax.linen.Conv``): a name, an int, or per-axis ints or pairs."""
    if isinstance(padding, str):
        if padding not in _PADDINGS:
            raise ValueError(
                f"padding must be one of {_PADDINGS}, an int or (low, high) pairs, got {padding!r}"
            )
        if padding == "CAUSAL" and rank != 1:
            raise ValueError(f"padding='CAUSAL' is for 1-D convolutions, got a {rank}-D kernel window")
        return padding
    pairs = [padding] * rank if isinstance(padding, (int, np.integer)) else list(padding)
    out = []
    for p in pairs:
        pair = (p, p) if isinstance(p, (int, np.integer)) else tuple(p)
        if len(pair) != 2 or not all(isinstance(q, (int, np.integer)) and q >= 0 for q in pair):
            break
        out.append((int(pair[0]), int(pair[1])))
    if len(out) != rank or len(pairs) != rank:
        raise ValueError(
            f"padding must be one of {_PADDINGS}, an int or a sequence of {rank} ints or (low, high) "
            f"pairs of ints >= 0, got {padding!r}"
        )
    return out


def _checked_options(
    rank: int,
    *,
    strides: IntOrSeq,
    padding: Padding,
    input_dilation: IntOrSeq,
    kernel_dilation: IntOrSeq,
    feature_group_count: int,
) -> dict:
    """The options of :func:`_conv_operator` for a ``rank``-D window, checked, as ints, tuples and a padding name.

    Hashable values (the padding pairs as a tuple), so the dict's items can be a static argument
    of a jitted function; checking the result again returns it unchanged.
    """
    strides = _per_axis("strides", strides, rank)
    input_dilation = _per_axis("input_dilation", input_dilation, rank)
    kernel_dilation = _per_axis("kernel_dilation", kernel_dilation, rank)
    feature_group_count = check_count("feature_group_count", feature_group_count, minimum=1)
    pad = _padding(padding, rank)
    return dict(
        strides=strides,
        padding=pad if isinstance(pad, str) else tuple(pad),
        input_dilation=input_dilation,
        kernel_dilation=kernel_dilation,
        feature_group_count=feature_group_count,
    )


def _conv_operator(
    w: jax.Array,
    *,
    strides: IntOrSeq = 1,
    padding: Padding = "SAME",
    input_dilation: IntOrSeq = 1,
    kernel_dilation: IntOrSeq = 1,
    feature_group_count: int = 1,
) -> Callable[[jax.Array], jax.Array]:
    """The linear map ``x -> conv(x, w)`` on one example ``(*spatial, in)``, as ``flax.linen.Conv`` computes it."""
    rank = w.ndim - 2
    options = _checked_options(
        rank,
        strides=strides,
        padding=padding,
        input_dilation=input_dilation,
        kernel_dilation=kernel_dilation,
        feature_group_count=feature_group_count,
    )
    pad = options["padding"]
    dilated = [(k - 1) * d + 1 for k, d in zip(w.shape[:-2], options["kernel_dilation"], strict=True)]
    if pad in ("CIRCULAR", "REFLECT"):
        wrap = [(0, 0), *[((k - 1) // 2, k // 2) for k in dilated], (0, 0)]
        mode = "wrap" if pad == "CIRCULAR" else "reflect"
        pre, lax_pad = (lambda x: jnp.pad(x, wrap, mode=mode)), "VALID"
    elif pad == "CAUSAL":
        pre, lax_pad = (lambda x: jnp.pad(x, [(0, 0), (dilated[0] - 1, 0), (0, 0)])), "VALID"
    else:
        pre, lax_pad = (lambda x: x), pad
    spec = (0, rank + 1, *range(1, rank + 1))  # NHWC inputs and outputs, HWIO kernels (Flax's layout)
    numbers = jax.lax.ConvDimensionNumbers(spec, (rank + 1, rank, *range(rank)), spec)

    def apply(x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(
            pre(x[None]),
            w,
            window_strides=options["strides"],
            padding=lax_pad,
            lhs_dilation=options["input_dilation"],
            rhs_dilation=options["kernel_dilation"],
            dimension_numbers=numbers,
            feature_group_count=options["feature_group_count"],
            precision=_HIGHEST,
        )
        return y[0]

    return apply


def _example_shape(w: jax.Array, input_shape: Sequence[int], feature_group_count: int) -> tuple[int, ...]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == w.ndim:  # with a leading batch dimension: dropped
        shape = shape[1:]
    in_features = w.shape[-2] * feature_group_count
    if len(shape) != w.ndim - 1 or shape[-1] != in_features:
        raise ValueError(
            f"input_shape must be (*spatial, {in_features}) with {w.ndim - 2} spatial dimensions (a leading "
            f"batch dimension is allowed) for a kernel of shape {w.shape} and feature_group_count="
            f"{feature_group_count}, got {tuple(input_shape)}"
        )
    return shape


def _power_iteration(op, op_t, u: jax.Array, n_steps: int, eps: float) -> jax.Array:
    def step(_, u):
        v = op(u)
        v = v / safe_norm(v, eps=eps)
        u = op_t(v)
        return u / safe_norm(u, eps=eps)

    return jax.lax.fori_loop(0, n_steps, step, u)


def _operators(m: jax.Array, example_shape: tuple[int, ...], conv_kwargs: dict):
    """The convolution by ``m`` on one example and its transpose (a transposed convolution)."""
    op = _conv_operator(m, **conv_kwargs)
    transpose = jax.linear_transpose(op, jax.ShapeDtypeStruct(example_shape, m.dtype))
    return op, lambda v: transpose(v)[0]


def conv_spectral_norm_init(
    key: jax.Array,
    w: jax.Array,
    input_shape: Sequence[int],
    *,
    strides: IntOrSeq = 1,
    padding: Padding = "SAME",
    input_dilation: IntOrSeq = 1,
    kernel_dilation: IntOrSeq = 1,
    feature_group_count: int = 1,
    n_steps: int = 15,
    eps: float = 1e-12,
) -> ConvSpectralNormState:
    r"""Initial state for :func:`conv_spectral_normalize`: a random unit input, refined.

    ``u`` is drawn from a standard normal with the shape of one input example,
    ``(*spatial, in_features)``, normalized, then refined by ``n_steps`` power
    iterations through the convolution (15 by default, as
    :func:`jaxreg.spectral_norm_init`).

    Args:
      key: a ``jax.random`` key.
      w: the kernel, ``(*window, in_features // feature_group_count, out_features)``
        (Flax's layout).
      input_shape: the shape of the inputs the convolution is applied to,
        ``(*spatial, in_features)``, with or without a leading batch dimension
        (``x.shape`` works).
      strides: as ``flax.linen.Conv``'s: an int or one per spatial axis.
      padding: as ``flax.linen.Conv``'s: ``"SAME"``, ``"VALID"``, ``"CIRCULAR"``,
        ``"REFLECT"``, ``"CAUSAL"`` (1-D), an int, or one int or ``(low, high)``
        pair per spatial axis.
      input_dilation: as ``flax.linen.Conv``'s.
      kernel_dilation: as ``flax.linen.Conv``'s.
      feature_group_count: as ``flax.linen.Conv``'s.
      n_steps: power iterations run at initialization (``>= 0``).
      eps: lower bound on norms in the iteration.

    Returns:
      A :class:`ConvSpectralNormState`.
    """
    check_ndim("w", w, 3, at_least=True)
    n_steps = check_count("n_steps", n_steps)
    eps = check_positive("eps", eps)
    feature_group_count = check_count("feature_group_count", feature_group_count, minimum=1)
    shape = _example_shape(w, input_shape, feature_group_count)
    options = _checked_options(
        w.ndim - 2,
        strides=strides,
        padding=padding,
        input_dilation=input_dilation,
        kernel_dilation=kernel_dilation,
        feature_group_count=feature_group_count,
    )
    return ConvSpectralNormState(u=_init_u(key, w, eps, shape, tuple(options.items()), n_steps))


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _init_u(
    key: jax.Array,
    w: jax.Array,
    eps: float,
    shape: tuple[int, ...],
    options: tuple[tuple[str, object], ...],
    n_steps: int,
) -> jax.Array:
    # Jitted so that an eager call compiles one program instead of one per operation; under an
    # outer jit (or vmap, or a Flax scan) it is traced in place like the rest.
    m = w.astype(acc_dtype(w.dtype))
    u = jax.random.normal(key, shape, m.dtype)
    u = u / safe_norm(u, eps=eps)
    op, op_t = _operators(m, shape, dict(options))
    return jax.lax.stop_gradient(_power_iteration(op, op_t, u, n_steps, eps))


def conv_spectral_normalize(
    w: jax.Array,
    state: ConvSpectralNormState,
    *,
    strides: IntOrSeq = 1,
    padding: Padding = "SAME",
    input_dilation: IntOrSeq = 1,
    kernel_dilation: IntOrSeq = 1,
    feature_group_count: int = 1,
    n_steps: int = 1,
    update: bool = True,
    eps: float = 1e-12,
) -> tuple[jax.Array, ConvSpectralNormState]:
    r"""Spectral normalization $W / \sigma(A_W)$ by the operator norm of the convolution.

    $A_W$ is the linear map $x \mapsto \mathrm{conv}(x, W)$ that ``flax.linen.Conv``
    (without bias) computes with these ``strides``, ``padding`` and dilations, on
    inputs of the shape of ``state.u`` (one example, ``(*spatial, in_features)``;
    the batch does not change the norm). With ``update=True`` the state $u$ is
    refined by ``n_steps`` power iterations

    $$v \leftarrow \frac{A_W u}{\max(\|A_W u\|, \epsilon)}, \qquad
      u \leftarrow \frac{A_W^\top v}{\max(\|A_W^\top v\|, \epsilon)},$$

    under ``jax.lax.stop_gradient``, where $A_W^\top$ is the transposed
    convolution (``jax.linear_transpose``), and $\sigma = \|A_W u\|_2$, a lower
    bound on $\sigma(A_W)$, exact when $u$ is the top right singular vector. The
    result is $W / \max(\sigma, \epsilon)$ in the dtype of ``w``, and the layer
    computes $A_W x / \sigma$: a 1-Lipschitz map (in the Euclidean norm) once
    $u$ has converged. Gradients flow through $\sigma$ with $u$ fixed, as in
    :func:`jaxreg.spectral_normalize`; ``update=False`` (evaluation) uses the
    stored $u$ without iterating and returns the state unchanged.

    For circular padding and stride 1 on an $n \times n$ input, the singular
    values of $A_W$ are those of the ``in x out`` matrices of the 2-D discrete
    Fourier transform of the kernel (zero-padded to $n \times n$), one matrix
    per frequency (Sedghi et al., theorem 6): the test suite checks this
    function against that formula, and against the SVD of the convolution's
    matrix for other paddings and strides.

    Each power iteration costs one convolution and one transposed convolution
    of a single example, plus one convolution for $\sigma$: compare one matrix-
    vector product pair for the reshaped kernel.

    Args:
      w: the kernel, ``(*window, in_features // feature_group_count, out_features)``.
      state: from :func:`conv_spectral_norm_init` or a previous call.
      strides: as in :func:`conv_spectral_norm_init` (and ``flax.linen.Conv``).
      padding: likewise.
      input_dilation: likewise.
      kernel_dilation: likewise.
      feature_group_count: likewise.
      n_steps: power iterations per call when ``update`` (``>= 0``).
      update: whether to iterate and return the refined ``u``.
      eps: lower bound on norms (and on $\sigma$).

    Returns:
      ``(w_normalized, new_state)``.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxreg
      >>> w = jnp.zeros((3, 3, 1, 1)).at[1, 1, 0, 0].set(2.0)   # 2 x identity, as a 3x3 conv
      >>> state = jaxreg.conv_spectral_norm_init(jax.random.key(0), w, (8, 8, 1))
      >>> w_sn, state = jaxreg.conv_spectral_normalize(w, state)
      >>> round(float(w_sn[1, 1, 0, 0]), 4)
      1.0

    References:
      Miyato et al., 2018, `Spectral Normalization for Generative Adversarial
      Networks <https://arxiv.org/abs/1802.05957>`_; Sedghi, Gupta and Long,
      2019, `The Singular Values of Convolutional Layers
      <https://arxiv.org/abs/1805.10408>`_; Gouk et al., 2021, `Regularisation
      of neural networks by enforcing Lipschitz continuity
      <https://arxiv.org/abs/1804.04368>`_.
    """
    check_ndim("w", w, 3, at_least=True)
    n_steps = check_count("n_steps", n_steps)
    check_positive("eps", eps)
    groups = check_count("feature_group_count", feature_group_count, minimum=1)
    u = state.u
    expected = (w.ndim - 1, w.shape[-2] * groups)
    if u.ndim != expected[0] or u.shape[-1] != expected[1]:
        raise ValueError(
            f"state.u must have the shape (*spatial, {expected[1]}) of one input example for a kernel of "
            f"shape {w.shape}, got {u.shape}; create it with conv_spectral_norm_init(key, w, input_shape)"
        )
    conv_kwargs = dict(
        strides=strides,
        padding=padding,
        input_dilation=input_dilation,
        kernel_dilation=kernel_dilation,
        feature_group_count=groups,
    )
    m = w.astype(acc_dtype(w.dtype))
    u = u.astype(m.dtype)
    op, op_t = _operators(m, u.shape, conv_kwargs)
    if update:
        u = _power_iteration(op, op_t, u, n_steps, eps)
    u = jax.lax.stop_gradient(u)
    sigma = safe_norm(op(u), eps=eps, keepdims=False)
    w_normalized = (m / sigma).astype(w.dtype)
    return w_normalized, ConvSpectralNormState(u=u) if update else state
