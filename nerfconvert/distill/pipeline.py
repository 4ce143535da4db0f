"""The PVD-AL pipeline: a frozen teacher, a stock student model, and the staged losses.

Each step (PVD Sec. "Block-wise Distillation", PVD-AL Algorithm 1):

1. rays from pseudo cameras (plus pooled hard rays, in the active-learning phase);
2. the teacher's own sampler places the samples, shared by both models;
3. the teacher is queried at them without gradients, in chunks;
4. the student is evaluated at the same samples, only as deep as the current stage needs:
   stage 1 phi1 only (L_v), stage 2 + phi2 (L_sigma, L_c), stage 3 + rendering (L_rgb);
5. errors feed the hard-pose, hard-ray and hard-point selection.

The student keeps its own sampler for standalone rendering: a nerfacto student trains its
proposal networks against the teacher's weights, a vanilla-nerf student's coarse field is
kept equal to its fine field, TensoRF and voxel grids sample from their own density.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple, Type

import torch
import torch.nn.functional as F
import tyro
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.data.datamanagers.base_datamanager import DataManagerConfig
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.models.base_model import ModelConfig
from nerfstudio.pipelines.base_pipeline import Pipeline, VanillaPipelineConfig
from nerfstudio.utils import profiler

from nerfconvert.distill.active import HardRayPool
from nerfconvert.distill.cameras import optimised_cameras
from nerfconvert.distill.datamanager import PseudoCameraDataManager, PseudoCameraDataManagerConfig
from nerfconvert.distill.losses import (
    FeatureProjection,
    masked_l1,
    PVDLossConfig,
    density_loss,
    masked_mse,
    select_hard_points,
    teacher_raw_in_student_space,
    volume_loss,
)
from nerfconvert.distill.students import DEFAULT_STUDENT, PROJECTION_GROUP, distils_on_images, student_model_config
from nerfconvert.schedules import run_length
from nerfconvert.views.base import Decoded, FieldView, ViewOptions, pinhole_camera
from nerfconvert.views.registry import load_run, view_class_for

PVD_RUN_LENGTH = 20000
"""PVD's distillation length (stages at 3k and 8k); the schedule's reference without a trainer."""


@dataclass
class ActiveLearningConfig:
    """PVD-AL's three levels (Sec. 3.2.4), each switchable for the ablation of Table 6."""

    hard_poses: bool = True
    """Pool the poses with the largest image gap each epoch; re-draw them jittered (Eq. 9)."""
    hard_rays: bool = True
    """Pool the rays with the largest RGB gap each step; mix them into later batches (Eq. 10)."""
    hard_points: bool = True
    """Restrict L_sigma and L_c to the points with the largest weights (Eq. 11)."""
    ray_fraction: float = 0.1
    """Fraction of each batch pooled as hard rays, and of the next batch drawn from the pool."""
    ray_pool_size: int = 16384
    point_fraction: float = 0.3
    """Fraction of points kept by teacher weight, and by student weight (the union is used)."""
    start_step: Optional[int] = None
    """First step with active learning; None: the start of stage 3 (as in PVD-AL)."""


@dataclass
class PVDPipelineConfig(VanillaPipelineConfig):
    """Distil a trained run (the teacher) into a stock model (``model``, the student)."""

    _target: Type = field(default_factory=lambda: PVDPipeline)
    datamanager: DataManagerConfig = field(default_factory=PseudoCameraDataManagerConfig)
    model: tyro.conf.Suppress[ModelConfig] = field(default_factory=lambda: student_model_config(DEFAULT_STUDENT))
    """The student's model config: set from the trainer's student (its options are the student subcommand's --model.*)."""
    teacher_ckpt: tyro.conf.Suppress[Optional[Path]] = None
    """Set from the trainer's --teacher-ckpt."""
    loss: PVDLossConfig = field(default_factory=PVDLossConfig)
    stage_fractions: Tuple[float, float] = (0.15, 0.40)
    """Fractions of --max-num-iterations at which stage 2 (sigma, colour) and stage 3 (rendered
    RGB, active learning) begin: PVD's 3k and 8k of 20k steps."""
    stage_steps: Optional[Tuple[int, int]] = None
    """Absolute steps at which stage 2 and stage 3 begin; overrides stage_fractions."""
    total_steps: tyro.conf.Suppress[Optional[int]] = None
    """Set from the trainer's --max-num-iterations (20000, PVD's length, when built without one)."""
    block_wise: bool = True
    """False: all losses from the first step (the "w/o block-wise" ablation)."""
    stages_after_fill: bool = False
    """A student set to the teacher's field before its first step (a voxel grid filled from it, see
    --pipeline.grid-from-teacher) starts in stage 3, with active learning, since stages 1-2 only bring
    its fields to the teacher's. True keeps PVD's stages for it too (--pipeline.stage-steps always does)."""
    active_learning: ActiveLearningConfig = field(default_factory=ActiveLearningConfig)
    teacher_chunk: int = 1 << 16
    """Sample points per teacher query (bounds the teacher's memory)."""
    teacher_cache_batches: int = 1
    """The teacher labels this many batches of rays at once (samples, phi1, phi2, rendered RGB),
    kept for the steps that use them. 1: fresh rays and teacher targets every step (PVD)."""
    teacher_reuse: int = 1
    """Steps each teacher-labelled ray is used in (within one epoch). >1 spends less time in the
    teacher per student step; 1: every ray is used once (PVD)."""
    mlp_split_layer: int = 4
    """K of PVD Table 1 for MLP teachers and students: phi1 = the first K layers."""
    coarse_sync_every: int = 100
    """Students with a separate coarse field (vanilla-nerf): copy the fine field into it every this many steps."""

    init_points: int = 20000
    """Students that start from the teacher (Gaussian splats): primitives placed from the teacher."""
    init_cameras: int = 8
    """Pseudo cameras the teacher is rendered from to place them."""
    distil_on: Literal["auto", "images", "points"] = "auto"
    """points: PVD's losses at the teacher's samples (both sides need point queries). images: the student
    renders the teacher's pseudo views with its own sampler and loss, so a step costs what a step of its
    own method costs (stages, L_v, L_sigma, L_c and hard rays/points are then off; hard poses stay).
    auto: points where both sides have point queries, images where one is a rasteriser (Gaussians) or
    the student starts as the teacher's field (a voxel grid filled from it, --pipeline.grid-from-teacher)."""
    grid_from_teacher: bool = True
    """Voxel-grid students start at their final resolution with the teacher's density and colour (SH fitted
    to 16 directions) sampled at their vertices, then distil; False: an empty grid, coarse to fine (PVD)."""
    init_seconds: float = 60.0
    """Seconds the teacher may spend placing them: it renders as many random pixels of those cameras
    as its measured speed allows. 0: every pixel (tens of minutes for a nerfacto teacher on a CPU)."""
    image_patch: int = 64
    """Image-level distillation (a rasterised teacher or student): pseudo views are rendered as
    patches of at most this many pixels a side (whole images when smaller)."""
    image_rays: int = 4096
    """Image-level distillation of a ray-marched student: random pixels per step, drawn across all of the
    epoch's pseudo views (the teacher renders each whole once per epoch)."""
    depth_weight: float = 0.0
    """Image-level distillation: weight of an L1 loss on the teacher's expected depth (where it is opaque)."""

    def view_options(self) -> ViewOptions:
        return ViewOptions(split_layer=self.mlp_split_layer, coarse_sync_every=self.coarse_sync_every,
                           init_points=self.init_points, init_seconds=self.init_seconds,
                           grid_from_teacher=self.grid_from_teacher)

    def keeps_pvd_stages(self) -> bool:
        """PVD's stages asked for a student that starts as the teacher's field (--pipeline.stages-after-fill,
        or stages pinned with --pipeline.stage-steps): it then distils at the teacher's samples."""
        return self.stages_after_fill or self.stage_steps is not None

    def schedule(self, total_steps: Optional[int] = None, starts_at_teacher: bool = False) -> Tuple[int, int, int]:
        """(stage 2 start, stage 3 start, active-learning start) of a run of ``total_steps``
        (``starts_at_teacher``: the student is the teacher's field at step 0, ``stages_after_fill``)."""
        total = int(total_steps or self.total_steps or PVD_RUN_LENGTH)
        if self.stage_steps is not None:
            s1, s2 = (int(s) for s in self.stage_steps)
        elif starts_at_teacher and not self.stages_after_fill:
            s1 = s2 = 0
        else:
            s1, s2 = (int(round(f * total)) for f in self.stage_fractions)
        s2 = max(s1, s2)
        al = self.active_learning.start_step
        return s1, s2, int(al) if al is not None else s2

    def schedule_problems(self, total_steps: int, has_stage1: bool = True, image_level: bool = False,
                          starts_at_teacher: bool = False) -> List[str]:
        """One line per way a run of ``total_steps`` cannot do what it was asked (``image_level``: distillation
        on images, which has no stages; only the active-learning start applies)."""
        s1, s2, al = self.schedule(total_steps, starts_at_teacher)
        problems = []
        if not self.block_wise:
            return problems
        if image_level:
            pass
        elif s2 >= total_steps:
            problems.append(
                f"stage 3 (rendered RGB) starts at step {s2} but the run has {total_steps} steps: the student "
                "never learns the teacher's rendered colour; drop --pipeline.stage-steps (stages then follow "
                "--pipeline.stage-fractions of the run) or raise --max-num-iterations."
            )
        elif s1 >= total_steps and has_stage1:
            problems.append(f"stage 2 starts at step {s1} but the run has {total_steps} steps: only phi1 features are learned.")
        elif total_steps - s2 < 20:
            problems.append(f"stage 3 has only {total_steps - s2} of {total_steps} steps: expect a blurry student; raise --max-num-iterations.")
        if self.active_learning.start_step is not None and al >= total_steps:
            problems.append(
                f"--pipeline.active-learning.start-step {al} is past the run's {total_steps} steps: active learning never starts."
            )
        return problems


def _slice_len(s: slice, n: int) -> int:
    return len(range(n)[s])


@dataclass
class TeacherBatch:
    """The teacher's targets for a set of rays: its samples (shared with the student), phi1
    features, phi2 outputs (stage >= 2) and render (stage 3), with each ray's pose index."""

    rays: Dict[str, Tensor]
    pose_index: Tensor
    samples: RaySamples
    features: Optional[Tensor]
    decoded: Optional[Decoded]
    weights: Optional[Tensor]
    rgb: Optional[Tensor]
    stage: int

    def __len__(self) -> int:
        return self.pose_index.shape[0]

    def select(self, idx: Tensor) -> "TeacherBatch":
        pick = lambda x: None if x is None else x[idx]  # noqa: E731
        decoded = None
        if self.decoded is not None:
            decoded = Decoded(density=self.decoded.density[idx], raw_density=self.decoded.raw_density[idx], rgb=self.decoded.rgb[idx])
        return TeacherBatch(
            rays={k: v[idx] for k, v in self.rays.items()}, pose_index=self.pose_index[idx], samples=self.samples[idx],
            features=pick(self.features), decoded=decoded, weights=pick(self.weights), rgb=pick(self.rgb), stage=self.stage,
        )


class TeacherCache:
    """Teacher targets for ``batches`` batches of rays, handed out ``reuse`` times in random
    batches. Refilled when used up, at an epoch's end (so that each ray's error is recorded
    against a pose of the current epoch) and when the stage needs more from the teacher."""

    def __init__(self, batches: int, reuse: int) -> None:
        self.batches, self.reuse = max(1, batches), max(1, reuse)
        self.data: Optional[TeacherBatch] = None
        self.order: List[Tensor] = []
        self.epoch, self.active = -1, False

    def valid(self, stage: int, epoch: int, active: bool) -> bool:
        return bool(self.order) and self.data is not None and self.data.stage == stage and self.epoch == epoch and self.active == active

    def fill(self, data: TeacherBatch, num_rays: int, epoch: int, active: bool, generator: torch.Generator) -> None:
        n = len(data)
        if self.batches == 1 and self.reuse == 1:  # PVD: the batch as drawn, once
            order = torch.arange(n)
        else:
            order = torch.cat([torch.randperm(n, generator=generator) for _ in range(self.reuse)])
        self.order = [order[i : i + num_rays].to(data.pose_index.device) for i in range(0, order.shape[0], num_rays)]
        self.data, self.epoch, self.active = data, epoch, active

    def next(self) -> TeacherBatch:
        assert self.data is not None
        return self.data.select(self.order.pop(0))


class PVDPipeline(Pipeline):
    config: PVDPipelineConfig
    datamanager: PseudoCameraDataManager

    def __init__(
        self,
        config: PVDPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[Any] = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.test_mode = test_mode
        self.world_size = world_size
        if config.teacher_ckpt is None:
            raise ValueError("PVDPipelineConfig.teacher_ckpt is not set (pass --teacher-ckpt)")

        options = config.view_options()
        teacher_pipeline, teacher_view = load_run(config.teacher_ckpt, device=device, test_mode="inference", options=options)
        for p in teacher_pipeline.parameters():
            p.requires_grad_(False)
        teacher_pipeline.eval()
        # kept out of the module tree: the teacher is not saved in distillation checkpoints
        object.__setattr__(self, "teacher_pipeline", teacher_pipeline)
        object.__setattr__(self, "teacher_view", teacher_view)

        teacher_train = teacher_pipeline.datamanager.train_dataset
        scene_box = teacher_train.scene_box
        view_cls = view_class_for(config.model._target)
        # the teacher renders pseudo views, the student learns them with its own loss
        self.image_level = distils_on_images(teacher_view, view_cls, config.distil_on, options, config.keeps_pvd_stages())
        self.datamanager: PseudoCameraDataManager = config.datamanager.setup(
            device=device,
            test_mode=test_mode,
            world_size=world_size,
            local_rank=local_rank,
            teacher_cameras=optimised_cameras(teacher_pipeline.model, teacher_train.cameras),
            scene_box=scene_box,
            image_level=self.image_level,
        )
        self.datamanager.to(device)
        view_cls.adopt_teacher(config.model, teacher_view, options)  # e.g. a hash student takes a hash teacher's density scale
        view_cls.fit_to_run(config.model, config.total_steps or PVD_RUN_LENGTH)
        if config.depth_weight > 0:
            view_cls.render_depth_in_training(config.model)
        # a student that starts from the teacher (Gaussians placed where the teacher has mass)
        init_gen = torch.Generator().manual_seed(self.datamanager.config.seed + 11)
        init = view_cls.teacher_init(
            teacher_view, pinhole_camera(self.datamanager.distribution.sample_cameras(config.init_cameras, init_gen)), options
        )
        # the student is the stock model of its method, set up for the teacher's scene
        self._model = config.model.setup(
            scene_box=scene_box,
            num_train_data=len(teacher_train),
            metadata=teacher_train.metadata,
            device=device,
            grad_scaler=grad_scaler,
            **view_cls.setup_kwargs(init),
        )
        self._model.to(device)
        self.student_view: FieldView = view_class_for(type(self._model)).from_options(self._model, options)
        self.student_view.initialise_student(init)
        self.starts_at_teacher = init is not None and view_cls.starts_at_teacher(type(teacher_view), options)

        t, s = self.teacher_view, self.student_view
        s_bg = s.background_color()
        if s_bg is not None:
            t.set_render_background(s_bg)  # a rasterised teacher renders onto the student's background
        self.teacher_slice = t.volume_feature_slice
        self.student_slice = s.volume_feature_slice
        # L_v needs learned volume features on both sides (PVD leaves it out for the voxel grid)
        self.use_volume_loss = (
            config.loss.volume_weight > 0 and t.volume_features and s.volume_features and not self.image_level
        )
        self.projection: Optional[FeatureProjection] = None
        if self.use_volume_loss:
            self.projection = FeatureProjection(
                _slice_len(self.student_slice, s.feature_dim), _slice_len(self.teacher_slice, t.feature_dim),
                standardise=config.loss.standardise_projected_features,
            ).to(device)
        self.raw_target = None if self.image_level else teacher_raw_in_student_space(t, s)
        self._teacher_images: Dict[Tuple[int, int], Dict[str, Tensor]] = {}
        al = config.active_learning
        self.ray_pool = HardRayPool(al.ray_pool_size if al.hard_rays else 0, device=device)
        self.set_run_length(config.total_steps or PVD_RUN_LENGTH)
        self.teacher_cache = TeacherCache(config.teacher_cache_batches, config.teacher_reuse)
        self._cache_generator = torch.Generator().manual_seed(self.datamanager.config.seed + 7)

        from nerfstudio.viewer.viewer_elements import ViewerCheckbox, ViewerDropdown

        # the viewer renders pipeline.model: this switches it between student and teacher
        self.viewer_render = ViewerDropdown(
            name="PVD: render", default_value="student", options=["student", "teacher"],
            hint="Show the student being distilled, or its teacher",
        )
        self.hard_pose_frustums: list = []  # viser handles, drawn by PVDTrainer.draw_hard_poses
        self.viewer_hard_poses = ViewerCheckbox(
            name="PVD: hard poses", default_value=True, cb_hook=self._show_hard_poses,
            hint="Draw the active-learning pool's hard poses as red frustums",
        )

    # ---- what the trainer and viewer see --------------------------------------------------
    @property
    def model(self):
        if getattr(self, "viewer_render", None) is not None and self.viewer_render.value == "teacher":
            return self.teacher_pipeline.model
        return self._model

    @property
    def student(self):
        return self._model

    def _show_hard_poses(self, element) -> None:
        for handle in self.hard_pose_frustums:
            handle.visible = element.value

    def set_run_length(self, total_steps: int) -> None:
        """Place the stage boundaries and the start of active learning in a run of ``total_steps``."""
        s1, s2, self.al_start = self.config.schedule(total_steps, self.starts_at_teacher)
        self.stage_starts = (s1, s2)

    def stage(self, step: int) -> int:
        """Block-wise stage of a step (1: phi1, 2: + sigma and colour, 3: + rendered RGB)."""
        if not self.config.block_wise or getattr(self, "image_level", False):
            return 3
        s1, s2 = self.stage_starts
        stage = 1 if step < s1 else (2 if step < s2 else 3)
        if stage == 1 and not self.use_volume_loss:
            return 2  # nothing to learn from phi1 alone
        return stage

    def active_learning_on(self, step: int) -> bool:
        return self.stage(step) == 3 and step >= self.al_start

    # ---- teacher ----------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_query(self, positions: Tensor, directions: Tensor, decode: bool) -> Tuple[Optional[Tensor], Optional[Decoded]]:
        """Teacher phi1 volume features and (if ``decode``) phi2 outputs, in chunks, no grad."""
        shape = positions.shape[:-1]
        p, d = positions.reshape(-1, 3), directions.reshape(-1, 3)
        feats, dens, raws, rgbs = [], [], [], []
        for i in range(0, p.shape[0], self.config.teacher_chunk):
            f = self.teacher_view.phi1(p[i : i + self.config.teacher_chunk], d[i : i + self.config.teacher_chunk])
            if self.use_volume_loss:
                feats.append(f[..., self.teacher_slice].float())
            if decode:
                out = self.teacher_view.phi2(f, d[i : i + self.config.teacher_chunk])
                dens.append(out.density.float())
                raws.append(out.raw_density.float())
                rgbs.append(out.rgb.float())
        features = torch.cat(feats).view(*shape, -1) if feats else None
        decoded = None
        if decode:
            decoded = Decoded(
                density=torch.cat(dens).view(*shape, 1),
                raw_density=torch.cat(raws).view(*shape, 1),
                rgb=torch.cat(rgbs).view(*shape, 3),
            )
        return features, decoded

    @torch.no_grad()
    def teacher_render(self, samples: RaySamples, decoded: Decoded) -> Dict[str, Tensor]:
        # the teacher renders as its model does (e.g. TensoRF's skipped rays: empty and white)
        return self.teacher_view.render_decoded(samples, self.teacher_view.masked_decoded(samples, decoded))

    # ---- a distillation step ------------------------------------------------------------------
    def _mix_hard_rays(self, bundle: RayBundle, pose_index: Tensor) -> Tuple[RayBundle, Tensor]:
        al = self.config.active_learning
        n = int(round(al.ray_fraction * len(bundle)))
        pooled = self.ray_pool.draw(n)
        if pooled is None:
            return bundle, pose_index
        n = pooled["origins"].shape[0]
        keep = len(bundle) - n
        mixed = RayBundle(
            origins=torch.cat([bundle.origins[:keep], pooled["origins"]]),
            directions=torch.cat([bundle.directions[:keep], pooled["directions"]]),
            pixel_area=torch.cat([bundle.pixel_area[:keep], pooled["pixel_area"]]),
            camera_indices=torch.cat([bundle.camera_indices[:keep], pooled["camera_indices"]]),
        )
        # pooled rays belong to no pose of this epoch: they do not count towards pose errors
        pose_index = torch.cat([pose_index[:keep], torch.full((n,), -1, dtype=pose_index.dtype, device=pose_index.device)])
        return mixed, pose_index

    @torch.no_grad()
    def teacher_targets(self, bundle: RayBundle, stage: int, pose_index: Optional[Tensor] = None) -> TeacherBatch:
        """The teacher's samples and targets for a batch of rays, only as deep as ``stage`` needs."""
        rays = {
            "origins": bundle.origins,
            "directions": bundle.directions,
            "pixel_area": bundle.pixel_area,
            "camera_indices": bundle.camera_indices,
        }
        samples = self.teacher_view.sample(bundle)  # shared samples: the teacher's sampler
        positions = samples.frustums.get_positions()
        directions = samples.frustums.directions
        features, decoded = self.teacher_query(positions, directions, decode=stage >= 2)
        weights = rgb = None
        if decoded is not None:
            weights = samples.get_weights(decoded.density)
            if stage >= 3:
                rgb = self.teacher_render(samples, decoded)["rgb"]
        if pose_index is None:
            pose_index = torch.full((len(bundle),), -1, dtype=torch.long, device=bundle.origins.device)
        return TeacherBatch(rays, pose_index, samples, features, decoded, weights, rgb, stage)

    def distill_losses(self, bundle: RayBundle, step: int, stage: int, active: bool) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], Dict[str, Tensor]]:
        """Losses of Eq. 7 for one batch of rays -> (losses, metrics, per-ray outputs)."""
        return self.student_losses(self.teacher_targets(bundle, stage), stage, active)

    def student_losses(self, teacher: TeacherBatch, stage: int, active: bool) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], Dict[str, Tensor]]:
        """Losses of Eq. 7 for the student at the teacher's samples -> (losses, metrics, per-ray outputs)."""
        cfg, w = self.config, self.config.loss
        al = cfg.active_learning
        rays, samples = teacher.rays, teacher.samples
        positions = samples.frustums.get_positions().detach()
        directions = samples.frustums.directions.detach()
        t_features, t_decoded = teacher.features, teacher.decoded

        losses: Dict[str, Tensor] = {}
        metrics: Dict[str, Tensor] = {"stage": torch.tensor(float(stage))}
        extras: Dict[str, Tensor] = {}
        s_features = self.student_view.phi1(positions, directions)
        if self.use_volume_loss:
            # L_v, Eq. 6 (through the learned projection when sizes differ)
            losses["volume_loss"] = w.volume_weight * volume_loss(s_features[..., self.student_slice], t_features, self.projection)
        if stage < 2:
            return losses, metrics, extras

        s_decoded = self.student_view.phi2(s_features, directions)
        mask = None
        t_weights = teacher.weights
        if stage >= 3:
            s_out = self.student_view.render_decoded(samples, s_decoded)
            t_rgb, s_rgb = teacher.rgb, s_out["rgb"]
            if w.rgb_weight > 0:
                losses["rgb_loss"] = w.rgb_weight * F.mse_loss(s_rgb, t_rgb)  # L_rgb
            ray_error = ((s_rgb.detach() - t_rgb) ** 2).mean(dim=-1)
            extras["ray_error"] = ray_error
            extras["rays"] = rays
            mse = ray_error.mean()
            metrics["psnr_vs_teacher"] = -10.0 * torch.log10(mse.clamp_min(1e-10))
            if active and al.hard_points:
                mask = select_hard_points(t_weights, s_out["weights"], al.point_fraction)
                metrics["hard_points_fraction"] = mask.float().mean()
        if w.density_weight > 0:
            target = self.raw_target(t_decoded.raw_density, t_decoded.density)
            losses["density_loss"] = w.density_weight * density_loss(s_decoded.raw_density, target, w.density_clamp, mask)
        if w.colour_weight > 0:
            losses["colour_loss"] = w.colour_weight * masked_mse(s_decoded.rgb, t_decoded.rgb, mask)  # L_c
        if w.reg_weight > 0:
            reg = self.student_view.regularizer(s_decoded.density, w.tv_weight, w.l1_weight)
            if reg is not None:
                losses["reg_loss"] = w.reg_weight * reg  # L_reg
        if w.sampler_weight > 0:
            # the student's own sampler (a nerfacto student's proposal networks) follows the teacher's weights
            for name, loss in self.student_view.student_losses(rays, samples, t_weights).items():
                losses[name] = w.sampler_weight * loss
        return losses, metrics, extras

    # ---- image-level distillation (a family without point queries) ------------------------------------
    @torch.no_grad()
    def teacher_image(self, camera, key: Tuple[int, int]) -> Dict[str, Tensor]:
        """The teacher's render of a pseudo view, kept for the epoch it belongs to."""
        if key not in self._teacher_images:
            if self._teacher_images and next(iter(self._teacher_images))[0] != key[0]:
                self._teacher_images.clear()  # a new epoch: new cameras
            out = self.teacher_view.render_camera(camera)
            self._teacher_images[key] = {k: out[k].detach() for k in ("rgb", "depth", "accumulation") if out.get(k) is not None}
        return self._teacher_images[key]

    def image_losses(self, step: int) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        """One step of image-level distillation: the student's own loss on the teacher's pseudo view."""
        cfg, dm = self.config, self.datamanager
        model = self._model
        if self.student_view.trains_on_images:
            camera, batch = dm.next_train_patch(step, cfg.image_patch)
            camera = pinhole_camera(camera)
            pose = int(batch["pose_index"])
            target = self.teacher_image(camera, (dm.epoch, pose, *batch["offset"]))
            outputs = model.get_outputs(camera)
            gt = target["rgb"]
            losses = model.get_loss_dict(outputs, {"image": gt}, model.get_metrics_dict(outputs, {"image": gt}))
            rendered = outputs["rgb"].detach()
            if rendered.shape != gt.shape:  # splatfacto renders at a lower resolution early on
                gt = model.get_gt_img(gt) if hasattr(model, "get_gt_img") else gt
            error = ((rendered - gt) ** 2).mean(dim=-1).reshape(-1)
            pred_depth, pred_acc = outputs.get("depth"), None
            t_depth, t_acc = target.get("depth"), target.get("accumulation")
            if pred_depth is not None and pred_depth.shape[:2] != gt.shape[:2]:
                pred_depth = None
        else:
            # a ray-marched student: random pixels of all the epoch's pseudo views (each rendered whole by
            # the teacher once per epoch), as its own method draws rays from many training images
            cameras, pose, coords = dm.next_train_pixels(step, cfg.image_rays)
            cameras = pinhole_camera(cameras)
            bundle = cameras.generate_rays(camera_indices=pose[:, None].to(cameras.device), coords=coords.to(cameras.device))
            # the index chose the pseudo camera; the student sees camera 0, as for a single pseudo view (a
            # per-image appearance embedding has the teacher's training images, not the epoch's poses)
            bundle.camera_indices = torch.zeros_like(bundle.camera_indices)
            gathered: Dict[str, Tensor] = {}
            for p in pose.unique().tolist():
                image = self.teacher_image(cameras[p : p + 1], (dm.epoch, p, 0, 0))
                rows = (pose == p).nonzero()[:, 0]
                yx = coords[rows].long()
                for k, v in image.items():
                    picked = v[yx[:, 0].to(v.device), yx[:, 1].to(v.device)]
                    if k not in gathered:
                        gathered[k] = torch.zeros(pose.shape[0], *picked.shape[1:], dtype=v.dtype, device=v.device)
                    gathered[k][rows.to(v.device)] = picked
            outputs = model(bundle.to(self.device))
            gt = gathered["rgb"].to(self.device)
            losses = model.get_loss_dict(outputs, {"image": gt}, model.get_metrics_dict(outputs, {"image": gt}))
            error = ((outputs["rgb"].detach() - gt) ** 2).mean(dim=-1)
            pred_depth = outputs.get("depth")
            t_depth = gathered["depth"].reshape(-1, 1) if "depth" in gathered else None
            t_acc = gathered["accumulation"].reshape(-1, 1) if "accumulation" in gathered else None
        if cfg.depth_weight > 0 and pred_depth is not None and t_depth is not None:
            opaque = (t_acc > 0.5) if t_acc is not None else torch.ones_like(t_depth, dtype=torch.bool)
            losses["depth_loss"] = cfg.depth_weight * masked_l1(pred_depth.reshape(t_depth.shape), t_depth, opaque)
        if not any(v.requires_grad for v in losses.values()):
            # nothing left to render (e.g. every Gaussian pruned): a zero loss that still reaches the parameters
            losses["empty"] = sum(p.sum() for p in self._model.parameters() if p.requires_grad) * 0.0
        mse = error.mean()
        metrics = {"psnr_vs_teacher": -10.0 * torch.log10(mse.clamp_min(1e-10)), "stage": torch.tensor(3.0)}
        if self.config.active_learning.hard_poses and step >= self.al_start:
            pose_index = pose.to(error.device) if torch.is_tensor(pose) else torch.full_like(error, pose, dtype=torch.long)
            dm.record_pose_errors(pose_index, error)
            metrics["hard_pose_pool"] = torch.tensor(float(len(dm.pose_pool)))
        return losses, metrics

    @profiler.time_function
    def get_train_loss_dict(self, step: int):
        if self.image_level:
            losses, metrics = self.image_losses(step)
            return {}, losses, metrics
        stage = self.stage(step)
        active = self.active_learning_on(step)
        al = self.config.active_learning
        dm = self.datamanager
        epoch = step // max(1, dm.config.steps_per_epoch)
        cache = self.teacher_cache
        if not cache.valid(stage, epoch, active):
            # fresh pseudo rays (and pooled hard rays), labelled by the teacher in one go
            num_rays = dm.config.train_num_rays_per_batch
            bundle, batch = dm.next_train(step, num_rays * cache.batches)
            pose_index = batch["pose_index"]
            if active and al.hard_rays:
                bundle, pose_index = self._mix_hard_rays(bundle, pose_index)
            cache.fill(self.teacher_targets(bundle, stage, pose_index), num_rays, epoch, active, self._cache_generator)
        teacher = cache.next()
        pose_index = teacher.pose_index
        losses, metrics, extras = self.student_losses(teacher, stage, active)
        if active and "ray_error" in extras:
            if al.hard_rays:
                self.ray_pool.add(extras["rays"], extras["ray_error"], al.ray_fraction)
            if al.hard_poses:
                self.datamanager.record_pose_errors(pose_index, extras["ray_error"])
            metrics["hard_pose_pool"] = torch.tensor(float(len(self.datamanager.pose_pool)))
        return {}, losses, metrics

    # ---- eval: the student against its teacher on fixed pseudo cameras ---------------------------
    @profiler.time_function
    def get_eval_loss_dict(self, step: int):
        if self.image_level:  # no ray-level losses: the eval images say how close the student is
            return {}, {}, {}
        self.eval()
        bundle, _ = self.datamanager.next_eval(step)
        with torch.no_grad():
            losses, metrics, _ = self.distill_losses(bundle, step, 3, active=False)
        self.train()
        return {}, {k: v.detach() for k, v in losses.items()}, metrics

    @torch.no_grad()
    def _render_pair(self, camera) -> Tuple[Tensor, Tensor]:
        if self.image_level:
            camera = pinhole_camera(camera)
        return self.student_view.render_camera(camera)["rgb"], self.teacher_view.render_camera(camera)["rgb"]

    @profiler.time_function
    def get_eval_image_metrics_and_images(self, step: int):
        self.eval()
        camera, batch = self.datamanager.next_eval_image(step)
        student, teacher = self._render_pair(camera)
        mse = F.mse_loss(student, teacher)
        metrics = {"psnr_vs_teacher": float(-10 * torch.log10(mse.clamp_min(1e-10))), "image_idx": batch["image_idx"]}
        self.train()
        return metrics, {"teacher_student": torch.cat([teacher, student], dim=1)}

    @profiler.time_function
    def get_average_eval_image_metrics(self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False):
        self.eval()
        values = []
        for i in range(self.datamanager.eval_cameras.shape[0]):
            student, teacher = self._render_pair(self.datamanager.eval_cameras[i : i + 1].to(self.device))
            values.append(float(-10 * torch.log10(F.mse_loss(student, teacher).clamp_min(1e-10))))
        self.train()
        t = torch.tensor(values)
        out = {"psnr_vs_teacher": float(t.mean())}
        if get_std:
            out["psnr_vs_teacher_std"] = float(t.std()) if len(values) > 1 else 0.0
        return out

    # ---- parameters, callbacks, checkpoints ---------------------------------------------------------
    def get_param_groups(self) -> Dict[str, List[nn.Parameter]]:
        groups = dict(self._model.get_param_groups())
        if self.projection is not None and self.projection.linear is not None:
            groups[PROJECTION_GROUP] = list(self.projection.parameters())
        return groups

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        self.set_run_length(run_length(training_callback_attributes, self.config.total_steps or PVD_RUN_LENGTH))
        callbacks = list(self._model.get_training_callbacks(training_callback_attributes))
        return callbacks + self.student_view.student_callbacks(self.config.view_options())

    def load_pipeline(self, loaded_state: Dict[str, Any], step: int) -> None:
        state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in loaded_state.items()}
        self._model.update_to_step(step)
        self.load_state_dict(state)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: Optional[bool] = None):
        return nn.Module.load_state_dict(self, state_dict, strict=True if strict is None else strict)

    def forward(self):
        raise NotImplementedError
