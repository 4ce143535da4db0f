"""``ns-train pvd-al``: Progressive Volume Distillation with Active Learning.

    ns-train pvd-al --teacher-ckpt outputs/<scene>/nerfacto/<ts>/config.yml --student tensorf

Converts any trained run of the four families into any other, data-free: pseudo cameras from
the teacher's camera distribution, targets rendered by the teacher. When it ends, the student
is written as a run of its own method (``outputs/<scene>/<student>/<ts>/config.yml``).
The student's own options stay reachable as ``--pipeline.model.*`` and ``--optimizers.*``
(they follow ``--student``).
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.plugins.types import MethodSpecification

from nerfconvert.distill.datamanager import PseudoCameraDataManagerConfig
from nerfconvert.distill.pipeline import PVDPipelineConfig
from nerfconvert.distill.students import student_from_argv, student_model_config, student_optimizers
from nerfconvert.distill.trainer import PVDTrainerConfig

MAX_STEPS = 20000  # PVD: 20k steps of 4096 rays; stages at 15% and 40% of the run (3k and 8k)

_student = student_from_argv()

pvd_al = MethodSpecification(
    config=PVDTrainerConfig(
        method_name="pvd-al",
        student=_student,
        steps_per_eval_batch=500,
        steps_per_eval_image=1000,
        steps_per_eval_all_images=MAX_STEPS,
        steps_per_save=1000,
        max_num_iterations=MAX_STEPS,
        mixed_precision=False,
        pipeline=PVDPipelineConfig(
            datamanager=PseudoCameraDataManagerConfig(train_num_rays_per_batch=4096),
            model=student_model_config(_student),
        ),
        # scheduler lengths follow --max-num-iterations (PVDTrainerConfig.fit_to_run_length)
        optimizers=student_optimizers(_student, MAX_STEPS),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 13),
        vis="viewer",
    ),
    description="PVD-AL: distil any trained nerfacto/tensorf/vanilla-nerf/plenoxels run into another architecture (data-free).",
)
