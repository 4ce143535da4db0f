"""Seeded procedural driving scenes for DistillNeRF: a road with box cars and buildings, a sky
at infinity, and an ego car with six surround cameras (nuScenes layout) driving along the road.

Everything is ray cast exactly (planes and oriented boxes, float64 numpy), so ground-truth
depth and sky masks are exact. One folder per scene::

    <root>/<scene>/
        scene.json                  generator, seed, rig, time steps, the ego pose of every step
        transforms.json             all frames of all steps (nerfstudio format): teachers train on it
        t000/transforms.json        one time step: the 6 cameras (nerfstudio format, per-frame
                                    intrinsics, OpenGL camera-to-world in metres, world = ego at t=0)
        t000/images/<cam>.png       RGB
        t000/depth/<cam>.npy        float32 [H, W] ground-truth z-depth in metres, 0 at sky
        t000/sky/<cam>.png          sky mask (255 = sky)
        t000/lidar/<cam>.npy        float32 [H, W] sparse LiDAR z-depth in metres, 0 = no return

Frames of a step carry extra keys (nerfstudio ignores them): ``camera`` (rig name),
``depth_path``, ``sky_path``, ``lidar_path``; the step's transforms.json has ``time`` and
``ego_to_world``. World axes: x forward along the road, y left, z up, ground at z=0.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from PIL import Image

from nerfconvert import NerfconvertError

Array = np.ndarray

GENERATOR_NAME = "nerfconvert.scenes.driving"
GENERATOR_VERSION = 1
"""Bump when the same arguments would produce different files."""

# The nuScenes rig: name, yaw of the optical axis (degrees, left positive), mount offset in the ego frame.
CAMERA_RIG: Tuple[Tuple[str, float, Tuple[float, float, float]], ...] = (
    ("CAM_FRONT", 0.0, (1.7, 0.0, 1.6)),
    ("CAM_FRONT_LEFT", 55.0, (1.5, 0.5, 1.6)),
    ("CAM_FRONT_RIGHT", -55.0, (1.5, -0.5, 1.6)),
    ("CAM_BACK", 180.0, (-1.0, 0.0, 1.6)),
    ("CAM_BACK_LEFT", 110.0, (0.0, 0.6, 1.6)),
    ("CAM_BACK_RIGHT", -110.0, (0.0, -0.6, 1.6)),
)
HORIZONTAL_FOV_DEG = 70.0
LIDAR_RANGE_XY = 50.0
"""LiDAR returns are kept within +-50 m (x and y, ego frame) ..."""
LIDAR_RANGE_Z = 6.4
"""... and +-6.4 m in height, the range DistillNeRF's inner voxels cover."""
LIDAR_HEIGHT = 1.84
LIDAR_BEAMS = 32
"""A 32-beam spinning LiDAR, like nuScenes' HDL-32E (elevations +10 to -30 degrees)."""
LIDAR_AZIMUTH_STEPS = 1080
EGO_LANE_Y = -2.0
ROAD_HALF_WIDTH = 4.0
SKY_DEPTH = 0.0
"""Depth written at sky pixels: no depth (sky is at infinity)."""


@dataclass
class Box:
    """An oriented box standing on the ground: centre (x, y), yaw, half sizes, colour, kind."""

    center: Array  # [3] world centre
    yaw: float
    half: Array  # [3] half extents (length, width, height)
    color: Array  # [3] base colour in [0, 1]
    kind: str  # "car" or "building"
    velocity: float = 0.0  # metres per time step along +x (moving cars)
    pattern: int = 0


@dataclass
class DrivingScene:
    """The static world (buildings, parked cars) plus moving cars, from one seed."""

    seed: int
    boxes: List[Box]
    step_length: float
    """Ego displacement per time step in metres (nuScenes keyframes: 2 Hz at ~10 m/s)."""

    @classmethod
    def from_seed(cls, seed: int, num_steps: int, step_length: float = 4.0, moving_cars: bool = True) -> "DrivingScene":
        rng = np.random.default_rng([seed, 7])
        boxes: List[Box] = []
        extent = (-40.0, 40.0 + num_steps * step_length)
        # Buildings: two rows behind the sidewalks, varied widths, heights and colours.
        for side in (-1.0, 1.0):
            x = extent[0] + rng.uniform(0.0, 4.0)
            while x < extent[1]:
                length = rng.uniform(6.0, 14.0)
                depth = rng.uniform(5.0, 10.0)
                height = rng.uniform(5.0, 16.0)
                offset = ROAD_HALF_WIDTH + 3.0 + rng.uniform(0.0, 3.0) + depth / 2
                color = rng.uniform(0.35, 0.85, size=3) * np.array([1.0, 0.95, 0.9])
                boxes.append(
                    Box(
                        center=np.array([x + length / 2, side * offset, height / 2]),
                        yaw=0.0,
                        half=np.array([length / 2, depth / 2, height / 2]),
                        color=color,
                        kind="building",
                        pattern=int(rng.integers(0, 3)),
                    )
                )
                x += length + rng.uniform(1.0, 5.0)
        # Cars: parked at the kerb, and driving in both lanes (moving when enabled).
        for _ in range(int(rng.integers(6, 11))):
            lane = rng.choice([-3.2, -2.0, 2.0, 3.2])
            x = rng.uniform(extent[0] + 10.0, extent[1])
            if abs(lane - EGO_LANE_Y) < 0.1 and -8.0 < x < 8.0 + num_steps * step_length:
                x += 12.0 + num_steps * step_length  # keep the ego lane ahead of the ego clear
            moving = moving_cars and abs(lane) < 2.5 and rng.uniform() < 0.7
            velocity = (1.0 if lane < 0 else -1.0) * rng.uniform(1.0, 3.0) if moving else 0.0
            if abs(lane - EGO_LANE_Y) < 0.1:
                velocity = step_length if moving else 0.0  # same lane: keep pace, never collide
            color = rng.uniform(0.05, 0.95, size=3)
            boxes.append(
                Box(
                    center=np.array([x, lane, 0.75]),
                    yaw=float(rng.normal(0.0, 0.05)),
                    half=np.array([rng.uniform(1.9, 2.4), 0.9, 0.75]),
                    color=color,
                    kind="car",
                    velocity=float(velocity),
                )
            )
        return cls(seed=seed, boxes=boxes, step_length=step_length)

    def ego_to_world(self, t: int) -> Array:
        """4x4 ego pose at step ``t``: straight along the ego lane with a gentle seeded sway."""
        sway = 0.3 * math.sin(0.7 * t + self.seed)
        pose = np.eye(4)
        yaw = 0.02 * math.cos(0.7 * t + self.seed)
        pose[:3, :3] = _rot_z(yaw)
        pose[:3, 3] = [t * self.step_length, EGO_LANE_Y + sway, 0.0]
        return pose

    def boxes_at(self, t: int) -> List[Box]:
        moved = []
        for box in self.boxes:
            center = box.center + np.array([box.velocity * t, 0.0, 0.0])
            moved.append(Box(center, box.yaw, box.half, box.color, box.kind, box.velocity, box.pattern))
        return moved

    def describe(self) -> Dict[str, Any]:
        return {
            "buildings": sum(b.kind == "building" for b in self.boxes),
            "cars": sum(b.kind == "car" for b in self.boxes),
            "moving_cars": sum(b.velocity != 0.0 for b in self.boxes),
        }


def _rot_z(yaw: float) -> Array:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def camera_intrinsics(width: int, height: int, fov_deg: float = HORIZONTAL_FOV_DEG) -> Tuple[float, float, float, float]:
    """fx, fy, cx, cy of a pinhole with square pixels and the given horizontal field of view."""
    focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return focal, focal, width / 2.0, height / 2.0


def camera_to_ego(yaw_deg: float, mount: Tuple[float, float, float]) -> Array:
    """4x4 OpenGL camera-to-ego: the camera looks down its -z along ``yaw`` in the ground plane."""
    yaw = math.radians(yaw_deg)
    forward = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, up)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, up, -forward, mount
    return pose


def pixel_directions(c2w: Array, width: int, height: int, intrinsics) -> Tuple[Array, Array]:
    """Unit world directions [H, W, 3] through pixel centres (as nerfstudio's Cameras make
    them) and the z-depth factor [H, W]: z-depth = ray distance * factor."""
    fx, fy, cx, cy = intrinsics
    rows, cols = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    x = (cols - cx) / fx
    y = -(rows - cy) / fy
    norm = np.sqrt(x * x + y * y + 1.0)
    cam = np.stack([x, y, -np.ones_like(x)], axis=-1) / norm[..., None]
    directions = cam @ c2w[:3, :3].T
    return directions, 1.0 / norm


def _intersect(origins: Array, directions: Array, boxes: List[Box]) -> Tuple[Array, Array, Array, Array]:
    """Nearest hit of each ray: distance (inf = sky), object index (-1 ground, -2 sky),
    world hit point and face normal. Slab test in each box's frame."""
    n = origins.shape[0]
    best = np.full(n, np.inf)
    index = np.full(n, -2, dtype=np.int64)
    normal = np.zeros((n, 3))
    ground = directions[:, 2] < -1e-9
    t_ground = np.where(ground, -origins[:, 2] / np.where(ground, directions[:, 2], -1.0), np.inf)
    hit = t_ground < best
    best[hit], index[hit], normal[hit] = t_ground[hit], -1, [0.0, 0.0, 1.0]
    for k, box in enumerate(boxes):
        rot = _rot_z(box.yaw)
        o = (origins - box.center) @ rot
        d = directions @ rot
        safe = np.where(np.abs(d) < 1e-12, 1e-12, d)
        t1 = (-box.half - o) / safe
        t2 = (box.half - o) / safe
        t_near = np.minimum(t1, t2)
        t_far = np.maximum(t1, t2)
        enter = t_near.max(axis=1)
        leave = t_far.min(axis=1)
        hit = (enter <= leave) & (enter > 1e-6) & (enter < best)
        if not hit.any():
            continue
        axis = t_near[hit].argmax(axis=1)
        local = np.zeros((int(hit.sum()), 3))
        local[np.arange(local.shape[0]), axis] = -np.sign(d[hit][np.arange(local.shape[0]), axis])
        best[hit], index[hit], normal[hit] = enter[hit], k, local @ rot.T
    points = origins + np.where(np.isfinite(best), best, 0.0)[:, None] * directions
    return best, index, points, normal


SUN = np.array([0.4, 0.3, 0.866])
SUN = SUN / np.linalg.norm(SUN)


def _shade(directions: Array, index: Array, points: Array, normal: Array, boxes: List[Box]) -> Array:
    """Colour of each ray: sky gradient, textured road and sidewalks, textured boxes, lambert sun."""
    rgb = np.zeros((directions.shape[0], 3))
    sky = index == -2
    elevation = np.clip(directions[sky, 2], 0.0, 1.0)[:, None]
    rgb[sky] = (1 - elevation) * np.array([0.78, 0.86, 0.95]) + elevation * np.array([0.35, 0.55, 0.9])
    ground = index == -1
    x, y = points[ground, 0], points[ground, 1]
    road = np.abs(y) < ROAD_HALF_WIDTH
    # Asphalt grain from a cheap hash of the 10 cm cell: deterministic texture NeRFs can lock onto.
    grain = np.sin(np.floor(x * 10) * 12.9898 + np.floor(y * 10) * 78.233) * 43758.5453
    grain = (grain - np.floor(grain)) * 0.08
    colour = np.where(road[:, None], np.array([0.32, 0.32, 0.34]), np.array([0.55, 0.52, 0.48]))
    colour = colour + grain[:, None]
    centre_line = (np.abs(y) < 0.12) & (np.mod(x, 6.0) < 3.0)
    edge_line = np.abs(np.abs(y) - (ROAD_HALF_WIDTH - 0.25)) < 0.1
    colour[centre_line] = [0.9, 0.85, 0.3]
    colour[edge_line] = [0.92, 0.92, 0.92]
    grass = np.abs(y) > ROAD_HALF_WIDTH + 2.5
    tiles = (np.mod(np.floor(x) + np.floor(y), 2) == 0) & ~grass & ~road
    colour[tiles] *= 0.9
    colour[grass] = np.array([0.3, 0.5, 0.25]) + grain[grass, None]
    rgb[ground] = colour
    for k, box in enumerate(boxes):
        mask = index == k
        if not mask.any():
            continue
        local = (points[mask] - box.center) @ _rot_z(box.yaw)
        colour = np.broadcast_to(box.color, local.shape).copy()
        height = local[:, 2] + box.half[2]
        along = np.where(np.abs(normal[mask, 0]) > 0.5, local[:, 1], local[:, 0])
        if box.kind == "building":
            # Windows: a grid of dark panes on the walls, floors 3 m high.
            window = (np.mod(height, 3.0) > 1.0) & (np.mod(height, 3.0) < 2.2)
            window &= np.mod(along + 0.5 * box.pattern, 2.5) < 1.4
            window &= np.abs(normal[mask, 2]) < 0.5
            colour[window] = np.array([0.15, 0.2, 0.28]) + 0.1 * box.pattern
        else:
            # Glass band in the upper half, dark tyres strip at the bottom.
            glass = (height > 0.95) & (height < 1.4) & (np.abs(normal[mask, 2]) < 0.5)
            colour[glass] = [0.1, 0.12, 0.16]
            colour[height < 0.25] = [0.05, 0.05, 0.05]
        rgb[mask] = colour
    lit = ~sky
    lambert = np.clip(normal[lit] @ SUN, 0.0, 1.0)
    rgb[lit] *= (0.55 + 0.45 * lambert)[:, None]
    return np.clip(rgb, 0.0, 1.0)


def render_camera(scene: DrivingScene, t: int, c2w: Array, width: int, height: int, intrinsics) -> Dict[str, Array]:
    """RGB [H, W, 3] float, z-depth [H, W] (0 at sky) and sky mask [H, W] of one camera at step t."""
    directions, zfactor = pixel_directions(c2w, width, height, intrinsics)
    dirs = directions.reshape(-1, 3)
    origins = np.broadcast_to(c2w[:3, 3], dirs.shape)
    boxes = scene.boxes_at(t)
    dist, index, points, normal = _intersect(origins, dirs, boxes)
    rgb = _shade(dirs, index, points, normal, boxes).reshape(height, width, 3)
    sky = (index == -2).reshape(height, width)
    depth = np.where(sky, SKY_DEPTH, np.where(np.isfinite(dist), dist, 0.0).reshape(height, width) * zfactor)
    return {"rgb": rgb, "depth": depth.astype(np.float32), "sky": sky}


def lidar_points(scene: DrivingScene, t: int) -> Array:
    """World points [P, 3] of one LiDAR sweep at step t, cropped to +-50 m x +-6.4 m (ego frame)."""
    ego = scene.ego_to_world(t)
    elevations = np.radians(np.linspace(10.0, -30.0, LIDAR_BEAMS))
    azimuths = np.linspace(-np.pi, np.pi, LIDAR_AZIMUTH_STEPS, endpoint=False)
    el, az = np.meshgrid(elevations, azimuths, indexing="ij")
    local = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(-1, 3)
    directions = local @ ego[:3, :3].T
    origin = ego[:3, :3] @ np.array([0.0, 0.0, LIDAR_HEIGHT]) + ego[:3, 3]
    dist, index, points, _ = _intersect(np.broadcast_to(origin, directions.shape), directions, scene.boxes_at(t))
    points = points[np.isfinite(dist)]
    in_ego = (points - ego[:3, 3]) @ ego[:3, :3]
    keep = (np.abs(in_ego[:, 0]) <= LIDAR_RANGE_XY) & (np.abs(in_ego[:, 1]) <= LIDAR_RANGE_XY)
    keep &= np.abs(in_ego[:, 2]) <= LIDAR_RANGE_Z
    return points[keep]


def project_points(points: Array, c2w: Array, width: int, height: int, intrinsics, visible_depth: Optional[Array] = None) -> Array:
    """Sparse z-depth image [H, W] of world points seen by an OpenGL camera, nearest point per
    pixel, 0 where none. With ``visible_depth``, points hidden behind it (seen from the LiDAR but
    occluded for the camera) are dropped."""
    fx, fy, cx, cy = intrinsics
    cam = (points - c2w[:3, 3]) @ c2w[:3, :3]
    z = -cam[:, 2]
    front = z > 0.1
    cam, z = cam[front], z[front]
    u = np.floor(cx + fx * cam[:, 0] / z).astype(np.int64)
    v = np.floor(cy - fy * cam[:, 1] / z).astype(np.int64)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    u, v, z = u[inside], v[inside], z[inside]
    if visible_depth is not None:
        surface = visible_depth[v, u]
        seen = (surface > 0) & (z <= surface * 1.02 + 0.05)
        u, v, z = u[seen], v[seen], z[seen]
    image = np.full(height * width, np.inf)
    np.minimum.at(image, v * width + u, z)
    image[~np.isfinite(image)] = 0.0
    return image.reshape(height, width).astype(np.float32)


def _write_json(path: Path, data: Dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def is_driving_scene(path: Path) -> bool:
    try:
        meta = json.loads((Path(path) / "scene.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("generator") == GENERATOR_NAME


def generate_driving_scene(
    output_dir: Union[str, Path],
    seed: int = 0,
    num_steps: int = 10,
    width: int = 228,
    height: int = 128,
    moving_cars: bool = True,
    step_length: float = 4.0,
    overwrite: bool = False,
) -> Path:
    """Render one seeded driving scene into ``output_dir`` (layout in the module docstring).
    Same arguments, same files. The folder is written in a staging directory and moved into
    place when complete."""
    output_dir = Path(output_dir)
    for name, value in {"num_steps": num_steps, "width": width, "height": height}.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise NerfconvertError(f"{name} must be a positive integer, got {value!r}.")
    if output_dir.exists() and any(output_dir.iterdir()) and not (overwrite or is_driving_scene(output_dir)):
        raise NerfconvertError(
            f"{output_dir} is not empty and is not a generated driving scene; choose a new directory or pass overwrite=True."
        )
    scene = DrivingScene.from_seed(seed, num_steps, step_length=step_length, moving_cars=moving_cars)
    intrinsics = camera_intrinsics(width, height)
    fx, fy, cx, cy = intrinsics
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = output_dir.parent / f".{output_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        all_frames: List[Dict[str, Any]] = []
        steps = []
        for t in range(num_steps):
            step_dir = f"t{t:03d}"
            for sub in ("images", "depth", "sky", "lidar"):
                (staging / step_dir / sub).mkdir(parents=True)
            ego = scene.ego_to_world(t)
            points = lidar_points(scene, t)
            frames = []
            for name, yaw, mount in CAMERA_RIG:
                c2w = ego @ camera_to_ego(yaw, mount)
                out = render_camera(scene, t, c2w, width, height, intrinsics)
                lidar = project_points(points, c2w, width, height, intrinsics, visible_depth=out["depth"])
                Image.fromarray(np.round(out["rgb"] * 255).astype(np.uint8)).save(staging / step_dir / "images" / f"{name}.png")
                np.save(staging / step_dir / "depth" / f"{name}.npy", out["depth"])
                Image.fromarray(out["sky"].astype(np.uint8) * 255).save(staging / step_dir / "sky" / f"{name}.png")
                np.save(staging / step_dir / "lidar" / f"{name}.npy", lidar)
                frame = {
                    "file_path": f"images/{name}.png",
                    "depth_path": f"depth/{name}.npy",
                    "sky_path": f"sky/{name}.png",
                    "lidar_path": f"lidar/{name}.npy",
                    "camera": name,
                    "fl_x": fx,
                    "fl_y": fy,
                    "cx": cx,
                    "cy": cy,
                    "w": width,
                    "h": height,
                    "transform_matrix": c2w.tolist(),
                }
                frames.append(frame)
                all_frames.append(
                    {**frame, **{k: f"{step_dir}/{frame[k]}" for k in ("file_path", "depth_path", "sky_path", "lidar_path")}, "time": t}
                )
            _write_json(
                staging / step_dir / "transforms.json",
                {"camera_model": "OPENCV", "time": t, "ego_to_world": ego.tolist(), "frames": frames},
            )
            steps.append({"time": t, "transforms": f"{step_dir}/transforms.json", "ego_to_world": ego.tolist()})
        _write_json(staging / "transforms.json", {"camera_model": "OPENCV", "frames": all_frames})
        _write_json(
            staging / "scene.json",
            {
                "generator": GENERATOR_NAME,
                "generator_version": GENERATOR_VERSION,
                "kind": "procedural",
                "seed": int(seed),
                "num_steps": int(num_steps),
                "width": int(width),
                "height": int(height),
                "moving_cars": bool(moving_cars),
                "step_length": float(step_length),
                "cameras": [name for name, _, _ in CAMERA_RIG],
                "horizontal_fov_deg": HORIZONTAL_FOV_DEG,
                "lidar_range_m": [LIDAR_RANGE_XY, LIDAR_RANGE_XY, LIDAR_RANGE_Z],
                "depth": "z-depth along the optical axis in metres; 0 at sky",
                "steps": steps,
                "scene": scene.describe(),
            },
        )
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return output_dir


def generate_driving_dataset(
    root: Union[str, Path],
    num_scenes: int = 3,
    num_steps: int = 4,
    width: int = 64,
    height: int = 36,
    seed: int = 0,
    moving_cars: bool = True,
) -> Path:
    """A folder of ``num_scenes`` driving scenes ``scene-000``..., scene i seeded with seed+i."""
    root = Path(root)
    if num_scenes < 1:
        raise NerfconvertError(f"num_scenes must be at least 1, got {num_scenes}.")
    root.mkdir(parents=True, exist_ok=True)
    for i in range(num_scenes):
        generate_driving_scene(
            root / f"scene-{i:03d}", seed=seed + i, num_steps=num_steps, width=width, height=height, moving_cars=moving_cars
        )
    return root
