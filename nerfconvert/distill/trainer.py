"""``ns-train pvd-al``: the trainer config with the top-level ``--teacher-ckpt`` and
``--student`` flags, and the trainer that writes the student as its own run at the end."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Type

import numpy as np
import torch
import tyro

from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.utils.rich_utils import CONSOLE

from nerfconvert import NerfconvertError
from nerfconvert.resume import ResumableTrainer
from nerfconvert.schedules import RunLengthTrainerConfig, fit_schedulers
from nerfconvert.views.registry import is_unbounded
from nerfconvert.distill.students import (
    DEFAULT_STUDENT,
    STUDENTS,
    UNBOUNDED_STUDENTS,
    StudentConfig,
    StudentName,
    StudentUnion,
    distils_on_images,
    student_config,
)


@dataclass
class PVDTrainerConfig(RunLengthTrainerConfig):
    """Distil a trained run into another architecture (PVD-AL), data-free."""

    _target: Type = field(default_factory=lambda: PVDTrainer)
    teacher_ckpt: Optional[Path] = None
    """config.yml of the trained run to distil (the teacher): nerfacto, tensorf, vanilla-nerf, plenoxels or splatfacto."""
    student: Optional[StudentName] = None
    """The student with its default options: nerfacto (hash), tensorf (VM), vanilla-nerf (MLP), plenoxels
    (voxel). To set the student's own options, name it as a subcommand instead (default: tensorf)."""
    student_config: StudentUnion = field(default_factory=lambda: student_config(DEFAULT_STUDENT))
    """The student, with its own options: ``ns-train pvd-al ... nerfacto --model.<option> --optimizers.<group>...``."""
    optimizers: tyro.conf.Suppress[Dict[str, Any]] = field(default_factory=lambda: student_config(DEFAULT_STUDENT).optimizers)
    """The student's optimizers (set from the student; its options are the student subcommand's --optimizers.*)."""
    finetune_data: Optional[Path] = None
    """Optional: after distillation, fine-tune the student on the real images of this scene (PVD-AL Table 5)."""
    finetune_steps: int = 2000
    """Fine-tuning steps on --finetune-data."""
    hard_pose_frustum_scale: float = 0.08
    """Size of the hard-pose frustums drawn in the viewer."""

    def check_inputs(self) -> None:
        """Validate --teacher-ckpt and --student (one-line errors) and fill in what follows."""
        from nerfconvert.views.registry import latest_checkpoint, read_run_config, view_class_for

        self.resolve_student()
        if self.teacher_ckpt is None:
            raise NerfconvertError(
                "--teacher-ckpt is required: pass the config.yml of a trained run, "
                "e.g. outputs/<scene>/nerfacto/<timestamp>/config.yml."
            )
        path, teacher = read_run_config(Path(self.teacher_ckpt))
        view_class_for(teacher.pipeline.model._target)  # unsupported architecture
        latest_checkpoint(teacher)  # no checkpoint in the run directory
        self.pipeline.teacher_ckpt = path
        if self.experiment_name is None:
            self.experiment_name = teacher.experiment_name
        self.apply_student(unbounded=is_unbounded(teacher.pipeline.model))
        self.fit_to_run_length()

    def resolve_student(self) -> StudentConfig:
        """The student: the subcommand's, or --student's with its defaults. Sets ``student`` to its name."""
        chosen = self.student_config
        if self.student is not None and self.student != chosen.name:
            if self.student not in STUDENTS:
                raise NerfconvertError(
                    f"--student {self.student!r} is not an architecture family. Pick one of: {', '.join(STUDENTS)}."
                )
            if not _is_default(chosen, self.max_num_iterations):
                raise NerfconvertError(
                    f"--student {self.student} and the student subcommand {chosen.name} (with options of its own) "
                    f"disagree: name the student once, as the subcommand (ns-train pvd-al ... {self.student} --help)."
                )
            chosen = student_config(self.student, self.max_num_iterations)
        self.student_config = chosen
        self.student = chosen.name
        return chosen

    def apply_student(self, unbounded: bool = False) -> None:
        """The model config and optimizers are the student's (``pipeline.model`` and ``optimizers``
        are the student's own objects); an unbounded teacher (scene contraction) gets a student
        that contracts space too."""
        chosen = self.resolve_student()
        self.pipeline.model = chosen.model_for(unbounded)
        self.optimizers = chosen.optimizers
        self.teacher_unbounded = unbounded

    def student_problems(self) -> list:
        """One line per thing the chosen student cannot carry over from this teacher."""
        if getattr(self, "teacher_unbounded", False) and self.student not in UNBOUNDED_STUDENTS:
            return [
                f"the teacher models an unbounded scene (scene contraction) but a {self.student} student covers only "
                f"the scene box: the background past it is lost; --student {' or '.join(UNBOUNDED_STUDENTS)} keeps it."
            ]
        return []

    def fit_to_run_length(self) -> None:
        """Stages, active learning and learning-rate schedules follow --max-num-iterations (counted
        from the checkpoint when the run resumes)."""
        self.pipeline.total_steps = self.run_end()
        super().fit_to_run_length()

    def image_level(self) -> bool:
        """Whether teacher or student lacks point queries (a rasteriser): distillation is then on images."""
        from nerfconvert.views.registry import view_class_for

        if self.pipeline.distil_on != "auto":
            return self.pipeline.distil_on == "images"
        if (self.pipeline.teacher_ckpt or self.teacher_ckpt) is None:
            return False  # no teacher named yet (check_inputs says so)
        return distils_on_images(view_class_for(self.teacher_config().pipeline.model._target),
                                 view_class_for(self.pipeline.model._target), "auto", self.pipeline.view_options(),
                                 self.pipeline.keeps_pvd_stages())

    def starts_at_teacher(self) -> bool:
        """Whether the student is set to the teacher's field before its first step (then it starts in stage 3)."""
        from nerfconvert.views.registry import view_class_for

        if (self.pipeline.teacher_ckpt or self.teacher_ckpt) is None:
            return False
        return view_class_for(self.pipeline.model._target).starts_at_teacher(
            view_class_for(self.teacher_config().pipeline.model._target), self.pipeline.view_options())

    def schedule_summary(self) -> str:
        total = self.run_end()
        s1, s2, al = self.pipeline.schedule(total, self.starts_at_teacher())
        if self.image_level():
            return (
                f"pvd-al: {total} steps of image-level distillation (the teacher's pseudo views, the student's own "
                f"loss; PVD's stages, hard rays and hard points need point queries), hard poses from {s2}"
            )
        if not self.pipeline.block_wise:
            return f"pvd-al: {total} steps, all losses from the first step (block-wise off)"
        if s2 == 0 and self.starts_at_teacher():
            return (f"pvd-al: {total} steps of stage 3 (the student starts as the teacher's field: stages 1-2 "
                    f"skipped, --pipeline.stages-after-fill keeps them), active learning from {al}")
        return (
            f"pvd-al: {total} steps: stage 1 (phi1 features) 0-{s1}, stage 2 (+ density, colour) {s1}-{s2}, "
            f"stage 3 (+ rendered RGB) {s2}-{total}, active learning from {al}"
        )

    def set_timestamp(self) -> None:
        # ns-train's main() calls this first: fail here with one line, before any directory is made
        try:
            self.check_inputs()
        except NerfconvertError as err:
            raise SystemExit(f"error: {err}") from None
        super().set_timestamp()

    def teacher_config(self) -> TrainerConfig:
        from nerfconvert.views.registry import read_run_config

        return read_run_config(Path(self.pipeline.teacher_ckpt or self.teacher_ckpt))[1]


def _is_default(chosen: StudentConfig, max_steps: int) -> bool:
    """Whether ``chosen`` is its student's defaults (schedules aside: they follow the run)."""
    default, mine = student_config(chosen.name, max_steps), copy.deepcopy(chosen)
    fit_schedulers(default.optimizers, max_steps)
    fit_schedulers(mine.optimizers, max_steps)
    return mine.model == default.model and mine.optimizers == default.optimizers


class PVDTrainer(ResumableTrainer):
    config: PVDTrainerConfig

    def __init__(self, config: PVDTrainerConfig, local_rank: int = 0, world_size: int = 1) -> None:
        config.check_inputs()
        CONSOLE.print(config.schedule_summary())
        for problem in config.pipeline.schedule_problems(config.run_end(), image_level=config.image_level(),
                                                           starts_at_teacher=config.starts_at_teacher()) + config.student_problems():
            CONSOLE.print(f"[bold yellow]warning: {problem}")
        super().__init__(config, local_rank, world_size)
        self.student_config_path: Optional[Path] = None
        self._drawn_pose_version = -1

    # ---- viewer: hard poses as frustums (PVD-AL Fig. 7a) ------------------------------------
    def _update_viewer_state(self, step: int) -> None:
        super()._update_viewer_state(step)
        self.draw_hard_poses()

    def draw_hard_poses(self, server=None) -> int:
        """Draw the current hard-pose pool as red frustums in the viewer. Returns how many."""
        if server is None:
            viewer = getattr(self, "viewer_state", None)
            server = getattr(viewer, "viser_server", None)
        if server is None:
            return 0
        pipeline = self.pipeline
        pool = pipeline.datamanager.pose_pool
        if pool.version == self._drawn_pose_version:
            return len(pipeline.hard_pose_frustums)
        import viser.transforms as vtf

        from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

        for handle in pipeline.hard_pose_frustums:
            handle.remove()
        pipeline.hard_pose_frustums = []  # the "PVD: hard poses" checkbox shows/hides these
        cams = pipeline.datamanager.distribution.templates
        fov = float(2 * np.arctan(float(cams.cy[0]) / float(cams.fy[0])))
        aspect = float(cams.width[0]) / float(cams.height[0])
        for i, c2w in enumerate(pool.c2w.numpy()):
            rot = vtf.SO3.from_matrix(c2w[:3, :3]) @ vtf.SO3.from_x_radians(np.pi)
            pipeline.hard_pose_frustums.append(
                server.scene.add_camera_frustum(
                    name=f"/pvd_hard_poses/pose_{i:03d}",
                    fov=fov,
                    aspect=aspect,
                    scale=self.config.hard_pose_frustum_scale,
                    color=(230, 40, 40),
                    wxyz=rot.wxyz,
                    position=c2w[:3, 3] * VISER_NERFSTUDIO_SCALE_RATIO,
                    visible=pipeline.viewer_hard_poses.value,
                )
            )
        self._drawn_pose_version = pool.version
        return len(pipeline.hard_pose_frustums)

    # ---- the student as a run of its own -------------------------------------------------
    def _after_train(self) -> None:
        self.write_student()
        if self.config.finetune_data is not None:
            self.finetune_student()
        super()._after_train()

    def write_student(self) -> Path:
        from nerfconvert.distill.export import student_run_config, write_student_run

        pipeline = self.pipeline
        pipeline.student_view.finish_student()
        run = student_run_config(self.config, self.config.teacher_config(), self.config.student)
        teacher_dir = Path(pipeline.config.teacher_ckpt).parent
        self.student_config_path = write_student_run(
            run,
            pipeline.student.state_dict(),
            self.step,
            teacher_dir=teacher_dir,
            extra_files={"dataparser_transforms.json": teacher_dir / "dataparser_transforms.json"},
        )
        CONSOLE.print(
            f"[bold green]Student ({self.config.student}) written as a run of its own: {self.student_config_path}"
        )
        return self.student_config_path

    def finetune_student(self) -> Path:
        """Fine-tune the written student on real images (PVD-AL Sec. 4.7), as a new run."""
        from nerfconvert.compat import rebind_optimizers
        from nerfconvert.data import check_data_dir
        from nerfconvert.views.registry import view_for

        assert self.student_config_path is not None
        import yaml

        run: TrainerConfig = yaml.load(self.student_config_path.read_text(), Loader=yaml.Loader)
        run.pipeline.datamanager.dataparser.data = Path(self.config.finetune_data).resolve()
        try:
            check_data_dir(run.pipeline.datamanager.dataparser)
        except NerfconvertError as err:
            raise SystemExit(f"error: --finetune-data: {err}") from None
        run.timestamp = f"{run.timestamp}-finetuned"
        run.max_num_iterations = self.config.finetune_steps
        run.steps_per_save = max(1, self.config.finetune_steps)
        run.vis = "tensorboard"
        run.viewer.quit_on_train_completion = True
        run.save_config()
        trainer = run.setup(local_rank=0, world_size=1)
        trainer.setup()
        state = torch.load(next((self.student_config_path.parent / run.relative_model_dir).glob("step-*.ckpt")), map_location="cpu")
        trainer.pipeline.load_pipeline(state["pipeline"], state["step"])
        # a model whose loading replaces its parameters (splatfacto's Gaussians) leaves the optimizers,
        # built in setup(), on the old tensors: point them at the loaded ones
        rebind_optimizers(trainer.optimizers, trainer.pipeline.get_param_groups())
        view_for(trainer.pipeline.model).before_finetune()
        trainer.train()
        CONSOLE.print(f"[bold green]Fine-tuned student: {run.get_base_dir() / 'config.yml'}")
        return run.get_base_dir() / "config.yml"
