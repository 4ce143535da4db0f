"""Per-scene teacher NeRFs and their dense depth cache (DistillNeRF's L_depth' targets).

``nerfconvert distillnerf-teachers --scenes <root>`` trains one nerfstudio run per scene on all
its time steps (stock ``depth-nerfacto`` on the images and the scene's LiDAR by default, as the
paper's teachers are LiDAR-supervised; any method nerfconvert has a view for), then
renders depth and opacity for every frame into ``<scene>/teacher_cache/``::

    teacher_cache/teacher.json          teacher method, run config, steps; written last ("complete")
    teacher_cache/t000/<cam>_depth.npy  float32 [H, W] z-depth in metres
    teacher_cache/t000/<cam>_opacity.npy float32 [H, W] accumulated opacity

Teacher runs are normal nerfstudio runs in ``<scene>/teacher_runs/`` (open them with ns-viewer);
a depth-supervised teacher reads ``<scene>/transforms_lidar.json`` (transforms.json plus each
frame's LiDAR as ``depth_file_path``).
A scene with a complete cache is skipped; an unfinished one (no teacher.json) is redone from scratch.

The paper distils EmerNeRF, which separates static and dynamic parts; a stock static NeRF blurs
moving cars, which the data benchmark measures (benchmarks/README.md).
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from nerfconvert import NerfconvertError
from nerfconvert.compat import own_event_writers
from nerfconvert.distillnerf.dataparser import (CACHE_DIR, CACHE_META, VIRTUAL_META, SceneRecord, frames_to_cameras,
                                                read_cache_meta, read_scenes, read_virtual_meta, shifted_pose,
                                                virtual_dir)

RUNS_DIR = "teacher_runs"
LIDAR_TRANSFORMS = "transforms_lidar.json"
DEFAULT_METHOD = "depth-nerfacto"
# depth-nerfacto's DS-NeRF loss on the LiDAR. With its stock weight 1e-3, 80-step CPU teachers'
# depth stayed at AbsRel 0.76 (floaters near the cameras win); weight 0.1: 0.21 (distillnerf data
# benchmark, benchmarks/README.md). sigma: nerfstudio's default, in the teacher's normalised units
# (depth images are scaled with the poses); 0.1 measured no better.
DEPTH_LOSS_MULT = 0.1
DEPTH_SIGMA = 0.01


def reads_depth_images(config) -> bool:
    """Whether a method trains on per-frame depth images (nerfstudio's depth-nerfacto and its kin)."""
    return hasattr(config.pipeline.model, "is_euclidean_depth")


def write_lidar_transforms(scene_dir: Path) -> Path:
    """``<scene>/transforms_lidar.json``: the scene's all-steps transforms.json with every frame's
    ``depth_file_path`` set to its projected LiDAR, which nerfstudio's depth dataset reads.
    Written next to transforms.json so that the relative image paths stay valid."""
    meta = json.loads((scene_dir / "transforms.json").read_text())
    for frame in meta["frames"]:
        if "lidar_path" not in frame:
            raise NerfconvertError(
                f"Scene {scene_dir.name}: frame {frame.get('file_path')} has no lidar_path, so a depth-supervised "
                "teacher has nothing to read; regenerate the scene, or pick --method nerfacto."
            )
        frame["depth_file_path"] = frame["lidar_path"]
    path = scene_dir / LIDAR_TRANSFORMS
    _write_json_atomic(path, meta)
    return path


def teacher_config(method: str, scene_dir: Path, max_num_iterations: int, device_type: str,
                   depth_loss_mult: float = DEPTH_LOSS_MULT, depth_sigma: float = DEPTH_SIGMA):
    """The stock config of ``method`` on a scene's all-steps transforms.json, all frames used for training;
    depth-supervised methods get the LiDAR as depth images and the two depth-loss settings."""
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    if method not in all_methods:
        raise NerfconvertError(f"Unknown teacher method {method!r}; pick one of `ns-train --help` (e.g. nerfacto).")
    from nerfconvert.views.registry import view_class_for

    view_class_for(all_methods[method].pipeline.model._target)  # no view -> clear error before training
    config = copy.deepcopy(all_methods[method])
    config.output_dir = scene_dir / RUNS_DIR
    config.experiment_name = scene_dir.name
    config.timestamp = "teacher"
    config.vis = "tensorboard"
    config.max_num_iterations = max_num_iterations
    config.steps_per_save = max_num_iterations
    config.save_only_latest_checkpoint = True
    config.steps_per_eval_batch = 10**9
    config.steps_per_eval_image = 10**9
    config.steps_per_eval_all_images = 10**9
    config.machine.device_type = device_type
    config.mixed_precision = config.mixed_precision and device_type == "cuda"
    config.pipeline.datamanager.dataparser = NerfstudioDataParserConfig(data=scene_dir, eval_mode="all")
    if reads_depth_images(config):
        # LiDAR-supervised teacher (the paper distils LiDAR-supervised EmerNeRF): nerfstudio reads
        # each frame's `depth_file_path`, here the projected LiDAR (z-depth in metres, 0 = no return).
        config.pipeline.datamanager.dataparser.data = write_lidar_transforms(scene_dir)
        config.pipeline.datamanager.dataparser.depth_unit_scale_factor = 1.0
        config.pipeline.model.is_euclidean_depth = False
        config.pipeline.model.depth_loss_mult = depth_loss_mult
        config.pipeline.model.depth_sigma = depth_sigma
    # Poses are exact (procedural) or surveyed (nuScenes): pose refinement would only move the depth frame.
    camera_optimizer = getattr(config.pipeline.model, "camera_optimizer", None)
    if camera_optimizer is not None:
        camera_optimizer.mode = "off"
    if hasattr(config.pipeline.model, "implementation") and device_type != "cuda":
        config.pipeline.model.implementation = "torch"
    return config


def teacher_camera(pipeline, frame, c2w: Optional[np.ndarray] = None):
    """The camera of ``frame`` (or of ``frame`` moved to ``c2w``, world metres) in the teacher's
    dataparser frame, as nerfstudio's parser moved its cameras; and the dataparser scale."""
    outputs = pipeline.datamanager.train_dataparser_outputs
    transform = torch.eye(4)
    transform[:3, :4] = outputs.dataparser_transform
    scale = float(outputs.dataparser_scale)
    camera = frames_to_cameras([frame])
    pose = torch.eye(4)
    pose[:3, :4] = camera.camera_to_worlds[0] if c2w is None else torch.as_tensor(np.asarray(c2w)[:3, :4], dtype=torch.float32)
    moved = transform @ pose
    moved[:3, 3] *= scale
    world_camera = copy.deepcopy(camera)
    world_camera.camera_to_worlds = pose[None, :3, :4]
    camera.camera_to_worlds = moved[None, :3, :4]
    return camera, world_camera, scale


@torch.no_grad()
def render_teacher(pipeline, frame, c2w: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """z-depth (m), opacity and RGB of the teacher at ``frame``'s camera (or moved to ``c2w``)."""
    from nerfconvert.distillnerf.data import z_depth_factor

    camera, world_camera, scale = teacher_camera(pipeline, frame, c2w)
    rendered = pipeline.model.get_outputs_for_camera(camera.to(pipeline.device))
    distance = rendered["depth"][..., 0].cpu() / scale
    return {
        "depth": (distance * z_depth_factor(world_camera)[0]).numpy().astype(np.float32),
        "opacity": rendered["accumulation"][..., 0].cpu().numpy().astype(np.float32),
        "rgb": rendered["rgb"].clamp(0, 1).cpu().numpy().astype(np.float32),
    }


def render_cache(config_path: Path, scene: SceneRecord, cache_dir: Path, device: Optional[str] = None) -> int:
    """Render z-depth and opacity of every frame of ``scene`` with the run at ``config_path``."""
    from nerfconvert.views.registry import load_pipeline

    pipeline = load_pipeline(config_path, device=device)
    count = 0
    for step in scene.steps:
        step_dir = cache_dir / f"t{step.time:03d}"
        step_dir.mkdir(parents=True, exist_ok=True)
        for frame in step.frames:
            out = render_teacher(pipeline, frame)
            np.save(step_dir / f"{frame.camera}_depth.npy", out["depth"])
            np.save(step_dir / f"{frame.camera}_opacity.npy", out["opacity"])
            count += 1
    return count


VIRTUAL_SHIFTS: Tuple[Tuple[float, float, float], ...] = (
    (-4.0, 0.0, 0.0), (4.0, 0.0, 0.0), (-2.0, -1.0, 0.0), (2.0, 1.0, 0.0))
"""Default rig shifts (ego frame, metres: x forward, y left) of the virtual cameras: a driving step
of the procedural scenes is 4 m; the two others mix half a step with a 1 m sideways move."""
def render_virtual_cache(config_path: Path, scene: SceneRecord, cache_dir: Path,
                         shifts: Tuple[Tuple[float, float, float], ...] = VIRTUAL_SHIFTS,
                         device: Optional[str] = None) -> int:
    """Virtual cameras (the paper's Sec. 3.3 proposal): the teacher's RGB, z-depth and opacity with
    the whole rig moved by each of ``shifts`` (ego frame, metres) at every time step, into
    ``cache_dir/virtual/vKK/tTTT/<cam>_{rgb,depth,opacity}.npy``; ``virtual.json`` is written last."""
    from nerfconvert.views.registry import load_pipeline

    pipeline = load_pipeline(config_path, device=device)
    count = 0
    for k, shift in enumerate(shifts):
        for step in scene.steps:
            out_dir = virtual_dir(cache_dir, k, step.time)
            out_dir.mkdir(parents=True, exist_ok=True)
            for frame in step.frames:
                out = render_teacher(pipeline, frame, shifted_pose(frame.c2w, step.ego_to_world, shift))
                for key, value in out.items():
                    np.save(out_dir / f"{frame.camera}_{key}.npy", value.astype(np.float16 if key == "rgb" else np.float32))
                count += 1
    _write_json_atomic(cache_dir / VIRTUAL_META, {"complete": True, "shifts": [list(map(float, s)) for s in shifts],
                                                  "frame": "ego (x forward, y left, z up), metres", "views": count})
    return count


def add_virtual_views(scene: SceneRecord, shifts: Tuple[Tuple[float, float, float], ...] = VIRTUAL_SHIFTS,
                      device: Optional[str] = None) -> bool:
    """Render a finished teacher's virtual views unless the cache has them for these shifts."""
    meta = read_cache_meta(scene)
    if meta is None or scene.root is None:
        return False
    have = read_virtual_meta(scene)
    if have is not None and [list(map(float, s)) for s in shifts] == have["shifts"]:
        return False
    render_virtual_cache(scene.root / meta["config"], scene, scene.cache_dir, shifts, device)
    return True


def _write_json_atomic(path: Path, data: Dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def make_teacher(
    scene: SceneRecord, method: str, max_num_iterations: int, device_type: str, config_hook=None,
    depth_loss_mult: float = DEPTH_LOSS_MULT, depth_sigma: float = DEPTH_SIGMA,
    virtual_shifts: Tuple[Tuple[float, float, float], ...] = (),
) -> Path:
    """Train the scene's teacher and fill its cache; returns the run's config.yml."""
    from nerfstudio.scripts import train

    if scene.root is None:
        raise NerfconvertError(
            f"Scene {scene.name} is not a scene folder (nuScenes scenes are read in place); teachers train on "
            "scene folders with a transforms.json."
        )
    cache_dir = scene.cache_dir
    run_dir = scene.root / RUNS_DIR
    # An interrupted scene: drop whatever it left, then start over.
    for leftover in (cache_dir, run_dir):
        if leftover.exists():
            shutil.rmtree(leftover)
    config = teacher_config(method, scene.root, max_num_iterations, device_type, depth_loss_mult, depth_sigma)
    if config_hook is not None:
        config_hook(config)
    with own_event_writers():  # the next scene's teacher must not append to this one's tfevents
        train.main(config)
    config_path = config.get_base_dir() / "config.yml"
    device = "cuda" if device_type == "cuda" else "cpu"
    frames = render_cache(config_path, scene, cache_dir, device=device)
    _write_json_atomic(
        cache_dir / CACHE_META,
        {
            "complete": True,
            "teacher": method,
            "config": str(config_path.relative_to(scene.root)),
            "max_num_iterations": max_num_iterations,
            "lidar_supervised": reads_depth_images(config),
            "frames": frames,
            "depth": "z-depth along the optical axis in metres",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    )
    if virtual_shifts:  # after teacher.json: an interrupted rendering of them keeps the finished depth cache
        render_virtual_cache(config_path, scene, cache_dir, tuple(virtual_shifts), device=device)
    return config_path


def run_teachers(
    root: Path,
    method: str = DEFAULT_METHOD,
    max_num_iterations: int = 5000,
    scenes: Tuple[str, ...] = (),
    redo: bool = False,
    device_type: Optional[str] = None,
    config_hook=None,
    depth_loss_mult: float = DEPTH_LOSS_MULT,
    depth_sigma: float = DEPTH_SIGMA,
    virtual_shifts: Tuple[Tuple[float, float, float], ...] = (),
) -> Dict[str, str]:
    """Teachers for every scene under ``root``; returns {scene: "done" | "skipped"}. With
    ``virtual_shifts``, every teacher also renders its virtual views (skipped scenes that lack
    them get them from their finished run, without retraining)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nerfstudio.utils.rich_utils import CONSOLE

    records = read_scenes(Path(root), tuple(scenes))
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    status: Dict[str, str] = {}
    todo: List[SceneRecord] = []
    for scene in records:
        meta = read_cache_meta(scene)
        if meta is not None and not redo:
            if meta.get("teacher") != method:
                raise NerfconvertError(
                    f"Scene {scene.name} already has a depth cache from teacher '{meta.get('teacher')}', not "
                    f"'{method}'. Pass --redo to replace it, or --method {meta.get('teacher')}."
                )
            status[scene.name] = "skipped"
            if virtual_shifts:
                add_virtual_views(scene, tuple(virtual_shifts), "cuda" if device_type == "cuda" else "cpu")
        else:
            todo.append(scene)
    if status:
        CONSOLE.print(f"Skipping {len(status)} scene(s) with a finished {method} cache: {', '.join(status)}")
    columns = (TextColumn("[bold]teachers[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=CONSOLE, transient=False) as progress:
        task = progress.add_task("", total=len(records), completed=len(status))
        for scene in todo:
            progress.update(task, description=scene.name)
            make_teacher(scene, method, max_num_iterations, device_type, config_hook, depth_loss_mult, depth_sigma,
                         virtual_shifts)
            status[scene.name] = "done"
            progress.advance(task)
    return status


@dataclass
class DistillNerfTeachers:
    """Train one teacher NeRF per driving scene and cache its dense depth next to the data
    (DistillNeRF's distillation targets). Finished scenes are skipped; interrupted ones redone."""

    scenes: Path
    """Folder of driving scene folders (each with scene.json and transforms.json)."""
    method: str = DEFAULT_METHOD
    """Teacher method: any nerfstudio method nerfconvert has a view for. depth-nerfacto (default) also trains
    on the scene's LiDAR, as the paper's LiDAR-supervised teachers; nerfacto, tensorf, vanilla-nerf, plenoxels
    train on the images alone."""
    max_num_iterations: int = 5000
    """Training steps per teacher."""
    only: Tuple[str, ...] = ()
    """Only these scene names."""
    redo: bool = False
    """Retrain scenes that already have a cache."""
    device_type: Optional[str] = None
    """cpu or cuda (default: cuda when available)."""
    depth_loss_mult: float = DEPTH_LOSS_MULT
    """Weight of the LiDAR depth loss (depth-supervised methods only)."""
    depth_sigma: float = DEPTH_SIGMA
    """Width of the LiDAR depth loss, in the teacher's normalised units (depth-supervised methods only)."""
    virtual_cameras: bool = True
    """Also render each teacher at shifted rigs (``VIRTUAL_SHIFTS``) into the cache: the virtual-camera
    targets of distillnerf training (--pipeline.datamanager.virtual-cameras)."""

    def main(self) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE

        status = run_teachers(self.scenes, self.method, self.max_num_iterations, self.only, self.redo, self.device_type,
                              depth_loss_mult=self.depth_loss_mult, depth_sigma=self.depth_sigma,
                              virtual_shifts=VIRTUAL_SHIFTS if self.virtual_cameras else ())
        done = sum(v == "done" for v in status.values())
        CONSOLE.print(f"[green]{done} teacher(s) trained, {len(status) - done} skipped; caches in <scene>/{CACHE_DIR}/[/green]")


__all__ = ["DEFAULT_METHOD", "VIRTUAL_SHIFTS", "DistillNerfTeachers", "add_virtual_views", "make_teacher", "read_virtual_meta",
           "render_cache", "render_teacher", "render_virtual_cache", "run_teachers", "shifted_pose", "teacher_config",
           "write_lidar_transforms"]
