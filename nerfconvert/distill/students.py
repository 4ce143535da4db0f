"""The four student families: which nerfstudio method carries each, and its distillation defaults.

A student is the stock model of its method, so the run written at the end opens with stock
``ns-viewer`` / ``ns-export`` / ``ns-eval``. Defaults follow each stock method, with two changes
that only matter while distilling: no camera optimisation (pseudo cameras are exact) and
optimizer schedules sized to the distillation length.

``ns-train pvd-al`` chooses the student as a tyro subcommand (:data:`StudentUnion`), as
``ns-train`` chooses a dataparser: ``ns-train pvd-al --teacher-ckpt X nerfacto --help`` lists
the nerfacto student's own ``--model.*`` and ``--optimizers.*`` options.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Literal, Tuple

import tyro
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


STUDENT_DESCRIPTIONS: Dict[str, str] = {
    "nerfacto": "nerfacto student (hash grid), as ns-train nerfacto builds it.",
    "tensorf": "tensorf student (VM decomposition), as ns-train tensorf builds it (the default).",
    "vanilla-nerf": "vanilla-nerf student (MLP), as ns-train vanilla-nerf builds it.",
    "plenoxels": "plenoxels student (voxel grid), as ns-train plenoxels builds it.",
}

DEFAULT_RUN_LENGTH = 20000
"""PVD's distillation length; every schedule is refitted to --max-num-iterations before a run."""


@dataclass
class StudentConfig:
    """The student of a pvd-al run: a stock method's model config and its optimizers."""

    name: tyro.conf.Suppress[str] = DEFAULT_STUDENT
    """The stock method that carries the student (its run is written under this name)."""
    model: ModelConfig = field(default_factory=lambda: student_model_config(DEFAULT_STUDENT))
    """The student's model config (the stock method's, without camera optimisation)."""
    optimizers: Dict[str, Any] = field(default_factory=lambda: student_optimizers(DEFAULT_STUDENT, DEFAULT_RUN_LENGTH))
    """The student's optimizer groups and the L_v projection's; schedules end with the run."""

    def model_for(self, unbounded: bool) -> ModelConfig:
        """The model config for a teacher that does (``unbounded``) or does not contract space:
        a tensorf student of an unbounded teacher becomes the unbounded TensoRF variant, its
        options kept."""
        if not (unbounded and self.name == "tensorf"):
            return self.model
        from nerfconvert.unbounded import UnboundedTensoRFModelConfig

        if isinstance(self.model, UnboundedTensoRFModelConfig):
            return self.model
        kept = {f.name: getattr(self.model, f.name) for f in fields(self.model) if f.name != "_target"}
        self.model = UnboundedTensoRFModelConfig(**kept)
        return self.model


def student_config(student: str, max_steps: int = DEFAULT_RUN_LENGTH) -> StudentConfig:
    """The student ``student`` with its defaults."""
    if student not in STUDENTS:
        raise ValueError(f"unknown student {student!r}")
    return StudentConfig(name=student, model=student_model_config(student), optimizers=student_optimizers(student, max_steps))


StudentUnion = tyro.conf.OmitSubcommandPrefixes[
    tyro.extras.subcommand_type_from_defaults(
        {name: student_config(name) for name in STUDENTS}, STUDENT_DESCRIPTIONS, prefix_names=False
    )
]
"""tyro subcommands, one per student: ``ns-train pvd-al ... nerfacto --model.<option> ...``."""
