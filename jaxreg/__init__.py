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
from jaxreg import linen as linen
from jaxreg import nnx as nnx
from jaxreg._dropblock import dropblock as dropblock
from jaxreg._dropblock import dropblock_gamma as dropblock_gamma
from jaxreg._dropout import drop_path as drop_path
from jaxreg._dropout import dropconnect as dropconnect
from jaxreg._dropout import dropout as dropout
from jaxreg._dropout import spatial_dropout as spatial_dropout
from jaxreg._noise_dropout import alpha_dropout as alpha_dropout
from jaxreg._noise_dropout import gaussian_dropout as gaussian_dropout
from jaxreg._noise_dropout import gaussian_noise as gaussian_noise

# isort: split
# --- constraints and structural regularizers (issue 8) ---
from jaxreg._constraints import max_norm as max_norm
from jaxreg._constraints import min_max_norm as min_max_norm
from jaxreg._constraints import non_negative as non_negative
from jaxreg._constraints import unit_norm as unit_norm
from jaxreg._mixup import mixup as mixup
from jaxreg._orthogonal import orthogonal_penalty as orthogonal_penalty
from jaxreg._orthogonal import soft_orthogonal_penalty as soft_orthogonal_penalty
from jaxreg._orthogonal import spectral_penalty as spectral_penalty
from jaxreg._spectral import SpectralNormState as SpectralNormState
from jaxreg._spectral import spectral_norm_init as spectral_norm_init
from jaxreg._spectral import spectral_normalize as spectral_normalize
from jaxreg._weightnorm import weight_norm_init as weight_norm_init
from jaxreg._weightnorm import weight_normalize as weight_normalize
