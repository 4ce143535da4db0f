"""A model config as plain JSON and back: what a compressed file records to rebuild its model.

Decoding rebuilds a model from a registered method's config plus the file's plain-valued fields
(checked by ``validate.model_config``), never from pickled objects: a file from a stranger cannot
name code to run. Shared by every compression method.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from nerfconvert import NerfconvertError
from nerfconvert.compress import validate


def _jsonable(value: Any) -> Tuple[bool, Any]:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True, value
    if isinstance(value, Path):
        return True, str(value)
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if isinstance(value, dict):
        items = {str(k): _jsonable(v) for k, v in value.items()}
        return all(ok for ok, _ in items.values()), {k: v for k, (_, v) in items.items()}
    return False, None


def model_config_to_json(config) -> Dict[str, Any]:
    """The plain-valued fields of a model config (nested configs keep the stock defaults)."""
    out = {}
    for f in dataclasses.fields(config):
        if f.name.startswith("_"):
            continue
        ok, value = _jsonable(getattr(config, f.name))
        if ok:
            out[f.name] = value
    camera_optimizer = getattr(config, "camera_optimizer", None)
    if camera_optimizer is not None:
        # its mode decides whether the model has pose parameters (pvd-al students have none)
        out["camera_optimizer_mode"] = str(camera_optimizer.mode)
    return out


def model_method_for(config, default: str) -> str:
    """The registered method whose model config class ``config`` has (``default`` when that one
    does), so that a decoder rebuilds the same variant, e.g. ``tensorf-unbounded``."""
    from nerfstudio.configs.method_configs import all_methods

    def model_of(name: str):
        # all_methods also lists external methods that are not installed (no pipeline)
        return getattr(getattr(all_methods.get(name), "pipeline", None), "model", None)

    if type(model_of(default)) is type(config):
        return default
    for name in sorted(all_methods):
        if type(model_of(name)) is type(config):
            return name
    return default


def model_config_from_json(family_cls, fields: Dict[str, Any], method: Optional[str] = None):
    """The model config a file describes: a registered method's (the family's own, or a variant of
    it named in the file), with the file's plain-valued fields. A name is looked up, never imported."""
    from nerfstudio.configs.method_configs import all_methods

    base = family_cls.teacher_method
    if base not in all_methods:
        raise NerfconvertError(f"Decoding needs the {base!r} method, which is not installed; install its plugin.")
    method = base if method is None else method
    if not isinstance(method, str) or getattr(all_methods.get(method), "pipeline", None) is None:
        raise NerfconvertError(
            f"The file was made from a {method!r} run, a method this installation does not have; install its plugin."
        )
    if not isinstance(all_methods[method].pipeline.model, type(all_methods[base].pipeline.model)):
        raise NerfconvertError(f"The file names method {method!r}, which is not a {base} variant: the file is corrupt.")
    config = copy.deepcopy(all_methods[method].pipeline.model)
    fields = validate.model_config(family_cls, config, fields)
    mode = fields.pop("camera_optimizer_mode", None)
    if mode is not None and getattr(config, "camera_optimizer", None) is not None:
        if mode not in ("off", "SO3xR3", "SE3"):
            raise NerfconvertError(f"The file names camera optimizer mode {mode!r}, which nerfstudio does not have: the file is corrupt.")
        config.camera_optimizer = copy.deepcopy(config.camera_optimizer)
        config.camera_optimizer.mode = mode
    for name, value in fields.items():
        if not hasattr(config, name):
            continue  # a field this nerfstudio does not know: keep the default
        default = getattr(config, name)
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        setattr(config, name, value)
    return config


def model_architecture(model, family_name: str, teacher_method: str) -> Dict[str, Any]:
    """What every .ncz records of the model it holds, to rebuild it before its tables are decoded:
    family, model class and method, full model config, scene box and number of training images."""
    return {
        "family": family_name,
        "model_class": type(model).__name__,
        "teacher_method": teacher_method,
        "model_method": model_method_for(model.config, teacher_method),
        "model_config": model_config_to_json(model.config),
        "scene_box": model.scene_box.aabb.detach().cpu().tolist(),
        "num_train_data": int(model.num_train_data),
    }
