"""Random regularizers with explicit keys: the dropout family, noise, DropBlock, mixing augmentations and rate schedules."""

from jaxreg._stochastic._depth import drop_path_subset as drop_path_subset
from jaxreg._stochastic._dropblock import dropblock as dropblock
from jaxreg._stochastic._dropblock import dropblock_gamma as dropblock_gamma
from jaxreg._stochastic._dropout import drop_path as drop_path
from jaxreg._stochastic._dropout import dropconnect as dropconnect
from jaxreg._stochastic._dropout import dropout as dropout
from jaxreg._stochastic._dropout import spatial_dropout as spatial_dropout
from jaxreg._stochastic._mc import MCDropoutPrediction as MCDropoutPrediction
from jaxreg._stochastic._mc import mc_dropout as mc_dropout
from jaxreg._stochastic._mixing import cutmix as cutmix
from jaxreg._stochastic._mixing import mixup_or_cutmix as mixup_or_cutmix
from jaxreg._stochastic._mixing import random_erasing as random_erasing
from jaxreg._stochastic._mixup import mixup as mixup
from jaxreg._stochastic._noise import alpha_dropout as alpha_dropout
from jaxreg._stochastic._noise import gaussian_dropout as gaussian_dropout
from jaxreg._stochastic._noise import gaussian_noise as gaussian_noise
from jaxreg._stochastic._schedules import drop_path_rates as drop_path_rates
from jaxreg._stochastic._schedules import early_dropout as early_dropout
from jaxreg._stochastic._schedules import late_dropout as late_dropout
