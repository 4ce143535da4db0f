"""Records of driving scenes: cameras at time steps (read by the dataparser and by the nuScenes reader)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np


@dataclass
class FrameRecord:
    """One camera at one time step."""

    camera: str
    image: Path
    c2w: np.ndarray  # [4, 4] OpenGL camera-to-world, metres
    intrinsics: Tuple[float, float, float, float]  # fx, fy, cx, cy in pixels
    width: int
    height: int
    depth: Optional[Path] = None  # exact z-depth .npy (procedural)
    sky: Optional[Path] = None  # sky mask PNG (procedural)
    lidar: Optional[Path] = None  # sparse z-depth .npy
    lidar_fn: Optional[Callable[[], np.ndarray]] = None  # or computed on demand (nuScenes)


@dataclass
class StepRecord:
    time: int
    ego_to_world: np.ndarray  # [4, 4]
    frames: List[FrameRecord]


@dataclass
class SceneRecord:
    name: str
    kind: str  # "procedural" or "nuscenes"
    steps: List[StepRecord]
    cache_dir: Path
    """Where the teacher's dense depth for this scene lives."""
    root: Optional[Path] = None
    """The scene folder (procedural); teachers train on ``root / transforms.json``."""

    @property
    def num_steps(self) -> int:
        return len(self.steps)
