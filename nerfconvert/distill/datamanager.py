"""The pseudo-camera data manager: rays from fresh random cameras every epoch, and the pool of
hard poses (PVD-AL, "important camera poses"). Targets come from the teacher, in the pipeline;
this data manager never touches an image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Literal, Optional, Tuple, Type, Union

import torch
from torch import Tensor

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import DataManager, DataManagerConfig
from nerfstudio.data.scene_box import SceneBox

from nerfconvert.distill.active import HardPosePool, PoseErrorTracker
from nerfconvert.distill.cameras import PseudoCameraDistribution
from nerfconvert.resume import OptionalExtraState

CAMERA_FIELDS = ("camera_to_worlds", "fx", "fy", "cx", "cy", "width", "height", "distortion_params", "camera_type")


@dataclass
class PseudoCameraDataManagerConfig(DataManagerConfig):
    """Random cameras drawn from the teacher's training-camera distribution."""

    _target: Type = field(default_factory=lambda: PseudoCameraDataManager)
    train_num_rays_per_batch: int = 4096
    """Rays per distillation step (PVD: 4096)."""
    eval_num_rays_per_batch: int = 4096
    poses_per_epoch: int = 100
    """Fresh pseudo cameras drawn per epoch (ray-level distillation: rays are drawn from all of them)."""
    image_poses_per_epoch: int = 16
    """Image-level distillation (a Gaussian teacher or student): pseudo cameras drawn per epoch. The
    teacher renders each once and the epoch's steps reuse its images, so that the student, not the
    teacher, takes most of a step's time."""
    steps_per_epoch: int = 100
    """Steps per epoch: pose errors are ranked and the poses redrawn at each epoch's end."""
    num_eval_poses: int = 4
    """Fixed pseudo cameras for eval metrics (student vs teacher), drawn with eval_seed."""
    eval_seed: int = 1234
    seed: int = 0
    camera_kind: Literal["auto", "orbit", "forward"] = "auto"
    """auto: orbit when the training cameras' optical axes converge, forward-facing otherwise."""
    forward_threshold: float = 0.9
    """auto: forward-facing when the mean viewing direction is longer than this."""
    box_margin: float = 0.1
    """Forward-facing: the box of camera centres grows by this fraction of its size."""
    rotation_jitter_deg: float = 5.0
    """Orientation jitter of forward-facing pseudo cameras and of re-drawn hard poses."""
    hard_pose_fraction: float = 0.1
    """PVD-AL: the fraction of an epoch's poses kept as hard poses, and of the next epoch's
    poses re-drawn (jittered) from the pool. 0 switches hard poses off."""
    hard_pose_pool_size: int = 30
    """Capacity of the hard-pose pool (first in, first out)."""
    resolution_scale: float = 1.0
    """Pseudo cameras' image size relative to the teacher's training cameras (intrinsics scaled)."""


def random_pixels(cameras: Cameras, num_rays: int, generator: torch.Generator) -> Tuple[Tensor, Tensor]:
    """-> ([n] camera index, [n, 2] pixel centre (row, column)) of ``num_rays`` uniform random pixels."""
    pose = torch.randint(0, cameras.shape[0], (num_rays,), generator=generator)
    h = cameras.height[pose.to(cameras.device), 0].cpu().float()
    w = cameras.width[pose.to(cameras.device), 0].cpu().float()
    u = torch.rand(num_rays, 2, generator=generator)
    return pose, torch.stack([torch.floor(u[:, 0] * h), torch.floor(u[:, 1] * w)], dim=-1) + 0.5


class PseudoViewDataset:
    """Camera-only stand-in for a dataset (what the trainer and viewer look at).

    The viewer draws training cameras with thumbnails; distillation has no images, so the
    thumbnail is flat grey."""

    def __init__(self, cameras: Cameras, scene_box: SceneBox, metadata: Optional[Dict] = None) -> None:
        self.cameras = cameras
        self.scene_box = scene_box
        self.metadata = metadata or {}

    def __len__(self) -> int:
        return self.cameras.shape[0]

    def __getitem__(self, idx: int) -> Dict:
        h, w = int(self.cameras.height[idx]), int(self.cameras.width[idx])
        return {"image_idx": idx, "image": torch.full((h, w, 3), 0.5)}


class PseudoCameraDataManager(OptionalExtraState, DataManager):
    """Pseudo cameras per epoch and the hard-pose pool. Checkpoints keep the stream's state (its
    random generator, the epoch's cameras and their errors so far, the pool), so that a resumed run
    continues the epoch it was in with the same hard poses."""

    config: PseudoCameraDataManagerConfig

    def __init__(
        self,
        config: PseudoCameraDataManagerConfig,
        device: Union[torch.device, str] = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        teacher_cameras: Optional[Cameras] = None,
        scene_box: Optional[SceneBox] = None,
        image_level: bool = False,
        **kwargs,
    ) -> None:
        self.config = config
        self.num_poses = max(1, config.image_poses_per_epoch if image_level else config.poses_per_epoch)
        """Pseudo cameras per epoch."""
        self.device = device
        self.test_mode = test_mode
        if teacher_cameras is None or scene_box is None:
            raise ValueError("PseudoCameraDataManager needs the teacher's training cameras and scene box")
        kind = None if config.camera_kind == "auto" else config.camera_kind
        self.distribution = PseudoCameraDistribution.fit(
            teacher_cameras,
            forward_threshold=config.forward_threshold,
            box_margin=config.box_margin,
            rotation_jitter_deg=config.rotation_jitter_deg,
            kind=kind,
        )
        self.generator = torch.Generator().manual_seed(config.seed + local_rank)
        num_hard = max(1, int(round(config.hard_pose_fraction * self.num_poses))) if config.hard_pose_fraction > 0 else 0
        self.num_hard_per_epoch = num_hard
        self.pose_pool = HardPosePool(config.hard_pose_pool_size if num_hard else 0)
        self.epoch = -1
        self.epoch_c2w = torch.zeros(0, 3, 4)
        self.epoch_cameras: Optional[Cameras] = None
        self.tracker = PoseErrorTracker(self.num_poses)

        # The trainer and viewer expect datasets: the teacher's training cameras (no images) and
        # fixed eval pseudo cameras.
        self.train_dataset = PseudoViewDataset(teacher_cameras.to("cpu"), scene_box)
        eval_gen = torch.Generator().manual_seed(config.eval_seed)
        self.eval_cameras = self._scaled(self.distribution.sample_cameras(config.num_eval_poses, eval_gen))
        self.eval_dataset = PseudoViewDataset(self.eval_cameras, scene_box)
        super().__init__()

    def _scaled(self, cameras: Cameras) -> Cameras:
        if self.config.resolution_scale != 1.0:
            cameras.rescale_output_resolution(self.config.resolution_scale)
        return cameras

    # ---- checkpoints ------------------------------------------------------------------------
    def get_extra_state(self) -> Dict[str, Any]:
        state: Dict[str, Any] = {
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "epoch_c2w": self.epoch_c2w.detach().cpu().clone(),
            "tracker": self.tracker.state(),
            "pose_pool": self.pose_pool.state(),
        }
        if self.epoch_cameras is not None:
            state["epoch_cameras"] = {
                name: getattr(self.epoch_cameras, name).detach().cpu().clone()
                for name in CAMERA_FIELDS
                if getattr(self.epoch_cameras, name, None) is not None
            }
        return state

    def set_extra_state(self, state: Optional[Dict[str, Any]]) -> None:
        if not state:
            return
        if state["tracker"]["sums"].shape[0] != self.num_poses:
            return  # another number of poses per epoch (the option changed): a fresh stream
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        self.epoch_c2w = state["epoch_c2w"].float().clone()
        self.tracker.load(state["tracker"])
        if self.pose_pool.capacity:
            self.pose_pool.load(state["pose_pool"])
        cameras = state.get("epoch_cameras")
        self.epoch_cameras = Cameras(**cameras).to(self.device) if cameras else None

    # ---- epochs and hard poses ------------------------------------------------------------
    def _start_epoch(self, epoch: int) -> None:
        """Rank the finished epoch's poses, pool the hardest, draw the next epoch's cameras."""
        if self.epoch >= 0 and self.num_hard_per_epoch:
            hard = self.tracker.hardest(self.config.hard_pose_fraction)
            if hard.numel():
                self.pose_pool.add(self.epoch_c2w[hard], self.tracker.mean_errors()[hard])
        n = self.num_poses
        n_hard = min(self.num_hard_per_epoch, n) if len(self.pose_pool) else 0
        fresh = self.distribution.sample_poses(n - n_hard, self.generator)
        if n_hard:
            redrawn = self.distribution.jitter_poses(self.pose_pool.draw(n_hard, self.generator), generator=self.generator)
            fresh = torch.cat([fresh, redrawn])
        self.epoch_c2w = fresh
        self.epoch_cameras = self._scaled(self.distribution.make_cameras(fresh, self.generator)).to(self.device)
        self.tracker = PoseErrorTracker(n)
        self.epoch = epoch

    def record_pose_errors(self, pose_indices: Tensor, errors: Tensor) -> None:
        """Per-ray teacher/student RGB gaps, each with the index of the pose it came from."""
        self.tracker.add(pose_indices, errors)

    def hard_poses(self) -> Tensor:
        """[K, 3, 4] the current pool of hard poses."""
        return self.pose_pool.c2w

    # ---- rays ---------------------------------------------------------------------------------
    def rays_from(self, cameras: Cameras, num_rays: int, generator: torch.Generator) -> Tuple[RayBundle, Tensor]:
        """``num_rays`` random pixels of random cameras -> (rays, pose index of each ray)."""
        pose, coords = random_pixels(cameras, num_rays, generator)
        bundle = cameras.generate_rays(
            camera_indices=pose[:, None].to(cameras.device), coords=coords.to(cameras.device)
        )
        return bundle, pose

    def next_train(self, step: int, num_rays: Optional[int] = None) -> Tuple[RayBundle, Dict]:
        """Rays of this epoch's pseudo cameras (``num_rays``, default one batch)."""
        self.train_count += 1
        epoch = step // max(1, self.config.steps_per_epoch)
        if epoch != self.epoch or self.epoch_cameras is None:
            self._start_epoch(epoch)
        bundle, pose = self.rays_from(self.epoch_cameras, num_rays or self.config.train_num_rays_per_batch, self.generator)
        return bundle, {"pose_index": pose.to(self.device)}

    def next_train_patch(self, step: int, patch: int) -> Tuple[Cameras, Dict]:
        """A patch (at most ``patch`` pixels a side, on a grid of such patches) of one of this epoch's
        pseudo cameras, as a camera of its own: image-level distillation renders it whole."""
        self.train_count += 1
        epoch = step // max(1, self.config.steps_per_epoch)
        if epoch != self.epoch or self.epoch_cameras is None:
            self._start_epoch(epoch)
        pose = int(torch.randint(0, self.epoch_cameras.shape[0], (1,), generator=self.generator))
        camera = self.epoch_cameras[pose : pose + 1]
        h, w = int(camera.height[0, 0]), int(camera.width[0, 0])
        ph, pw = min(patch, h), min(patch, w)
        # patches on a grid that covers the whole image (the last row and column flush with its edge, so
        # that they overlap their neighbours): a 100-pixel view has patches at 0 and 36, not only at 0
        y0 = min(int(torch.randint(0, -(-h // ph), (1,), generator=self.generator)) * ph, h - ph)
        x0 = min(int(torch.randint(0, -(-w // pw), (1,), generator=self.generator)) * pw, w - pw)
        if (ph, pw) != (h, w):
            camera = Cameras(
                camera_to_worlds=camera.camera_to_worlds, fx=camera.fx, fy=camera.fy,
                cx=camera.cx - x0, cy=camera.cy - y0, width=pw, height=ph,
                distortion_params=camera.distortion_params, camera_type=camera.camera_type,
            )
        return camera, {"pose_index": pose, "offset": (y0, x0)}

    def next_train_pixels(self, step: int, num_rays: int) -> Tuple[Cameras, Tensor, Tensor]:
        """``num_rays`` random pixels across all of this epoch's pseudo cameras, for a ray-marched
        student that learns the teacher's whole pseudo views: -> (the epoch's cameras, [n] pose index,
        [n, 2] pixel centres (row, column)). Rays from many views per step, as a stock data manager
        draws them from many training images."""
        self.train_count += 1
        epoch = step // max(1, self.config.steps_per_epoch)
        if epoch != self.epoch or self.epoch_cameras is None:
            self._start_epoch(epoch)
        pose, coords = random_pixels(self.epoch_cameras, num_rays, self.generator)
        return self.epoch_cameras, pose, coords

    def next_eval(self, step: int) -> Tuple[RayBundle, Dict]:
        self.eval_count += 1
        gen = torch.Generator().manual_seed(self.config.eval_seed + step)
        bundle, pose = self.rays_from(self.eval_cameras.to(self.device), self.config.eval_num_rays_per_batch, gen)
        return bundle, {"pose_index": torch.full_like(pose, -1).to(self.device)}

    def next_eval_image(self, step: int) -> Tuple[Cameras, Dict]:
        idx = step % self.eval_cameras.shape[0]
        return self.eval_cameras[idx : idx + 1].to(self.device), {"image_idx": idx}

    def get_train_rays_per_batch(self) -> int:
        return self.config.train_num_rays_per_batch

    def get_eval_rays_per_batch(self) -> int:
        return self.config.eval_num_rays_per_batch

    def get_datapath(self):
        return None

    def get_param_groups(self) -> Dict:
        return {}

    def setup_train(self) -> None:  # no loaders: rays are generated on the fly
        pass

    def setup_eval(self) -> None:
        pass
