"""``distillnerf-scene``: a scene predicted by ``nerfconvert distillnerf-predict``. Registered so
that stock tools (ns-viewer, ns-export, ns-eval) know the method; its runs are written by
distillnerf-predict, not trained (``ns-train distillnerf-scene`` would start from empty voxels)."""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from nerfconvert.schedules import RunLengthTrainerConfig

from nerfconvert.distillnerf.scene_model import DistillNerfSceneModelConfig

distillnerf_scene = MethodSpecification(
    config=RunLengthTrainerConfig(
        method_name="distillnerf-scene",
        max_num_iterations=0,
        mixed_precision=False,
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(
                    orientation_method="none", center_method="none", auto_scale_poses=False, eval_mode="all"
                )
            ),
            model=DistillNerfSceneModelConfig(),
        ),
        optimizers={"decoder": {"optimizer": AdamOptimizerConfig(lr=1e-4), "scheduler": None}},
        viewer=ViewerConfig(num_rays_per_chunk=1 << 13),
        vis="viewer",
    ),
    description="A DistillNeRF scene predicted in one forward pass (written by nerfconvert distillnerf-predict).",
)
