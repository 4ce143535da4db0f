"""TensoRF for unbounded captures: nerfacto's scene contraction in front of the stock VM field.

A phone capture has a background (ground, buildings, sky) far outside the scene box. nerfacto
models it by contracting space (Mip-NeRF 360, L-inf: the box [-1, 1]^3 stays linear and
everything beyond is squeezed into [-2, 2]^3) and sampling rays linearly near the camera and in
disparity far away. Stock TensoRF has neither: its grid covers only the scene box, and a ray
that leaves the box shows a constant background colour. This model is stock nerfstudio TensoRF
(``TensoRFModel``, ``TensoRFField``, its encodings, losses, upsampling and parameter groups)
with three changes, all nerfstudio components:

* positions are normalised by the scene box and contracted with ``SceneContraction`` before the
  VM encodings look them up, so the planes span the contracted cube [-2, 2]^3;
* rays run from ``near_plane`` to ``far_plane`` (``NearFarCollider``) with nerfacto's
  ``UniformLinDispPiecewiseSampler`` for the coarse pass (the PDF pass follows its spacing);
* the background is the colour of the last sample (the far end of contracted space), as nerfacto's.

It is what ``pvd-al`` gives a tensorf student of an unbounded teacher (the contracted box carries
over), and it trains on its own as ``ns-train tensorf-unbounded``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Type

import torch
from torch import Tensor

from nerfstudio.cameras.rays import Frustums, RaySamples
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.field_components.spatial_distortions import SceneContraction
from nerfstudio.fields.tensorf_field import TensoRFField
from nerfstudio.model_components.ray_samplers import UniformLinDispPiecewiseSampler
from nerfstudio.model_components.renderers import RGBRenderer
from nerfstudio.model_components.scene_colliders import NearFarCollider
from nerfstudio.models.tensorf import TensoRFModel, TensoRFModelConfig

CONTRACTED_AABB = ((-2.0, -2.0, -2.0), (2.0, 2.0, 2.0))
"""SceneContraction's image: the cube the VM planes span."""


class ContractedTensoRFField(TensoRFField):
    """``TensoRFField`` whose positions go through the scene box and a scene contraction first."""

    def __init__(self, scene_aabb: Tensor, **kwargs) -> None:
        super().__init__(aabb=torch.tensor(CONTRACTED_AABB, dtype=torch.float32), **kwargs)
        self.register_buffer("scene_aabb", scene_aabb.detach().clone().float())
        self.contraction = SceneContraction(order=float("inf"))

    def contract(self, positions: Tensor) -> Tensor:
        """World positions -> the contracted cube [-2, 2]^3 (the scene box maps to [-1, 1]^3)."""
        unit = SceneBox.get_normalized_positions(positions, self.scene_aabb) * 2.0 - 1.0
        return self.contraction(unit)

    def _contracted_samples(self, ray_samples: RaySamples) -> RaySamples:
        # the stock field reads frustums.get_positions() (origin + direction * mid distance) and
        # the directions: a frustum at the contracted position with zero length gives both
        positions = self.contract(ray_samples.frustums.get_positions())
        zeros = torch.zeros_like(ray_samples.frustums.starts)
        frustums = Frustums(
            origins=positions,
            directions=ray_samples.frustums.directions,
            starts=zeros,
            ends=zeros,
            pixel_area=ray_samples.frustums.pixel_area,
        )
        return RaySamples(frustums=frustums, camera_indices=ray_samples.camera_indices, deltas=ray_samples.deltas)

    def get_density(self, ray_samples: RaySamples) -> Tensor:
        return super().get_density(self._contracted_samples(ray_samples))

    def get_outputs(self, ray_samples: RaySamples, density_embedding: Optional[Tensor] = None) -> Tensor:
        return super().get_outputs(self._contracted_samples(ray_samples), density_embedding)


@dataclass
class UnboundedTensoRFModelConfig(TensoRFModelConfig):
    """TensoRF with nerfacto's scene contraction and sampling, for captures with a background."""

    _target: Type = field(default_factory=lambda: UnboundedTensoRFModel)
    near_plane: float = 0.05
    """Where rays start (scene units after nerfstudio's pose normalisation)."""
    far_plane: float = 1000.0
    """Where rays end: far enough that the contracted samples reach the edge of [-2, 2]^3."""
    background_color: Literal["random", "last_sample", "black", "white"] = "last_sample"
    """The colour of the farthest sample, as nerfacto's."""


class UnboundedTensoRFModel(TensoRFModel):
    """Stock ``TensoRFModel`` over contracted space. See :class:`UnboundedTensoRFModelConfig`."""

    config: UnboundedTensoRFModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        stock = self.field
        self.field = ContractedTensoRFField(
            scene_aabb=self.scene_box.aabb,
            feature_encoding=stock.feature_encoding,
            direction_encoding=stock.direction_encoding,
            density_encoding=stock.density_encoding,
            color_encoding=stock.color_encoding,
            appearance_dim=self.appearance_dim,
            head_mlp_num_layers=2,
            head_mlp_layer_width=128,
            use_sh=False,
        )
        self.sampler_uniform = UniformLinDispPiecewiseSampler(num_samples=self.config.num_uniform_samples, single_jitter=True)
        self.collider = NearFarCollider(near_plane=self.config.near_plane, far_plane=self.config.far_plane)
        self.renderer_rgb = RGBRenderer(background_color=self.config.background_color)

