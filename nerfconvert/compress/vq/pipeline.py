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

    def check_teacher_model(self, teacher_model: Model) -> None:
        from nerfconvert.compress.vq.families import family_for

        family_for(teacher_model)  # unsupported family: fail before the expensive part

    def start(self, teacher_model: Model, teacher_path: Path) -> None:
        from nerfconvert.compress.vq.compressor import accumulate_importance
        from nerfconvert.compress.vq.families import family_for

        teacher_model.train()
        family = family_for(teacher_model)
        importance = self.importance(teacher_path, lambda bundles: accumulate_importance(family, bundles),
                                     ray_budget=family.importance_ray_budget)
        info = self.teacher_info(teacher_path)
        info["teacher_method"] = teacher_model.__class__.__name__
        self.model.start_from_teacher(teacher_model, info["teacher_step"], importance, info)
