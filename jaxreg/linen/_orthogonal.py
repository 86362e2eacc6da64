r"""Flax linen wrapper for hard orthogonality: the layer's kernel is :func:`jaxreg.orthogonal_map` of its param."""

from __future__ import annotations

from collections.abc import Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp

import jaxreg
from jaxreg._masking import key_path_str


class Orthogonal(nn.Module):
    r"""Orthogonal kernels: the wrapped layer uses $Q(a)$ where its stored param is the unconstrained $a$.

    For each param with ``ndim >= 2`` whose '/'-joined path contains one of
    ``variable_filter`` (default ``"kernel"``; ``None`` selects all), the layer
    computes with :func:`jaxreg.orthogonal_map` of the param viewed as the
    ``(-1, out)`` matrix (Flax's ``(in, out)`` Dense kernel; a conv kernel's
    ``(h * w * in, out)`` matrix, whose columns become orthonormal: that does not
    make the convolution an orthogonal operator). For ``in >= out``,
    $Q^\top Q = I$ (orthonormal columns); for ``in < out``, $Q Q^\top = I$. The
    stored ``params`` keep the unconstrained value; the orthogonal kernel is
    recomputed at every call and never stored.

    With ``orthogonal_init=True`` (the default, as PyTorch's
    ``use_trivialization=True``) the layer starts from the polar factor of its
    own initial kernel: the stored param is initialized to zeros and the base
    :func:`jaxreg.orthogonal_map_init` of the initial kernel is stored in
    ``collection_name`` (``"batch_stats"``, non-trainable, never updated) under
    ``"<layer>/<path>/base"``. With ``orthogonal_init=False`` there is no base and
    the stored param starts at the layer's initial kernel, mapped by
    $Q$ (near the identity's first columns for a small kernel).

    Attributes:
      layer_instance: the layer to wrap.
      method: ``"cayley"``, ``"expm"`` or ``"householder"`` (:func:`jaxreg.orthogonal_map`).
      orthogonal_init: start from the polar factor of the initial kernel.
      variable_filter: substrings of the param paths to map, or ``None`` for all.
      collection_name: the collection that holds the bases.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np, flax.linen as nn
      >>> import jaxreg, jaxreg.linen as jrl
      >>> layer = jrl.Orthogonal(nn.Dense(3))
      >>> x = jnp.ones((2, 5))
      >>> variables = layer.init(jax.random.key(0), x)
      >>> jax.tree.map(jnp.shape, variables["batch_stats"])
      {'layer_instance/kernel/base': (5, 5)}
      >>> a = variables["params"]["layer_instance"]["kernel"]   # stored: unconstrained, zeros at init
      >>> base = variables["batch_stats"]["layer_instance/kernel/base"]
      >>> kernel = jaxreg.orthogonal_map(a, base=base)            # what the Dense layer computes with
      >>> bool(np.allclose(kernel.T @ kernel, np.eye(3), atol=1e-5))
      True

    References:
      Lezcano-Casado and Martínez-Rubio, 2019, `Cheap Orthogonal Constraints in
      Neural Networks <https://arxiv.org/abs/1901.08428>`_;
      ``torch.nn.utils.parametrizations.orthogonal``.
    """

    layer_instance: nn.Module
    method: str = "cayley"
    orthogonal_init: bool = True
    variable_filter: Iterable[str] | None = ("kernel",)
    collection_name: str = "batch_stats"

    def _selects(self, path: str, w: jax.Array) -> bool:
        return w.ndim >= 2 and (self.variable_filter is None or any(f in path for f in self.variable_filter))

    @nn.compact
    def __call__(self, *args, **kwargs):
        """Calls the wrapped layer with its selected params mapped to orthogonal matrices."""
        layer = self.layer_instance
        raw: list = []

        def path_of(keypath: tuple) -> str:
            return f"{layer.name}/{key_path_str(keypath[1:])}"  # keypath[0] is the collection

        def replace(path: str, a: jax.Array) -> jax.Array:
            if not self._selects(path, a):
                return a
            m = a.reshape(-1, a.shape[-1])
            base = None
            if self.orthogonal_init:
                base = self.variable(
                    self.collection_name, path + "/base", lambda: jaxreg.orthogonal_map_init(m)
                ).value
                if self.is_initializing():
                    m = jnp.zeros_like(m)  # the param stored at init (see trans_out)
            return jaxreg.orthogonal_map(m, method=self.method, base=base).reshape(a.shape)

        def trans_in(variables):
            raw.append(variables)
            return jax.tree_util.tree_map_with_path(lambda p, x: replace(path_of(p), x), variables)

        def trans_out(variables):
            if not raw:
                return variables
            stored = raw.pop()  # the unconstrained params, never the orthogonal view
            if not self.orthogonal_init:
                return stored
            return jax.tree_util.tree_map_with_path(
                lambda p, x: jnp.zeros_like(x) if self._selects(path_of(p), x) else x, stored
            )

        return nn.map_variables(
            lambda layer, *a, **k: layer(*a, **k),
            mapped_collections="params",
            trans_in_fn=trans_in,
            trans_out_fn=trans_out,
            init=self.is_initializing(),
        )(layer, *args, **kwargs)
