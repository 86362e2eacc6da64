r"""Flax NNX wrapper for hard orthogonality: the layer's kernel is :func:`jaxreg.orthogonal_map` of its param."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

import jaxreg
from jaxreg._masking import key_path_str
from jaxreg.nnx._reparam import _call_with, _selected_params

_KERNELS = nnx.PathContains("kernel")
_METHODS = ("cayley", "expm", "householder")  # those of jaxreg.orthogonal_map


class Orthogonal(nnx.Module):
    r"""Orthogonal kernels: the wrapped layer uses $Q(a)$ where its ``nnx.Param`` is the unconstrained $a$.

    For each parameter with ``ndim >= 2`` that ``variable_filter`` selects (by
    default the ones whose path contains ``"kernel"``), the wrapped layer
    computes with :func:`jaxreg.orthogonal_map` of the parameter viewed as the
    ``(-1, out)`` matrix (``nnx.Linear``'s ``(in, out)`` kernel; a conv kernel's
    ``(h * w * in, out)`` matrix, whose columns become orthonormal, which does
    not make the convolution an orthogonal operator). For ``in >= out``,
    $Q^\top Q = I$; for ``in < out``, $Q Q^\top = I$. The wrapped layer's own
    ``nnx.Param`` holds the unconstrained $a$, which the optimizer trains; the
    orthogonal kernel is computed per call on a temporary copy and never
    written back.

    With ``orthogonal_init=True`` (the default, as PyTorch's
    ``use_trivialization=True``) the layer starts from the polar factor of its
    own initial kernel: the constructor sets $a = 0$ and stores
    :func:`jaxreg.orthogonal_map_init` of the initial kernel in ``self.bases``,
    a dict of ``nnx.BatchStat`` (non-trainable, never updated). With
    ``orthogonal_init=False`` there is no base and $a$ starts at the initial
    kernel.

    Args:
      layer_instance: the layer to wrap.
      method: ``"cayley"``, ``"expm"`` or ``"householder"`` (:func:`jaxreg.orthogonal_map`).
      orthogonal_init: start from the polar factor of the initial kernel.
      variable_filter: an nnx filter over the layer's ``Param`` paths.

    Examples:
      >>> import jax.numpy as jnp, numpy as np
      >>> from flax import nnx
      >>> import jaxreg.nnx as jrx
      >>> bare = nnx.Linear(5, 3, use_bias=False, rngs=nnx.Rngs(0))
      >>> layer = jrx.Orthogonal(nnx.Linear(5, 3, use_bias=False, rngs=nnx.Rngs(0)))
      >>> u, _, vt = np.linalg.svd(np.asarray(bare.kernel[...]), full_matrices=False)
      >>> x = jnp.eye(5)   # the rows of the kernel the layer computes with: the polar factor u @ vt
      >>> bool(np.allclose(layer(x), u @ vt, atol=1e-5))
      True
      >>> float(jnp.abs(layer.layer_instance.kernel[...]).max())   # stored: unconstrained, zero at init
      0.0

    References:
      Lezcano-Casado and Martínez-Rubio, 2019, `Cheap Orthogonal Constraints in
      Neural Networks <https://arxiv.org/abs/1901.08428>`_;
      ``torch.nn.utils.parametrizations.orthogonal``.
    """

    def __init__(
        self,
        layer_instance: nnx.Module,
        *,
        method: str = "cayley",
        orthogonal_init: bool = True,
        variable_filter: Any = _KERNELS,
    ):
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        self.layer_instance = layer_instance
        self.method = method
        keep = nnx.filterlib.to_predicate(variable_filter)
        kernels = _selected_params(
            layer_instance, lambda path, var: keep(path, var) and var.get_value().ndim >= 2
        )
        self.mapped = tuple(kernels)  # '/'-joined paths of the mapped params
        self.bases = nnx.Dict(
            {
                k: nnx.BatchStat(jaxreg.orthogonal_map_init(w.reshape(-1, w.shape[-1])))
                for k, w in kernels.items()
                if orthogonal_init
            }
        )
        if orthogonal_init:  # a = 0: the layer starts at the polar factor of its initial kernel
            params = nnx.to_flat_state(nnx.state(layer_instance, nnx.Param))
            zeros = [
                (path, var.replace(jnp.zeros_like(var.get_value())))
                for path, var in params
                if key_path_str(path) in kernels
            ]
            nnx.update(layer_instance, nnx.from_flat_state(zeros))

    def __call__(self, *args, **kwargs):
        """Calls the wrapped layer with its selected parameters mapped to orthogonal matrices."""

        def replace(key, a):
            if key not in self.mapped:
                return a
            base = self.bases[key][...] if key in self.bases else None
            m = a.reshape(-1, a.shape[-1])
            return jaxreg.orthogonal_map(m, method=self.method, base=base).reshape(a.shape)

        return _call_with(self.layer_instance, replace, args, kwargs)
