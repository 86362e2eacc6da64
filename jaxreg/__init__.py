"""jaxreg: neural-network regularization for JAX, as pure functions and optax transforms."""

from jaxreg import masks as masks
from jaxreg._adding import add_decayed_weights as add_decayed_weights
from jaxreg._adding import add_l1 as add_l1
from jaxreg._penalties import elastic_net_penalty as elastic_net_penalty
from jaxreg._penalties import group_lasso_penalty as group_lasso_penalty
from jaxreg._penalties import l1_penalty as l1_penalty
from jaxreg._penalties import l2_penalty as l2_penalty
from jaxreg._proximal import prox_elastic_net as prox_elastic_net
from jaxreg._proximal import prox_group_lasso as prox_group_lasso
from jaxreg._proximal import prox_l1 as prox_l1
from jaxreg._proximal import soft_threshold as soft_threshold
from jaxreg._tree import CountState as CountState

__version__ = "0.1.0"

# --- dropout family and samplers (issues 3, 4) ---
from jaxreg._dropout import dropout as dropout

# --- constraints and structural regularizers (issue 8) ---
