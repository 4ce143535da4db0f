"""The ``plenoxels`` nerfstudio method: a dense voxel grid with SH colour, no MLP.

Sampling: rays are clipped to the bounding box of the occupied vertices (inside the scene
box) and marched with a constant step of ``step_ratio`` voxels. Density is looked up only for
samples in cells with an occupied corner; colour (the expensive 27-channel lookup) only for
samples whose weight is above ``color_weight_threshold`` while training (DVGO's "fast colour
threshold") and for every sample with a non-zero weight at inference, so renders are exact.
Colours are composited packed, with nerfstudio's RGBRenderer.

Training: MSE on rgb + total variation on density and SH + a Cauchy sparsity term on the
sampled densities (Plenoxels), coarse-to-fine upsampling and pruning via training callbacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, Type, cast

import torch
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.camera_optimizers import CameraOptimizer, CameraOptimizerConfig
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.configs.config_utils import to_immutable_dict
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.model_components.losses import MSELoss
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer
from nerfstudio.model_components.scene_colliders import AABBBoxCollider
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps, misc

from nerfconvert.plenoxels.field import DensityActivation, PlenoxelsField
from nerfconvert.schedules import distinct_increasing, run_length, steps_at

DEFAULT_RUN_LENGTH = 1000
"""Run length the schedule fractions refer to when no trainer says (the method's default)."""

GRID_PARAM_GROUPS = ("density", "sh")


@dataclass
class FusedAdamOptimizerConfig(AdamOptimizerConfig):
    """Adam with torch's fused kernel: one pass over a multi-million-entry grid instead of a
    dozen (about 10x faster per step on CPU for a 128^3 x 28 grid)."""

    fused: Optional[bool] = True
    """Use the fused implementation (CPU and CUDA, torch >= 2.4)."""


@dataclass
class PlenoxelsModelConfig(ModelConfig):
    """Plenoxels-style voxel grid: density + SH coefficients per vertex, trilinear, no MLP."""

    _target: Type = field(default_factory=lambda: PlenoxelsModel)
    grid_resolutions: Tuple[int, ...] = (32, 64, 96)
    """Vertices per axis, coarse to fine. The grid starts at the first and is upsampled to the next at each upsampling point."""
    upsample_fractions: Tuple[float, ...] = (0.1, 0.3)
    """Fractions of --max-num-iterations after which the grid is upsampled (one fewer than grid_resolutions)."""
    prune_fractions: Tuple[float, ...] = (0.1, 0.3, 0.6)
    """Fractions of --max-num-iterations after which empty vertices are pruned (before an upsample at the same step)."""
    upsample_iters: Optional[Tuple[int, ...]] = None
    """Absolute steps after which the grid is upsampled; overrides upsample_fractions."""
    prune_iters: Optional[Tuple[int, ...]] = None
    """Absolute steps after which empty vertices are pruned; overrides prune_fractions."""
    prune_alpha_threshold: float = 1e-2
    """A vertex is empty when 1 - exp(-density * voxel_size) is below this."""
    prune_dilation: int = 1
    """Vertices within this many voxels of a non-empty one are kept."""
    sh_degree: int = 2
    """Spherical-harmonic degree of the colour (2 -> 9 coefficients per colour channel)."""
    density_activation: DensityActivation = "exp"
    """Raw grid value -> density: exp (default: log-scale like nerfacto, fast with Adam), relu (Plenoxels) or softplus (DVGO)."""
    init_raw_density: float = -3.0
    """Initial raw density of every vertex (exp(-3) = 0.05: nearly transparent)."""
    empty_raw_density: float = -100.0
    """Raw density of pruned vertices and of points outside the scene box (activates to ~0)."""
    step_ratio: float = 0.5
    """Distance between samples along a ray, in voxels of the current grid."""
    max_num_samples: int = 512
    """Cap on samples per ray (the step grows for a batch that would need more)."""
    color_weight_threshold: float = 1e-3
    """While training, colour is evaluated only at samples with at least this weight. Must stay below the opacity of one step through the initial density, or no sample gets colour and training cannot start."""
    tv_density_range: Optional[Tuple[float, float]] = (-2.0, 7.0)
    """Raw-density range seen by the TV term (PVD's [a, b], Eq. 8); None for no clamping."""
    tv_num_voxels: int = 2**14
    """Cells per step used for the total-variation terms (all cells when the grid has fewer)."""
    loss_coefficients: Dict[str, float] = to_immutable_dict(
        {"rgb_loss": 1.0, "tv_density": 1e-3, "tv_sh": 1e-3, "sparsity": 1e-4}
    )
    """Weights of the losses: rgb MSE, TV on raw density, TV on SH, Cauchy sparsity on density."""
    collider_params: Optional[Dict[str, float]] = to_immutable_dict({"near_plane": 0.0, "far_plane": 1000.0})
    """Rays are clipped to the scene box; near_plane cuts samples closer to the camera while training (far_plane is unused: the box gives the far end)."""
    background_color: Literal["random", "black", "white"] = "white"
    """Background colour (blender scenes: white)."""
    camera_optimizer: CameraOptimizerConfig = field(default_factory=lambda: CameraOptimizerConfig(mode="off"))
    """Camera pose refinement (off: synthetic poses are exact)."""

    def schedule(self, total_steps: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """(prune steps, upsample steps) of a run of ``total_steps``: the absolute options when
        given, else the fractions of the run."""
        cfg = self
        prune = cfg.prune_iters if cfg.prune_iters is not None else steps_at(cfg.prune_fractions, total_steps)
        if cfg.upsample_iters is not None:
            upsample = tuple(cfg.upsample_iters)
        else:
            upsample = distinct_increasing(steps_at(cfg.upsample_fractions, total_steps))
        return tuple(sorted(set(prune))), tuple(upsample)


class PlenoxelsModel(Model):
    """Voxel-grid radiance field. See :class:`PlenoxelsModelConfig`."""

    config: PlenoxelsModelConfig
    field: PlenoxelsField

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        upsample = cfg.upsample_fractions if cfg.upsample_iters is None else cfg.upsample_iters
        name = "upsample_fractions" if cfg.upsample_iters is None else "upsample_iters"
        if len(cfg.grid_resolutions) != len(upsample) + 1:
            raise ValueError(
                f"grid_resolutions {tuple(cfg.grid_resolutions)} needs exactly one more entry than "
                f"{name} {tuple(upsample)}"
            )
        if list(upsample) != sorted(set(upsample)):
            raise ValueError(f"{name} must be strictly increasing, got {tuple(upsample)}")

        self.field = PlenoxelsField(
            self.scene_box.aabb,
            resolution=cfg.grid_resolutions[0],
            sh_degree=cfg.sh_degree,
            density_activation=cfg.density_activation,
            init_raw_density=cfg.init_raw_density,
            empty_raw_density=cfg.empty_raw_density,
        )
        init_alpha = 1.0 - math.exp(-float(self.field.activate(torch.tensor(cfg.init_raw_density))) * self.step_size)
        if init_alpha <= cfg.color_weight_threshold:
            raise ValueError(
                f"init_raw_density={cfg.init_raw_density} ({cfg.density_activation}) gives one sample an opacity of "
                f"{init_alpha:.2g}, not above color_weight_threshold={cfg.color_weight_threshold}: no sample would get "
                "a colour and training could not start. Raise init_raw_density or lower color_weight_threshold."
            )
        self.renderer_rgb = RGBRenderer(background_color=cfg.background_color)
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer(method="median")
        self.rgb_loss = MSELoss()

        if cfg.enable_collider:
            near = (cfg.collider_params or {}).get("near_plane", 0.0)
            self.collider = AABBBoxCollider(scene_box=self.scene_box, near_plane=near)

        from torchmetrics.functional import structural_similarity_index_measure
        from torchmetrics.image import PeakSignalNoiseRatio

        # No LPIPS: building it downloads AlexNet weights, which fails offline.
        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = structural_similarity_index_measure

        self.camera_optimizer: CameraOptimizer = cfg.camera_optimizer.setup(
            num_cameras=self.num_train_data, device="cpu"
        )

    # ---- parameters and callbacks ------------------------------------------------------------
    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = {"density": [self.field.density_grid], "sh": [self.field.sh_grid]}
        self.camera_optimizer.get_param_groups(param_groups=groups)
        return groups

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        cfg = self.config
        optimizers = training_callback_attributes.optimizers

        def point_optimizers_at_new_grids() -> None:
            # Upsampling made new grid Parameters. Like nerfstudio's tensorf we give the optimizer
            # the new parameters with fresh Adam moments (the old ones have the old shape), but we
            # keep the optimizer and its scheduler, so the learning-rate schedule continues
            # instead of restarting.
            if optimizers is None:
                return
            groups = self.get_param_groups()
            for name in GRID_PARAM_GROUPS:
                optimizer = optimizers.optimizers.get(name)
                if optimizer is None:
                    continue
                for param in optimizer.param_groups[0]["params"]:
                    optimizer.state.pop(param, None)
                optimizer.param_groups[0]["params"] = list(groups[name])
                optimizers.parameters[name] = list(groups[name])

        def prune(step: int) -> None:
            self.field.prune(cfg.prune_alpha_threshold, dilation=cfg.prune_dilation)

        def upsample(step: int) -> None:
            resolution = cfg.grid_resolutions[list(upsample_iters).index(step) + 1]
            self.field.upsample(resolution)
            point_optimizers_at_new_grids()

        def keep_pruned_empty(step: int) -> None:
            self.field.enforce_occupancy_()

        after = [TrainingCallbackLocation.AFTER_TRAIN_ITERATION]
        callbacks = [TrainingCallback(after, keep_pruned_empty, update_every_num_iters=1)]
        prune_iters, upsample_iters = cfg.schedule(run_length(training_callback_attributes, DEFAULT_RUN_LENGTH))
        if prune_iters:
            callbacks.append(TrainingCallback(after, prune, iters=prune_iters))
        if upsample_iters:
            callbacks.append(TrainingCallback(after, upsample, iters=upsample_iters))
        return callbacks

    # ---- sampling and rendering --------------------------------------------------------------
    @property
    def step_size(self) -> float:
        """World-space distance between samples: ``step_ratio`` of the current voxel."""
        return self.config.step_ratio * float(self.field.voxel_size.min())

    def sample(self, ray_bundle: RayBundle) -> RaySamples:
        """The sampler: clip rays to the bounding box of the occupied vertices (inside the scene
        box), then march with a constant step of ``step_ratio`` voxels, one random offset per ray
        while training. Samples past a ray's exit have zero length and zero weight."""
        nears, fars = _intersect_aabb(ray_bundle.origins, ray_bundle.directions, self.field.occupied_aabb)
        if ray_bundle.nears is not None and ray_bundle.fars is not None:
            nears = torch.maximum(nears, ray_bundle.nears)
            fars = torch.minimum(fars, ray_bundle.fars)
        elif self.training:
            nears = nears.clamp(min=(self.config.collider_params or {}).get("near_plane", 0.0))
        fars = torch.maximum(fars, nears)  # a ray that misses the box gets zero length

        step = self.step_size
        longest = float((fars - nears).max()) if nears.numel() else 0.0
        num_samples = max(1, math.ceil(longest / step) + 1)
        if num_samples > self.config.max_num_samples:
            num_samples = self.config.max_num_samples
            step = longest / max(num_samples - 1, 1)
        if self.training:
            offset = torch.rand_like(nears)
        else:
            offset = torch.full_like(nears, 0.5)
        ticks = torch.arange(num_samples + 1, device=nears.device, dtype=nears.dtype) - 1.0
        edges = torch.minimum(torch.maximum(nears + step * (ticks + offset), nears), fars)  # [N, S + 1]
        return ray_bundle.get_ray_samples(bin_starts=edges[..., :-1, None], bin_ends=edges[..., 1:, None])

    def render_density(self, ray_samples: RaySamples, ray_bundle: Optional[RayBundle] = None):
        """Density [N, S, 1] at the samples, with the grid coordinates [N, S, 3] and the flat
        indices of the active samples (positive length, in a cell with an occupied corner)."""
        t = (ray_samples.frustums.starts + ray_samples.frustums.ends) * 0.5
        if ray_bundle is not None:
            coords = self.field.ray_grid_coords(ray_bundle.origins, ray_bundle.directions, t)
        else:
            coords = self.field.grid_coords(ray_samples.frustums.get_positions())[0]
        active = self.field.active_from_coords(coords) & (ray_samples.deltas[..., 0] > 0)
        index = active.view(-1).nonzero().squeeze(-1)
        flat_coords = coords.view(-1, 3)
        raw = torch.full((flat_coords.shape[0], 1), self.field.empty_raw_density, device=coords.device)
        raw = raw.index_copy(0, index, self.field.raw_density_at(flat_coords.index_select(0, index)))
        density = self.field.activate(raw).view(*coords.shape[:-1], 1)
        return density, flat_coords, index

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        if self.training:
            self.camera_optimizer.apply_to_raybundle(ray_bundle)
        ray_samples = self.sample(ray_bundle)
        num_rays, num_samples = ray_samples.shape
        density, flat_coords, index = self.render_density(ray_samples, ray_bundle)
        weights = ray_samples.get_weights(density)

        # Colour (the expensive 27-channel lookup) only where it contributes, packed: while
        # training where the weight is above the threshold (DVGO's fast colour threshold), at
        # inference wherever it is non-zero, which leaves the image unchanged.
        threshold = self.config.color_weight_threshold if self.training else 0.0
        active_weights = weights.view(-1).index_select(0, index)
        keep = active_weights > threshold
        colour_index, colour_weights = index[keep], active_weights[keep]
        ray_index = torch.div(colour_index, num_samples, rounding_mode="floor")
        colour = self.field.colour_at(
            flat_coords.index_select(0, colour_index),
            ray_bundle.directions.reshape(-1, 3).index_select(0, ray_index),
        )
        outputs: Dict[str, Tensor] = {
            "rgb": self.renderer_rgb(
                rgb=colour, weights=colour_weights[:, None], ray_indices=ray_index, num_rays=num_rays
            ),
            "accumulation": self.renderer_accumulation(weights=weights),
        }
        if self.training and torch.is_grad_enabled():
            outputs["active_density"] = density.view(-1).index_select(0, index)  # for the sparsity loss
        else:  # depth is only looked at in renders, skip its cost in training steps
            outputs["depth"] = self.renderer_depth(weights=weights, ray_samples=ray_samples)
        return outputs

    # ---- losses and metrics ------------------------------------------------------------------
    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        gt = self.renderer_rgb.blend_background(batch["image"].to(self.device))
        metrics = {
            "psnr": self.psnr(outputs["rgb"].detach(), gt),
            "grid_resolution": torch.tensor(float(self.field.resolution)),
            "stored_mb": torch.tensor(self.field.stored_bytes() / 1e6),
            "occupied_fraction": torch.tensor(self.field.num_occupied / self.field.resolution**3),
        }
        self.camera_optimizer.get_metrics_dict(metrics)
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        image = batch["image"].to(self.device)
        pred, gt = self.renderer_rgb.blend_background_for_loss_computation(
            pred_image=outputs["rgb"], pred_accumulation=outputs["accumulation"], gt_image=image
        )
        losses = {"rgb_loss": self.rgb_loss(gt, pred)}
        if self.training:
            tv_density, tv_sh = self.field.tv_losses(self.config.tv_num_voxels, self.config.tv_density_range)
            losses["tv_density"] = tv_density
            losses["tv_sh"] = tv_sh
            density = outputs["active_density"]
            # Cauchy sparsity prior on the sampled densities (Plenoxels): log(1 + 2 sigma^2).
            losses["sparsity"] = torch.log1p(2.0 * density**2).mean() if density.numel() else density.sum()
            self.camera_optimizer.get_loss_dict(losses)
        return misc.scale_dict(losses, self.config.loss_coefficients)

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        gt = self.renderer_rgb.blend_background(batch["image"].to(outputs["rgb"].device))
        rgb = outputs["rgb"]
        acc = colormaps.apply_colormap(outputs["accumulation"])
        depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        combined = torch.cat([gt, rgb], dim=1)

        gt_nchw = torch.moveaxis(gt, -1, 0)[None]
        rgb_nchw = torch.moveaxis(rgb, -1, 0)[None]
        metrics = {
            "psnr": float(self.psnr(gt_nchw, rgb_nchw).item()),
            "ssim": float(cast(Tensor, self.ssim(rgb_nchw, gt_nchw)).item()),
            "stored_mb": self.field.stored_bytes() / 1e6,
        }
        self.camera_optimizer.get_metrics_dict(metrics)
        return metrics, {"img": combined, "accumulation": acc, "depth": depth}

    # ---- storage -------------------------------------------------------------------------------
    @property
    def stored_bytes(self) -> int:
        """Bytes of the pruned grid: occupied vertices x (1 + 3K) x 4 + bit-packed mask."""
        return self.field.stored_bytes()


def _intersect_aabb(origins: Tensor, directions: Tensor, aabb: Tensor) -> Tuple[Tensor, Tensor]:
    """Slab test: entry and exit distances [..., 1] of rays through ``aabb`` ([2, 3])."""
    inv = 1.0 / torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0 = (aabb[0] - origins) * inv
    t1 = (aabb[1] - origins) * inv
    nears = torch.minimum(t0, t1).amax(dim=-1, keepdim=True).clamp(min=0.0)
    fars = torch.maximum(t0, t1).amin(dim=-1, keepdim=True)
    return nears, fars
