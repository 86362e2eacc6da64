"""Ready-made ``mask`` callables: ``params -> bool pytree``, with ``optax.masked`` semantics.

They work on plain dicts, Flax linen params, ``flax.nnx.State`` and Equinox
modules alike (any pytree), and can be passed to jaxreg's and optax's ``mask=``
arguments. :func:`decayable` is the mask to use for weight decay;
:func:`all_of`, :func:`any_of` and :func:`negate` combine masks, and
:func:`factors` gives a per-leaf multiplier of a strength.

Paths are the leaves' key paths joined with '/' (``params/Dense_0/kernel`` for
linen, ``layers/0/linear/kernel`` for ``nnx.State``: the ``Param`` wrapper adds
no key).

**With** ``optax.inject_hyperparams``, declare a callable mask static::

    optax.inject_hyperparams(jaxreg.add_l1, static_args=("mask",))(strength=1e-4, mask=weights_only)

otherwise optax takes every callable argument for a schedule and calls it on the
step count, and the "mask" it gets back selects nothing. The masks of this
module raise a ``TypeError`` when called on a step count; a mask of your own
would silently disable the regularization.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg._masking import is_float_leaf, key_path_str
from jaxreg._validation import check_non_negative


def _reject_step_count(params: Any, name: str) -> None:
    # optax.inject_hyperparams calls a callable argument it takes for a schedule on the step
    # count, a 0-d int32 array: no params pytree is a bare integer scalar.
    if isinstance(params, jax.Array) and params.ndim == 0 and jnp.issubdtype(params.dtype, jnp.integer):
        raise TypeError(
            f"jaxreg.masks.{name} was called on a step count, not on params: optax.inject_hyperparams "
            "takes a callable mask for a schedule; pass static_args=('mask',)"
        )


def weights_only(params: Any) -> Any:
    """True for float leaves with ``ndim >= 2``, False otherwise: a rule on shapes only.

    It selects every matrix and higher-rank array: kernels, but also embedding
    tables, the ``(heads, head_dim)`` query/key/value biases of Flax's attention
    modules, and the ``(layers, features)`` norm scales and biases of a layer
    stack built with ``nn.scan`` / ``nnx.vmap``. It leaves out 1-D and 0-d
    leaves (the biases and norm scales of unstacked layers).

    For weight decay use :func:`decayable`, which decides by name and module
    type and is right on attention layers and stacked layers; use
    ``weights_only`` where the rank is what matters (e.g. the matrix
    constraints and penalties, which need ``ndim >= 2``).

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> jaxreg.masks.weights_only({"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)})
      {'bias': False, 'kernel': True}
    """
    _reject_step_count(params, "weights_only")
    return jax.tree.map(lambda x: is_float_leaf(x) and np.ndim(x) >= 2, params)


def by_path(include: str | None = None, exclude: str | None = None) -> Callable[[Any], Any]:
    """A mask that selects leaves by their '/'-joined key path.

    A leaf is selected when ``include`` is None or ``re.search(include, path)``
    matches, and ``exclude`` is None or does not match. Paths join the pytree's
    keys with '/': ``params/Dense_0/kernel`` for linen, ``layers/0/kernel`` or
    ``linear/kernel`` for ``nnx.State`` (an nnx ``Param`` wrapper adds no key).

    Args:
      include: regular expression a selected path must match (``re.search``).
      exclude: regular expression a selected path must not match.

    Returns:
      A callable ``params -> bool pytree``.

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
      >>> jaxreg.masks.by_path(exclude=r"(bias|scale|embedding)")(params)
      {'dense': {'bias': False, 'kernel': True}}
    """
    inc = None if include is None else re.compile(include)
    exc = None if exclude is None else re.compile(exclude)

    def mask_fn(params: Any) -> Any:
        _reject_step_count(params, "by_path")

        def select(path, _):
            p = key_path_str(path)
            return (inc is None or inc.search(p) is not None) and (exc is None or exc.search(p) is None)

        return jax.tree_util.tree_map_with_path(select, params)

    return mask_fn


# Leaves named like a layer's weight matrix; everything else (bias, scale, offset, embedding,
# pos_embedding, cls_token, ...) is left out by decayable.
_KERNEL_NAMES = frozenset({"kernel", "w"})  # Flax Dense/Conv/attention (and DenseGeneral), Haiku Linear/Conv
_WEIGHT_NAMES = frozenset({"weight"})  # Equinox and PyTorch-style trees: also the name of norm scales
# Parent names (a module attribute or a dict key) of a "weight" that is a norm scale or an embedding table.
_NOT_A_LAYER_WEIGHT = re.compile(r"norm|^ln(_?\d+|_f)?$|^bn\d*$|^gn\d*$|embed|^wte$|^wpe$", re.IGNORECASE)
# Class names of pytree nodes (Equinox modules) whose whole subtree is never decayed.
# (Not SpectralNorm or WeightNorm: those wrap a layer whose weight is decayed.)
_NOT_DECAYED_TYPES = re.compile(r"^(LayerNorm|RMSNorm|GroupNorm|BatchNorm|InstanceNorm|Embedding|Embed)$")


def _leaf_is_decayable(path: tuple, leaf: Any) -> bool:
    if not is_float_leaf(leaf):
        return False
    parts = key_path_str(path).split("/")
    name = parts[-1]
    if name in _KERNEL_NAMES:
        return True
    if name in _WEIGHT_NAMES:
        parent = parts[-2] if len(parts) > 1 else ""
        return _NOT_A_LAYER_WEIGHT.search(parent) is None
    return False


def _is_not_decayed_module(node: Any) -> bool:
    return _NOT_DECAYED_TYPES.search(type(node).__name__) is not None and bool(jax.tree.leaves(node))


def decayable(params: Any) -> Any:
    r"""True for the leaves weight decay should touch: the weight matrices of linear, conv and attention layers.

    The rule, leaf by leaf (``path`` is the '/'-joined key path, ``name`` its
    last key):

    * a float leaf named ``kernel`` (Flax ``Dense``, ``DenseGeneral``,
      ``Conv``, the query/key/value/out projections of ``MultiHeadAttention``)
      or ``w`` (Haiku) is selected;
    * a float leaf named ``weight`` (Equinox, PyTorch-style state dicts) is
      selected unless its parent's name is a norm or an embedding (it contains
      ``norm`` or ``embed``, or is ``ln``, ``ln_1``, ``ln_f``, ``bn1``, ``gn``,
      ``wte``, ``wpe``, case-insensitive), and unless it sits inside a pytree
      node of class ``LayerNorm``, ``RMSNorm``, ``GroupNorm``, ``BatchNorm``,
      ``InstanceNorm``, ``Embedding`` or ``Embed`` (Equinox's modules; a
      ``SpectralNorm`` or ``WeightNorm`` wrapper is not one: its layer's weight
      is decayed);
    * every other leaf is left out: biases (including attention's
      ``(heads, head_dim)`` biases), the ``scale`` and ``bias`` of LayerNorm,
      RMSNorm, BatchNorm and GroupNorm, embedding tables (``embedding``),
      positional embeddings and class tokens (any other name), and non-float
      leaves.

    The rule depends on names, not shapes, so it is the same for a layer and
    for a stack of layers with any number of leading layer axes (``nn.scan``,
    ``nnx.vmap``, ``nnx.scan``). Extend it by combining masks, e.g. to also
    decay LoRA factors: ``any_of(decayable, by_path(include=r"lora_[ab]$"))``;
    to spare a layer: ``all_of(decayable, by_path(exclude=r"^head/"))``.

    Args:
      params: a pytree of parameters.

    Returns:
      A pytree of bools with the structure of ``params``.

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> params = {
      ...     "attn": {"query": {"kernel": jnp.ones((8, 2, 4)), "bias": jnp.ones((2, 4))}},
      ...     "norm": {"scale": jnp.ones((3, 8))},  # three stacked layers
      ...     "embed": {"embedding": jnp.ones((10, 8))},
      ... }
      >>> jaxreg.masks.decayable(params)
      {'attn': {'query': {'bias': False, 'kernel': True}}, 'embed': {'embedding': False}, 'norm': {'scale': False}}

    References:
      Loshchilov and Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, 2019; the exclusion of biases, norm
      parameters and embeddings follows common transformer recipes (e.g.
      Keras ``exclude_from_weight_decay``, levanter's default mask).
    """
    _reject_step_count(params, "decayable")

    def select(path, node):
        if _is_not_decayed_module(node):
            return jax.tree.map(lambda _: False, node)
        return _leaf_is_decayable(path, node)

    return jax.tree_util.tree_map_with_path(select, params, is_leaf=_is_not_decayed_module)


def _combine(name: str, op: Callable[..., bool], masks: tuple[Any, ...]) -> Any:
    if not masks:
        raise ValueError(f"jaxreg.masks.{name} needs at least one mask")
    for i, m in enumerate(masks):
        if m is None:
            raise TypeError(
                f"jaxreg.masks.{name}: mask {i} is None; pass a bool pytree or a callable (None means "
                "'every leaf' only as a mask= argument)"
            )

    def on_trees(trees: list[Any]) -> Any:
        try:
            return jax.tree.map(lambda *flags: op(*(bool(f) for f in flags)), *trees)
        except ValueError as e:
            raise ValueError(f"jaxreg.masks.{name}: the masks do not have the same structure: {e}") from None

    if not any(callable(m) for m in masks):
        return on_trees(list(masks))

    def mask_fn(params: Any) -> Any:
        _reject_step_count(params, name)
        return on_trees([m(params) if callable(m) else m for m in masks])

    return mask_fn


def all_of(*masks: Any) -> Any:
    """The leaves every mask selects (logical and).

    Each mask is a bool pytree or a callable ``params -> bool pytree``, as for
    ``mask=``. The result is a callable when any input is (it calls each
    callable on the params it is given), and a bool pytree otherwise. Bool
    pytrees must have the same structure (the structure of the params).

    Args:
      *masks: one or more masks.

    Returns:
      The combined mask.

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> params = {"head": {"kernel": jnp.ones((3, 2))}, "body": {"kernel": jnp.ones((3, 3))}}
      >>> mask = jaxreg.masks.all_of(jaxreg.masks.decayable, jaxreg.masks.by_path(exclude="^head/"))
      >>> mask(params)
      {'body': {'kernel': True}, 'head': {'kernel': False}}
    """
    return _combine("all_of", lambda *f: all(f), masks)


def any_of(*masks: Any) -> Any:
    """The leaves at least one mask selects (logical or); the conventions of :func:`all_of`.

    Args:
      *masks: one or more masks.

    Returns:
      The combined mask.

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> params = {"lora_a": jnp.ones((4, 2)), "bias": jnp.ones(4)}
      >>> jaxreg.masks.any_of(jaxreg.masks.decayable, jaxreg.masks.by_path(include="lora_"))(params)
      {'bias': False, 'lora_a': True}
    """
    return _combine("any_of", lambda *f: any(f), masks)


def negate(mask: Any) -> Any:
    """The leaves ``mask`` does not select (logical not); the conventions of :func:`all_of`.

    Args:
      mask: a bool pytree or a callable ``params -> bool pytree``.

    Returns:
      The negated mask.

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> jaxreg.masks.negate({"kernel": True, "bias": False})
      {'bias': True, 'kernel': False}
    """
    return _combine("negate", lambda f: not f, (mask,))


def factors(rules: Sequence[tuple[str, float]], default: float = 1.0) -> Callable[[Any], Any]:
    r"""A per-leaf multiplier of a strength, from ``(regex, factor)`` rules on key paths.

    The factor of a leaf is that of the first rule whose regular expression
    matches its '/'-joined key path (``re.search``), and ``default`` when none
    does (transforms only use the factors of the float leaves they select).
    Pass it as ``factors=`` to a transform with a strength (the effective
    strength of a leaf is ``strength * factor``), as big_vision's ``wd_mults``
    or PyTorch parameter groups with different ``weight_decay`` do.

    Args:
      rules: ``(pattern, factor)`` pairs, tried in order; factors are finite
        numbers ``>= 0``.
      default: the factor of the leaves no rule matches.

    Returns:
      A callable ``params -> pytree of Python floats``.

    Examples:
      >>> import jax.numpy as jnp, jaxreg
      >>> params = {"embed": {"embedding": jnp.ones((10, 4))}, "dense": {"kernel": jnp.ones((4, 4))}}
      >>> jaxreg.masks.factors([(r"embedding", 0.0), (r"/kernel$", 1.0)], default=0.5)(params)
      {'dense': {'kernel': 1.0}, 'embed': {'embedding': 0.0}}
    """
    check_non_negative("default", default)
    compiled = []
    for i, rule in enumerate(rules):
        if not (isinstance(rule, tuple | list) and len(rule) == 2 and isinstance(rule[0], str)):
            raise TypeError(f"rules[{i}] must be a (pattern, factor) pair, got {rule!r}")
        check_non_negative(f"rules[{i}] factor", rule[1])
        compiled.append((re.compile(rule[0]), float(rule[1])))
    default = float(default)

    def factors_fn(params: Any) -> Any:
        _reject_step_count(params, "factors")

        def factor(path, _):
            p = key_path_str(path)
            return next((f for pattern, f in compiled if pattern.search(p) is not None), default)

        return jax.tree_util.tree_map_with_path(factor, params)

    return factors_fn


__all__ = ["all_of", "any_of", "by_path", "decayable", "factors", "negate", "weights_only"]
