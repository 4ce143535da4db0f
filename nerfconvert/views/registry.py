"""Which view fits which model class, and what else the view offers, and ``load_run``: a trained
run -> (pipeline, view).

One registry, keyed by model class name: ``SUPPORTED_MODELS`` and every method's "supported" list
derive from it. A method that needs a per-family capability asks for it by name
(``companion_class(model_class, "vq_tables")``), and gets the companion class the view class
declares in ``FieldView.capabilities``, never a family by name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Literal, Optional, Tuple, Type, Union

import torch
import yaml

from nerfconvert import NerfconvertError
from nerfconvert.views.base import FieldView, ViewOptions

# model class name -> its registration. Adding an architecture means one entry here (``register``); the
# view class declares what else it offers through companion classes (``FieldView.capabilities``).
@dataclass(frozen=True)
class Registration:
    view: Union[str, type]
    """The view class, or ``"module:Class"`` (imported when first asked for)."""
    method: str
    """The stock method that trains the model class (named in messages)."""
    what: str
    """The family in words, e.g. "hash grid"."""


_REGISTRY: Dict[str, Registration] = {}
SUPPORTED_MODELS: Dict[str, str] = {}
"""model class name -> "method (family)", derived from the registry (``register`` keeps it in step)."""


def register(model_class: Union[str, type], view: Union[str, type], method: str, what: str) -> None:
    """Serve ``model_class`` (a class or its name; subclasses too) with ``view``."""
    name = model_class if isinstance(model_class, str) else model_class.__name__
    _REGISTRY[name] = Registration(view, method, what)
    SUPPORTED_MODELS[name] = f"{method} ({what})"


def unregister(model_class: Union[str, type]) -> None:
    name = model_class if isinstance(model_class, str) else model_class.__name__
    _REGISTRY.pop(name, None)
    SUPPORTED_MODELS.pop(name, None)


register("NerfactoModel", "nerfconvert.views.hash:HashGridView", "nerfacto", "hash grid")
register("NGPModel", "nerfconvert.views.hash:HashGridView", "instant-ngp", "hash grid, CUDA")
register("TensoRFModel", "nerfconvert.views.vm:VMView", "tensorf", "VM")
register("UnboundedTensoRFModel", "nerfconvert.views.vm:VMView", "tensorf-unbounded", "VM, contracted")
register("NeRFModel", "nerfconvert.views.mlp:MLPView", "vanilla-nerf", "MLP")
register("PlenoxelsModel", "nerfconvert.views.voxel:VoxelGridView", "plenoxels", "voxel grid")
register("SplatfactoModel", "nerfconvert.views.splat:SplatView", "splatfacto", "3D Gaussians")


def _resolve(ref: Union[str, type]) -> type:
    if isinstance(ref, str):
        module, _, name = ref.partition(":")
        return getattr(importlib.import_module(module), name)
    return ref


def _supported_list() -> str:
    return ", ".join(f"{name} = {what}" for name, what in SUPPORTED_MODELS.items())


def _registered(model_class: type) -> Optional[str]:
    """The registered name among ``model_class`` and its bases, or None."""
    for cls in getattr(model_class, "__mro__", ()):
        if cls.__name__ in _REGISTRY:
            return cls.__name__
    return None


def registration_for(model_class: type) -> Optional[Registration]:
    """The registration serving ``model_class`` (or one of its bases), or None."""
    name = _registered(model_class)
    return None if name is None else _REGISTRY[name]


def teacher_methods() -> Tuple[str, ...]:
    """The stock methods whose runs have a view (registry order): what can be a teacher."""
    return tuple(dict.fromkeys(r.method for r in _REGISTRY.values()))


def view_class_for(model_class: type) -> Type[FieldView]:
    """The view class for a model class (or one of its bases)."""
    name = _registered(model_class)
    if name is not None:
        return _resolve(_REGISTRY[name].view)
    raise NerfconvertError(
        f"nerfconvert has no two-level view for model class {model_class.__name__}. "
        f"Supported: {_supported_list()}. Train the scene with one of those methods, or add a view."
    )


def _companion(name: str, capability: str) -> Optional[type]:
    ref = _resolve(_REGISTRY[name].view).capabilities.get(capability)
    if ref is None:
        return None
    companion = _resolve(ref)
    serves = getattr(companion, "model_classes", None)  # a companion may serve only some of the view's models
    return companion if serves is None or name in serves else None


def companion_class(model_class: type, capability: str) -> Optional[type]:
    """The companion class that the view of ``model_class`` registers for ``capability`` (e.g.
    ``"vq_tables"``), or None where the model has no view or its view lacks the capability."""
    name = _registered(model_class)
    return None if name is None else _companion(name, capability)


def companions(capability: str, having: Optional[str] = None) -> Dict[str, type]:
    """model class name -> companion class, for every registered model class with ``capability``
    (registry order): what a method that needs the capability supports. ``having``: only those whose
    view also has that capability (e.g. ``"feature_planes"``)."""
    out = {}
    for name in _REGISTRY:
        companion = _companion(name, capability)
        if companion is not None and (having is None or _resolve(_REGISTRY[name].view).has(having)):
            out[name] = companion
    return out


def student_views() -> Dict[str, Type[FieldView]]:
    """Student name (its stock method) -> view class, for every registered view that can be a
    distillation student (registry order; a view serving several model classes counts once)."""
    out: Dict[str, Type[FieldView]] = {}
    for registration in _REGISTRY.values():
        view = _resolve(registration.view)
        if view.student_method is not None and view.student_method not in out:
            out[view.student_method] = view
    return out


def is_unbounded(model_config) -> bool:
    """Whether a model config contracts space (so its scene reaches past the scene box): its view says."""
    name = _registered(getattr(model_config, "_target", None))
    if name is None:
        return FieldView.config_unbounded(model_config)
    return _resolve(_REGISTRY[name].view).config_unbounded(model_config)


def view_for(model: torch.nn.Module, options: Optional[ViewOptions] = None) -> FieldView:
    """Wrap a model instance in its view, built as ``options`` ask (e.g. an MLP's split layer)."""
    return view_class_for(type(model)).from_options(model, options)


def read_run_config(config_path: Path):
    """(config.yml path, the run's ``TrainerConfig``) for a run's config.yml or its directory; one-line errors."""
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


def latest_checkpoint(config) -> Path:
    """The checkpoint a run's config loads (its ``load_step``, or the newest); one-line error if none."""
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
    options: Optional[ViewOptions] = None,
) -> Tuple["Pipeline", FieldView]:  # noqa: F821
    """Load a trained nerfstudio run and its two-level view, on CPU or CUDA.

    ``config_path`` is the run's config.yml (or its directory). Paths inside it are relative to
    the directory ``ns-train`` was started from, as for ``ns-viewer``. Nothing is written.
    """
    from nerfconvert import compat

    compat.install()  # nerfstudio's loading needs them (safe torch.load, offline LPIPS): nerfconvert.compat

    config_path, config = read_run_config(Path(config_path))
    view_cls = view_class_for(config.pipeline.model._target)  # fail before the expensive setup
    pipeline = _setup_pipeline(config_path, config, device, test_mode)
    return pipeline, view_cls.from_options(pipeline.model, options)


def load_pipeline(
    config_path: Union[str, Path],
    device: Optional[Union[str, torch.device]] = None,
    test_mode: Literal["test", "val", "inference"] = "inference",
) -> "Pipeline":  # noqa: F821
    """Load a trained nerfstudio run's pipeline, as ``load_run`` does, for any method (no view needed:
    a teacher whose model a method checks itself, a compressed run whose checkpoint holds its .ncz)."""
    from nerfconvert import compat

    compat.install()  # nerfstudio's loading needs them (safe torch.load, offline LPIPS): nerfconvert.compat

    config_path, config = read_run_config(Path(config_path))
    return _setup_pipeline(config_path, config, device, test_mode)


def _setup_pipeline(config_path: Path, config, device, test_mode) -> "Pipeline":  # noqa: F821
    from nerfstudio.configs.method_configs import all_methods

    data = getattr(config.pipeline.datamanager.dataparser, "data", None)
    if data is not None and not Path(data).exists():
        raise NerfconvertError(
            f"The run's data directory {data} does not exist. Paths in {config_path} are relative to the "
            "directory ns-train was started from: run from there, or pass the data with its absolute path."
        )
    if config.method_name in all_methods:  # as eval_setup does: saved configs may pin old targets
        config.pipeline.datamanager._target = all_methods[config.method_name].pipeline.datamanager._target
    ckpt_path = latest_checkpoint(config)

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
    return pipeline
