"""The ``pvd-al`` method's config, built once here: ``method_configs/pvd_al.py`` registers it with
``ns-train``, and :func:`make_pvd_config` derives a run's config from it for scripts, tests and
benchmarks that call ``nerfstudio.scripts.train.main``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional, Tuple

from nerfstudio.configs.base_config import ViewerConfig

from nerfconvert.distill.datamanager import PseudoCameraDataManagerConfig
from nerfconvert.distill.pipeline import PVDPipelineConfig
from nerfconvert.distill.students import DEFAULT_RUN_LENGTH, DEFAULT_STUDENT, student_config
from nerfconvert.distill.trainer import PVDTrainerConfig

MAX_STEPS = DEFAULT_RUN_LENGTH  # PVD: 20k steps of 4096 rays; stages at 15% and 40% of the run (3k and 8k)


def pvd_al_config() -> PVDTrainerConfig:
    """``ns-train pvd-al``'s defaults (the default student; every schedule follows --max-num-iterations)."""
    student = student_config(DEFAULT_STUDENT, MAX_STEPS)
    return PVDTrainerConfig(
        method_name="pvd-al",
        student_config=student,
        steps_per_eval_batch=500,
        steps_per_eval_image=1000,
        steps_per_eval_all_images=MAX_STEPS,
        steps_per_save=1000,
        max_num_iterations=MAX_STEPS,
        mixed_precision=False,
        pipeline=PVDPipelineConfig(
            datamanager=PseudoCameraDataManagerConfig(train_num_rays_per_batch=4096),
            model=student.model,
        ),
        optimizers=student.optimizers,
        viewer=ViewerConfig(num_rays_per_chunk=1 << 13),
        vis="viewer",
    )


def make_pvd_config(
    teacher_ckpt,
    student: str,
    output_dir,
    max_num_iterations: int = MAX_STEPS,
    stage_steps: Optional[Tuple[int, int]] = None,
    num_rays: int = 4096,
    device_type: Optional[str] = None,
) -> PVDTrainerConfig:
    """The config ``ns-train pvd-al --teacher-ckpt <teacher_ckpt> <student>`` builds, with no
    evaluation, tensorboard logging, one checkpoint at the end and ``num_rays`` rays per batch."""
    import torch

    config = pvd_al_config()
    config.teacher_ckpt = Path(teacher_ckpt)
    config.student_config = student_config(student, max_num_iterations)
    config.output_dir = Path(output_dir)
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**9
    config.steps_per_save = max_num_iterations
    config.max_num_iterations = max_num_iterations
    config.pipeline.datamanager.train_num_rays_per_batch = num_rays
    config.pipeline.datamanager.eval_num_rays_per_batch = num_rays
    config.pipeline.stage_steps = stage_steps
    config.vis = "tensorboard"
    config.machine.device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    config.apply_student()
    config.fit_to_run_length()
    return copy.deepcopy(config)
