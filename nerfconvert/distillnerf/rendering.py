"""Volume rendering from the sparse voxels (Sec. 3.1, Fig. 1 right): two-phase sampling
(uniform in parameterized depth, then importance, with nerfstudio's samplers), feature images
at reduced resolution plus expected depth, and a CNN decoder that upsamples them to RGB."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.model_components.ray_samplers import PDFSampler, SpacedSampler

from nerfconvert.distillnerf.backbone import conv_block
from nerfconvert.distillnerf.fusion import SparseVoxels
from nerfconvert.distillnerf.param_space import contract_depth, uncontract_depth


class VoxelRenderer(nn.Module):
    """Samples rays through a :class:`SparseVoxels` scene and composites density and features."""

    def __init__(self, num_uniform: int, num_importance: int, near: float, far: float, depth_inner: float,
                 alpha: float) -> None:
        super().__init__()
        self.near, self.far = near, far
        # phase 1: uniform in the parameterized depth of Eq. 3 (dense near the car, sparse far away)
        self.uniform_sampler = SpacedSampler(
            spacing_fn=lambda t: contract_depth(t, depth_inner, alpha),
            spacing_fn_inv=lambda s: uncontract_depth(s, depth_inner, alpha),
            num_samples=num_uniform,
            train_stratified=True,
        )
        # phase 2: importance samples from the first phase's weights
        self.importance_sampler = PDFSampler(num_samples=num_importance, include_original=True)
        self.num_importance = num_importance

    def forward(self, scene: SparseVoxels, origins: Tensor, directions: Tensor, directions_norm: Tensor
                ) -> Dict[str, Tensor]:
        """Rays [R, 3] -> features [R, 2C], accumulation [R, 1], depth (along the ray) and
        z-depth [R, 1], and the sample weights [R, S, 1]."""
        ones = torch.ones_like(origins[..., :1])
        bundle = RayBundle(
            origins=origins, directions=directions, pixel_area=ones, nears=ones * self.near, fars=ones * self.far,
            metadata={"directions_norm": directions_norm},
        )
        samples = self.uniform_sampler(bundle)
        if self.num_importance > 0:
            with torch.no_grad():
                density, _ = scene.query(samples.frustums.get_positions())
                weights = samples.get_weights(density)
            samples = self.importance_sampler(bundle, samples, weights)
        density, feats = scene.query(samples.frustums.get_positions())
        weights = samples.get_weights(density)  # [R, S, 1]
        accumulation = weights.sum(dim=-2)
        mid = (samples.frustums.starts + samples.frustums.ends) * 0.5
        # what the ray does not hit sits at the far plane, as in the lifting's Eq. 2
        depth = (weights * mid).sum(dim=-2) + (1.0 - accumulation).clamp_min(0.0) * self.far
        return {
            "features": (weights * feats).sum(dim=-2),
            "accumulation": accumulation,
            "depth": depth,
            "z_depth": depth / directions_norm,
            "weights": weights,
        }


class RGBDecoder(nn.Module):
    """Feature image at 1/``upsample`` resolution (+ accumulation) -> RGB at full resolution."""

    def __init__(self, in_channels: int, channels: int, upsample: int) -> None:
        super().__init__()
        if upsample < 1 or upsample & (upsample - 1):
            raise ValueError(f"render_downsample must be a power of two, got {upsample}")
        self.inp = conv_block(in_channels, channels)
        self.ups = nn.ModuleList([conv_block(channels, channels) for _ in range(int(math.log2(upsample)))])
        self.out = nn.Conv2d(channels, 3, 1)

    def forward(self, features: Tensor, size: Tuple[int, int]) -> Tensor:
        """features [N, C, h, w] -> rgb [N, H, W, 3] in [0, 1]."""
        x = self.inp(features)
        for up in self.ups:
            x = up(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.out(x)).permute(0, 2, 3, 1)


@dataclass
class VoxelSceneSettings:
    """What a predicted scene needs to be rendered: shared by the ``distillnerf`` model (which
    predicts it) and ``distillnerf-scene`` (which shows one), so a prediction renders with the
    settings it was trained with."""

    depth_range: Tuple[float, float] = (0.5, 1000.0)
    """Nearest and farthest depth (m) of the bins; also the rendering near/far planes."""
    inner_range: Tuple[float, float, float] = (50.0, 50.0, 6.4)
    """p_inner (Eq. 3): half-extent in metres of the real-scale inner region, ego x, y, z."""
    alpha: float = 0.8
    """alpha (Eq. 3): share of the parameterized space given to the inner region."""
    coarse_resolution: Tuple[int, int, int] = (32, 32, 16)
    """Voxels per axis of the coarse level over the whole parameterized space."""
    fine_resolution: Tuple[int, int, int] = (128, 128, 64)
    """Voxels per axis of the fine level (a multiple of the coarse one)."""
    voxel_channels: int = 16
    """Feature channels per voxel, each level."""
    num_uniform_samples: int = 32
    """Phase 1 samples per ray, uniform in parameterized depth."""
    num_importance_samples: int = 16
    """Phase 2 samples per ray, importance-sampled from phase 1."""
    render_downsample: int = 4
    """Feature images are rendered at 1/this of the image resolution; the decoder upsamples them."""
    decoder_channels: int = 16
    """Channels of the CNN decoder."""

    @property
    def depth_inner(self) -> float:
        """Depth (m) up to which the parameterized depth is at real scale."""
        return float(min(self.inner_range[0], self.inner_range[1]))

    def scene_settings(self) -> Dict:
        return {f.name: getattr(self, f.name) for f in fields(VoxelSceneSettings)}

    def build_rendering(self) -> Tuple[VoxelRenderer, RGBDecoder, nn.Linear]:
        """The renderer, the CNN decoder and the per-ray colour head (reduced resolution, point clouds)."""
        renderer = VoxelRenderer(self.num_uniform_samples, self.num_importance_samples, self.depth_range[0],
                                 self.depth_range[1], self.depth_inner, self.alpha)
        decoder = RGBDecoder(2 * self.voxel_channels + 1, self.decoder_channels, self.render_downsample)
        return renderer, decoder, nn.Linear(2 * self.voxel_channels, 3)
