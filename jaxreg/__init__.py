"""jaxreg: neural-network regularization for JAX, as pure functions and optax transforms.

The public API is flat: every name below is ``jaxreg.<name>``. The Flax modules
live in ``jaxreg.linen`` and ``jaxreg.nnx``, which import Flax when first used,
and the Equinox modules in ``jaxreg.equinox`` (the ``equinox`` extra), so
``import jaxreg`` needs only JAX and optax.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from jaxreg import masks as masks
from jaxreg._penalties import confidence_penalty as confidence_penalty
from jaxreg._penalties import elastic_net_penalty as elastic_net_penalty
from jaxreg._penalties import gradient_penalty as gradient_penalty
from jaxreg._penalties import group_lasso_penalty as group_lasso_penalty
from jaxreg._penalties import input_gradient_penalty as input_gradient_penalty
from jaxreg._penalties import jacobian_penalty as jacobian_penalty
from jaxreg._penalties import l1_penalty as l1_penalty
from jaxreg._penalties import l2_penalty as l2_penalty
from jaxreg._penalties import orthogonal_penalty as orthogonal_penalty
from jaxreg._penalties import r1_penalty as r1_penalty
from jaxreg._penalties import soft_orthogonal_penalty as soft_orthogonal_penalty
from jaxreg._penalties import spectral_decoupling_penalty as spectral_decoupling_penalty
from jaxreg._penalties import spectral_penalty as spectral_penalty
from jaxreg._reparam import ConvSpectralNormState as ConvSpectralNormState
from jaxreg._reparam import SpectralNormState as SpectralNormState
from jaxreg._reparam import conv_spectral_norm_init as conv_spectral_norm_init
from jaxreg._reparam import conv_spectral_normalize as conv_spectral_normalize
from jaxreg._reparam import orthogonal_map as orthogonal_map
from jaxreg._reparam import orthogonal_map_init as orthogonal_map_init
from jaxreg._reparam import spectral_norm_init as spectral_norm_init
from jaxreg._reparam import spectral_normalize as spectral_normalize
from jaxreg._reparam import weight_norm_init as weight_norm_init
from jaxreg._reparam import weight_normalize as weight_normalize
from jaxreg._stochastic import MCDropoutPrediction as MCDropoutPrediction
from jaxreg._stochastic import alpha_dropout as alpha_dropout
from jaxreg._stochastic import cutmix as cutmix
from jaxreg._stochastic import drop_path as drop_path
from jaxreg._stochastic import drop_path_rates as drop_path_rates
from jaxreg._stochastic import drop_path_subset as drop_path_subset
from jaxreg._stochastic import dropblock as dropblock
from jaxreg._stochastic import dropblock_gamma as dropblock_gamma
from jaxreg._stochastic import dropconnect as dropconnect
from jaxreg._stochastic import dropout as dropout
from jaxreg._stochastic import early_dropout as early_dropout
from jaxreg._stochastic import gaussian_dropout as gaussian_dropout
from jaxreg._stochastic import gaussian_noise as gaussian_noise
from jaxreg._stochastic import late_dropout as late_dropout
from jaxreg._stochastic import mc_dropout as mc_dropout
from jaxreg._stochastic import mixup as mixup
from jaxreg._stochastic import mixup_or_cutmix as mixup_or_cutmix
from jaxreg._stochastic import random_erasing as random_erasing
from jaxreg._stochastic import spatial_dropout as spatial_dropout
from jaxreg._transforms import CountState as CountState
from jaxreg._transforms import FistaState as FistaState
from jaxreg._transforms import PruningState as PruningState
from jaxreg._transforms import add_decayed_weights as add_decayed_weights
from jaxreg._transforms import add_l1 as add_l1
from jaxreg._transforms import cautious_weight_decay as cautious_weight_decay
from jaxreg._transforms import corrected_weight_decay as corrected_weight_decay
from jaxreg._transforms import decoupled_weight_decay as decoupled_weight_decay
from jaxreg._transforms import fista as fista
from jaxreg._transforms import keep_n_of_m as keep_n_of_m
from jaxreg._transforms import keep_top_k as keep_top_k
from jaxreg._transforms import max_norm as max_norm
from jaxreg._transforms import min_max_norm as min_max_norm
from jaxreg._transforms import non_negative as non_negative
from jaxreg._transforms import projected as projected
from jaxreg._transforms import prox_elastic_net as prox_elastic_net
from jaxreg._transforms import prox_group_lasso as prox_group_lasso
from jaxreg._transforms import prox_l1 as prox_l1
from jaxreg._transforms import prox_nuclear_norm as prox_nuclear_norm
from jaxreg._transforms import prox_ridge as prox_ridge
from jaxreg._transforms import prox_sparse_group_lasso as prox_sparse_group_lasso
from jaxreg._transforms import proximal as proximal
from jaxreg._transforms import soft_threshold as soft_threshold
from jaxreg._transforms import sparsity_schedule as sparsity_schedule
from jaxreg._transforms import unit_norm as unit_norm

if TYPE_CHECKING:
    from jaxreg import equinox as equinox
    from jaxreg import linen as linen
    from jaxreg import nnx as nnx

__version__ = "0.2.0"

_LAZY_SUBMODULES = ("equinox", "linen", "nnx")  # import Flax or Equinox: loaded on first attribute access


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"jaxreg.{name}")
    raise AttributeError(f"module 'jaxreg' has no attribute {name!r}")


__all__ = [
    "ConvSpectralNormState",
    "CountState",
    "FistaState",
    "MCDropoutPrediction",
    "PruningState",
    "SpectralNormState",
    "add_decayed_weights",
    "add_l1",
    "alpha_dropout",
    "cautious_weight_decay",
    "confidence_penalty",
    "conv_spectral_norm_init",
    "conv_spectral_normalize",
    "corrected_weight_decay",
    "cutmix",
    "decoupled_weight_decay",
    "drop_path",
    "drop_path_rates",
    "drop_path_subset",
    "dropblock",
    "dropblock_gamma",
    "dropconnect",
    "dropout",
    "early_dropout",
    "elastic_net_penalty",
    "equinox",
    "fista",
    "gaussian_dropout",
    "gaussian_noise",
    "gradient_penalty",
    "group_lasso_penalty",
    "input_gradient_penalty",
    "jacobian_penalty",
    "keep_n_of_m",
    "keep_top_k",
    "l1_penalty",
    "l2_penalty",
    "late_dropout",
    "linen",
    "masks",
    "max_norm",
    "mc_dropout",
    "min_max_norm",
    "mixup",
    "mixup_or_cutmix",
    "nnx",
    "non_negative",
    "orthogonal_map",
    "orthogonal_map_init",
    "orthogonal_penalty",
    "projected",
    "prox_elastic_net",
    "prox_group_lasso",
    "prox_l1",
    "prox_nuclear_norm",
    "prox_ridge",
    "prox_sparse_group_lasso",
    "proximal",
    "r1_penalty",
    "random_erasing",
    "soft_orthogonal_penalty",
    "soft_threshold",
    "sparsity_schedule",
    "spatial_dropout",
    "spectral_decoupling_penalty",
    "spectral_norm_init",
    "spectral_normalize",
    "spectral_penalty",
    "unit_norm",
    "weight_norm_init",
    "weight_normalize",
]
