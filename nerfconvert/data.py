"""Data managers for our methods: nerfstudio's, plus a clear error for a bad ``--data``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Type

from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset

from nerfconvert import NerfconvertError

MAKE_SCENE_HINT = "make a demo scene with `nerfconvert scene --output-dir data/procedural`"


def check_data_dir(dataparser_config) -> None:
    """Raise a one-line error if the dataparser's ``--data`` cannot be a scene."""
    data = getattr(dataparser_config, "data", None)
    if data is None:
        return
    data = Path(data)
    if not data.exists():
        raise NerfconvertError(
            f"--data {data} does not exist. Pass the directory of a scene (relative paths start at "
            f"{Path.cwd()}), or {MAKE_SCENE_HINT}."
        )
    kind = type(dataparser_config).__name__
    if kind == "BlenderDataParserConfig" and not (data / "transforms_train.json").exists():
        raise NerfconvertError(
            f"--data {data} has no transforms_train.json, so it is not a blender-format scene. "
            "Point it at a blender scene, or pick the dataparser that matches the data "
            "(e.g. `nerfstudio-data` for ns-process-data output)."
        )
    if kind == "NerfstudioDataParserConfig" and data.is_dir() and not (data / "transforms.json").exists():
        raise NerfconvertError(
            f"--data {data} has no transforms.json, so it is not a nerfstudio-format scene. "
            "Run ns-process-data on it first, or pick the dataparser that matches it (e.g. `blender-data`)."
        )


class CheckedDataManager(VanillaDataManager[InputDataset]):
    """nerfstudio's ``VanillaDataManager``, which first checks that ``--data`` is a scene."""

    def __init__(self, config: "CheckedDataManagerConfig", *args, **kwargs):
        if config.data is not None:
            config.dataparser.data = Path(config.data)
        try:
            check_data_dir(config.dataparser)
        except NerfconvertError as err:
            # ns-train would bury the message under a traceback: exit with the one line instead.
            raise SystemExit(f"error: {err}") from None
        super().__init__(config, *args, **kwargs)


@dataclass
class CheckedDataManagerConfig(VanillaDataManagerConfig):
    _target: Type = field(default_factory=lambda: CheckedDataManager)
