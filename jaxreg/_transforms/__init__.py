"""Optax gradient transformations: added penalties, proximal steps and constraints."""

from jaxreg._transforms._adding import add_decayed_weights as add_decayed_weights
from jaxreg._transforms._adding import add_l1 as add_l1
from jaxreg._transforms._base import CountState as CountState
from jaxreg._transforms._constraints import max_norm as max_norm
from jaxreg._transforms._constraints import min_max_norm as min_max_norm
from jaxreg._transforms._constraints import non_negative as non_negative
from jaxreg._transforms._constraints import unit_norm as unit_norm
from jaxreg._transforms._decay import cautious_weight_decay as cautious_weight_decay
from jaxreg._transforms._decay import corrected_weight_decay as corrected_weight_decay
from jaxreg._transforms._decay import decoupled_weight_decay as decoupled_weight_decay
from jaxreg._transforms._proximal import prox_elastic_net as prox_elastic_net
from jaxreg._transforms._proximal import prox_group_lasso as prox_group_lasso
from jaxreg._transforms._proximal import prox_l1 as prox_l1
from jaxreg._transforms._proximal import soft_threshold as soft_threshold
