"""``ns-train entropy-compression --teacher-ckpt <tensorf run>/config.yml --lmbda 1e-3 --preset {low,high}
blender-data --data <scene>``: ECTensoRF (Pham & Mandt 2024) on a trained TensoRF-VM run, into one ``.ncz``.

The run's checkpoint holds the compressed file, so ``ns-viewer``, ``ns-eval`` and ``ns-export``
open the run as usual, and ``nerfconvert decompress`` rebuilds a run from the ``.ncz`` alone.
Learning rates are the paper's (Sec. 4.1): 0.02 for the latents, 1e-3 for the networks, with
exponential decay; 30k steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from nerfstudio.plugins.types import MethodSpecification

from nerfconvert.compress.entropy.model import EntropyCompressionModelConfig
from nerfconvert.compress.entropy.pipeline import EntropyCompressionPipelineConfig
from nerfconvert.data import CheckedDataManagerConfig
from nerfconvert.schedules import RunLengthTrainerConfig, adam_exponential

MAX_STEPS = 30000


@dataclass
class EntropyCompressionTrainerConfig(RunLengthTrainerConfig):
    teacher_ckpt: Optional[Path] = None
    """config.yml of the trained tensorf run to compress. Only read, never modified."""
    lmbda: Optional[float] = None
    """lambda of Eq. 9 (rate weight; default 1e-3). Shortcut for --pipeline.model.lmbda."""
    preset: Optional[Literal["low", "high"]] = None
    """low (ECTensoRF-L) or high (ECTensoRF-H) compression. Shortcut for --pipeline.model.preset."""

    def __post_init__(self) -> None:
        if self.teacher_ckpt is not None:
            self.pipeline.teacher_ckpt = self.teacher_ckpt
        if self.lmbda is not None:
            self.pipeline.model.lmbda = self.lmbda
        if self.preset is not None:
            self.pipeline.model.preset = self.preset


def _adam(lr: float, lr_final: float) -> dict:
    return adam_exponential(lr, lr_final, MAX_STEPS)


entropy_compression = MethodSpecification(
    config=EntropyCompressionTrainerConfig(
        method_name="entropy-compression",
        steps_per_eval_batch=500,
        steps_per_eval_image=2000,
        steps_per_eval_all_images=10**9,
        steps_per_save=MAX_STEPS,
        max_num_iterations=MAX_STEPS,
        mixed_precision=False,
        pipeline=EntropyCompressionPipelineConfig(
            datamanager=CheckedDataManagerConfig(
                dataparser=BlenderDataParserConfig(),
                train_num_rays_per_batch=4096,
                eval_num_rays_per_batch=4096,
            ),
            model=EntropyCompressionModelConfig(eval_num_rays_per_chunk=1 << 13),
        ),
        optimizers={
            "latents": _adam(0.02, 2e-3),
            "decoder": _adam(1e-3, 1e-4),
            "entropy_model": _adam(1e-3, 1e-4),
            # mask logits are per-location codes like the latents
            "masks": _adam(0.02, 2e-3),
            # CompressAI's auxiliary loss: only moves the bottleneck's quantiles (its CDF range)
            "entropy_quantiles": _adam(1e-3, 1e-3),
            # finetune_renderer: tensorf's own groups outside the planes (lines; basis and colour MLP), at
            # vq-compression's fine-tuning rates for them
            "renderer_encodings": _adam(5e-3, 5e-4),
            "renderer_fields": _adam(1e-3, 1e-4),
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 13),
        vis="viewer",
    ),
    description="ECTensoRF: learned latents + masked entropy model (CompressAI) for a tensorf run's planes, into one .ncz file.",
)
