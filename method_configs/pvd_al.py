"""``ns-train pvd-al``: Progressive Volume Distillation with Active Learning.

    ns-train pvd-al --teacher-ckpt outputs/<scene>/nerfacto/<ts>/config.yml --student tensorf
    ns-train pvd-al --teacher-ckpt outputs/<scene>/nerfacto/<ts>/config.yml nerfacto --model.num-levels 12

Converts any trained run of the four families into any other, data-free: pseudo cameras from
the teacher's camera distribution, targets rendered by the teacher. When it ends, the student
is written as a run of its own method (``outputs/<scene>/<student>/<ts>/config.yml``).
The student is a subcommand (``nerfacto``, ``tensorf``, ``vanilla-nerf``, ``plenoxels``; default
tensorf) with its own ``--model.*`` and ``--optimizers.*`` options; ``--student <name>`` picks one
with its defaults. Every schedule follows ``--max-num-iterations``.
"""

from __future__ import annotations

from nerfstudio.plugins.types import MethodSpecification

from nerfconvert.distill.method import pvd_al_config

pvd_al = MethodSpecification(
    config=pvd_al_config(),
    description="PVD-AL: distil any trained nerfacto/tensorf/vanilla-nerf/plenoxels run into another architecture (data-free).",
)
