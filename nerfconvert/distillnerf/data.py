"""Multi-scene driving data for DistillNeRF: the ``distillnerf-data`` dataparser and its data manager.

A data root holds scenes: procedural ones (``nerfconvert.scenes.driving``, one folder per scene)
or a nuScenes dataroot (read through nuscenes-devkit, ``nerfconvert.distillnerf.nuscenes``). Both
become the same records (``SceneRecord`` -> ``StepRecord`` -> ``FrameRecord``), split by scene.

Batch interface (``DistillNerfDataManager.next_train(step)`` / ``next_eval(step)`` /
``get_frame(scene, time)`` / ``iter_frames(split)``), all return ``(cameras, batch)``:

- ``cameras``: nerfstudio ``Cameras`` of the N input cameras of one scene at one time step,
  ``camera_to_worlds`` [N, 3, 4] in the OpenGL convention (x right, y up, looking down -z), metres,
  in the scene's world frame (procedural: the ego at t=0; nuScenes: the first ego pose of the scene).
- ``batch`` (tensors on the data manager's device):
    "image"        float [N, H, W, 3] in [0, 1]
    "lidar_depth"  float [N, H, W] sparse LiDAR z-depth in metres, 0 = no return
    "dense_depth"  float [N, H, W] teacher z-depth in metres (only when the scene has a teacher cache
                   and ``use_dense_depth``)
    "dense_opacity" float [N, H, W] teacher accumulation (with "dense_depth")
    "sky_mask"     bool [N, H, W] ground truth (procedural) or teacher-derived (nuScenes with a cache)
    "gt_depth"     float [N, H, W] exact z-depth, 0 at sky (procedural only)
    "ego_to_world" float [4, 4] ego pose at the input step (the model's space is centred on the ego)
    "scene" str, "time" int
    "targets"      list, one dict per target offset (``target_offsets`` for training,
                   ``eval_target_offsets`` for evaluation): "offset", "time", "cameras", "image",
                   "lidar_depth", and "dense_depth"/"dense_opacity"/"sky_mask"/"gt_depth" when available.
  Every depth is z-depth along the camera's optical axis in metres.

Splits are by scene (``train_split_fraction`` / ``val_split_fraction`` of the dataparser; the rest
is test). Evaluation (``next_eval``) walks the val scenes (test scenes in ``test_mode="test"``)
frame by frame; ``num_eval_frames`` says how many there are. See INTERFACE.md next to this file.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Literal, Optional, Tuple, Type, Union

import numpy as np
import torch
from PIL import Image

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.datamanagers.base_datamanager import DataManager, DataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset

from nerfconvert import NerfconvertError
from nerfconvert.distillnerf.dataparser import (  # noqa: F401  (re-exported: one import for users)
    CACHE_DIR,
    CACHE_META,
    DistillNerfDataParser,
    DistillNerfDataParserConfig,
    FrameRecord,
    SceneRecord,
    StepRecord,
    cache_paths,
    frames_to_cameras,
    read_cache_meta,
    read_virtual_meta,
    shifted_pose,
    virtual_dir,
    read_procedural_scene,
    read_scenes,
    split_scenes,
)
from nerfconvert.resume import OptionalExtraState, rng_state, set_rng_state
from nerfconvert.scenes.driving import generate_driving_dataset  # the tiny test set, re-exported

# ---------------------------------------------------------------------------------------------
# Data manager


@dataclass
class DistillNerfDataManagerConfig(DataManagerConfig):
    """Batches of N posed images of one scene at one time step, plus targets (see module docstring)."""

    _target: Type = field(default_factory=lambda: DistillNerfDataManager)
    dataparser: DistillNerfDataParserConfig = field(default_factory=DistillNerfDataParserConfig)
    data: Optional[Path] = None
    """Overrides ``dataparser.data`` when set."""
    target_offsets: Tuple[int, ...] = (0,)
    """Training targets: time offsets from the input step (0 = reconstruct the inputs)."""
    eval_target_offsets: Tuple[int, ...] = (-1, 1)
    """Evaluation targets: novel views at the previous / next step, as in the paper's Table 1."""
    num_cameras: int = 6
    """Input cameras per batch: the first N of the rig (front first)."""
    downscale: int = 1
    """Integer image downscale at load time (1 = stored resolution)."""
    use_dense_depth: bool = True
    """Load the teacher's dense depth where a scene has a complete cache (L_depth')."""
    teacher: Optional[str] = "depth-nerfacto"
    """Teacher method the caches must come from (``nerfconvert distillnerf-teachers``' default); a cache from
    another teacher is an error. None accepts any."""
    teacher_sky_depth: float = 150.0
    """nuScenes sky from the teacher: pixels deeper than this (metres) or with opacity < 0.5."""
    virtual_cameras: bool = True
    """Virtual cameras (distillation): each training batch gets ``num_virtual_targets`` extra targets, the
    teacher's RGB, depth and opacity with the rig moved by one of the cache's shifts at the input step (the
    cache's virtual views, rendered by ``nerfconvert distillnerf-teachers``). Needs ``use_dense_depth``;
    scenes whose cache has no virtual views train without them."""
    num_virtual_targets: int = 1
    """Virtual-camera targets per training batch (drawn at random among the cache's shifts)."""
    seed: int = 0
    """Seed of the training frame order."""
    max_cached_frames: int = 256
    """Loaded (scene, step) frames kept in memory."""


class DistillNerfDataManager(OptionalExtraState, DataManager):
    """Multi-scene data manager; the batch layout is documented in the module docstring.
    Checkpoints keep the shuffled epoch (its random state and the frames still to come), so that a
    resumed run sees each frame of the epoch once, as the uninterrupted run would."""

    config: DistillNerfDataManagerConfig

    def __init__(
        self,
        config: DistillNerfDataManagerConfig,
        device: Union[torch.device, str] = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ):
        self.config = config
        self.device = device
        self.test_mode = test_mode
        self.world_size = world_size
        self.local_rank = local_rank
        if config.data is not None:
            config.dataparser.data = Path(config.data)
        if config.downscale < 1:
            raise NerfconvertError(f"downscale must be a positive integer, got {config.downscale}.")
        self.dataparser: DistillNerfDataParser = config.dataparser.setup()
        self.train_dataparser_outputs = self.dataparser.get_dataparser_outputs(split="train")
        self.train_dataset = InputDataset(self.train_dataparser_outputs, scale_factor=1.0 / config.downscale)
        eval_split = "test" if test_mode == "test" else "val"
        self.eval_dataset = InputDataset(
            self.dataparser.get_dataparser_outputs(split=eval_split), scale_factor=1.0 / config.downscale
        )
        splits = self.dataparser.splits()
        self.scenes: Dict[str, List[SceneRecord]] = {"train": splits["train"], "val": splits["val"], "test": splits["test"]}
        self.eval_split = eval_split
        self._check_scenes()
        self._check_caches()
        self._cache: "OrderedDict[Tuple[str, int], Dict[str, Any]]" = OrderedDict()
        self._train_items = self.valid_items("train", config.target_offsets)
        self._eval_items = self.valid_items(eval_split, config.eval_target_offsets)
        if not self._train_items:
            raise NerfconvertError(
                f"No training frame has every target offset {tuple(config.target_offsets)} inside its scene; "
                "use scenes with more time steps or smaller offsets."
            )
        self._rng = random.Random(config.seed + 1000 * local_rank)
        self._order: List[int] = []
        super().__init__()

    # -- checks -------------------------------------------------------------------------------

    def _check_scenes(self) -> None:
        for records in self.scenes.values():
            for scene in records:
                for step in scene.steps:
                    if len(step.frames) < self.config.num_cameras:
                        raise NerfconvertError(
                            f"Scene {scene.name} step {step.time} has {len(step.frames)} cameras, fewer than "
                            f"num_cameras={self.config.num_cameras}; lower --pipeline.datamanager.num-cameras."
                        )

    def _check_caches(self) -> None:
        if not self.config.use_dense_depth or self.config.teacher is None:
            return
        for records in self.scenes.values():
            for scene in records:
                meta = read_cache_meta(scene)
                if meta is not None and meta.get("teacher") != self.config.teacher:
                    raise NerfconvertError(
                        f"Scene {scene.name}: the depth cache in {scene.cache_dir} was made by teacher "
                        f"'{meta.get('teacher')}', not '{self.config.teacher}'. Rerun `nerfconvert distillnerf-teachers "
                        f"--method {self.config.teacher}`, or set --pipeline.datamanager.teacher {meta.get('teacher')}."
                    )

    # -- frame index --------------------------------------------------------------------------

    def valid_items(self, split: str, offsets: Tuple[int, ...]) -> List[Tuple[SceneRecord, int]]:
        """(scene, step index) pairs whose every target offset lands inside the scene."""
        items = []
        for scene in self.scenes[split]:
            for t in range(scene.num_steps):
                if all(0 <= t + o < scene.num_steps for o in offsets):
                    items.append((scene, t))
        return items

    @property
    def num_eval_frames(self) -> int:
        return len(self._eval_items)

    def scene_names(self, split: str) -> List[str]:
        return [s.name for s in self.scenes[split]]

    # -- loading ------------------------------------------------------------------------------

    def _load_step(self, scene: SceneRecord, t: int) -> Dict[str, Any]:
        key = (scene.name, t)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        step = scene.steps[t]
        frames = step.frames[: self.config.num_cameras]
        ds = self.config.downscale
        cameras = frames_to_cameras(frames)
        if ds > 1:
            cameras.rescale_output_resolution(1.0 / ds)
        h, w = int(cameras.height[0, 0]), int(cameras.width[0, 0])
        out: Dict[str, Any] = {"cameras": cameras}
        images, lidar = [], []
        for f in frames:
            image = Image.open(f.image).convert("RGB")
            if image.size != (f.width, f.height):
                raise NerfconvertError(
                    f"Scene {scene.name}: {f.image} is {image.size[0]}x{image.size[1]} but its camera says "
                    f"{f.width}x{f.height}; regenerate the scene."
                )
            if ds > 1:
                image = image.resize((w, h), Image.BOX)
            images.append(np.asarray(image, dtype=np.float32) / 255.0)
            if f.lidar is not None:
                sparse = np.load(f.lidar)
            elif f.lidar_fn is not None:
                sparse = f.lidar_fn()
            else:
                sparse = np.zeros((f.height, f.width), np.float32)
            lidar.append(_downscale_sparse(sparse, ds, h, w))
        out["image"] = np.stack(images)
        out["lidar_depth"] = np.stack(lidar)
        if all(f.depth is not None for f in frames):
            out["gt_depth"] = np.stack([_downscale_dense(np.load(f.depth), ds, h, w) for f in frames])
        if all(f.sky is not None for f in frames):
            out["sky_mask"] = np.stack(
                [_downscale_dense(np.asarray(Image.open(f.sky)) > 127, ds, h, w) for f in frames]
            )
        if self.config.use_dense_depth and read_cache_meta(scene) is not None:
            depths, opacities = [], []
            for f in frames:
                depth_path, opacity_path = cache_paths(scene, step.time, f.camera)
                if not depth_path.is_file():
                    raise NerfconvertError(
                        f"Scene {scene.name}: the teacher cache lacks {depth_path}; rerun "
                        "`nerfconvert distillnerf-teachers --redo` for this scene."
                    )
                depths.append(_downscale_dense(np.load(depth_path), ds, h, w))
                opacities.append(_downscale_dense(np.load(opacity_path), ds, h, w))
            out["dense_depth"] = np.stack(depths)
            out["dense_opacity"] = np.stack(opacities)
            if "sky_mask" not in out:
                out["sky_mask"] = (out["dense_opacity"] < 0.5) | (out["dense_depth"] > self.config.teacher_sky_depth)
        out["ego_to_world"] = step.ego_to_world
        out["time"] = step.time
        self._cache[key] = out
        while len(self._cache) > self.config.max_cached_frames:
            self._cache.popitem(last=False)
        return out

    def _tensors(self, data: Dict[str, Any]) -> Dict[str, Any]:
        batch: Dict[str, Any] = {"cameras": data["cameras"].to(self.device)}
        for key in ("image", "lidar_depth", "gt_depth", "dense_depth", "dense_opacity"):
            if key in data:
                batch[key] = torch.from_numpy(np.ascontiguousarray(data[key], dtype=np.float32)).to(self.device)
        if "sky_mask" in data:
            batch["sky_mask"] = torch.from_numpy(np.ascontiguousarray(data["sky_mask"], dtype=bool)).to(self.device)
        return batch

    def _frame(self, scene: SceneRecord, t: int, offsets: Tuple[int, ...]) -> Tuple[Cameras, Dict[str, Any]]:
        data = self._tensors(self._load_step(scene, t))
        cameras = data.pop("cameras")
        batch: Dict[str, Any] = dict(data)
        batch["ego_to_world"] = torch.tensor(scene.steps[t].ego_to_world, dtype=torch.float32, device=self.device)
        batch["scene"] = scene.name
        batch["time"] = scene.steps[t].time
        targets = []
        for offset in offsets:
            if offset == 0:
                target = {"cameras": cameras, **data}
            else:
                target = self._tensors(self._load_step(scene, t + offset))
            target["offset"] = int(offset)
            target["time"] = scene.steps[t + offset].time
            targets.append(target)
        batch["targets"] = targets
        return cameras, batch

    # -- nerfstudio API -----------------------------------------------------------------------

    def get_extra_state(self) -> Dict[str, Any]:
        return {"rng": rng_state(self._rng), "order": torch.tensor(self._order, dtype=torch.int64),
                "num_items": len(self._train_items)}

    def set_extra_state(self, state: Optional[Dict[str, Any]]) -> None:
        if not state or int(state.get("num_items", -1)) != len(self._train_items):
            return  # other training frames (another data folder or split): a fresh epoch
        if self.world_size > 1:
            return  # the checkpoint holds rank 0's share of the epoch, not this rank's: a fresh one
        set_rng_state(self._rng, state["rng"])
        self._order = [int(i) for i in state["order"].tolist()]

    def setup_train(self):
        """Nothing to set up: frames are read on demand (and kept in a small cache)."""

    def setup_eval(self):
        """Nothing to set up: frames are read on demand."""

    def next_train(self, step: int) -> Tuple[Cameras, Dict[str, Any]]:
        """A random training frame (shuffled epochs over (scene, step) pairs)."""
        self.train_count += 1
        if not self._order:
            self._order = list(range(len(self._train_items)))
            self._rng.shuffle(self._order)
            if self.world_size > 1:  # each rank its own share of the epoch
                self._order = self._order[self.local_rank :: self.world_size] or self._order[:1]
        scene, t = self._train_items[self._order.pop()]
        cameras, batch = self._frame(scene, t, tuple(self.config.target_offsets))
        if self.config.virtual_cameras and self.config.use_dense_depth and self.config.num_virtual_targets > 0:
            # own random stream per step: a resumed run draws the same shifts as an uninterrupted one
            rng = np.random.default_rng([self.config.seed, self.local_rank, int(step)])
            meta = read_virtual_meta(scene) if read_cache_meta(scene) is not None else None
            if meta is not None:
                picks = rng.choice(len(meta["shifts"]), size=min(self.config.num_virtual_targets, len(meta["shifts"])),
                                   replace=False)
                batch["targets"] = list(batch["targets"]) + [self.virtual_target(scene, t, int(k), meta) for k in picks]
        return cameras, batch

    def virtual_target(self, scene: SceneRecord, t: int, index: int, meta: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The teacher's virtual view ``index`` (the rig moved by ``meta["shifts"][index]``) of step ``t``:
        a target dict with ``virtual=True``, its cameras, ``image`` (teacher RGB), ``dense_depth``, ``dense_opacity``
        and the input step's ``sky_mask`` when it has one."""
        meta = meta or read_virtual_meta(scene)
        if meta is None:
            raise NerfconvertError(f"Scene {scene.name}: the teacher cache has no virtual views; rerun "
                                   "`nerfconvert distillnerf-teachers` (it adds them to finished caches).")
        step = scene.steps[t]
        frames = step.frames[: self.config.num_cameras]
        shift = meta["shifts"][index]
        cameras = frames_to_cameras(frames)
        moved = torch.tensor(np.stack([shifted_pose(f.c2w, step.ego_to_world, shift)[:3, :4] for f in frames]),
                             dtype=torch.float32)
        cameras.camera_to_worlds = moved
        ds = self.config.downscale
        if ds > 1:
            cameras.rescale_output_resolution(1.0 / ds)
        h, w = int(cameras.height[0, 0]), int(cameras.width[0, 0])
        folder = virtual_dir(scene.cache_dir, index, step.time)
        arrays: Dict[str, List[np.ndarray]] = {"rgb": [], "depth": [], "opacity": []}
        for f in frames:
            for key in arrays:
                path = folder / f"{f.camera}_{key}.npy"
                if not path.is_file():
                    raise NerfconvertError(f"Scene {scene.name}: the virtual-view cache lacks {path}; rerun "
                                           "`nerfconvert distillnerf-teachers --redo` for this scene.")
                value = np.load(path).astype(np.float32)
                if key == "rgb" and ds > 1:
                    value = value[: h * ds, : w * ds].reshape(h, ds, w, ds, 3).mean(axis=(1, 3))
                elif ds > 1:
                    value = _downscale_dense(value, ds, h, w)
                arrays[key].append(value)
        as_tensor = lambda key: torch.from_numpy(np.stack(arrays[key])).to(self.device)  # noqa: E731
        target = {"offset": 0, "virtual": True, "shift": tuple(float(v) for v in shift), "time": step.time,
                  "cameras": cameras.to(self.device), "image": as_tensor("rgb"), "dense_depth": as_tensor("depth"),
                  "dense_opacity": as_tensor("opacity")}
        sky = self._load_step(scene, t).get("sky_mask")
        if sky is not None:
            # The rig only moves (no rotation), so pixel (u, v) of a virtual camera looks the same way as in
            # the input camera, and the sky, at infinity, stays where it was: the input sky mask carries over
            # (a near occluder's parallax along the sky line is ignored).
            target["sky_mask"] = torch.from_numpy(np.ascontiguousarray(sky, dtype=bool)).to(self.device)
        return target

    def next_eval(self, step: int) -> Tuple[Cameras, Dict[str, Any]]:
        """Evaluation frame ``step`` modulo the number of frames, targets at ``eval_target_offsets``."""
        self.eval_count += 1
        if not self._eval_items:
            raise NerfconvertError(
                f"No {self.eval_split} frame has every eval target offset {tuple(self.config.eval_target_offsets)} "
                "inside its scene; use scenes with at least 3 time steps or change --pipeline.datamanager.eval-target-offsets."
            )
        scene, t = self._eval_items[step % len(self._eval_items)]
        return self._frame(scene, t, tuple(self.config.eval_target_offsets))

    def next_eval_image(self, step: int) -> Tuple[Cameras, Dict[str, Any]]:
        return self.next_eval(step)

    def get_frame(self, scene: str, time: int, offsets: Tuple[int, ...] = (0,)) -> Tuple[Cameras, Dict[str, Any]]:
        """The frame of ``scene`` at step index ``time`` (any split)."""
        for records in self.scenes.values():
            for record in records:
                if record.name == scene:
                    if not all(0 <= time + o < record.num_steps for o in (0, *offsets)):
                        raise NerfconvertError(
                            f"Scene {scene} has steps 0..{record.num_steps - 1}; time {time} with offsets {offsets} "
                            "falls outside."
                        )
                    return self._frame(record, time, tuple(offsets))
        raise NerfconvertError(f"Scene {scene} is not in {self.config.dataparser.data}; known: {self.scene_names('train')}...")

    def iter_frames(self, split: str = "test", offsets: Tuple[int, ...] = (0,)) -> Iterator[Tuple[Cameras, Dict[str, Any]]]:
        """Every frame of a split whose offsets stay inside its scene, in (scene, time) order."""
        if split not in self.scenes:
            raise NerfconvertError(f"Unknown split {split!r}; use train, val or test.")
        for scene, t in self.valid_items(split, tuple(offsets)):
            yield self._frame(scene, t, tuple(offsets))

    def get_train_rays_per_batch(self) -> int:
        cameras = self.train_dataset.cameras
        return int(self.config.num_cameras * cameras.height[0, 0] * cameras.width[0, 0])

    def get_eval_rays_per_batch(self) -> int:
        return self.get_train_rays_per_batch()

    def get_datapath(self) -> Path:
        return Path(self.config.dataparser.data)

    def get_param_groups(self) -> Dict[str, List[torch.nn.Parameter]]:
        return {}


def _downscale_dense(image: np.ndarray, ds: int, h: int, w: int) -> np.ndarray:
    """Nearest sample at each block's centre pixel (keeps exact depths and masks, no mixing)."""
    if ds == 1:
        return image[:h, :w]
    return image[ds // 2 :: ds, ds // 2 :: ds][:h, :w]


def _downscale_sparse(depth: np.ndarray, ds: int, h: int, w: int) -> np.ndarray:
    """Nearest return per block (sparse LiDAR must not be averaged with empty pixels)."""
    depth = np.asarray(depth, dtype=np.float32)
    if ds == 1:
        return depth[:h, :w]
    block = depth[: h * ds, : w * ds].reshape(h, ds, w, ds)
    block = np.where(block > 0, block, np.inf).min(axis=(1, 3))
    return np.where(np.isfinite(block), block, 0.0).astype(np.float32)


def z_depth_factor(cameras: Cameras) -> torch.Tensor:
    """[N, H, W] factor that turns nerfstudio's ray-distance depth into z-depth: the z component
    of the unit ray direction in the camera frame (all cameras of equal size)."""
    n = cameras.shape[0]
    h, w = int(cameras.height[0, 0]), int(cameras.width[0, 0])
    rows, cols = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    x = (cols[None] - cameras.cx.view(n, 1, 1).cpu()) / cameras.fx.view(n, 1, 1).cpu()
    y = (rows[None] - cameras.cy.view(n, 1, 1).cpu()) / cameras.fy.view(n, 1, 1).cpu()
    return 1.0 / torch.sqrt(x * x + y * y + 1.0)


__all__ = [
    "DistillNerfDataManager",
    "DistillNerfDataManagerConfig",
    "DistillNerfDataParser",
    "DistillNerfDataParserConfig",
    "FrameRecord",
    "SceneRecord",
    "StepRecord",
    "read_scenes",
    "split_scenes",
    "generate_driving_dataset",
    "z_depth_factor",
]

