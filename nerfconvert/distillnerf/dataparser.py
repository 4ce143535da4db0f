"""Records of driving scenes and the ``distillnerf-data`` dataparser (split by scene).

Kept free of nerfstudio's data-manager imports: nerfstudio imports this module while it
discovers dataparser plugins (``nerfstudio.dataparser_configs``), before its data managers exist.
The data manager and the batch interface are in ``nerfconvert.distillnerf.data``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type

import numpy as np
import torch

from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox

from nerfconvert import NerfconvertError
from nerfconvert.distillnerf.records import FrameRecord, SceneRecord, StepRecord  # noqa: F401  (re-exported)

CACHE_DIR = "teacher_cache"
"""A scene's teacher depth cache: ``<scene>/teacher_cache/`` (``teacher.json`` + ``t000/<cam>_depth.npy``)."""
CACHE_META = "teacher.json"
GENERATE_HINT = (
    "make procedural scenes with `python -c \"from nerfconvert.scenes.driving import generate_driving_dataset; "
    "generate_driving_dataset('data/driving')\"`"
)


def read_cache_meta(scene: SceneRecord) -> Optional[Dict[str, Any]]:
    """The teacher cache's metadata if the cache is complete, else None."""
    try:
        meta = json.loads((scene.cache_dir / CACHE_META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("complete") else None


def cache_paths(scene: SceneRecord, time: int, camera: str) -> Tuple[Path, Path]:
    step = scene.cache_dir / f"t{time:03d}"
    return step / f"{camera}_depth.npy", step / f"{camera}_opacity.npy"


VIRTUAL_META = "virtual.json"


def shifted_pose(c2w: np.ndarray, ego_to_world: np.ndarray, shift) -> np.ndarray:
    """A camera pose moved with its rig by ``shift`` metres in the ego frame (orientation kept)."""
    pose = np.eye(4)
    pose[: c2w.shape[0], :] = c2w
    pose[:3, 3] = pose[:3, 3] + np.asarray(ego_to_world)[:3, :3] @ np.asarray(shift, dtype=np.float64)
    return pose


def virtual_dir(cache_dir: Path, index: int, time: int) -> Path:
    return cache_dir / "virtual" / f"v{index:02d}" / f"t{time:03d}"


def read_virtual_meta(scene: SceneRecord) -> Optional[Dict]:
    """The virtual views' metadata (``shifts``) if a scene's cache has them complete, else None."""
    try:
        meta = json.loads((scene.cache_dir / VIRTUAL_META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("complete") and meta.get("shifts") else None


def _missing(path: Path) -> bool:
    return not path.is_file()


def read_procedural_scene(path: Path) -> SceneRecord:
    """Records of one scene folder written by ``nerfconvert.scenes.driving``; clear errors for
    missing step folders, transforms or images."""
    path = Path(path)
    if not path.is_dir():
        raise NerfconvertError(f"Scene folder {path} does not exist; check the path, or {GENERATE_HINT}.")
    try:
        meta = json.loads((path / "scene.json").read_text())
    except OSError:
        raise NerfconvertError(
            f"Scene folder {path} has no scene.json, so it is not a driving scene; point --data at a folder of "
            f"scenes, or {GENERATE_HINT}."
        ) from None
    except ValueError as err:
        raise NerfconvertError(f"{path / 'scene.json'} is not valid JSON ({err}); regenerate the scene.") from None
    steps = []
    for entry in meta.get("steps", []):
        transforms = path / entry["transforms"]
        if not transforms.is_file():
            raise NerfconvertError(
                f"Scene {path.name}: time step {entry['time']} has no {entry['transforms']} (step folder missing); "
                "regenerate the scene or remove it from the data root."
            )
        step_meta = json.loads(transforms.read_text())
        base = transforms.parent
        frames = []
        for frame in step_meta.get("frames", []):
            record = FrameRecord(
                camera=frame.get("camera", Path(frame["file_path"]).stem),
                image=base / frame["file_path"],
                c2w=np.asarray(frame["transform_matrix"], dtype=np.float64),
                intrinsics=(float(frame["fl_x"]), float(frame["fl_y"]), float(frame["cx"]), float(frame["cy"])),
                width=int(frame["w"]),
                height=int(frame["h"]),
                depth=base / frame["depth_path"] if "depth_path" in frame else None,
                sky=base / frame["sky_path"] if "sky_path" in frame else None,
                lidar=base / frame["lidar_path"] if "lidar_path" in frame else None,
            )
            frames.append(record)
        if not frames:
            raise NerfconvertError(f"Scene {path.name}: {transforms} lists no cameras; regenerate the scene.")
        missing = [f.image for f in frames if _missing(f.image)]
        if missing:
            raise NerfconvertError(
                f"Scene {path.name} has cameras but no images: {len(missing)} of {len(frames)} image files of time "
                f"step {entry['time']} are missing (first: {missing[0]}); regenerate the scene or restore its images."
            )
        for f in frames:
            for kind in ("depth", "sky", "lidar"):
                p = getattr(f, kind)
                if p is not None and _missing(p):
                    raise NerfconvertError(
                        f"Scene {path.name}: the {kind} file {p} listed in {transforms} is missing; regenerate the scene."
                    )
        ego = np.asarray(step_meta.get("ego_to_world", entry.get("ego_to_world", np.eye(4))), dtype=np.float64)
        steps.append(StepRecord(time=int(entry["time"]), ego_to_world=ego, frames=frames))
    if not steps:
        raise NerfconvertError(f"Scene {path.name}: scene.json lists no time steps; regenerate the scene.")
    return SceneRecord(name=path.name, kind=meta.get("kind", "procedural"), steps=steps, cache_dir=path / CACHE_DIR, root=path)


def is_nuscenes_root(path: Path) -> bool:
    return any(p.is_dir() and p.name.startswith("v1.0") for p in Path(path).iterdir()) if Path(path).is_dir() else False


def read_scenes(data: Path, scenes: Tuple[str, ...] = (), nuscenes_version: str = "v1.0-mini") -> List[SceneRecord]:
    """All scenes under ``data``, sorted by name (procedural scene folders, or a nuScenes dataroot)."""
    data = Path(data)
    if not data.exists():
        raise NerfconvertError(
            f"--data {data} does not exist. Pass a folder of driving scenes or a nuScenes dataroot (relative paths "
            f"start at {Path.cwd()}), or {GENERATE_HINT}."
        )
    if not data.is_dir():
        raise NerfconvertError(f"--data {data} is a file; pass the folder that holds the scenes.")
    if is_nuscenes_root(data):
        from nerfconvert.distillnerf.nuscenes import read_nuscenes

        records = read_nuscenes(data, version=nuscenes_version)
    else:
        if (data / "scene.json").is_file():
            raise NerfconvertError(
                f"--data {data} is a single scene; pass the folder that contains it ({data.parent}) instead."
            )
        folders = sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
        folders = [p for p in folders if (p / "scene.json").exists() or (p / "transforms.json").exists()]
        if scenes:
            names = {p.name for p in folders}
            for name in scenes:
                if name not in names:
                    raise NerfconvertError(
                        f"Scene folder {data / name} is missing (scenes found: {', '.join(sorted(names)) or 'none'}); "
                        "fix --scenes or regenerate it."
                    )
        if not folders:
            raise NerfconvertError(f"--data {data} holds no scene folders (no */scene.json); {GENERATE_HINT}.")
        records = [read_procedural_scene(p) for p in folders]
    if scenes:
        by_name = {r.name: r for r in records}
        missing = [s for s in scenes if s not in by_name]
        if missing:
            raise NerfconvertError(f"Scene {missing[0]} is not in {data}; fix the scene list.")
        records = [by_name[s] for s in scenes]
    return sorted(records, key=lambda r: r.name)


def split_scenes(records: List[SceneRecord], train: float, val: float, seed: int = 0) -> Dict[str, List[SceneRecord]]:
    """Train/val/test by scene: a seeded shuffle, then fractions. With 3+ scenes every split gets
    at least one scene; with fewer, all splits share them (tiny sets still evaluate)."""
    if not (0.0 < train <= 1.0 and 0.0 <= val <= 1.0 and train + val <= 1.0 + 1e-9):
        raise NerfconvertError(f"Split fractions must satisfy 0 < train, 0 <= val, train + val <= 1 (got {train}, {val}).")
    order = list(records)
    random.Random(seed).shuffle(order)
    n = len(order)
    if n < 3:
        return {"train": order, "val": order, "test": order}
    n_val = max(1, int(round(val * n))) if val > 0 else 0
    n_test = max(1, int(round((1.0 - train - val) * n))) if train + val < 1.0 - 1e-9 else 0
    n_train = max(1, n - n_val - n_test)
    n_val = n - n_train - n_test if n_train + n_val + n_test > n else n_val
    split = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val : n_train + n_val + n_test],
    }
    # An empty eval split falls back to the train scenes rather than failing evaluation.
    for name in ("val", "test"):
        if not split[name]:
            split[name] = split["train"]
    return {k: sorted(v, key=lambda r: r.name) for k, v in split.items()}


def explicit_split(data: Path, train: Tuple[str, ...], held_out: Tuple[str, ...],
                   nuscenes_version: str = "v1.0-mini") -> Dict[str, List[SceneRecord]]:
    """Train = ``train``, val = test = ``held_out`` (named scene lists; no shuffle)."""
    if not held_out:
        raise NerfconvertError("--train-scenes needs --eval-scenes too: the held-out scenes to evaluate on.")
    shared = sorted(set(train) & set(held_out))
    if shared:
        raise NerfconvertError(f"Scenes {', '.join(shared)} are in both the train and the eval list; held-out "
                               "scenes must never be trained on.")
    records = {r.name: r for r in read_scenes(data, tuple(train) + tuple(held_out), nuscenes_version)}
    held = [records[n] for n in held_out]
    return {"train": [records[n] for n in train], "val": held, "test": list(held)}


# ---------------------------------------------------------------------------------------------
# Dataparser


@dataclass
class DistillNerfDataParserConfig(DataParserConfig):
    """A root of driving scenes (procedural folders or a nuScenes dataroot), split by scene."""

    _target: Type = field(default_factory=lambda: DistillNerfDataParser)
    data: Path = Path("data/driving")
    """Folder of scene folders, or a nuScenes dataroot (holds v1.0-*/ tables)."""
    scenes: Tuple[str, ...] = ()
    """Only these scenes (names); all when empty."""
    train_split_fraction: float = 0.8
    """Fraction of scenes for training."""
    val_split_fraction: float = 0.1
    """Fraction of scenes for validation; the rest is test."""
    split_seed: int = 0
    train_scenes: Tuple[str, ...] = ()
    """Explicit training scenes (names). With them the split is these lists, not a seeded shuffle:
    ``eval_scenes`` are the val and the test split."""
    eval_scenes: Tuple[str, ...] = ()
    """Explicit held-out scenes (with ``train_scenes``): never trained on, evaluated by ns-eval / the benchmarks."""
    nuscenes_version: str = "v1.0-mini"
    """nuScenes table version folder (v1.0-mini, v1.0-trainval)."""


def frames_to_cameras(frames: List[FrameRecord]) -> Cameras:
    c2w = torch.tensor(np.stack([f.c2w[:3, :4] for f in frames]), dtype=torch.float32)
    k = torch.tensor([f.intrinsics for f in frames], dtype=torch.float32)
    return Cameras(
        camera_to_worlds=c2w,
        fx=k[:, 0:1],
        fy=k[:, 1:2],
        cx=k[:, 2:3],
        cy=k[:, 3:4],
        width=torch.tensor([[f.width] for f in frames]),
        height=torch.tensor([[f.height] for f in frames]),
        camera_type=CameraType.PERSPECTIVE,
    )


class DistillNerfDataParser(DataParser):
    """Every frame of every scene of a split, as one nerfstudio dataset (viewer, pipeline
    bookkeeping); the records themselves travel in ``metadata["scenes"]``."""

    config: DistillNerfDataParserConfig

    def __init__(self, config: DistillNerfDataParserConfig):
        super().__init__(config)
        self._splits: Optional[Dict[str, List[SceneRecord]]] = None

    def splits(self) -> Dict[str, List[SceneRecord]]:
        if self._splits is None and self.config.train_scenes:
            self._splits = explicit_split(self.config.data, tuple(self.config.train_scenes),
                                          tuple(self.config.eval_scenes), self.config.nuscenes_version)
        if self._splits is None:
            records = read_scenes(self.config.data, tuple(self.config.scenes), self.config.nuscenes_version)
            self._splits = split_scenes(
                records, self.config.train_split_fraction, self.config.val_split_fraction, self.config.split_seed
            )
        return self._splits

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        split = {"train": "train", "val": "val", "test": "test"}.get(split, "val")
        scenes = self.splits()[split]
        frames = [f for s in scenes for step in s.steps for f in step.frames]
        half = 60.0  # the region of interest (+-50 m) with margin; far content lives beyond it
        return DataparserOutputs(
            image_filenames=[f.image for f in frames],
            cameras=frames_to_cameras(frames),
            scene_box=SceneBox(aabb=torch.tensor([[-half, -half, -10.0], [half, half, 20.0]])),
            metadata={"scenes": [s.name for s in scenes]},
        )




def _dataparser_specification():
    from nerfstudio.plugins.registry_dataparser import DataParserSpecification

    return DataParserSpecification(
        config=DistillNerfDataParserConfig(),
        description="DistillNeRF multi-scene driving data: procedural scene folders or a nuScenes dataroot",
    )


distillnerf_dataparser = _dataparser_specification()
"""Registered as ``distillnerf-data`` (entry point ``nerfstudio.dataparser_configs``)."""
