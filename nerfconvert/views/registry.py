"""Which view fits which model class, and ``load_run``: a trained run -> (pipeline, view)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Dict, Literal, Optional, Tuple, Type, Union

import torch
import yaml

from nerfconvert import NerfconvertError
from nerfconvert.views.base import FieldView

# model class name -> (module, view class). Adding an architecture means one entry here.
_VIEWS: Dict[str, Tuple[str, str]] = {
    "NerfactoModel": ("nerfconvert.views.hash", "HashGridView"),
    "NGPModel": ("nerfconvert.views.hash", "HashGridView"),
    "TensoRFModel": ("nerfconvert.views.vm", "VMView"),
    "NeRFModel": ("nerfconvert.views.mlp", "MLPView"),
    "PlenoxelsModel": ("nerfconvert.views.voxel", "VoxelGridView"),
}

SUPPORTED_MODELS: Dict[str, str] = {
    "NerfactoModel": "nerfacto (hash grid)",
    "NGPModel": "instant-ngp (hash grid, CUDA)",
    "TensoRFModel": "tensorf (VM)",
    "NeRFModel": "vanilla-nerf (MLP)",
    "PlenoxelsModel": "plenoxels (voxel grid)",
}


def _supported_list() -> str:
    return ", ".join(f"{name} = {what}" for name, what in SUPPORTED_MODELS.items())


def view_class_for(model_class: type) -> Type[FieldView]:
    """The view class for a model class (or one of its bases)."""
    for cls in model_class.__mro__:
        if cls.__name__ in _VIEWS:
            module, name = _VIEWS[cls.__name__]
            return getattr(importlib.import_module(module), name)
    raise NerfconvertError(
        f"nerfconvert has no two-level view for model class {model_class.__name__}. "
        f"Supported: {_supported_list()}. Train the scene with one of those methods, or add a view."
    )


def view_for(model: torch.nn.Module, **view_kwargs) -> FieldView:
    """Wrap a model instance in its view (``view_kwargs`` go to the view, e.g. ``split_layer``)."""
    return view_class_for(type(model))(model, **view_kwargs)


def _read_run_config(config_path: Path):
    from nerfstudio.engine.trainer import TrainerConfig

    if config_path.is_dir():
        config_path = config_path / "config.yml"
    if not config_path.exists():
        raise NerfconvertError(
            f"{config_path} does not exist. Pass the config.yml of a nerfstudio run, "
            "e.g. outputs/<scene>/<method>/<timestamp>/config.yml."
        )
    try:
        # nerfstudio stores configs as Python-tagged YAML and reads them with the full loader;
        # we read them the same way (only open runs you trust, as with ns-viewer).
        config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise NerfconvertError(
            f"{config_path} is not a nerfstudio run config ({type(err).__name__}). "
            "Pass the config.yml that ns-train wrote into the run directory."
        ) from err
    except (ImportError, AttributeError) as err:
        raise NerfconvertError(
            f"{config_path} needs code that is not installed ({err}). "
            "Install the nerfstudio plugin that trained this run."
        ) from err
    if not isinstance(config, TrainerConfig):
        raise NerfconvertError(
            f"{config_path} is not a nerfstudio run config (it holds a {type(config).__name__}). "
            "Pass the config.yml that ns-train wrote into the run directory."
        )
    return config_path, config


def _latest_checkpoint(config) -> Path:
    ckpt_dir = config.get_checkpoint_dir()
    ckpts = sorted(ckpt_dir.glob("step-*.ckpt")) if ckpt_dir.is_dir() else []
    if config.load_step is not None:
        ckpts = [p for p in ckpts if p.name == f"step-{config.load_step:09d}.ckpt"]
    if not ckpts:
        raise NerfconvertError(
            f"No checkpoint in {ckpt_dir}. The run has not saved one yet: let ns-train run past "
            "--steps-per-save steps (or to the end), or run ns-train from the directory the run was started in."
        )
    return ckpts[-1]


def load_run(
    config_path: Union[str, Path],
    device: Optional[Union[str, torch.device]] = None,
    test_mode: Literal["test", "val", "inference"] = "inference",
    **view_kwargs,
) -> Tuple["Pipeline", FieldView]:  # noqa: F821
    """Load a trained nerfstudio run and its two-level view, on CPU or CUDA.

    ``config_path`` is the run's config.yml (or its directory). Paths inside it are relative to
    the directory ``ns-train`` was started from, as for ``ns-viewer``. Nothing is written.
    """
    from nerfstudio.configs.method_configs import all_methods  # also installs our shims

    config_path, config = _read_run_config(Path(config_path))
    model_target = config.pipeline.model._target
    view_cls = view_class_for(model_target)  # fail before the expensive setup

    data = getattr(config.pipeline.datamanager.dataparser, "data", None)
    if data is not None and not Path(data).exists():
        raise NerfconvertError(
            f"The run's data directory {data} does not exist. Paths in {config_path} are relative to the "
            "directory ns-train was started from: run from there, or pass the data with its absolute path."
        )
    if config.method_name in all_methods:  # as eval_setup does: saved configs may pin old targets
        config.pipeline.datamanager._target = all_methods[config.method_name].pipeline.datamanager._target
    ckpt_path = _latest_checkpoint(config)

    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = config.pipeline.setup(device=device, test_mode=test_mode)
    pipeline.eval()
    try:
        state = torch.load(ckpt_path, map_location="cpu")
    except Exception as err:  # a truncated or foreign file: say which one
        raise NerfconvertError(
            f"Could not read checkpoint {ckpt_path} ({type(err).__name__}: {err}). "
            "It may be truncated or not a nerfstudio checkpoint; re-save it from the run."
        ) from err
    if not isinstance(state, dict) or "pipeline" not in state:
        raise NerfconvertError(f"{ckpt_path} is not a nerfstudio checkpoint (no 'pipeline' entry).")
    pipeline.load_pipeline(state["pipeline"], state.get("step", 0))
    pipeline.to(device)
    return pipeline, view_cls(pipeline.model, **view_kwargs)
