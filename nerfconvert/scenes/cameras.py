"""Blender-convention cameras: poses on a sphere looking at the origin, and the exact pixel
rays nerfstudio generates for them."""

from __future__ import annotations

from typing import Tuple

import numpy as np

Array = np.ndarray

CAMERA_ANGLE_X = 0.6911112070083618
"""Horizontal field of view of the Blender synthetic scenes (radians)."""


def orbit_position(radius: float, azimuth: float, elevation: float) -> Array:
    """Point on a sphere around the origin; z is up, elevation is above the xy plane."""
    return radius * np.array(
        [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
    )


def look_at(position: Array, target: Array = np.zeros(3), world_up: Array = np.array([0.0, 0.0, 1.0])) -> Array:
    """4x4 camera-to-world matrix in the OpenGL/Blender convention (camera looks down -z,
    +y is up in the image). The matrix is rounded to float32, the precision nerfstudio's
    blender dataparser keeps, so our ground truth uses exactly the cameras it will build."""
    back = position - target
    back = back / np.linalg.norm(back)
    right = np.cross(world_up, back)
    right = right / np.linalg.norm(right)
    up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, position
    return c2w.astype(np.float32).astype(np.float64)


def hemisphere_poses(
    rng: np.random.Generator, count: int, radius: float, min_elevation: float, max_elevation: float
) -> Array:
    """[count, 4, 4] random views of the upper hemisphere, uniform in area over the band
    of elevations, with a stratified azimuth so that few views cover all sides."""
    strata = (np.arange(count) + rng.uniform(0.0, 1.0, size=count)) / max(count, 1)
    azimuths = 2.0 * np.pi * rng.permutation(strata)
    sin_elevations = rng.uniform(np.sin(min_elevation), np.sin(max_elevation), size=count)
    return np.stack([look_at(orbit_position(radius, a, np.arcsin(s))) for a, s in zip(azimuths, sin_elevations)])


def orbit_poses(count: int, radius: float, elevation: float, start_azimuth: float = 0.0) -> Array:
    """[count, 4, 4] views evenly spaced on a circle of constant elevation."""
    azimuths = start_azimuth + 2.0 * np.pi * np.arange(count) / max(count, 1)
    return np.stack([look_at(orbit_position(radius, a, elevation)) for a in azimuths])


def focal_length(width: int, camera_angle_x: float = CAMERA_ANGLE_X) -> float:
    """Focal length in pixels, as nerfstudio's blender dataparser computes it."""
    return 0.5 * width / np.tan(0.5 * camera_angle_x)


def pixel_rays(c2w: Array, width: int, height: int, camera_angle_x: float = CAMERA_ANGLE_X) -> Tuple[Array, Array]:
    """Origins and unit directions [height, width, 3] through pixel centres, matching
    nerfstudio's ``Cameras.generate_rays`` (pixel offset 0.5, cx = W/2, cy = H/2)."""
    focal = focal_length(width, camera_angle_x)
    rows, cols = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    x = (cols - 0.5 * width) / focal
    y = -(rows - 0.5 * height) / focal
    rotation = c2w[:3, :3]
    # rotation @ (x, y, -1), elementwise to stay independent of BLAS threading.
    directions = np.stack([rotation[i, 0] * x + rotation[i, 1] * y - rotation[i, 2] for i in range(3)], axis=-1)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    origins = np.broadcast_to(c2w[:3, 3], directions.shape).copy()
    return origins, directions
