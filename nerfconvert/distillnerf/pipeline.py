"""The DistillNeRF pipeline: moves whole frames, not ray bundles. A training batch is the N
cameras of one scene at one time step (``DistillNerfDataManager.next_train``); evaluation adds
the previous and next time steps as novel-view targets (Table 1 columns)."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Type

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from nerfstudio.data.scene_box import SceneBox
from nerfstudio.models.base_model import Model
from nerfstudio.pipelines.base_pipeline import Pipeline, VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE

from nerfconvert.distillnerf.model import DistillNerfModel, DistillNerfModelConfig

OFFSET_NAMES = {0: "recon", -1: "prev", 1: "next"}


@dataclass
class DistillNerfPipelineConfig(VanillaPipelineConfig):
    _target: Type = field(default_factory=lambda: DistillNerfPipeline)
    model: DistillNerfModelConfig = field(default_factory=DistillNerfModelConfig)
    eval_max_frames: Optional[int] = None
    """ns-eval: evaluate at most this many validation frames (default: all)."""


def eval_batch(cameras, batch: Dict[str, Any]) -> Dict[str, Any]:
    """The batch with the input frame itself as the first target (reconstruction), then the
    batch's other targets (novel views at neighbouring time steps)."""
    recon = {k: batch[k] for k in ("image", "lidar_depth", "dense_depth", "sky_mask", "gt_depth") if k in batch}
    recon.update(offset=0, cameras=cameras)
    others = [t for t in batch.get("targets", []) if int(t.get("offset", 0)) != 0]
    return {**batch, "targets": [recon] + others}


class DistillNerfPipeline(VanillaPipeline):
    """See the module docstring. DDP is wrapped here (CPU gloo or CUDA nccl)."""

    config: DistillNerfPipelineConfig
    _model: DistillNerfModel

    def __init__(self, config: DistillNerfPipelineConfig, device: str, test_mode: Literal["test", "val", "inference"] = "val",
                 world_size: int = 1, local_rank: int = 0, grad_scaler=None) -> None:
        Pipeline.__init__(self)
        self.config = config
        self.test_mode = test_mode
        self.datamanager = config.datamanager.setup(
            device=device, test_mode=test_mode, world_size=world_size, local_rank=local_rank
        )
        self.datamanager.to(device)
        num_cameras = getattr(self.datamanager.config, "num_cameras", None)
        if num_cameras:
            config.model.num_cameras = int(num_cameras)
        dataset = getattr(self.datamanager, "train_dataset", None)
        scene_box = getattr(dataset, "scene_box", None)
        if scene_box is None:
            inner = torch.tensor(config.model.inner_range)
            scene_box = SceneBox(aabb=torch.stack([-inner, inner]))
        self._model = config.model.setup(
            scene_box=scene_box,
            num_train_data=len(dataset) if dataset is not None else 1,
            metadata={},
            device=device,
            grad_scaler=grad_scaler,
        )
        self.model.to(device)
        self.world_size = world_size
        if world_size > 1:
            # device_ids only for CUDA: DDP rejects them for CPU modules (gloo)
            ids = [local_rank] if str(device).startswith("cuda") else None
            self._model = typing.cast(Model, DDP(self._model, device_ids=ids, find_unused_parameters=True))
            dist.barrier()

    # ---- training ----------------------------------------------------------------------------
    def get_train_loss_dict(self, step: int):
        cameras, batch = self.datamanager.next_train(step)
        outputs = self._model(cameras, batch)  # through DDP when world_size > 1
        metrics = self.model.get_metrics_dict(outputs, batch)
        losses = self.model.get_loss_dict(outputs, batch, metrics)
        return outputs, losses, metrics

    def forward(self):
        raise NotImplementedError("use get_train_loss_dict")

    # ---- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def get_eval_loss_dict(self, step: int):
        self.eval()
        cameras, batch = self.datamanager.next_eval(step)
        outputs = self.model(cameras, batch)
        metrics = self.model.get_metrics_dict(outputs, batch)
        losses = self.model.get_loss_dict(outputs, batch, metrics)
        self.train()
        return outputs, losses, metrics

    @torch.no_grad()
    def evaluate_frame(self, cameras, batch) -> Tuple[Dict[str, float], Dict[str, torch.Tensor]]:
        """Reconstruction and novel-view metrics of one frame, and a picture of each target row."""
        batch = eval_batch(cameras, batch)
        outputs = self.model(cameras, batch)
        metrics: Dict[str, float] = {}
        images: Dict[str, torch.Tensor] = {}
        for render, target in zip(outputs["renders"], batch["targets"]):
            offset = int(target.get("offset", 0))
            name = OFFSET_NAMES.get(offset, f"offset{offset:+d}")
            for key, value in self.model.render_metrics(render, target).items():
                metrics[f"{name}_{key}"] = value
            gt = target["image"].to(self.device).float()
            images[name] = torch.cat([gt.flatten(0, 1), render["rgb"].clamp(0, 1).flatten(0, 1)], dim=1)
        metrics["psnr"] = metrics["recon_psnr"]
        metrics["ssim"] = metrics["recon_ssim"]
        metrics["num_rays"] = float(sum(t["image"].shape[0] * t["image"].shape[1] * t["image"].shape[2]
                                        for t in batch["targets"]))  # the trainer's rays/s figure
        return metrics, images

    @torch.no_grad()
    def get_eval_image_metrics_and_images(self, step: int):
        self.eval()
        cameras, batch = self.datamanager.next_eval(step)
        metrics, images = self.evaluate_frame(cameras, batch)
        self.train()
        return metrics, images

    @torch.no_grad()
    def get_average_eval_image_metrics(self, step: Optional[int] = None, output_path: Optional[Path] = None,
                                       get_std: bool = False):
        """Mean (and std) of every metric over the validation frames: ``recon_*`` on the input
        cameras, ``prev_*`` / ``next_*`` on the previous / next time step's cameras."""
        self.eval()
        per_frame: List[Dict[str, float]] = []
        for cameras, batch in eval_frames(self.datamanager, self.config.eval_max_frames):
            metrics, images = self.evaluate_frame(cameras, batch)
            per_frame.append(metrics)
            if output_path is not None:
                import torchvision.utils as vutils

                output_path.mkdir(parents=True, exist_ok=True)
                for name, image in images.items():
                    vutils.save_image(image.permute(2, 0, 1).cpu(),
                                      output_path / f"{batch.get('scene', 'scene')}_{batch.get('time', 0)}_{name}.png")
        self.train()
        if not per_frame:
            CONSOLE.print("[yellow]No validation frames to evaluate.[/yellow]")
            return {}
        keys = sorted({k for m in per_frame for k in m} - {"num_rays"})
        result: Dict[str, float] = {}
        for key in keys:
            values = torch.tensor([m[key] for m in per_frame if key in m], dtype=torch.float64)
            values = values[~torch.isnan(values)]
            if values.numel() == 0:
                continue
            result[key] = float(values.mean())
            if get_std:
                result[f"{key}_std"] = float(values.std()) if values.numel() > 1 else 0.0
        result["num_frames"] = float(len(per_frame))
        return result


def eval_frames(datamanager: Any, limit: Optional[int] = None):
    """Every validation frame once, as (cameras, batch)."""
    count = int(getattr(datamanager, "num_eval_frames", 1))
    iterator = (datamanager.next_eval(i) for i in range(count))
    for i, item in enumerate(iterator):
        if limit is not None and i >= limit:
            break
        yield item
