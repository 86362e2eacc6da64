"""Optax gradient transformations: added penalties, proximal steps, constraints and pruning."""

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
from jaxreg._transforms._fista import FistaState as FistaState
from jaxreg._transforms._fista import fista as fista
from jaxreg._transforms._generic import projected as projected
from jaxreg._transforms._generic import proximal as proximal
from jaxreg._transforms._nuclear import prox_nuclear_norm as prox_nuclear_norm
from jaxreg._transforms._proximal import prox_elastic_net as prox_elastic_net
from jaxreg._transforms._proximal import prox_group_lasso as prox_group_lasso
from jaxreg._transforms._proximal import prox_l1 as prox_l1
from jaxreg._transforms._proximal import prox_ridge as prox_ridge
from jaxreg._transforms._proximal import prox_sparse_group_lasso as prox_sparse_group_lasso
from jaxreg._transforms._proximal import soft_threshold as soft_threshold
from jaxreg._transforms._sparsity import PruningState as PruningState
from jaxreg._transforms._sparsity import keep_n_of_m as keep_n_of_m
from jaxreg._transforms._sparsity import keep_top_k as keep_top_k
from jaxreg._transforms._sparsity import sparsity_schedule as sparsity_schedule
