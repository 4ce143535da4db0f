"""The vq-compression pipeline: in training mode it reads the teacher run, computes importance
over the training rays and builds the codebooks before the joint fine-tuning starts. In the
viewer, ns-eval and ns-export it only decodes the checkpoint's ``.ncz``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Type

from nerfstudio.models.base_model import Model

from nerfconvert.compress.teacher import CompressionPipeline, CompressionPipelineConfig


@dataclass
class VQCompressionPipelineConfig(CompressionPipelineConfig):
    _target: Type = field(default_factory=lambda: VQCompressionPipeline)
    teacher_ckpt: Optional[Path] = None
    """config.yml of the trained run to compress (plenoxels, tensorf or nerfacto). Only read."""


class VQCompressionPipeline(CompressionPipeline):
    config: VQCompressionPipelineConfig
    method = "vq-compression"

    @classmethod
    def check_teacher_config(cls, teacher_config) -> None:
        from nerfconvert.compress.tables import vq_tables_class_for

        vq_tables_class_for(teacher_config.pipeline.model._target)  # no vq tables: fail before loading the run

    def check_teacher_model(self, teacher_model: Model) -> None:
        from nerfconvert.compress.tables import vq_tables_for

        vq_tables_for(teacher_model, self.config.model.quantizer)  # e.g. a tiny-cuda-nn hash grid: fail before the expensive part

    def start(self, teacher_model: Model, teacher_path: Path) -> None:
        from nerfconvert.compress.tables import accumulate_importance
        from nerfconvert.compress.tables import vq_tables_for

        teacher_model.train()
        family = vq_tables_for(teacher_model)
        importance = self.importance(teacher_path, lambda bundles: accumulate_importance(family, bundles),
                                     ray_budget=family.importance_ray_budget)
        info = self.teacher_info(teacher_path)
        info["teacher_method"] = teacher_model.__class__.__name__
        self.model.start_from_teacher(teacher_model, info["teacher_step"], importance, info)
