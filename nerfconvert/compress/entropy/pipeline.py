"""The entropy-compression pipeline: in training mode it reads the teacher run, computes the
rendering importance of each plane location over the training rays (Eq. 4, the same scores as
vq-compression, from the same cache) and sets up latents, decoder and entropy model. In the
viewer, ns-eval and ns-export it only decodes the checkpoint's ``.ncz``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Type

from nerfstudio.models.base_model import Model

from nerfconvert import NerfconvertError
from nerfconvert.compress.entropy.model import check_feature_planes
from nerfconvert.compress.tables import feature_planes_needed, has_feature_planes
from nerfconvert.compress.teacher import CompressionPipeline, CompressionPipelineConfig


@dataclass
class EntropyCompressionPipelineConfig(CompressionPipelineConfig):
    _target: Type = field(default_factory=lambda: EntropyCompressionPipeline)
    teacher_ckpt: Optional[Path] = None
    """config.yml of the trained tensorf run to compress. Only read."""


class EntropyCompressionPipeline(CompressionPipeline):
    config: EntropyCompressionPipelineConfig
    method = "entropy-compression"
    teacher_example = "tensorf"

    @classmethod
    def check_teacher_config(cls, teacher_config) -> None:
        target = teacher_config.pipeline.model._target
        if not (isinstance(target, type) and has_feature_planes(target)):
            raise NerfconvertError(feature_planes_needed())

    def check_teacher_model(self, teacher_model: Model) -> None:
        check_feature_planes(teacher_model)

    def start(self, teacher_model: Model, teacher_path: Path) -> None:
        from nerfconvert.compress.tables import accumulate_importance
        from nerfconvert.compress.tables import vq_tables_for

        cfg = self.model.config
        importance = None
        if cfg.use_importance:
            family = vq_tables_for(teacher_model)  # feature planes (checked): its view's tables, the planes
            importance = self.importance(teacher_path, lambda bundles: accumulate_importance(family, bundles))
        teacher_model.train()
        info = self.teacher_info(teacher_path)
        info.update({"lmbda": cfg.lmbda, "masked": int(cfg.masked), "use_importance": int(cfg.use_importance)})
        self.model.start_from_teacher(teacher_model, info["teacher_step"], importance, info)
