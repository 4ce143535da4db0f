"""``ns-train plenoxels``: a dense voxel grid with SH colour (Plenoxels-style), pure torch.

Defaults are tuned to train a 64x64 procedural object scene on two CPU cores in minutes
(see benchmarks/plenoxels_quality.py); on a GPU or on 800x800 blender scenes raise
``--max-num-iterations`` and ``--pipeline.model.grid-resolutions``.
"""

from __future__ import annotations

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from nerfconvert.schedules import RunLengthTrainerConfig

from nerfconvert.data import CheckedDataManagerConfig
from nerfconvert.plenoxels.model import FusedAdamOptimizerConfig, PlenoxelsModelConfig

MAX_STEPS = 1000


def plenoxels_datamanager() -> CheckedDataManagerConfig:
    """The data manager of the method, in one place so that it can be swapped."""
    return CheckedDataManagerConfig(
        dataparser=BlenderDataParserConfig(),
        train_num_rays_per_batch=4096,
        eval_num_rays_per_batch=4096,
    )


plenoxels = MethodSpecification(
    config=RunLengthTrainerConfig(
        method_name="plenoxels",
        steps_per_eval_batch=500,
        steps_per_eval_image=500,
        steps_per_save=1000,
        max_num_iterations=MAX_STEPS,
        # a shorter run keeps the 1000-step decay: ending it with a 400-step run cost 2.2 dB on lego100
        # (benchmarks/plenoxels_schedule.py); longer runs still decay over their whole length
        min_schedule_steps=MAX_STEPS,
        mixed_precision=False,
        # pure torch: runs where the user is, without --machine.device-type
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        pipeline=VanillaPipelineConfig(
            datamanager=plenoxels_datamanager(),
            model=PlenoxelsModelConfig(eval_num_rays_per_chunk=1 << 13),
        ),
        optimizers={
            # Plenoxels/DVGO-style: large learning rates on explicit grid values.
            "density": {
                "optimizer": FusedAdamOptimizerConfig(lr=0.1, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=0.01, max_steps=MAX_STEPS),
            },
            "sh": {
                "optimizer": FusedAdamOptimizerConfig(lr=0.05, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=0.005, max_steps=MAX_STEPS),
            },
            "camera_opt": {
                "optimizer": AdamOptimizerConfig(lr=1e-4, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-5, max_steps=5000),
            },
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 13),
        vis="viewer",
    ),
    description="Dense voxel grid of density + spherical harmonics (Plenoxels-style, no MLP), coarse-to-fine with pruning.",
)
