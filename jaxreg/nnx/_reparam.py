r"""Flax NNX wrappers for spectral and weight normalization, with ephemeral weights.

Both wrap a layer (``nnx.Linear``, ``nnx.Conv``, any ``nnx.Module``) and, at each
call, run it on a *temporary copy* whose selected parameters are replaced by
their normalized values; the wrapped layer's own parameters are never
written (flax#5576: ``flax.nnx.SpectralNorm`` and ``WeightNorm`` overwrite them
in place, so each call normalizes the already normalized weight). Other state
the layer updates during the call (``BatchStat``, RNG counts) is copied back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
from flax import nnx

import jaxreg
from jaxreg._masking import key_path_str
from jaxreg._typing import FeatureAxes
from jaxreg._validation import check_count, check_example_shape, check_positive, conv_layer_options

_KERNELS = nnx.PathContains("kernel")
_OPERATORS = ("matrix", "conv")


def _selected_params(layer: nnx.Module, keep: Callable[[tuple, Any], bool]) -> dict[str, jax.Array]:
    """``{'/'-joined path: value}`` of the layer's ``nnx.Param`` leaves that ``keep`` selects."""
    params = nnx.to_flat_state(nnx.state(layer, nnx.Param))
    return {key_path_str(path): var.get_value() for path, var in params if keep(path, var)}


def _call_with(layer: nnx.Module, replace: Callable[[str, jax.Array], jax.Array], args, kwargs):
    """Calls ``layer`` with each ``Param`` value ``p`` at path ``k`` replaced by ``replace(k, p)``.

    The replacement lives in a merged copy of the layer; the layer's parameters
    are untouched, and its non-``Param`` state after the call is copied back.
    """
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)
    flat = [
        (path, var.replace(replace(key_path_str(path), var.get_value())))
        for path, var in nnx.to_flat_state(params)
    ]
    temporary = nnx.merge(graphdef, nnx.from_flat_state(flat), rest)
    out = temporary(*args, **kwargs)
    nnx.update(layer, nnx.state(temporary, nnx.Not(nnx.Param)))
    return out


class SpectralNorm(nnx.Module):
    r"""Spectral normalization of a wrapped layer: every weight with ``ndim >= 2`` becomes $W / \sigma(W)$.

    Uses :func:`jaxreg.spectral_normalize` per weight (reshaped to ``(-1,
    out)``, output axis last); 1-D parameters (biases) are used as they are, as
    in ``flax.nnx.SpectralNorm``. The normalized weight is ephemeral: the
    wrapped layer's ``nnx.Param`` keeps the unnormalized $W$, which is what the
    optimizer trains (flax#5576 fixed). The power-iteration vectors live in
    ``self.u``, a dict of ``nnx.BatchStat`` (non-trainable: an optimizer built
    with ``wrt=nnx.Param`` does not touch them), initialized by
    :func:`jaxreg.spectral_norm_init` (15 power iterations).

    ``update_stats`` (constructor default, overridable per call) selects
    training (refine ``u`` by ``n_steps`` iterations and store it) or evaluation
    (use the stored ``u``, no iteration). ``model.train()`` and ``model.eval()``
    switch it, through the ``use_running_average`` attribute as for
    ``nnx.BatchNorm`` and ``flax.nnx.SpectralNorm``.

    With ``operator="conv"`` the wrapped layer must be an ``nnx.Conv`` (without
    ``mask``), and its kernel is divided by the operator norm $\sigma(A_W)$ of
    the convolution $x \mapsto \mathrm{conv}(x, W)$ instead, with the layer's
    ``strides``, ``padding``, ``input_dilation``, ``kernel_dilation`` and
    ``feature_group_count`` (:func:`jaxreg.conv_spectral_normalize`): the layer
    is then 1-Lipschitz once ``u`` has converged, where the reshaped kernel's
    $\sigma(M)$ can leave a Lipschitz constant up to $\sqrt{k}$ for $k$ taps.
    That norm depends on the input's spatial size, so the constructor takes
    ``input_shape``, and ``u`` has the shape ``(*spatial, in_features)`` of
    one input example (:func:`jaxreg.conv_spectral_norm_init`); calling with
    inputs of another example shape raises a ``ValueError``: create a wrapper
    per input size. Each training call costs ``n_steps`` convolutions and
    transposed convolutions of one example.

    Args:
      layer_instance: the layer to wrap.
      n_steps: power iterations per training call.
      epsilon: lower bound on norms and on $\sigma$.
      update_stats: the default mode (``True``: training).
      operator: ``"matrix"`` ($\sigma$ of each weight reshaped to ``(-1, out)``)
        or ``"conv"`` ($\sigma$ of the convolution on inputs of ``input_shape``).
      input_shape: with ``operator="conv"``, the shape of the inputs,
        ``(*spatial, in_features)``, with or without a leading batch axis.
      rngs: ``nnx.Rngs`` with a ``params`` stream, for the initial ``u``.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from flax import nnx
      >>> import jaxreg.nnx as jrx
      >>> layer = jrx.SpectralNorm(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
      >>> y = layer(jnp.ones((2, 4)))
      >>> kernel = np.asarray(layer.layer_instance.kernel[...])  # stored, unnormalized
      >>> bool(np.linalg.norm(kernel, 2) > 1.01)
      True
      >>> conv = nnx.Conv(1, 3, (3, 3), rngs=nnx.Rngs(0))
      >>> layer = jrx.SpectralNorm(conv, operator="conv", input_shape=(8, 8, 1), rngs=nnx.Rngs(1))
      >>> layer.u["kernel"].shape   # one 8 x 8 x 1 example
      (8, 8, 1)
      >>> layer(jnp.ones((2, 8, 8, 1))).shape
      (2, 8, 8, 3)

    References:
      Miyato et al., 2018, `Spectral Normalization for Generative Adversarial
      Networks <https://arxiv.org/abs/1802.05957>`_; Gouk et al., 2021,
      `Regularisation of neural networks by enforcing Lipschitz continuity
      <https://arxiv.org/abs/1804.04368>`_; ``flax.nnx.SpectralNorm``.
    """

    def __init__(
        self,
        layer_instance: nnx.Module,
        *,
        n_steps: int = 1,
        epsilon: float = 1e-12,
        update_stats: bool = True,
        operator: str = "matrix",
        input_shape: Sequence[int] | None = None,
        rngs: nnx.Rngs,
    ):
        self.layer_instance = layer_instance
        self.n_steps = check_count("n_steps", n_steps)
        check_positive("epsilon", epsilon)
        self.epsilon = epsilon
        self.use_running_average = not update_stats
        if operator not in _OPERATORS:
            raise ValueError(f"operator must be one of {_OPERATORS}, got {operator!r}")
        self.operator = operator
        weights = _selected_params(layer_instance, lambda _, var: var.get_value().ndim >= 2)
        options = conv_layer_options(layer_instance, nnx.Conv, "nnx.Conv") if operator == "conv" else None
        if options is not None and input_shape is None:
            raise ValueError(
                "operator='conv' needs input_shape, the shape (*spatial, in_features) of the inputs (a leading "
                "batch axis is allowed): the operator norm of a convolution depends on the input size"
            )

        def init_u(key, w):
            if options is None or input_shape is None:  # operator="matrix"
                return jaxreg.spectral_norm_init(key, w, eps=epsilon).u
            return jaxreg.conv_spectral_norm_init(key, w, input_shape, **options, eps=epsilon).u

        self.u = nnx.Dict({k: nnx.BatchStat(init_u(rngs.params(), w)) for k, w in weights.items()})

    def __call__(self, *args, update_stats: bool | None = None, **kwargs):
        """Calls the wrapped layer with spectrally normalized weights; ``update_stats`` overrides the mode."""
        update = (not self.use_running_average) if update_stats is None else update_stats

        normalize = self._conv_normalize(args, kwargs) if self.operator == "conv" else self._normalize

        def replace(key, w):
            if key not in self.u:
                return w
            w_sn, u = normalize(w, self.u[key][...], update)
            if update:
                self.u[key][...] = u
            return w_sn

        return _call_with(self.layer_instance, replace, args, kwargs)

    def _normalize(self, w: jax.Array, u: jax.Array, update: bool) -> tuple[jax.Array, jax.Array]:
        """``(W / sigma, new u)`` of the reshaped kernel (:func:`jaxreg.spectral_normalize`)."""
        w_sn, state = jaxreg.spectral_normalize(
            w, jaxreg.SpectralNormState(u), n_steps=self.n_steps, update=update, eps=self.epsilon
        )
        return w_sn, state.u

    def _conv_normalize(
        self, args, kwargs
    ) -> Callable[[jax.Array, jax.Array, bool], tuple[jax.Array, jax.Array]]:
        """``operator="conv"``: ``(W / sigma, new u)`` of the conv operator on the call's input shape."""
        options = conv_layer_options(self.layer_instance, nnx.Conv, "nnx.Conv")
        x = args[0] if args else kwargs["inputs"]

        def normalize(w, u, update):
            check_example_shape(u.shape, x.shape, "Create the wrapper with this input_shape")
            w_sn, state = jaxreg.conv_spectral_normalize(
                w,
                jaxreg.ConvSpectralNormState(u),
                **options,
                n_steps=self.n_steps,
                update=update,
                eps=self.epsilon,
            )
            return w_sn, state.u

        return normalize


class WeightNorm(nnx.Module):
    r"""Weight normalization of a wrapped layer: $w = g \cdot v / \|v\|$, output unchanged at init.

    For each parameter that ``variable_filter`` selects (by default the ones
    whose path contains ``"kernel"``), the wrapped layer's own ``nnx.Param``
    is the direction $v$, and ``self.scales[path]`` is the scale $g$, also an
    ``nnx.Param``, so that an optimizer built with ``wrt=nnx.Param`` trains both
    (flax#5577: ``flax.nnx.WeightNorm``'s scales are plain arrays and do not
    train). $g$ is initialized to $\|v\|$ (:func:`jaxreg.weight_norm_init`), so
    the wrapped layer computes the same output as the bare layer at
    initialization (flax#4138: flax initializes it to ones). The norm is taken
    over all axes but ``feature_axes`` (default ``-1``, the output axis of
    Flax kernels; :func:`jaxreg.weight_normalize`). The normalized weight is
    ephemeral: $v$ is never overwritten (flax#5576).

    Args:
      layer_instance: the layer to wrap.
      feature_axes: the axes that keep one norm and one scale each.
      epsilon: lower bound on the norm.
      variable_filter: an nnx filter over the layer's ``Param`` paths.
      rngs: unused; accepted so that code written for ``flax.nnx.WeightNorm`` runs.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jaxreg.nnx as jrx
      >>> bare = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
      >>> wrapped = jrx.WeightNorm(nnx.Linear(4, 3, rngs=nnx.Rngs(0)))
      >>> x = jnp.ones((2, 4))
      >>> bool(jnp.allclose(wrapped(x), bare(x), atol=1e-6))
      True
      >>> sorted(nnx.state(wrapped, nnx.Param)["scales"].keys())
      ['kernel']

    References:
      Salimans and Kingma, 2016, `Weight Normalization: A Simple
      Reparameterization to Accelerate Training of Deep Neural Networks
      <https://arxiv.org/abs/1602.07868>`_; ``flax.nnx.WeightNorm``.
    """

    def __init__(
        self,
        layer_instance: nnx.Module,
        *,
        feature_axes: FeatureAxes = -1,
        epsilon: float = 1e-12,
        variable_filter: Any = _KERNELS,
        rngs: nnx.Rngs | None = None,
    ):
        del rngs  # accepted for compatibility with flax.nnx.WeightNorm: g = ||v|| needs no randomness
        check_positive("epsilon", epsilon)
        self.layer_instance = layer_instance
        self.feature_axes = feature_axes
        self.epsilon = epsilon
        keep = nnx.filterlib.to_predicate(variable_filter)
        directions = _selected_params(layer_instance, keep)
        self.scales = nnx.Dict(
            {
                k: nnx.Param(jaxreg.weight_norm_init(v, feature_axes=feature_axes))
                for k, v in directions.items()
            }
        )

    def __call__(self, *args, **kwargs):
        """Calls the wrapped layer with the weights ``g * v / ||v||``."""

        def replace(key, v):
            if key not in self.scales:
                return v
            g = self.scales[key][...]
            return jaxreg.weight_normalize(v, g, feature_axes=self.feature_axes, eps=self.epsilon)

        return _call_with(self.layer_instance, replace, args, kwargs)
