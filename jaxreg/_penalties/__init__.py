"""Penalties: scalar functions of the parameters to add to a loss."""

from jaxreg._penalties._gradient import confidence_penalty as confidence_penalty
from jaxreg._penalties._gradient import gradient_penalty as gradient_penalty
from jaxreg._penalties._gradient import input_gradient_penalty as input_gradient_penalty
from jaxreg._penalties._gradient import jacobian_penalty as jacobian_penalty
from jaxreg._penalties._gradient import r1_penalty as r1_penalty
from jaxreg._penalties._gradient import spectral_decoupling_penalty as spectral_decoupling_penalty
from jaxreg._penalties._matrix import orthogonal_penalty as orthogonal_penalty
from jaxreg._penalties._matrix import soft_orthogonal_penalty as soft_orthogonal_penalty
from jaxreg._penalties._matrix import spectral_penalty as spectral_penalty
from jaxreg._penalties._pytree import elastic_net_penalty as elastic_net_penalty
from jaxreg._penalties._pytree import group_lasso_penalty as group_lasso_penalty
from jaxreg._penalties._pytree import l1_penalty as l1_penalty
from jaxreg._penalties._pytree import l2_penalty as l2_penalty
