"""Reparametrizations: spectral and weight normalization as pure functions of a weight."""

from jaxreg._reparam._conv_spectral import ConvSpectralNormState as ConvSpectralNormState
from jaxreg._reparam._conv_spectral import conv_spectral_norm_init as conv_spectral_norm_init
from jaxreg._reparam._conv_spectral import conv_spectral_normalize as conv_spectral_normalize
from jaxreg._reparam._orthogonal import orthogonal_map as orthogonal_map
from jaxreg._reparam._orthogonal import orthogonal_map_init as orthogonal_map_init
from jaxreg._reparam._spectral import SpectralNormState as SpectralNormState
from jaxreg._reparam._spectral import spectral_norm_init as spectral_norm_init
from jaxreg._reparam._spectral import spectral_normalize as spectral_normalize
from jaxreg._reparam._weightnorm import weight_norm_init as weight_norm_init
from jaxreg._reparam._weightnorm import weight_normalize as weight_normalize
