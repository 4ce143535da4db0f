"""The four student families: which nerfstudio method carries each, and its distillation defaults.

A student is the stock model of its method, so the run written at the end opens with stock
``ns-viewer`` / ``ns-export`` / ``ns-eval``. Defaults follow each stock method, with two changes
that only matter while distilling: no camera optimisation (pseudo cameras are exact) and
optimizer schedules sized to the distillation length.
"""

from __future__ import annotations

import sys
from typing import Dict, Literal, Optional, Sequence, Tuple

from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.engine.optimizers import RAdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.models.base_model import ModelConfig

from nerfconvert.schedules import adam_exponential

StudentName = Literal["nerfacto", "tensorf", "vanilla-nerf", "plenoxels"]
STUDENTS: Tuple[str, ...] = ("nerfacto", "tensorf", "vanilla-nerf", "plenoxels")
FAMILY_OF_STUDENT: Dict[str, str] = {"nerfacto": "hash", "tensorf": "vm", "vanilla-nerf": "mlp", "plenoxels": "voxel"}
DEFAULT_STUDENT = "tensorf"

PROJECTION_GROUP = "pvd_projection"
"""Optimizer group of the learned L_v projection (not part of the student)."""


UNBOUNDED_STUDENTS: Tuple[str, ...] = ("nerfacto", "tensorf")
"""Students that model a background past the scene box (scene contraction)."""


def student_model_config(student: str, unbounded: bool = False) -> ModelConfig:
    """The student's model config: the stock method's, without camera optimisation.

    ``unbounded``: the teacher contracts space (a capture with a background), so the student
    must too; the contracted box carries over (nerfacto contracts anyway; tensorf becomes
    :class:`~nerfconvert.unbounded.UnboundedTensoRFModelConfig`)."""
    off = CameraOptimizerConfig(mode="off")
    if student == "tensorf" and unbounded:
        from nerfconvert.unbounded import UnboundedTensoRFModelConfig

        return UnboundedTensoRFModelConfig(regularization="none", camera_optimizer=off)
    if student == "nerfacto":
        from nerfstudio.models.nerfacto import NerfactoModelConfig

        # the nerfacto method's density scale (0.01); a hash teacher's own value is copied in PVDPipeline
        return NerfactoModelConfig(eval_num_rays_per_chunk=1 << 15, average_init_density=0.01, camera_optimizer=off)
    if student == "tensorf":
        from nerfstudio.models.tensorf import TensoRFModelConfig

        return TensoRFModelConfig(regularization="none", camera_optimizer=off)  # L_reg is ours (Eq. 7)
    if student == "vanilla-nerf":
        from nerfstudio.models.vanilla_nerf import NeRFModel, VanillaModelConfig

        return VanillaModelConfig(_target=NeRFModel)
    if student == "plenoxels":
        from nerfconvert.plenoxels.model import PlenoxelsModelConfig

        return PlenoxelsModelConfig(eval_num_rays_per_chunk=1 << 13, camera_optimizer=off)
    raise ValueError(f"unknown student {student!r}")


def student_optimizers(student: str, max_steps: int) -> Dict[str, Dict]:
    """Optimizers of the student's parameter groups, plus the L_v projection's."""

    def adam(lr: float, lr_final: float) -> Dict:
        return adam_exponential(lr, lr_final, max_steps)

    if student == "nerfacto":
        # PVD's 0.02 for the grids, decayed 10x (nerfacto's own 1e-2 -> 1e-4 suits 30k steps from
        # scratch; over a short distillation it stops the hash tables before they reach the teacher's values)
        groups = {"proposal_networks": adam(2e-2, 2e-3), "fields": adam(2e-2, 2e-3)}
    elif student == "tensorf":
        # PVD: 0.02 for the tensors, 0.001 for the MLP decoder
        groups = {"fields": adam(1e-3, 1e-4), "encodings": adam(2e-2, 2e-3)}
    elif student == "vanilla-nerf":
        groups = {
            "fields": {"optimizer": RAdamOptimizerConfig(lr=5e-4, eps=1e-8), "scheduler": None},
            "temporal_distortion": {"optimizer": RAdamOptimizerConfig(lr=5e-4, eps=1e-8), "scheduler": None},
        }
    elif student == "plenoxels":
        from nerfconvert.plenoxels.model import FusedAdamOptimizerConfig

        groups = {
            "density": {
                "optimizer": FusedAdamOptimizerConfig(lr=0.1, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=0.01, max_steps=max_steps),
            },
            "sh": {
                "optimizer": FusedAdamOptimizerConfig(lr=0.05, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=0.005, max_steps=max_steps),
            },
        }
    else:
        raise ValueError(f"unknown student {student!r}")
    groups[PROJECTION_GROUP] = adam(1e-3, 1e-4)
    return groups


def student_from_argv(argv: Optional[Sequence[str]] = None) -> str:
    """The ``--student`` value on the command line, so that ``--pipeline.model.*`` and
    ``--optimizers.*`` show the chosen student's own options. Falls back to the default."""
    argv = list(sys.argv if argv is None else argv)
    for i, arg in enumerate(argv):
        value = None
        if arg == "--student" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--student="):
            value = arg.split("=", 1)[1]
        if value in STUDENTS:
            return value
    return DEFAULT_STUDENT


def make_pvd_config(
    teacher_ckpt,
    student: str,
    output_dir,
    max_num_iterations: int = 20000,
    stage_steps: Optional[Tuple[int, int]] = None,
    num_rays: int = 4096,
    device_type: Optional[str] = None,
):
    """A pvd-al TrainerConfig for ``student``, as ``ns-train pvd-al --student <student>`` builds
    it (for scripts, tests and benchmarks that call ``nerfstudio.scripts.train.main``)."""
    import copy
    from pathlib import Path

    import torch

    from nerfconvert.distill.trainer import PVDTrainerConfig
    from nerfconvert.distill.pipeline import PVDPipelineConfig
    from nerfconvert.distill.datamanager import PseudoCameraDataManagerConfig
    from nerfstudio.configs.base_config import ViewerConfig

    config = PVDTrainerConfig(
        method_name="pvd-al",
        teacher_ckpt=Path(teacher_ckpt),
        student=student,
        output_dir=Path(output_dir),
        steps_per_eval_batch=10**9,
        steps_per_eval_image=10**9,
        steps_per_eval_all_images=10**9,
        steps_per_save=max_num_iterations,
        max_num_iterations=max_num_iterations,
        mixed_precision=False,
        pipeline=PVDPipelineConfig(
            datamanager=PseudoCameraDataManagerConfig(train_num_rays_per_batch=num_rays, eval_num_rays_per_batch=num_rays),
            model=student_model_config(student),
            stage_steps=stage_steps,
        ),
        optimizers=student_optimizers(student, max_num_iterations),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 13),
        vis="tensorboard",
    )
    config.machine.device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    config.fit_to_run_length()
    return copy.deepcopy(config)
