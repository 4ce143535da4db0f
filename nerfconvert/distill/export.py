"""Write a distilled student as a standalone run of its own method (config.yml + checkpoint),
which stock ns-viewer / ns-export / ns-eval open and which can be a teacher in turn."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import yaml

from nerfstudio.engine.trainer import TrainerConfig


def student_run_config(pvd_config: TrainerConfig, teacher_config: TrainerConfig, student: str) -> TrainerConfig:
    """The stock TrainerConfig of ``student``, with the distilled model's config and the
    teacher's data settings (so ns-eval scores the student on the teacher's test views)."""
    from nerfstudio.configs.method_configs import all_methods

    run = copy.deepcopy(all_methods[student])
    run.method_name = student
    run.pipeline.model = copy.deepcopy(pvd_config.pipeline.model)
    teacher_dm = teacher_config.pipeline.datamanager
    dataparser = copy.deepcopy(teacher_dm.dataparser)
    data = getattr(dataparser, "data", None)
    if data is not None and Path(data).exists():
        dataparser.data = Path(data).resolve()  # opens from any working directory
    run.pipeline.datamanager.dataparser = dataparser
    run.pipeline.datamanager.data = None
    if hasattr(run.pipeline.datamanager, "camera_res_scale_factor") and hasattr(teacher_dm, "camera_res_scale_factor"):
        run.pipeline.datamanager.camera_res_scale_factor = teacher_dm.camera_res_scale_factor
    run.output_dir = pvd_config.output_dir
    run.experiment_name = pvd_config.experiment_name
    run.timestamp = pvd_config.timestamp
    run.machine = copy.deepcopy(pvd_config.machine)
    run.load_dir = None
    run.load_checkpoint = None
    run.load_config = None
    return run


def _free_dir(path: Path) -> Path:
    if not path.exists():
        return path
    i = 1
    while path.with_name(f"{path.name}-{i}").exists():
        i += 1
    return path.with_name(f"{path.name}-{i}")


def write_student_run(
    run: TrainerConfig,
    model_state: Dict[str, torch.Tensor],
    step: int,
    teacher_dir: Optional[Path] = None,
    extra_files: Optional[Dict[str, Path]] = None,
) -> Path:
    """Write ``run``'s config.yml and a checkpoint of ``model_state`` into a new run directory,
    atomically (a temporary sibling renamed into place). Returns the config.yml path.

    The directory is ``run.get_base_dir()`` (a suffix is added if it exists); it is never the
    teacher's run directory."""
    base = run.get_base_dir()
    if teacher_dir is not None and base.resolve() == Path(teacher_dir).resolve():
        base = _free_dir(base)
    base = _free_dir(base)
    if base != run.get_base_dir():
        run.timestamp = f"{run.timestamp}{base.name[len(run.get_base_dir().name):]}"
        assert run.get_base_dir() == base
    base.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{base.name}.tmp-", dir=base.parent))
    try:
        (tmp / "config.yml").write_text(yaml.dump(run), "utf8")
        ckpt_dir = tmp / run.relative_model_dir
        ckpt_dir.mkdir(parents=True)
        checkpoint: Dict[str, Any] = {
            "step": step,
            "pipeline": {f"_model.{k}": v.detach().cpu() for k, v in model_state.items()},
            "optimizers": {},
            "schedulers": {},
            "scalers": {},
        }
        torch.save(checkpoint, ckpt_dir / f"step-{step:09d}.ckpt")
        for name, src in (extra_files or {}).items():
            if Path(src).exists():
                shutil.copy2(src, tmp / name)
        os.replace(tmp, base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return base / "config.yml"
