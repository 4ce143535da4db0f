"""The students of pvd-al: one per registered view whose family can be a student
(``FieldView.student_method``), with its distillation defaults. Nothing here names a family.

A student is the stock model of its method, so the run written at the end opens with stock
``ns-viewer`` / ``ns-export`` / ``ns-eval``. Defaults follow each stock method, with two changes
that only matter while distilling: no camera optimisation (pseudo cameras are exact) and
optimizer schedules sized to the distillation length.

``ns-train pvd-al`` chooses the student as a tyro subcommand (:data:`StudentUnion`), as
``ns-train`` chooses a dataparser: ``ns-train pvd-al --teacher-ckpt X nerfacto --help`` lists
the nerfacto student's own ``--model.*`` and ``--optimizers.*`` options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Literal, Tuple, Type

import tyro
from nerfstudio.models.base_model import ModelConfig

from nerfconvert.schedules import adam_exponential
from nerfconvert.views.base import FieldView
from nerfconvert.views.registry import student_views

STUDENT_VIEWS: Dict[str, Type[FieldView]] = student_views()
"""Student name (the stock method) -> its family's view class, from the one registry of views."""
STUDENTS: Tuple[str, ...] = tuple(STUDENT_VIEWS)
StudentName = Literal[STUDENTS]  # type: ignore[valid-type]
DEFAULT_STUDENT = "tensorf"

PROJECTION_GROUP = "pvd_projection"
"""Optimizer group of the learned L_v projection (not part of the student)."""


UNBOUNDED_STUDENTS: Tuple[str, ...] = tuple(name for name, view in STUDENT_VIEWS.items() if view.models_background)
"""Students that model a background past the scene box (scene contraction)."""


def distils_on_images(teacher: Any, student: Any, distil_on: str = "auto", options: Any = None,
                      stages_after_fill: bool = False) -> bool:
    """Whether a teacher and a student (views or view classes) distil on images of pseudo cameras.

    ``distil_on`` auto: on images where one side lacks point queries (a rasteriser: PVD's stages and L_v,
    L_sigma, L_c need points), and where the student starts as the teacher's field (a voxel grid filled
    from it), since PVD's point losses exist to bring a student's fields to the teacher's. On lego100 a
    filled plenoxels student reached 30.93 dB on images against 30.13 at the teacher's samples in 15 min
    (benchmarks/README.md); ``stages_after_fill`` asks for PVD's stages, hence points, for such a student.
    ``images`` / ``points`` force one way (``points`` needs both sides' point queries)."""
    points = teacher.has("point_queries") and student.has("point_queries")
    if distil_on == "points":
        if not points:
            side = "teacher" if not teacher.has("point_queries") else "student"
            raise ValueError(f"--pipeline.distil-on points: the {side} has no point queries (a rasteriser); "
                             "use --pipeline.distil-on auto or images")
        return False
    if distil_on == "images" or not points:
        return True
    if stages_after_fill:
        return False
    student_cls = student if isinstance(student, type) else type(student)
    teacher_cls = teacher if isinstance(teacher, type) else type(teacher)
    return bool(student_cls.starts_at_teacher(teacher_cls, options))


def student_model_config(student: str, unbounded: bool = False) -> ModelConfig:
    """The student's model config: the stock method's, without camera optimisation.

    ``unbounded``: the teacher contracts space (a capture with a background), so the student
    must too (the view decides how, e.g. tensorf becomes the unbounded TensoRF variant)."""
    return _view(student).student_model_config(unbounded)


def student_optimizers(student: str, max_steps: int) -> Dict[str, Dict]:
    """Optimizers of the student's parameter groups (the stock method's, see the view), plus the L_v projection's."""
    groups = _view(student).student_optimizers(max_steps)
    groups[PROJECTION_GROUP] = adam_exponential(1e-3, 1e-4, max_steps)
    return groups


def _view(student: str) -> Type[FieldView]:
    views = student_views()  # the registry now: a family registered after import is a student too
    if student not in views:
        raise ValueError(f"unknown student {student!r}")
    return views[student]


STUDENT_DESCRIPTIONS: Dict[str, str] = {name: view.student_description for name, view in STUDENT_VIEWS.items()}

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
        where the family has a variant for unbounded scenes (a tensorf student becomes the
        unbounded TensoRF variant), the student's own options are kept in it."""
        if not unbounded:
            return self.model
        variant = _view(self.name).student_model_config(unbounded=True)
        if type(variant) is type(self.model):
            return self.model
        from dataclasses import fields

        names = {f.name for f in fields(variant)}
        kept = {f.name: getattr(self.model, f.name) for f in fields(self.model) if f.name != "_target" and f.name in names}
        self.model = type(variant)(**kept)
        return self.model


def student_config(student: str, max_steps: int = DEFAULT_RUN_LENGTH) -> StudentConfig:
    """The student ``student`` with its defaults."""
    _view(student)
    return StudentConfig(name=student, model=student_model_config(student), optimizers=student_optimizers(student, max_steps))


StudentUnion = tyro.conf.OmitSubcommandPrefixes[
    tyro.extras.subcommand_type_from_defaults(
        {name: student_config(name) for name in STUDENTS}, STUDENT_DESCRIPTIONS, prefix_names=False
    )
]
"""tyro subcommands, one per student: ``ns-train pvd-al ... nerfacto --model.<option> ...``."""
