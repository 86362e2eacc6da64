r"""Flax linen wrappers for spectral and weight normalization, with ephemeral weights.

Both wrap a layer (``nn.Dense``, ``nn.Conv``, any ``nn.Module``) with
``nn.map_variables``: the wrapped layer sees its ``params`` normalized, while the
stored ``params`` keep the raw values, at ``init`` too (``flax.linen``'s own
wrappers store the normalized value at ``init``, since ``map_variables`` writes
the mapped view back when it initializes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import flax.linen as nn
import jax

import jaxreg
from jaxreg._masking import key_path_str
from jaxreg._typing import FeatureAxes
from jaxreg._validation import check_example_shape, conv_layer_options


def _path(layer: nn.Module, keypath: tuple) -> str:
    # keypath[0] is the collection ("params"); the rest names the leaf inside the layer.
    return f"{layer.name}/{key_path_str(keypath[1:])}"


def _call_with(module: nn.Module, replace: Callable[[str, jax.Array], jax.Array], args, kwargs):
    """Calls ``module.layer_instance`` with each param ``p`` replaced by ``replace(path, p)``.

    The stored params are never written: at ``init`` the raw values are returned
    to ``map_variables`` in place of the mapped view.
    """
    layer = module.layer_instance
    raw: list[Any] = []

    def trans_in(variables):
        raw.append(variables)
        return jax.tree_util.tree_map_with_path(lambda p, x: replace(_path(layer, p), x), variables)

    def trans_out(variables):
        return raw.pop() if raw else variables

    return nn.map_variables(
        lambda layer, *a, **k: layer(*a, **k),
        mapped_collections="params",
        trans_in_fn=trans_in,
        trans_out_fn=trans_out,
        init=module.is_initializing(),
    )(layer, *args, **kwargs)


_OPERATORS = ("matrix", "conv")


def _conv_replace(module: SpectralNorm, args, kwargs, update_stats: bool) -> Callable:
    """The ``replace`` of :func:`_call_with` for ``operator="conv"``: ``W / sigma`` of the conv operator.

    Reads the ``nn.Conv``'s options and the input's example shape; the state ``u``
    has that shape, fixed at ``init``.
    """
    if module.operator not in _OPERATORS:
        raise ValueError(f"operator must be one of {_OPERATORS}, got {module.operator!r}")
    options = conv_layer_options(module.layer_instance, nn.Conv, "nn.Conv")
    x = args[0] if args else kwargs["inputs"]

    def replace(path, w):
        if w.ndim < 2:
            return w
        example = tuple(x.shape[max(x.ndim - (w.ndim - 1), 0) :])
        u = module.variable(
            module.collection_name,
            path + "/u",
            lambda: (
                jaxreg.conv_spectral_norm_init(
                    module.make_rng("params"), w, example, **options, eps=module.epsilon
                ).u
            ),
        )
        check_example_shape(u.value.shape, x.shape, "Initialize the model with inputs of this shape")
        w_sn, state = jaxreg.conv_spectral_normalize(
            w,
            jaxreg.ConvSpectralNormState(u.value),
            **options,
            n_steps=module.n_steps,
            update=update_stats,
            eps=module.epsilon,
        )
        if update_stats and not module.is_initializing():
            u.value = state.u
        return w_sn

    return replace


class SpectralNorm(nn.Module):
    r"""Spectral normalization of a wrapped layer: every param with ``ndim >= 2`` becomes $W / \sigma(W)$.

    Uses :func:`jaxreg.spectral_normalize` (weights reshaped to ``(-1, out)``);
    1-D params (biases) are used as they are, as in ``flax.linen.SpectralNorm``.
    The power-iteration vector of each weight is stored in ``collection_name``
    (``"batch_stats"``, non-trainable) under ``"<layer>/<path>/u"``, initialized
    by :func:`jaxreg.spectral_norm_init` (15 power iterations) from the
    ``"params"`` rng. In training call with ``update_stats=True`` and
    ``mutable=["batch_stats"]``; in evaluation ``update_stats=False`` uses the
    stored ``u`` without iterating.

    With ``operator="conv"`` the wrapped layer must be an ``nn.Conv`` (without
    ``mask``), and its kernel is divided by the operator norm $\sigma(A_W)$ of
    the convolution $x \mapsto \mathrm{conv}(x, W)$ instead, with the layer's
    ``strides``, ``padding``, ``input_dilation``, ``kernel_dilation`` and
    ``feature_group_count`` (:func:`jaxreg.conv_spectral_normalize`): the layer
    is then 1-Lipschitz once ``u`` has converged, where the reshaped kernel's
    $\sigma(M)$ can leave a Lipschitz constant up to $\sqrt{k}$ for $k$ taps.
    That norm depends on the input's spatial size, so ``u`` has the shape
    ``(*spatial, in_features)`` of one example of the input seen at ``init``
    (batch axes dropped), and calling with another example shape raises a
    ``ValueError``: initialize a model per input size. Each training call costs
    ``n_steps`` convolutions and transposed convolutions of one example.

    Attributes:
      layer_instance: the layer to wrap.
      n_steps: power iterations per training call.
      epsilon: lower bound on norms and on $\sigma$.
      collection_name: the collection that holds ``u``.
      operator: ``"matrix"`` ($\sigma$ of each weight reshaped to ``(-1, out)``)
        or ``"conv"`` ($\sigma$ of the convolution on the input's shape).

    Examples:
      >>> import jax, jax.numpy as jnp, flax.linen as nn
      >>> import jaxreg.linen as jrl
      >>> class Net(nn.Module):
      ...     @nn.compact
      ...     def __call__(self, x, train: bool):
      ...         return jrl.SpectralNorm(nn.Dense(3))(x, update_stats=train)
      >>> variables = Net().init(jax.random.key(0), jnp.ones((2, 4)), train=False)
      >>> jax.tree.map(jnp.shape, variables["batch_stats"])
      {'SpectralNorm_0': {'Dense_0/kernel/u': (3,)}}
      >>> y, updates = Net().apply(variables, jnp.ones((2, 4)), train=True, mutable=["batch_stats"])
      >>> conv = jrl.SpectralNorm(nn.Conv(3, (3, 3)), operator="conv")
      >>> variables = conv.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)), update_stats=False)
      >>> jax.tree.map(jnp.shape, variables["batch_stats"])   # u: one 8 x 8 x 1 example
      {'layer_instance/kernel/u': (8, 8, 1)}

    References:
      Miyato et al., 2018, `Spectral Normalization for Generative Adversarial
      Networks <https://arxiv.org/abs/1802.05957>`_; Gouk et al., 2021,
      `Regularisation of neural networks by enforcing Lipschitz continuity
      <https://arxiv.org/abs/1804.04368>`_; ``flax.linen.SpectralNorm``.
    """

    layer_instance: nn.Module
    n_steps: int = 1
    epsilon: float = 1e-12
    collection_name: str = "batch_stats"
    operator: str = "matrix"

    @nn.compact
    def __call__(self, *args, update_stats: bool, **kwargs):
        """Calls the wrapped layer with spectrally normalized weights; ``update_stats`` as in flax."""
        if self.operator != "matrix":
            return _call_with(self, _conv_replace(self, args, kwargs, update_stats), args, kwargs)

        def replace(path, w):
            if w.ndim < 2:
                return w
            u = self.variable(
                self.collection_name,
                path + "/u",
                lambda: jaxreg.spectral_norm_init(self.make_rng("params"), w, eps=self.epsilon).u,
            )
            w_sn, state = jaxreg.spectral_normalize(
                w,
                jaxreg.SpectralNormState(u.value),
                n_steps=self.n_steps,
                update=update_stats,
                eps=self.epsilon,
            )
            if update_stats and not self.is_initializing():
                u.value = state.u
            return w_sn

        return _call_with(self, replace, args, kwargs)


class WeightNorm(nn.Module):
    r"""Weight normalization of a wrapped layer: $w = g \cdot v / \|v\|$, output unchanged at init.

    For each param whose '/'-joined path contains one of ``variable_filter``
    (default: ``"kernel"``; ``None`` selects all), the stored param is the
    direction $v$ and this module's param ``"<layer>/<path>/scale"`` is $g$, both
    in ``"params"`` and trained. $g$ is initialized to $\|v\|$
    (:func:`jaxreg.weight_norm_init`), so the output at initialization equals
    the bare layer's (flax#4138: ``flax.linen.WeightNorm`` initializes it to
    ones). The norm is over all axes but ``feature_axes`` (default ``-1``, the
    output axis of Flax kernels; :func:`jaxreg.weight_normalize`).

    Attributes:
      layer_instance: the layer to wrap.
      feature_axes: the axes that keep one norm and one scale each.
      epsilon: lower bound on the norm.
      variable_filter: substrings of the param paths to normalize, or ``None`` for all.

    Examples:
      >>> import jax, jax.numpy as jnp, flax.linen as nn
      >>> import jaxreg.linen as jrl
      >>> x = jnp.ones((2, 4))
      >>> variables = jrl.WeightNorm(nn.Dense(3)).init(jax.random.key(0), x)
      >>> jax.tree.map(jnp.shape, variables["params"])
      {'layer_instance': {'bias': (3,), 'kernel': (4, 3)}, 'layer_instance/kernel/scale': (3,)}

    References:
      Salimans and Kingma, 2016, `Weight Normalization: A Simple
      Reparameterization to Accelerate Training of Deep Neural Networks
      <https://arxiv.org/abs/1602.07868>`_; ``flax.linen.WeightNorm``.
    """

    layer_instance: nn.Module
    feature_axes: FeatureAxes = -1
    epsilon: float = 1e-12
    variable_filter: Iterable[str] | None = ("kernel",)

    @nn.compact
    def __call__(self, *args, **kwargs):
        """Calls the wrapped layer with the weights ``g * v / ||v||``."""

        def replace(path, v):
            if self.variable_filter is not None and not any(f in path for f in self.variable_filter):
                return v
            g = self.param(
                path + "/scale", lambda _: jaxreg.weight_norm_init(v, feature_axes=self.feature_axes)
            )
            return jaxreg.weight_normalize(v, g, feature_axes=self.feature_axes, eps=self.epsilon)

        return _call_with(self, replace, args, kwargs)
