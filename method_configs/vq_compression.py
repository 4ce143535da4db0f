"""``ns-train vq-compression --teacher-ckpt <run>/config.yml blender-data --data <scene>``:
VQRF compression of a plenoxels, tensorf or nerfacto run into one ``.ncz`` file.

The run's checkpoint holds the compressed file, so ``ns-viewer``, ``ns-eval`` and ``ns-export``
open the run as usual, and ``nerfconvert decompress`` rebuilds a run from the ``.ncz`` alone.
Learning rates are those of the teachers' mid-training schedules (VQRF, Sec. 7.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from nerfstudio.plugins.types import MethodSpecification

from nerfconvert.compress.vq.model import VQCompressionModelConfig
from nerfconvert.compress.vq.pipeline import VQCompressionPipelineConfig
from nerfconvert.data import CheckedDataManagerConfig
from nerfconvert.schedules import RunLengthTrainerConfig, adam_exponential

MAX_STEPS = 2000


@dataclass
class VQCompressionTrainerConfig(RunLengthTrainerConfig):
    teacher_ckpt: Optional[Path] = None
    """config.yml of the trained run to compress (plenoxels, tensorf or nerfacto). Only read, never modified."""

    def __post_init__(self) -> None:
        if self.teacher_ckpt is not None:
            self.pipeline.teacher_ckpt = self.teacher_ckpt

    def fit_to_run_length(self) -> None:
        from nerfconvert.compress.tables import finetune_optimizers

        for name, group in finetune_optimizers(self.max_num_iterations).items():  # families registered later
            self.optimizers.setdefault(name, group)
        super().fit_to_run_length()


def _adam(lr: float, lr_final: float) -> dict:
    return adam_exponential(lr, lr_final, MAX_STEPS)


vq_compression = MethodSpecification(
    config=VQCompressionTrainerConfig(
        method_name="vq-compression",
        steps_per_eval_batch=500,
        steps_per_eval_image=500,
        steps_per_eval_all_images=10**9,
        steps_per_save=MAX_STEPS,
        max_num_iterations=MAX_STEPS,
        mixed_precision=False,
        pipeline=VQCompressionPipelineConfig(
            datamanager=CheckedDataManagerConfig(
                dataparser=BlenderDataParserConfig(),
                train_num_rays_per_batch=4096,
                eval_num_rays_per_batch=4096,
            ),
            model=VQCompressionModelConfig(eval_num_rays_per_chunk=1 << 13),
        ),
        # one entry per (family, teacher param group); groups a teacher lacks are ignored
        optimizers={
            "voxel_density": _adam(0.02, 0.002),
            "voxel_sh": _adam(0.01, 0.001),
            "vm_encodings": _adam(5e-3, 5e-4),
            "vm_fields": _adam(1e-3, 1e-4),
            "hash_fields": _adam(2e-3, 1e-4),
            "hash_proposal_networks": _adam(2e-3, 1e-4),
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 13),
        vis="viewer",
    ),
    description="VQRF: prune, vector-quantise and fine-tune a plenoxels/tensorf/nerfacto run into one .ncz file.",
)
