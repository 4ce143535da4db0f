"""Two-level view of the voxel-grid family: nerfconvert's ``plenoxels`` method.

PVD Table 1 for Plenoxels: phi1 is the full explicit grid and phi2 the identity. Here phi1
is the trilinear interpolation of the grid's vertex values and phi2 the fixed decoding that
the model applies to them: the density activation and the SH colour of PVD Eq. 2. phi2 has
no parameters.

Feature layout (``feature_dim = 1 + 3 K``, K = (sh_degree + 1)^2, 28 at degree 2)::

    [0]          raw density, before the activation (PVD clamps this to [a, b], Eq. 8)
    [1 : 1+3K]   SH coefficients k, colour-major: K for red, K for green, K for blue

Points outside the scene box get the grid's empty value (raw density ``empty_raw_density``,
zero SH), exactly what the model uses there.
"""

from __future__ import annotations

import copy
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.models.base_model import Model

from nerfconvert.plenoxels.field import PlenoxelsField
from nerfconvert.views.base import Decoded, FieldView


class VoxelGridView(FieldView):
    """phi2(phi1(x, d)) == ``PlenoxelsField``."""

    family = "voxel"
    model_names = ("PlenoxelsModel",)
    capabilities = {"vq_tables": "nerfconvert.compress.tables:VoxelFamily"}
    volume_features = False  # PVD applies only sigma, colour, RGB and regularisation losses to the voxel grid
    student_method = "plenoxels"
    student_description = "plenoxels student (voxel grid), as ns-train plenoxels builds it."

    @classmethod
    def stock_config(cls):
        from method_configs.plenoxels import plenoxels  # our own method (an entry point, not nerfstudio's table)

        return copy.deepcopy(plenoxels.config)

    def __init__(self, model: Model) -> None:
        super().__init__(model)
        field = getattr(model, "field", None)
        if not isinstance(field, PlenoxelsField):
            raise TypeError(
                f"VoxelGridView needs a model whose .field is a PlenoxelsField, got {type(model).__name__} "
                f"with field {type(field).__name__}"
            )
        self.field: PlenoxelsField = field

    @property
    def feature_dim(self) -> int:
        return self.field.feature_dim

    def density_activation(self) -> Tuple[str, float]:
        return str(self.field.density_activation), 1.0

    def regularizer(self, density: Optional[Tensor], tv_weight: float, l1_weight: float) -> Optional[Tensor]:
        loss = 0.0
        if tv_weight > 0:
            tv_density, tv_sh = self.field.tv_losses(getattr(self.model.config, "tv_num_voxels", 2**16))
            loss = loss + tv_weight * (tv_density + tv_sh)
        if l1_weight > 0 and density is not None and density.numel():
            loss = loss + l1_weight * density.abs().mean()
        return loss if torch.is_tensor(loss) else None

    @property
    def raw_density_slice(self) -> slice:
        return slice(0, 1)

    @property
    def sh_slice(self) -> slice:
        return slice(1, self.feature_dim)

    @property
    def sh_degree(self) -> int:
        return self.field.sh_degree

    def field_coordinates(self, positions: Tensor) -> Tensor:
        """World positions -> the [-1, 1] grid_sample coordinates of the grid's vertices (the box
        corners are vertices: align_corners=True)."""
        return self.field.grid_coords(positions)[0]

    # ---- the two levels -----------------------------------------------------------------
    def phi1(self, positions: Tensor, directions: Tensor = None) -> Tensor:
        # phi1, PVD Table 1: the explicit grid, read by trilinear interpolation
        del directions
        return self.field.features(positions)

    def phi2(self, features: Tensor, directions: Tensor) -> Decoded:
        # phi2, PVD Table 1: identity, then the activation and SH colour (Eq. 2)
        density, rgb = self.field.decode(features, directions)
        return Decoded(density=density, raw_density=features[..., self.raw_density_slice], rgb=rgb)

    # ---- sampling -------------------------------------------------------------------------
    def sample(self, ray_bundle: RayBundle) -> RaySamples:
        """The model's marcher: constant steps through the occupied box (no jitter in eval)."""
        with torch.no_grad():
            return self.model.sample(ray_bundle)

    # ---- parameters -----------------------------------------------------------------------
    def phi1_parameters(self) -> list[nn.Parameter]:
        # Looked up on each call: upsampling replaces the grid Parameters.
        return [self.field.density_grid, self.field.sh_grid]

    def phi2_parameters(self) -> list[nn.Parameter]:
        return []
