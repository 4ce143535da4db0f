"""The entropy-compression pipeline: in training mode it reads the teacher run, computes the
rendering importance of each plane location over the training rays (Eq. 4, the same scores as
vq-compression) and sets up latents, decoder and entropy model. In the viewer, ns-eval and
ns-export it only decodes the checkpoint's ``.ncz``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Type

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE

from nerfconvert import NerfconvertError
from nerfconvert.compress.entropy.model import TENSORF_NEEDED


@dataclass
class EntropyCompressionPipelineConfig(VanillaPipelineConfig):
    _target: Type = field(default_factory=lambda: EntropyCompressionPipeline)
    teacher_ckpt: Optional[Path] = None
    """config.yml of the trained tensorf run to compress. Only read."""


class EntropyCompressionPipeline(VanillaPipeline):
    config: EntropyCompressionPipelineConfig

    def __init__(self, config: EntropyCompressionPipelineConfig, device: str,
                 test_mode: Literal["test", "val", "inference"] = "val", world_size: int = 1, local_rank: int = 0,
                 grad_scaler=None):
        training = test_mode == "val"
        if training:
            try:
                teacher_path = self._check_teacher(config)
            except NerfconvertError as err:
                raise SystemExit(f"error: {err}") from None  # ns-train would bury it under a traceback
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        if training:
            try:
                self._start_from_teacher(teacher_path)
            except NerfconvertError as err:
                raise SystemExit(f"error: {err}") from None

    @staticmethod
    def _check_teacher(config: EntropyCompressionPipelineConfig) -> Path:
        from nerfconvert.views.registry import _read_run_config

        if config.teacher_ckpt is None:
            raise NerfconvertError(
                "entropy-compression needs the run to compress: pass --teacher-ckpt outputs/<scene>/tensorf/<timestamp>/config.yml."
            )
        path, teacher = _read_run_config(Path(config.teacher_ckpt))
        target = teacher.pipeline.model._target
        if not any(cls.__name__ == "TensoRFModel" for cls in getattr(target, "__mro__", ())):
            raise NerfconvertError(TENSORF_NEEDED)
        dataparser = config.datamanager.dataparser
        teacher_data = getattr(teacher.pipeline.datamanager.dataparser, "data", None)
        if getattr(dataparser, "data", None) is not None and not Path(dataparser.data).exists() and teacher_data is not None:
            CONSOLE.print(f"entropy-compression: --data not found, using the teacher's scene {teacher_data}")
            dataparser.data = Path(teacher_data)
        return path

    def _start_from_teacher(self, teacher_path: Path) -> None:
        from nerfconvert.compress.vq.compressor import accumulate_importance
        from nerfconvert.compress.vq.families import VMFamily
        from nerfconvert.compress.vq.model import _load_importance, _save_importance
        from nerfconvert.compress.vq.pipeline import _importance_key, _teacher_step, training_ray_bundles
        from nerfconvert.compress.entropy.model import check_tensorf
        from nerfconvert.views.registry import load_run

        start = time.time()
        teacher_pipeline, _ = load_run(teacher_path, device=self.device, test_mode="inference")
        teacher_model = teacher_pipeline.model
        check_tensorf(teacher_model)
        del teacher_pipeline
        if teacher_model.num_train_data != len(self.datamanager.train_dataset):
            raise NerfconvertError(
                f"The teacher was trained on {teacher_model.num_train_data} images but --data has "
                f"{len(self.datamanager.train_dataset)}: pass the teacher's scene with --data."
            )
        teacher_model.to(self.device)
        cfg = self.model.config
        importance = None
        if cfg.use_importance:
            family = VMFamily(teacher_model)
            cache = None
            if cfg.importance_cache_dir is not None:
                key = _importance_key(teacher_path, self.datamanager, cfg.importance_max_rays, cfg.seed)
                cache = Path(cfg.importance_cache_dir).expanduser() / f"{key}.npz"
            importance = _load_importance(cache) if cache is not None else None
            if importance is None:
                bundles = training_ray_bundles(self.datamanager, self.device, cfg.importance_rays_per_batch,
                                               cfg.importance_max_rays, cfg.seed)
                importance = accumulate_importance(family, bundles)  # Eq. 4
                if cache is not None:
                    _save_importance(cache, importance)
            else:
                CONSOLE.print(f"entropy-compression: importance read from the cache {cache}")
            importance = {k: v.to(self.device) for k, v in importance.items()}
        teacher_model.train()
        probe_camera = self.datamanager.train_dataset.cameras[0:1].to(self.device)
        info = {
            "teacher": str(teacher_path),
            "teacher_step": _teacher_step(teacher_path),
            "data": str(self.config.datamanager.dataparser.data),
            "dataparser": type(self.config.datamanager.dataparser).__name__,
            "lmbda": cfg.lmbda,
            "masked": int(cfg.masked),
            "use_importance": int(cfg.use_importance),
            "_probe_bundle": probe_camera.generate_rays(camera_indices=0, keep_shape=True),
        }
        self.model.start_from_teacher(teacher_model, info["teacher_step"], importance, info)
        self.model.report["setup_seconds"] = time.time() - start
        self.model.to(self.device)
