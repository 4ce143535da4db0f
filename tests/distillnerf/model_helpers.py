"""Synthetic frames shaped like the distillnerf data manager's batches (for the model tests)."""

from __future__ import annotations

import math

import torch

from nerfstudio.cameras.cameras import Cameras, CameraType


def ring_cameras(num: int = 6, width: int = 64, height: int = 36, ego=(0.0, 0.0, 0.0), height_m: float = 1.5) -> Cameras:
    """``num`` cameras on a ring around the ego origin, looking outwards (OpenGL convention, z up)."""
    c2ws = []
    for i in range(num):
        yaw = 2 * math.pi * i / num
        forward = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])
        up = torch.tensor([0.0, 0.0, 1.0])
        right = torch.linalg.cross(forward, up)
        pos = torch.tensor(ego) + 0.5 * forward + torch.tensor([0.0, 0.0, height_m])
        c2ws.append(torch.stack([right, up, -forward, pos], dim=1))
    focal = 0.5 * width / math.tan(math.radians(35))
    return Cameras(
        camera_to_worlds=torch.stack(c2ws), fx=focal, fy=focal, cx=width / 2, cy=height / 2,
        width=width, height=height, camera_type=CameraType.PERSPECTIVE,
    )


def synthetic_frame(num: int = 6, width: int = 64, height: int = 36, seed: int = 0):
    """(cameras, batch) as DistillNerfDataManager.next_train returns: a flat ground plane's
    depth as LiDAR/teacher depth, smooth colours, sky above the horizon."""
    gen = torch.Generator().manual_seed(seed)
    cameras = ring_cameras(num, width, height)
    ys = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    below = ys > height / 2 + 0.5
    # ground at z = 0 seen from 1.5 m: z-depth = 1.5 f / (y - cy)
    focal = float(cameras.fx[0])
    ground = torch.where(below, 1.5 * focal / (ys - height / 2).clamp_min(0.5), torch.zeros_like(ys))
    image = torch.rand(num, 1, 1, 3, generator=gen) * 0.5 + 0.25
    image = image.expand(num, height, width, 3).clone()
    image[:, ~below] = torch.tensor([0.5, 0.7, 1.0])
    lidar = ground.expand(num, height, width).clone()
    lidar[:, ::2] = 0  # sparse
    batch = {
        "image": image,
        "lidar_depth": lidar,
        "dense_depth": ground.expand(num, height, width).clone(),
        "sky_mask": (~below).expand(num, height, width).clone(),
        "gt_depth": ground.expand(num, height, width).clone(),
        "ego_to_world": torch.eye(4),
        "scene": "synthetic",
        "time": 0,
    }
    batch["targets"] = [{"offset": 0, "cameras": cameras, "image": batch["image"], "lidar_depth": batch["lidar_depth"],
                         "dense_depth": batch["dense_depth"], "sky_mask": batch["sky_mask"], "gt_depth": batch["gt_depth"]}]
    return cameras, batch
