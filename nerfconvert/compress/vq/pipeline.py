"""The vq-compression pipeline: in training mode it reads the teacher run, computes importance
over the training rays and builds the codebooks before the joint fine-tuning starts. In the
viewer, ns-eval and ns-export it only decodes the checkpoint's ``.ncz``."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Optional, Type

import torch

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE

from nerfconvert import NerfconvertError


@dataclass
class VQCompressionPipelineConfig(VanillaPipelineConfig):
    _target: Type = field(default_factory=lambda: VQCompressionPipeline)
    teacher_ckpt: Optional[Path] = None
    """config.yml of the trained run to compress (plenoxels, tensorf or nerfacto). Only read."""


def training_ray_bundles(datamanager, device, rays_per_batch: int, max_rays: Optional[int], seed: int = 0) -> Iterator[RayBundle]:
    """Every pixel of every training image (or ``max_rays`` of them at random), in batches."""
    cameras = datamanager.train_dataset.cameras.to(device)
    bundles = [cameras.generate_rays(camera_indices=i, keep_shape=True).flatten() for i in range(len(cameras))]
    total = sum(len(b) for b in bundles)
    order = None
    if max_rays is not None and max_rays < total:
        order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:max_rays].sort().values
    offset = 0
    for bundle in bundles:
        n = len(bundle)
        if order is None:
            index = torch.arange(n)
        else:
            index = order[(order >= offset) & (order < offset + n)] - offset
        offset += n
        for start in range(0, len(index), rays_per_batch):
            yield bundle[index[start : start + rays_per_batch].to(bundle.origins.device)]


def _teacher_step(config_path: Path) -> int:
    from nerfconvert.views.registry import _latest_checkpoint, _read_run_config

    _, config = _read_run_config(config_path)
    name = _latest_checkpoint(config).stem  # step-000001000
    return int(name.split("-")[-1])


def _importance_key(config_path: Path, datamanager, max_rays: Optional[int], seed: int) -> str:
    """Importance depends on the teacher's weights and on the rays: hash both."""
    from nerfconvert.views.registry import _latest_checkpoint, _read_run_config

    _, config = _read_run_config(config_path)
    h = hashlib.sha256()
    with open(_latest_checkpoint(config), "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    cameras = datamanager.train_dataset.cameras
    h.update(cameras.camera_to_worlds.cpu().numpy().tobytes())
    h.update(f"{cameras.width.sum().item()}x{cameras.height.sum().item()}|{max_rays}|{seed}|v1".encode())
    return h.hexdigest()[:32]


class VQCompressionPipeline(VanillaPipeline):
    config: VQCompressionPipelineConfig

    def __init__(self, config: VQCompressionPipelineConfig, device: str, test_mode: Literal["test", "val", "inference"] = "val",
                 world_size: int = 1, local_rank: int = 0, grad_scaler=None):
        training = test_mode == "val"
        if training:
            try:
                teacher_path = self._check_teacher(config)
            except NerfconvertError as err:
                # ns-train would bury the message under a traceback
                raise SystemExit(f"error: {err}") from None
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        if training:
            try:
                self._start_from_teacher(teacher_path)
            except NerfconvertError as err:
                raise SystemExit(f"error: {err}") from None

    @staticmethod
    def _check_teacher(config: VQCompressionPipelineConfig) -> Path:
        from nerfconvert.views.registry import _read_run_config

        if config.teacher_ckpt is None:
            raise NerfconvertError(
                "vq-compression needs the run to compress: pass --teacher-ckpt outputs/<scene>/<method>/<timestamp>/config.yml."
            )
        path, teacher = _read_run_config(Path(config.teacher_ckpt))
        # default --data: the teacher's scene
        dataparser = config.datamanager.dataparser
        teacher_data = getattr(teacher.pipeline.datamanager.dataparser, "data", None)
        if getattr(dataparser, "data", None) is not None and not Path(dataparser.data).exists() and teacher_data is not None:
            CONSOLE.print(f"vq-compression: --data not found, using the teacher's scene {teacher_data}")
            dataparser.data = Path(teacher_data)
        return path

    def _start_from_teacher(self, teacher_path: Path) -> None:
        from nerfconvert.compress.vq.families import family_for
        from nerfconvert.views.registry import load_run

        start = time.time()
        teacher_pipeline, _ = load_run(teacher_path, device=self.device, test_mode="inference")
        teacher_model = teacher_pipeline.model
        family_for(teacher_model)  # unsupported family: fail before the expensive part
        del teacher_pipeline
        if teacher_model.num_train_data != len(self.datamanager.train_dataset):
            raise NerfconvertError(
                f"The teacher was trained on {teacher_model.num_train_data} images but --data has "
                f"{len(self.datamanager.train_dataset)}: pass the teacher's scene with --data."
            )
        teacher_model.to(self.device)
        teacher_model.train()
        cfg = self.model.config
        bundles = training_ray_bundles(self.datamanager, self.device, cfg.importance_rays_per_batch, cfg.importance_max_rays, cfg.seed)
        probe_camera = self.datamanager.train_dataset.cameras[0:1].to(self.device)
        info = {
            "teacher": str(teacher_path),
            "teacher_step": _teacher_step(teacher_path),
            "data": str(self.config.datamanager.dataparser.data),
            "dataparser": type(self.config.datamanager.dataparser).__name__,
            "teacher_method": teacher_model.__class__.__name__,
            "_probe_bundle": probe_camera.generate_rays(camera_indices=0, keep_shape=True),
        }
        key = _importance_key(teacher_path, self.datamanager, cfg.importance_max_rays, cfg.seed)
        self.model.start_from_teacher(teacher_model, info["teacher_step"], bundles, info, cache_key=key)
        self.model.report["setup_seconds"] = time.time() - start
        self.model.to(self.device)
