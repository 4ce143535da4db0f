"""``nerfconvert distillnerf-predict``: one frame -> one forward pass -> a nerfstudio run.

The run is laid out as ns-train lays runs out (<output-dir>/<scene>/distillnerf-scene/<timestamp>/
config.yml + nerfstudio_models/step-000000000.ckpt). Its data manager is stock nerfstudio's,
reading the frame's own transforms.json in the world frame (no re-orientation or rescaling), so
the viewer shows the frame's cameras where the voxels were predicted.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import yaml

from nerfconvert import NerfconvertError


def resolve_run(path: Path) -> Path:
    """A run directory or its config.yml -> the config.yml."""
    path = Path(path)
    config = path / "config.yml" if path.is_dir() else path
    if not config.is_file():
        raise NerfconvertError(f"{path} is not a trained run: no config.yml there; pass the run's config.yml or directory.")
    return config


def resolve_frame(frame: Path) -> Path:
    """``<scene>/<t>``: a time-step folder (``<scene>/t001``) or ``<scene>/1`` -> the folder."""
    frame = Path(frame)
    candidates = [frame]
    if frame.name.isdigit():
        candidates.append(frame.parent / f"t{int(frame.name):03d}")
    for candidate in candidates:
        if (candidate / "transforms.json").is_file():
            return candidate
    raise NerfconvertError(
        f"no frame at {frame}: expected a time-step folder with a transforms.json (e.g. <scene>/t000 or <scene>/0)."
    )


def load_distillnerf(config_path: Path, device: Optional[str] = None):
    """A trained ``distillnerf`` run -> (model in eval mode, its TrainerConfig), without its data."""
    from nerfconvert import compat

    compat.install()
    config_path = resolve_run(config_path)
    config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    from nerfconvert.distillnerf.model import DistillNerfModelConfig

    if not isinstance(getattr(config.pipeline, "model", None), DistillNerfModelConfig):
        raise NerfconvertError(
            f"{config_path} is a {getattr(config, 'method_name', '?')!r} run, not a distillnerf run; "
            "train one with ns-train distillnerf."
        )
    ckpts = sorted((config_path.parent / "nerfstudio_models").glob("step-*.ckpt"))
    if not ckpts:
        raise NerfconvertError(f"{config_path.parent} has no checkpoint (nerfstudio_models/step-*.ckpt); train longer.")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = torch.load(ckpts[-1], map_location=device)
    state = {}
    for key, value in loaded["pipeline"].items():
        if key.startswith("_model."):
            key = key[len("_model."):]
            state[key[len("module."):] if key.startswith("module.") else key] = value
    from nerfstudio.data.scene_box import SceneBox

    inner = torch.tensor(config.pipeline.model.inner_range)
    model = config.pipeline.model.setup(scene_box=SceneBox(aabb=torch.stack([-inner, inner])), num_train_data=1,
                                        metadata={}, device=device)
    model.load_state_dict(state)
    model.to(device).eval()
    return model, config


def frame_dataparser(step_dir: Path):
    """Stock nerfstudio parser of one time step's transforms.json, poses kept as written (metres, world frame)."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    return NerfstudioDataParserConfig(
        data=Path(step_dir).resolve(), orientation_method="none", center_method="none", auto_scale_poses=False,
        scale_factor=1.0, scene_scale=50.0, eval_mode="all", load_3D_points=False,
    )


def load_frame(step_dir: Path) -> Tuple[Any, torch.Tensor, torch.Tensor]:
    """One time step -> (cameras [N], images [N, H, W, 3] in [0, 1], ego_to_world [4, 4])."""
    import imageio.v2 as imageio

    meta = json.loads((Path(step_dir) / "transforms.json").read_text())
    if "ego_to_world" not in meta:
        raise NerfconvertError(
            f"{step_dir}/transforms.json has no ego_to_world: the parameterized space is centred on the ego pose; "
            "write the frame with nerfconvert's driving-scene generator or add the 4x4 ego pose."
        )
    outputs = frame_dataparser(step_dir).setup().get_dataparser_outputs("train")
    images = []
    for name in outputs.image_filenames:
        image = np.asarray(imageio.imread(name), dtype=np.float32) / 255.0
        images.append(image[..., :3])
    return outputs.cameras, torch.from_numpy(np.stack(images)), torch.tensor(meta["ego_to_world"], dtype=torch.float32)


@torch.no_grad()
def predict_scene(model, cameras, images: torch.Tensor, ego_to_world: torch.Tensor):
    """One forward pass: (sparse voxels, seconds it took)."""
    start = time.perf_counter()
    scene, _ = model.encode(cameras, images, ego_to_world)
    if scene.fine_keys.is_cuda:
        torch.cuda.synchronize()
    return scene, time.perf_counter() - start


def scene_model_config(model_config):
    from nerfconvert.distillnerf.scene_model import DistillNerfSceneModelConfig

    return DistillNerfSceneModelConfig(**model_config.scene_settings())


def write_scene_run(model, scene, step_dir: Path, output_dir: Path, experiment_name: Optional[str] = None,
                    timestamp: Optional[str] = None) -> Path:
    """A runnable ``distillnerf-scene`` run holding ``scene`` and the model's decoder."""
    from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.engine.trainer import TrainerConfig
    from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

    step_dir = Path(step_dir).resolve()
    scene_cfg = scene_model_config(model.config)
    config = TrainerConfig(
        method_name="distillnerf-scene",
        experiment_name=experiment_name or f"{step_dir.parent.name}-{step_dir.name}",
        output_dir=Path(output_dir).resolve(),
        timestamp=timestamp or datetime.datetime.now().strftime("%Y-%m-%d_%H%M%S"),
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(dataparser=frame_dataparser(step_dir)),
            model=scene_cfg,
        ),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 13),
        vis="viewer",
        max_num_iterations=0,
    )
    base = config.get_base_dir()
    if (base / "config.yml").exists():
        raise NerfconvertError(f"{base} already holds a run; pick another --output-dir or --timestamp.")
    inner = torch.tensor(scene_cfg.inner_range)
    scene_model = scene_cfg.setup(scene_box=SceneBox(aabb=torch.stack([-inner, inner])), num_train_data=1, metadata={})
    scene_model.decoder.load_state_dict(model.decoder.state_dict())
    scene_model.ray_rgb.load_state_dict(model.ray_rgb.state_dict())
    state = {k: v.detach().cpu() for k, v in scene_model.state_dict().items()}
    state.update({k: v.detach().cpu() for k, v in scene.to_state().items()})
    ckpt_dir = base / "nerfstudio_models"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt = ckpt_dir / "step-000000000.ckpt"
    tmp = ckpt.with_suffix(".tmp")
    torch.save({"step": 0, "pipeline": {f"_model.{k}": v for k, v in state.items()}, "optimizers": {},
                "schedulers": {}, "scalers": {}}, tmp)
    os.replace(tmp, ckpt)
    config.save_config()  # last: a config.yml means a complete run
    return base / "config.yml"


def predict(model_path: Path, frame: Path, output_dir: Path, device: Optional[str] = None,
            timestamp: Optional[str] = None) -> Tuple[Path, Dict[str, float]]:
    step_dir = resolve_frame(frame)
    model, _ = load_distillnerf(model_path, device)
    cameras, images, ego_to_world = load_frame(step_dir)
    scene, seconds = predict_scene(model, cameras, images, ego_to_world)
    config_path = write_scene_run(model, scene, step_dir, output_dir, timestamp=timestamp)
    return config_path, {"seconds": seconds, "fine_voxels": float(scene.fine_keys.numel()),
                         "coarse_voxels": float(scene.coarse_keys.numel())}


@dataclass
class DistillNerfPredict:
    """Predict one frame's scene with a trained distillnerf model (one forward pass) and write a
    run that ns-viewer, ns-export and ns-eval open."""

    model: Path
    """The trained distillnerf run (its directory or config.yml)."""
    frame: Path
    """<scene>/<t>: a time-step folder (e.g. scenes/scene-000/t001) or <scene>/<step number>."""
    output_dir: Path = Path("outputs")
    """Root of the run, as ns-train's --output-dir."""
    device: Optional[str] = None
    """cpu or cuda (default: cuda when available)."""
    timestamp: Optional[str] = None
    """Default: now, as ns-train names runs."""

    def main(self) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE

        config_path, info = predict(self.model, self.frame, self.output_dir, self.device, self.timestamp)
        CONSOLE.print(f"Predicted in {info['seconds']:.3f} s: {int(info['fine_voxels'])} fine voxels, "
                      f"{int(info['coarse_voxels'])} occupied coarse cells.")
        CONSOLE.print(f"[green]Run written: {config_path}[/green]")
        CONSOLE.print(f"Open it:  ns-viewer --load-config {config_path}")
