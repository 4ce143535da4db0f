"""The ``plenoxels`` method: a dense voxel grid of density and SH coefficients (no MLP),
trained coarse to fine with pruning. nerfstudio has no voxel-grid family; this is ours."""

from nerfconvert.plenoxels.field import PlenoxelsField, eval_sh_colour, num_sh_coeffs, trilinear
from nerfconvert.plenoxels.model import FusedAdamOptimizerConfig, PlenoxelsModel, PlenoxelsModelConfig

__all__ = [
    "FusedAdamOptimizerConfig",
    "PlenoxelsField",
    "PlenoxelsModel",
    "PlenoxelsModelConfig",
    "eval_sh_colour",
    "num_sh_coeffs",
    "trilinear",
]
