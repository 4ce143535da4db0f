"""``distillnerf-scene``: one scene predicted by DistillNeRF, as an ordinary nerfstudio model.

``nerfconvert distillnerf-predict`` writes it: its checkpoint holds the predicted sparse voxels
(fine keys, densities and features, the coarse grid, the ego pose) and the renderer and
decoder weights. Stock ``ns-viewer`` renders cameras through the CNN decoder
(``get_outputs_for_camera``); ray batches (``ns-export pointcloud``) get the per-ray colour,
the expected depth along the ray and the accumulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Type

import torch
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.models.base_model import Model, ModelConfig

from nerfconvert.distillnerf.fusion import SparseVoxels
from nerfconvert.distillnerf.lifting import pixel_rays
from nerfconvert.distillnerf.rendering import VoxelSceneSettings

SCENE_BUFFERS = ("fine_keys", "fine_density", "fine_features", "coarse_keys", "coarse_density", "coarse_features", "ego_to_world")


@dataclass
class DistillNerfSceneModelConfig(ModelConfig, VoxelSceneSettings):
    """A predicted DistillNeRF scene (written by ``nerfconvert distillnerf-predict``; the voxels
    come from its checkpoint, so training this method from scratch gives an empty scene)."""

    _target: Type = field(default_factory=lambda: DistillNerfSceneModel)


class DistillNerfSceneModel(Model):
    config: DistillNerfSceneModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        self.renderer, self.decoder, self.ray_rgb = cfg.build_rendering()
        c = cfg.voxel_channels
        self.register_buffer("fine_keys", torch.zeros(0, dtype=torch.long))
        self.register_buffer("fine_density", torch.zeros(0))
        self.register_buffer("fine_features", torch.zeros(0, c))
        self.register_buffer("coarse_keys", torch.zeros(0, dtype=torch.long))
        self.register_buffer("coarse_density", torch.zeros(0))
        self.register_buffer("coarse_features", torch.zeros(0, c))
        self.register_buffer("ego_to_world", torch.eye(4))

        from torchmetrics.functional import structural_similarity_index_measure
        from torchmetrics.image import PeakSignalNoiseRatio

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = structural_similarity_index_measure

    def load_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True, assign: bool = False):  # type: ignore[override]
        # the number of occupied fine voxels differs per scene: size the buffers to the checkpoint
        for name in SCENE_BUFFERS:
            if name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[name], device=getattr(self, name).device))
        return super().load_state_dict(state_dict, strict=strict)

    @property
    def scene(self) -> SparseVoxels:
        cfg = self.config
        return SparseVoxels(
            fine_keys=self.fine_keys, fine_density=self.fine_density, fine_features=self.fine_features,
            coarse_keys=self.coarse_keys, coarse_density=self.coarse_density, coarse_features=self.coarse_features, ego_to_world=self.ego_to_world,
            fine_resolution=tuple(cfg.fine_resolution), coarse_resolution=tuple(cfg.coarse_resolution),
            inner_range=tuple(cfg.inner_range), alpha=cfg.alpha,
        )

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        return {"decoder": list(self.decoder.parameters()) + list(self.ray_rgb.parameters())}

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        shape = ray_bundle.origins.shape[:-1]
        metadata = ray_bundle.metadata or {}
        norms = metadata.get("directions_norm", torch.ones_like(ray_bundle.origins[..., :1]))
        out = self.renderer(self.scene, ray_bundle.origins.reshape(-1, 3), ray_bundle.directions.reshape(-1, 3),
                            norms.reshape(-1, 1))
        return {
            "rgb": torch.sigmoid(self.ray_rgb(out["features"])).view(*shape, 3),
            "depth": out["depth"].view(*shape, 1),
            "accumulation": out["accumulation"].view(*shape, 1),
        }

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box=None) -> Dict[str, Tensor]:
        """One camera: features rendered at 1/render_downsample, RGB from the CNN decoder."""
        camera = camera.to(self.device)
        if camera.shape == ():
            camera = camera.reshape((1,))
        height, width = int(camera.height.view(-1)[0]), int(camera.width.view(-1)[0])
        ds = self.config.render_downsample
        # at least 2x2 features: the decoder's GroupNorm needs more than one value per channel, and the
        # web viewer asks for frames of a few pixels while the camera moves on a slow machine
        h, w = max(2, math.ceil(height / ds)), max(2, math.ceil(width / ds))
        origins, directions, norms = pixel_rays(camera[0:1], h, w)
        out = self.renderer(self.scene, origins.view(-1, 3), directions.view(-1, 3), norms.view(-1, 1))
        feats = out["features"].view(1, h, w, -1)
        acc = out["accumulation"].view(1, h, w, 1)
        rgb = self.decoder(torch.cat([feats, acc], dim=-1).permute(0, 3, 1, 2), (height, width))[0]

        def up(x: Tensor) -> Tensor:
            return torch.nn.functional.interpolate(x.view(1, 1, h, w), size=(height, width), mode="bilinear",
                                                   align_corners=False)[0].permute(1, 2, 0)

        return {"rgb": rgb, "depth": up(out["depth"]), "accumulation": up(out["accumulation"])}

    def get_rgba_image(self, outputs: Dict[str, Tensor], output_name: str = "rgb") -> Tensor:
        """RGB with the accumulation as alpha (ns-export keeps points with alpha > 0.5)."""
        return torch.cat([outputs[output_name], outputs["accumulation"]], dim=-1)

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        image = batch["image"].to(self.device)[..., :3]
        return {"rgb_loss": torch.nn.functional.mse_loss(outputs["rgb"], image)}

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        return {"psnr": self.psnr(outputs["rgb"], batch["image"].to(self.device)[..., :3])}

    def get_image_metrics_and_images(self, outputs, batch):
        gt = batch["image"].to(self.device)[..., :3].permute(2, 0, 1)[None]
        pred = outputs["rgb"].clamp(0, 1).permute(2, 0, 1)[None]
        metrics = {"psnr": float(self.psnr(pred, gt)), "ssim": float(self.ssim(pred, gt, data_range=1.0))}
        return metrics, {"img": torch.cat([gt[0], pred[0]], dim=2).permute(1, 2, 0)}
