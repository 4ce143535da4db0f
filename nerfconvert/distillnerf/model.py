"""The ``distillnerf`` model: N posed images of one frame -> a sparse two-level voxel scene in
one forward pass -> rendered RGB and depth for target cameras (Fig. 1).

Unlike a per-scene nerfstudio model it does not consume ray bundles: ``forward(cameras, batch)``
takes a whole frame (see ``DistillNerfPipeline``). ``get_outputs(ray_bundle)`` renders rays
through the most recently predicted scene, so the generic nerfstudio entry points still work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import Parameter

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.configs.config_utils import to_immutable_dict
from nerfstudio.models.base_model import Model, ModelConfig

from nerfconvert import NerfconvertError
from nerfconvert.distillnerf.backbone import ImageEncoder
from nerfconvert.distillnerf.fusion import SparseVoxelFusion, SparseVoxels
from nerfconvert.distillnerf.lifting import DepthLifter, Frustum, pixel_rays
from nerfconvert.distillnerf.losses import block_mean_depth, depth_l1, depth_target, ray_entropy
from nerfconvert.distillnerf.param_space import contract_depth, world_to_ego
from nerfconvert.distillnerf.rendering import VoxelSceneSettings


@dataclass
class DistillNerfModelConfig(ModelConfig, VoxelSceneSettings):
    """DistillNeRF: sparse hierarchical voxels predicted from multi-view images (defaults: tiny
    enough to train on CPU; raise the channels, bins and resolutions on a GPU). The space,
    voxel and rendering settings are ``VoxelSceneSettings``."""

    _target: Type = field(default_factory=lambda: DistillNerfModel)
    num_cameras: int = 6
    """Cameras per input frame. Set from the data manager when training; a frame with fewer is an error."""
    backbone: Literal["small", "resnet18"] = "small"
    """2D backbone: small (from scratch) or torchvision resnet18."""
    pretrained_backbone: bool = True
    """resnet18 only: load ImageNet weights from the local torch hub cache (never downloaded)."""
    backbone_channels: Tuple[int, int, int, int] = (16, 32, 48, 64)
    """Channels of the small backbone's four stages."""
    depth_channels: int = 32
    """Channels of the depth features (depth FPN)."""
    feature_channels: int = 16
    """Channels of the image features phi (feature FPN)."""
    num_depth_bins: int = 32
    """D: categorical depth bins of the coarse stage, uniform in parameterized depth."""
    num_depth_candidates: int = 6
    """D': fine depth candidates around the raw depth."""
    candidate_halfwidth: float = 1.5
    """The candidates span +- this many coarse bins around the raw depth."""
    use_rgb_loss: bool = True
    """L_rgb: MSE of the decoded image (and of the low-resolution per-ray colour)."""
    use_lpips_loss: bool = False
    """Add LPIPS to L_rgb (needs torchmetrics' AlexNet weights locally; skipped with a warning otherwise)."""
    use_lidar_depth: bool = True
    """L_depth: sparse LiDAR depth."""
    use_density_entropy: bool = True
    """L_density: entropy of the ray weights."""
    use_dense_depth: bool = True
    """L_depth': dense depth rendered by the per-scene teachers (distillation). False = the paper's 'no distillation' row."""
    sky_at_far: bool = False
    """Depth targets put sky pixels at the far plane (before issue 28's fix). Off: sky pixels get no depth
    target; the opacity loss makes them transparent instead, so a leak is not a cheap way to fit the sky."""
    use_opacity_loss: bool = True
    """L_opacity (distillation): the rendered accumulation follows the teacher's opacity, 0 on the teacher's
    sky. Closes the holes a leak would leave in front of surfaces the teacher sees as opaque."""
    sky_from_teacher: bool = False
    """The sky of the distillation terms: False = the batch's sky mask where it has one (procedural scenes: the
    generator's, standing in for a sky segmentation; nuScenes: derived from the teacher), else the teacher's;
    True = always the teacher's (see ``teacher_sky_depth``). 80-step CPU teachers put the sky at 5-25 m with
    opacity 1, so their own sky is empty (issue 28's benchmark)."""
    teacher_sky_depth: float = 150.0
    """Teacher pixels deeper than this (metres) or with opacity < 0.5 count as the teacher's sky."""
    train_ray_jitter: bool = True
    """Training renders shift the ray grid by a random whole number of pixels inside a render cell (the targets
    shift with it), so training rays leave the stride-``render_downsample`` lifting grid and the voxels between
    lifting rays are trained too."""
    loss_coefficients: Dict[str, float] = to_immutable_dict(
        {
            "rgb": 1.0,
            "rgb_lowres": 0.5,
            "lpips": 0.1,
            "depth": 0.2,
            "density_entropy": 1e-3,
            "dense_depth": 0.5,
            "opacity": 0.1,
            "virtual": 0.5,
        }
    )
    """Weights of the loss terms. The depth terms apply to the rendered depth and to the lifting's two depth maps;
    ``virtual`` scales every term of a virtual-camera target (the teacher rendered at a shifted rig)."""


class DistillNerfModel(Model):
    """See :class:`DistillNerfModelConfig`."""

    config: DistillNerfModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        depth_inner = self.depth_inner = cfg.depth_inner
        self.encoder = ImageEncoder(cfg.backbone, cfg.backbone_channels, cfg.depth_channels, cfg.feature_channels,
                                    pretrained=cfg.pretrained_backbone)
        self.lifter = DepthLifter(cfg.depth_channels, cfg.num_depth_bins, cfg.num_depth_candidates,
                                  cfg.candidate_halfwidth, cfg.depth_range, depth_inner, cfg.alpha)
        self.fusion = SparseVoxelFusion(cfg.feature_channels + 1, cfg.voxel_channels, cfg.fine_resolution,
                                        cfg.coarse_resolution, cfg.inner_range, cfg.alpha)
        self.renderer, self.decoder, self.ray_rgb = cfg.build_rendering()
        # recorded in checkpoints so that predict can check a frame against the training rig
        self.register_buffer("trained_num_cameras", torch.tensor(cfg.num_cameras))
        self._last_scene: Optional[SparseVoxels] = None

        from torchmetrics.functional import peak_signal_noise_ratio, structural_similarity_index_measure

        self.psnr = lambda a, b: peak_signal_noise_ratio(a, b, data_range=1.0)
        self.ssim = structural_similarity_index_measure
        self.lpips: Optional[nn.Module] = None
        if cfg.use_lpips_loss:
            from nerfconvert import compat

            compat.install()  # offline: LPIPS degrades to "unavailable" instead of failing
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            self.lpips = LearnedPerceptualImagePatchSimilarity(normalize=True)

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        encoder = list(self.encoder.parameters()) + list(self.lifter.parameters())
        field_params = list(self.fusion.parameters())
        decoder = list(self.decoder.parameters()) + list(self.ray_rgb.parameters())
        return {"encoder": encoder, "voxels": field_params, "decoder": decoder}

    # ---- checks --------------------------------------------------------------------------
    def check_frame(self, cameras: Cameras, ego_to_world: Tensor) -> None:
        """A frame must have the training rig's camera count and sit inside the inner region."""
        trained = int(self.trained_num_cameras)
        if cameras.shape[0] != trained:
            raise NerfconvertError(
                f"the frame has {cameras.shape[0]} cameras but this model was trained with {trained}; "
                f"give it a frame from a {trained}-camera rig (missing views cannot be predicted)."
            )
        origins = cameras.camera_to_worlds[:, :3, 3]
        ego = world_to_ego(origins.to(ego_to_world.dtype), ego_to_world)
        inner = torch.as_tensor(self.config.inner_range, dtype=ego.dtype, device=ego.device)
        outside = (ego.abs() > inner).any(dim=-1)
        if bool(outside.any()):
            i = int(outside.nonzero()[0])
            raise NerfconvertError(
                f"camera {i} is at {tuple(round(float(v), 2) for v in ego[i])} m in the ego frame, outside the "
                f"parameterized space's inner region +-{tuple(self.config.inner_range)} m: check the frame's "
                "ego_to_world and that poses are in metres, or train with a larger --pipeline.model.inner-range."
            )

    # ---- the forward pass ----------------------------------------------------------------
    def encode(self, cameras: Cameras, images: Tensor, ego_to_world: Tensor) -> Tuple[SparseVoxels, Frustum]:
        """Lift and fuse one frame: images [N, H, W, 3] -> sparse voxels."""
        cameras = cameras.to(self.device)
        ego_to_world = ego_to_world.to(self.device, torch.float32)
        self.check_frame(cameras, ego_to_world)
        depth_feats, image_feats = self.encoder(images.to(self.device).permute(0, 3, 1, 2).float())
        h, w = depth_feats.shape[-2:]
        origins, directions, norms = pixel_rays(cameras, h, w)
        frustum = self.lifter(depth_feats, image_feats, origins, directions, norms)
        scene = self.fusion(frustum.points, frustum.features, ego_to_world)
        return scene, frustum

    def render_view(self, scene: SparseVoxels, cameras: Cameras, shift: Tuple[int, int] = (0, 0)) -> Dict[str, Tensor]:
        """Render target cameras [N] at reduced resolution, then decode to full-resolution RGB.
        ``shift`` (rows, columns): the ray grid moved by whole pixels (pixel y of the result shows
        pixel y + shift of the camera's image)."""
        cameras = cameras.to(self.device)
        height, width = int(cameras.height.view(-1)[0]), int(cameras.width.view(-1)[0])
        ds = self.config.render_downsample
        h, w = math.ceil(height / ds), math.ceil(width / ds)
        origins, directions, norms = pixel_rays(cameras, h, w, shift)
        n = origins.shape[0]
        out = self.renderer(scene, origins.view(-1, 3), directions.view(-1, 3), norms.view(-1, 1))
        feats = out["features"].view(n, h, w, -1)
        acc = out["accumulation"].view(n, h, w, 1)
        rgb = self.decoder(torch.cat([feats, acc], dim=-1).permute(0, 3, 1, 2), (height, width))
        return {
            "rgb": rgb,
            "rgb_lowres": torch.sigmoid(self.ray_rgb(feats)),
            "accumulation": acc[..., 0],
            "depth": out["depth"].view(n, h, w),
            "z_depth": out["z_depth"].view(n, h, w),
            "weights": out["weights"],
            "shift": torch.tensor(shift),
        }

    def _train_shift(self) -> Tuple[int, int]:
        """A random whole-pixel offset of the ray grid inside one render cell (training only)."""
        ds = self.config.render_downsample
        if not (self.training and self.config.train_ray_jitter) or ds < 2:
            return (0, 0)
        dy, dx = torch.randint(-(ds // 2), ds - ds // 2, (2,)).tolist()
        return (int(dy), int(dx))

    def forward(self, cameras: Any, batch: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:  # type: ignore[override]
        """(cameras, batch) of one frame -> renders for each target in ``batch["targets"]`` (the
        input cameras themselves when there are none). A RayBundle renders the last scene."""
        if isinstance(cameras, RayBundle):
            return self.get_outputs(cameras)
        assert batch is not None
        scene, frustum = self.encode(cameras, batch["image"], batch["ego_to_world"])
        self._last_scene = _detached(scene)
        targets = batch.get("targets") or [{"offset": 0, "cameras": cameras, "image": batch["image"]}]
        renders = [self.render_view(scene, t["cameras"], self._train_shift()) for t in targets]
        return {
            "renders": renders,
            "raw_depth_s": frustum.raw_depth_s,
            "fine_depth_s": frustum.fine_depth_s,
            "raw_depth": frustum.raw_depth,
            "fine_depth": frustum.fine_depth,
        }

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        if self._last_scene is None:
            raise NerfconvertError("no scene has been predicted yet: run the model on a frame first.")
        shape = ray_bundle.origins.shape[:-1]
        norms = (ray_bundle.metadata or {}).get("directions_norm", torch.ones_like(ray_bundle.origins[..., :1]))
        out = self.renderer(self._last_scene, ray_bundle.origins.reshape(-1, 3),
                            ray_bundle.directions.reshape(-1, 3), norms.reshape(-1, 1))
        return {
            "rgb": torch.sigmoid(self.ray_rgb(out["features"])).view(*shape, 3),
            "depth": out["depth"].view(*shape, 1),
            "accumulation": out["accumulation"].view(*shape, 1),
        }

    # ---- losses and metrics ----------------------------------------------------------------
    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        render = outputs["renders"][0]
        target = _targets(batch)[0]
        return {"psnr": self.psnr(render["rgb"].detach(), target["image"].to(self.device))}

    def _sky(self, target: Dict[str, Any]) -> Optional[Tensor]:
        """Sky as the teacher sees it (opacity < 0.5 or beyond ``teacher_sky_depth``), else the batch's mask."""
        opacity, depth = target.get("dense_opacity"), target.get("dense_depth")
        if opacity is not None and depth is not None and (self.config.sky_from_teacher or "sky_mask" not in target):
            return (opacity < 0.5) | (depth > self.config.teacher_sky_depth)
        return target.get("sky_mask")

    def _opacity_term(self, accumulation: Tensor, target: Dict[str, Any]) -> Optional[Tensor]:
        """L_opacity: binary cross-entropy of the rendered accumulation against the teacher's opacity
        (0 on the teacher's sky), both at the render resolution."""
        opacity = target.get("dense_opacity")
        if opacity is None:
            return None
        sky = self._sky(target)
        goal = torch.where(sky.to(self.device), torch.zeros_like(opacity.to(self.device)), opacity.to(self.device).clamp(0, 1))
        goal = F.adaptive_avg_pool2d(goal[:, None].float(), tuple(accumulation.shape[-2:]))[:, 0]
        return F.binary_cross_entropy(accumulation.clamp(1e-4, 1 - 1e-4), goal)

    def _depth_terms(self, pred_s: Tensor, depth: Optional[Tensor], sky: Optional[Tensor]) -> Optional[Tensor]:
        target, valid = depth_target(depth, sky, self.config.depth_range[1], self.config.sky_at_far)
        if target is None:
            return None
        # pooled to the prediction's resolution in parameterized depth: a cell half sky, half
        # at 20 m averages to a finite depth between the two, not to 500 m
        target_s = contract_depth(target.to(self.device), self.depth_inner, self.config.alpha)
        target_s, valid = block_mean_depth(target_s, valid.to(self.device), tuple(pred_s.shape[-2:]))
        return depth_l1(pred_s, target_s, valid)

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        cfg, coef = self.config, self.config.loss_coefficients
        losses: Dict[str, Tensor] = {}

        def add(name: str, value: Optional[Tensor], scale: float = 1.0) -> None:
            if value is not None:
                losses[name] = losses.get(name, 0.0) + scale * coef.get(name, 0.0) * value

        def s(z: Tensor) -> Tensor:
            return contract_depth(z, self.depth_inner, cfg.alpha)

        for render, target in zip(outputs["renders"], _targets(batch)):
            # a virtual camera (the teacher at a shifted rig) weighs coef["virtual"] in every term
            scale = coef.get("virtual", 1.0) if target.get("virtual") else 1.0
            target = shift_target(target, render.get("shift"))
            image = target["image"].to(self.device).float()
            if cfg.use_rgb_loss:  # L_rgb
                add("rgb", F.mse_loss(render["rgb"], image), scale)
                small = F.adaptive_avg_pool2d(image.permute(0, 3, 1, 2), render["rgb_lowres"].shape[1:3])
                add("rgb_lowres", F.mse_loss(render["rgb_lowres"], small.permute(0, 2, 3, 1)), scale)
                if cfg.use_lpips_loss and self.lpips is not None and not _unavailable(self.lpips):
                    add("lpips", self.lpips(render["rgb"].permute(0, 3, 1, 2).clamp(0, 1), image.permute(0, 3, 1, 2)), scale)
            sky = self._sky(target)
            if cfg.use_lidar_depth:  # L_depth
                add("depth", self._depth_terms(s(render["z_depth"]), target.get("lidar_depth"), None), scale)
            if cfg.use_dense_depth:  # L_depth', distilled from the per-scene teachers
                add("dense_depth", self._depth_terms(s(render["z_depth"]), target.get("dense_depth"), sky), scale)
                if cfg.use_opacity_loss:  # the teachers' opacity: no holes where they see a surface
                    add("opacity", self._opacity_term(render["accumulation"], target), scale)
            if cfg.use_density_entropy:  # L_density
                add("density_entropy", ray_entropy(render["weights"]), scale)

        # the lifting's own depth maps (input cameras): the only signal that places the candidates
        for key in ("raw_depth_s", "fine_depth_s"):
            if cfg.use_lidar_depth:
                add("depth", self._depth_terms(outputs[key], batch.get("lidar_depth"), None))
            if cfg.use_dense_depth:
                add("dense_depth", self._depth_terms(outputs[key], batch.get("dense_depth"), self._sky(batch)))
        if not losses:
            raise NerfconvertError(
                "every loss term is switched off or has no target in the batch; enable at least "
                "--pipeline.model.use-rgb-loss."
            )
        return losses

    @torch.no_grad()
    def render_metrics(self, render: Dict[str, Tensor], target: Dict[str, Any]) -> Dict[str, float]:
        """PSNR / SSIM (/ LPIPS) of one render against its target, plus depth AbsRel when the
        target has ground-truth depth."""
        pred = render["rgb"].clamp(0, 1).permute(0, 3, 1, 2)
        gt = target["image"].to(self.device).float().permute(0, 3, 1, 2)
        metrics = {"psnr": float(self.psnr(pred, gt)), "ssim": float(self.ssim(pred, gt, data_range=1.0))}
        if self.lpips is not None and not _unavailable(self.lpips):
            metrics["lpips"] = float(self.lpips(pred, gt))
        gt_depth = target.get("gt_depth")
        if gt_depth is not None:
            metrics["depth_abs_rel"] = depth_abs_rel(render["z_depth"], gt_depth.to(self.device), target.get("sky_mask"))
        return metrics

    def get_image_metrics_and_images(self, outputs, batch):
        render, target = outputs["renders"][0], _targets(batch)[0]
        metrics = self.render_metrics(render, target)
        gt = target["image"].to(self.device).float()
        images = {"img": torch.cat([gt.flatten(0, 1), render["rgb"].flatten(0, 1)], dim=1)}
        return metrics, images


def depth_abs_rel(pred_z: Tensor, gt_z: Tensor, sky: Optional[Tensor] = None, max_depth: float = 80.0) -> float:
    """AbsRel = mean |d - d*| / d* over pixels with ground truth in (0, max_depth] and not sky;
    ``pred_z`` may be at a lower resolution (the ground truth is block-averaged to it, and only
    cells entirely covered by ground truth count)."""
    valid = (gt_z > 0) & (gt_z <= max_depth)
    if sky is not None:
        valid = valid & ~sky.to(gt_z.device, torch.bool)
    # only cells whose pixels all have ground truth: a cell straddling the sky line has no single depth
    gt_small, valid_small = block_mean_depth(gt_z, valid, tuple(pred_z.shape[-2:]), min_fraction=0.999)
    if not bool(valid_small.any()):
        return float("nan")
    return float(((pred_z - gt_small).abs() / gt_small)[valid_small].mean())


def shift_target(target: Dict[str, Any], shift: Optional[Tensor]) -> Dict[str, Any]:
    """A target's images and depth maps moved as the ray grid was (``render_view``'s ``shift``): pixel y
    becomes pixel y + shift, rows and columns past the border repeat the last one."""
    if shift is None or not bool(shift.any()):
        return target
    dy, dx = (int(v) for v in shift.tolist())
    out = dict(target)
    for key in ("image", "lidar_depth", "dense_depth", "dense_opacity", "sky_mask", "gt_depth"):
        value = target.get(key)
        if value is None:
            continue
        h, w = value.shape[1], value.shape[2]
        rows = (torch.arange(h, device=value.device) + dy).clamp(0, h - 1)
        cols = (torch.arange(w, device=value.device) + dx).clamp(0, w - 1)
        out[key] = value[:, rows][:, :, cols]
    return out


def _targets(batch: Dict[str, Any]) -> List[Dict[str, Any]]:
    return batch.get("targets") or [batch]


def _unavailable(lpips: nn.Module) -> bool:
    return type(lpips).__name__ == "UnavailableLPIPS"


def _detached(scene: SparseVoxels) -> SparseVoxels:
    return SparseVoxels(**{**scene.__dict__, **{k: v.detach() for k, v in scene.to_state().items()}})
