"""Penalties: scalar functions of the parameters to add to a loss."""

from jaxreg._penalties._matrix import orthogonal_penalty as orthogonal_penalty
from jaxreg._penalties._matrix import soft_orthogonal_penalty as soft_orthogonal_penalty
from jaxreg._penalties._matrix import spectral_penalty as spectral_penalty
from jaxreg._penalties._pytree import elastic_net_penalty as elastic_net_penalty
from jaxreg._penalties._pytree import group_lasso_penalty as group_lasso_penalty
from jaxreg._penalties._pytree import l1_penalty as l1_penalty
from jaxreg._penalties._pytree import l2_penalty as l2_penalty
