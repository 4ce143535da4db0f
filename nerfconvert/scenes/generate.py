"""Write an object scene as a nerfstudio blender dataset, atomically and reproducibly.

Layout (the Blender synthetic layout, plus depth and metadata)::

    output_dir/
        transforms_{train,val,test}.json   camera_angle_x + frames with 4x4 camera-to-world
        {train,val,test}/r_<i>.png         RGBA, straight alpha = accumulated opacity
        {train,val,test}/r_<i>_depth.npy   float32 [H, W] expected distance along the unit
                                           ray direction; 0 where the PNG alpha is 0
        scene.json                         seed, resolution, generator version, scene summary
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, List, Union

import numpy as np
from PIL import Image

from nerfconvert import NerfconvertError
from nerfconvert.scenes.cameras import (
    CAMERA_ANGLE_X,
    hemisphere_poses,
    look_at,
    orbit_poses,
    orbit_position,
    pixel_rays,
)
from nerfconvert.scenes.object_scene import ObjectScene

GENERATOR_NAME = "nerfconvert.scenes.object_scene"
GENERATOR_VERSION = 1
"""Bump when the same arguments would produce different files."""

CAMERA_RADIUS = 4.0
TRAIN_ELEVATIONS = (np.deg2rad(8.0), np.deg2rad(75.0))
TEST_ELEVATION = np.deg2rad(30.0)


def _split_poses(seed: int, split: str, count: int) -> np.ndarray:
    if split == "test":
        return orbit_poses(count, CAMERA_RADIUS, TEST_ELEVATION)
    # Separate streams per split: the scene and the train views do not depend on num_val etc.
    stream = {"train": 1, "val": 2}[split]
    return hemisphere_poses(np.random.default_rng([seed, stream]), count, CAMERA_RADIUS, *TRAIN_ELEVATIONS)


def render_view(scene: ObjectScene, c2w: np.ndarray, width: int, height: int, camera_angle_x: float = CAMERA_ANGLE_X):
    """Straight-alpha RGBA uint8 image [H, W, 4] and float32 depth [H, W] of one camera."""
    origins, directions = pixel_rays(c2w, width, height, camera_angle_x)
    rendered = scene.render_rays(origins, directions)
    rgba = np.concatenate([rendered.straight_rgb(), rendered.alpha[..., None]], axis=-1)
    rgba = np.round(np.clip(rgba, 0.0, 1.0) * 255.0).astype(np.uint8)
    # Depth is 0 exactly where the written alpha is 0 (render_rays uses the same 0.5/255 cut).
    depth = np.where(rgba[..., 3] > 0, rendered.depth, 0.0).astype(np.float32)
    return rgba, depth


def is_generated_scene(path: Path) -> bool:
    """Whether ``path`` holds a previous output of this generator (safe to replace)."""
    try:
        meta = json.loads((path / "scene.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("generator") == GENERATOR_NAME


def _check_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise NerfconvertError(f"Output path {output_dir} is a file, not a directory; choose a directory path.")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite and not is_generated_scene(output_dir):
        raise NerfconvertError(
            f"Output directory {output_dir} is not empty and is not a generated scene; "
            "choose an empty or new directory, or pass overwrite=True to replace its contents."
        )


def _install(staging: Path, output_dir: Path) -> None:
    """Move a finished staging directory into place, replacing ``output_dir`` if present."""
    if not output_dir.exists() or not any(output_dir.iterdir()):
        # rename(2) atomically replaces a missing or empty directory.
        os.replace(staging, output_dir)
        return
    # Swap with two renames so the target is never half written, then drop the old files.
    retired = output_dir.parent / f".{output_dir.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(output_dir, retired)
    os.rename(staging, output_dir)
    shutil.rmtree(retired)


def _write_json(path: Path, data: Dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=4) + "\n")


def generate_object_scene(
    output_dir: Union[str, Path],
    seed: int = 0,
    resolution: int = 64,
    num_train: int = 50,
    num_val: int = 10,
    num_test: int = 20,
    overwrite: bool = False,
) -> Path:
    """Render the seeded object scene into ``output_dir`` in nerfstudio's blender format.

    The same arguments always give byte-identical files. ``output_dir`` may be missing,
    empty, or a previous output of this function; anything else needs ``overwrite=True``.
    Load it with ``BlenderDataParserConfig(data=output_dir)``.

    Returns:
        ``output_dir`` as a Path.
    """
    output_dir = Path(output_dir)
    counts = {"resolution": resolution, "num_train": num_train, "num_val": num_val, "num_test": num_test}
    for name, value in counts.items():
        # Every split needs a view: nerfstudio's blender parser reads the first image of each.
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise NerfconvertError(f"{name} must be a positive integer, got {value!r}.")
    _check_output_dir(output_dir, overwrite)

    scene = ObjectScene.from_seed(seed)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = output_dir.parent / f".{output_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    os.mkdir(staging)
    try:
        for split, count in (("train", num_train), ("val", num_val), ("test", num_test)):
            (staging / split).mkdir()
            frames: List[Dict[str, Any]] = []
            for index, c2w in enumerate(_split_poses(seed, split, count)):
                rgba, depth = render_view(scene, c2w, resolution, resolution)
                Image.fromarray(rgba).save(staging / split / f"r_{index}.png")
                np.save(staging / split / f"r_{index}_depth.npy", depth)
                frames.append(
                    {
                        "file_path": f"./{split}/r_{index}",
                        "depth_file_path": f"./{split}/r_{index}_depth.npy",
                        "rotation": 2.0 * np.pi / count,
                        "transform_matrix": c2w.tolist(),
                    }
                )
            _write_json(staging / f"transforms_{split}.json", {"camera_angle_x": CAMERA_ANGLE_X, "frames": frames})
        _write_json(
            staging / "scene.json",
            {
                "generator": GENERATOR_NAME,
                "generator_version": GENERATOR_VERSION,
                "seed": int(seed),
                "resolution": int(resolution),
                "num_train": int(num_train),
                "num_val": int(num_val),
                "num_test": int(num_test),
                "camera_radius": CAMERA_RADIUS,
                "depth": "expected distance along the unit ray direction, normalised by alpha; "
                "0 where the PNG alpha is 0",
                "scene": scene.describe(),
            },
        )
        _install(staging, output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return output_dir


def render_preview(path: Union[str, Path], seed: int = 0, size: int = 128, columns: int = 3, rows: int = 2) -> Path:
    """A grid of views of the scene over a soft grey backdrop, as an RGB PNG."""
    scene = ObjectScene.from_seed(seed)
    count = columns * rows
    tiles = []
    for i in range(count):
        elevation = np.deg2rad(15.0 + 45.0 * (i % 2))
        c2w = look_at(orbit_position(CAMERA_RADIUS, 2.0 * np.pi * i / count + 0.3, elevation))
        origins, directions = pixel_rays(c2w, size, size)
        rendered = scene.render_rays(origins, directions)
        # Vertical gradient backdrop: the object's transparent background made visible.
        backdrop = np.linspace(0.93, 0.78, size)[:, None, None] * np.ones((1, size, 3))
        tiles.append(np.clip(rendered.rgb + (1.0 - rendered.alpha[..., None]) * backdrop, 0.0, 1.0))
    grid = np.concatenate([np.concatenate(tiles[r * columns : (r + 1) * columns], axis=1) for r in range(rows)], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(grid * 255.0).astype(np.uint8)).save(path)
    return path
