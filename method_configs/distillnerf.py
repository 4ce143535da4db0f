"""``ns-train distillnerf distillnerf-data --data <scenes root>``: the generalizable DistillNeRF
model, trained on many driving scenes (one frame of N cameras per step).

Defaults train the tiny procedural scenes on CPU; on a GPU and nuScenes-sized images raise the
channels, bins and voxel resolutions (``ns-train distillnerf --help``). Multi-GPU (or multi-process
CPU) through nerfstudio's ``--machine.num-devices``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.configs.dataparser_configs import AnnotatedDataParserUnion
from nerfstudio.plugins.types import MethodSpecification

from nerfconvert.distillnerf.data import DistillNerfDataManagerConfig, DistillNerfDataParserConfig
from nerfconvert.distillnerf.model import DistillNerfModelConfig
from nerfconvert.distillnerf.pipeline import DistillNerfPipelineConfig
from nerfconvert.schedules import RunLengthTrainerConfig, adam_exponential

MAX_STEPS = 3000


@dataclass
class DistillNerfDataCLIConfig(DistillNerfDataManagerConfig):
    """The data manager, with its dataparser typed as nerfstudio's dataparser union (as
    VanillaDataManagerConfig does), so that ``ns-train distillnerf distillnerf-data --data <root>``
    parses: tyro offers dataparser subcommands only for a field of that type."""

    dataparser: AnnotatedDataParserUnion = field(default_factory=DistillNerfDataParserConfig)


@dataclass
class DistillNerfTrainerConfig(RunLengthTrainerConfig):
    def __post_init__(self) -> None:
        machine = self.machine
        if machine.num_devices * machine.num_machines > 1 and machine.device_type != "cuda":
            from nerfconvert.distillnerf.ddp import enable_cpu_workers

            enable_cpu_workers()


def _adam(lr: float) -> dict:
    return adam_exponential(lr, lr * 0.1, MAX_STEPS)


distillnerf = MethodSpecification(
    config=DistillNerfTrainerConfig(
        method_name="distillnerf",
        steps_per_eval_batch=500,
        steps_per_eval_image=500,
        steps_per_eval_all_images=10**9,
        steps_per_save=500,
        max_num_iterations=MAX_STEPS,
        mixed_precision=False,
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        pipeline=DistillNerfPipelineConfig(
            datamanager=DistillNerfDataCLIConfig(dataparser=DistillNerfDataParserConfig()),
            model=DistillNerfModelConfig(),
        ),
        optimizers={"encoder": _adam(2e-3), "voxels": _adam(2e-3), "decoder": _adam(2e-3)},
        viewer=ViewerConfig(num_rays_per_chunk=1 << 13),
        vis="tensorboard",
    ),
    description="DistillNeRF: a sparse-voxel scene from N multi-view images in one forward pass, distilled from per-scene NeRFs.",
)
