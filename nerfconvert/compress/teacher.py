"""The part of a compression run that comes before the method's own work, shared by
vq-compression and entropy-compression: reading the teacher run (only read, never written),
walking its training rays, and the Eq. 4 importance scores, cached on disk so that re-runs with
other settings (codebook sizes, lambdas, either method) skip the probe.

A method subclasses ``CompressionPipeline``, names itself in ``method`` and implements
``check_teacher_config`` / ``check_teacher_model`` and ``start(teacher_model, path)``.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Iterator, Literal, Optional

import numpy as np
import torch
from torch import Tensor

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.models.base_model import Model
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE

from nerfconvert import NerfconvertError
from nerfconvert.compress import container
from nerfconvert.progress import with_progress


def training_ray_bundles(datamanager, device, rays_per_batch: int, max_rays: Optional[int], seed: int = 0) -> Iterator[RayBundle]:
    """Every pixel of every training image (or ``max_rays`` of them at random), in batches."""
    cameras = datamanager.train_dataset.cameras.to(device)
    bundles = [cameras.generate_rays(camera_indices=i, keep_shape=True).flatten() for i in range(len(cameras))]
    total = sum(len(b) for b in bundles)
    order = None
    if max_rays is not None and max_rays < total:
        order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:max_rays].sort().values
    offset = 0
    for bundle in bundles:
        n = len(bundle)
        if order is None:
            index = torch.arange(n)
        else:
            index = order[(order >= offset) & (order < offset + n)] - offset
        offset += n
        for start in range(0, len(index), rays_per_batch):
            yield bundle[index[start : start + rays_per_batch].to(bundle.origins.device)]


def importance_ray_cap(requested: Optional[int], total: int, budget: int, device) -> Optional[int]:
    """Rays of the importance pass: ``requested`` (0: every training pixel), or by default the
    method's CPU budget (x16 on CUDA), never more than the dataset has. None: every pixel."""
    if requested is not None:
        return None if requested <= 0 or requested >= total else int(requested)
    cap = budget * (16 if torch.device(device).type == "cuda" else 1)
    return None if cap >= total else int(cap)


def teacher_step(config_path: Path) -> int:
    from nerfconvert.views.registry import latest_checkpoint, read_run_config

    _, config = read_run_config(config_path)
    name = latest_checkpoint(config).stem  # step-000001000
    return int(name.split("-")[-1])


def teacher_method(config_path: Path) -> str:
    """The registered method of the teacher run (what a shared file names, not its path)."""
    from nerfconvert.views.registry import read_run_config

    return str(read_run_config(config_path)[1].method_name)


def importance_key(config_path: Path, datamanager, max_rays: Optional[int], seed: int) -> str:
    """Importance depends on the teacher's weights and on the rays: hash both."""
    from nerfconvert.views.registry import latest_checkpoint, read_run_config

    _, config = read_run_config(config_path)
    h = hashlib.sha256()
    with open(latest_checkpoint(config), "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    cameras = datamanager.train_dataset.cameras
    h.update(cameras.camera_to_worlds.cpu().numpy().tobytes())
    h.update(f"{cameras.width.sum().item()}x{cameras.height.sum().item()}|{max_rays}|{seed}|v1".encode())
    return h.hexdigest()[:32]


def load_importance(path: Path) -> Optional[Dict[str, Tensor]]:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: torch.from_numpy(data[k]) for k in data.files}
    except (OSError, ValueError):  # a broken cache entry is recomputed
        return None


def save_importance(path: Path, importance: Dict[str, Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v.detach().cpu().numpy() for k, v in importance.items()})
    container.write_bytes_atomic(path, buffer.getvalue())


@dataclass
class CompressionPipelineConfig(VanillaPipelineConfig):
    teacher_ckpt: Optional[Path] = None
    """config.yml of the trained run to compress. Only read."""


class CompressionPipeline(VanillaPipeline):
    """In training mode: check and load the teacher run, then ``start`` the method on it. In the
    viewer, ns-eval and ns-export (other test modes) the model only decodes its checkpoint's ``.ncz``."""

    config: CompressionPipelineConfig
    method: ClassVar[str]
    teacher_example: ClassVar[str] = "<method>"

    def __init__(self, config: CompressionPipelineConfig, device: str, test_mode: Literal["test", "val", "inference"] = "val",
                 world_size: int = 1, local_rank: int = 0, grad_scaler=None):
        training = test_mode == "val"
        try:
            teacher_path = self._check_teacher(config) if training else None
            super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
            if training:
                start = time.time()
                self.start(self._load_teacher(teacher_path), teacher_path)
                self.model.report["setup_seconds"] = time.time() - start
                self.model.to(self.device)
        except NerfconvertError as err:
            raise SystemExit(f"error: {err}") from None  # ns-train would bury the message under a traceback

    # ---- what a method provides -----------------------------------------------------------------
    @classmethod
    def check_teacher_config(cls, teacher_config) -> None:
        """Reject an unsupported teacher from its config alone, before anything is loaded."""

    def check_teacher_model(self, teacher_model: Model) -> None:
        """Reject an unsupported teacher model before the expensive part."""

    def start(self, teacher_model: Model, teacher_path: Path) -> None:
        raise NotImplementedError

    # ---- shared ------------------------------------------------------------------------------------
    @classmethod
    def _check_teacher(cls, config: CompressionPipelineConfig) -> Path:
        from nerfconvert.views.registry import read_run_config

        if config.teacher_ckpt is None:
            raise NerfconvertError(
                f"{cls.method} needs the run to compress: pass --teacher-ckpt outputs/<scene>/{cls.teacher_example}/<timestamp>/config.yml."
            )
        path, teacher = read_run_config(Path(config.teacher_ckpt))
        cls.check_teacher_config(teacher)
        # default --data: the teacher's scene
        dataparser = config.datamanager.dataparser
        teacher_data = getattr(teacher.pipeline.datamanager.dataparser, "data", None)
        if getattr(dataparser, "data", None) is not None and not Path(dataparser.data).exists() and teacher_data is not None:
            CONSOLE.print(f"{cls.method}: --data not found, using the teacher's scene {teacher_data}")
            dataparser.data = Path(teacher_data)
        return path

    def _load_teacher(self, teacher_path: Path) -> Model:
        from nerfconvert.views.registry import load_pipeline

        teacher_pipeline = load_pipeline(teacher_path, device=self.device, test_mode="inference")
        teacher_model = teacher_pipeline.model
        self.check_teacher_model(teacher_model)
        del teacher_pipeline
        if teacher_model.num_train_data != len(self.datamanager.train_dataset):
            raise NerfconvertError(
                f"The teacher was trained on {teacher_model.num_train_data} images but --data has "
                f"{len(self.datamanager.train_dataset)}: pass the teacher's scene with --data."
            )
        return teacher_model.to(self.device)

    def teacher_info(self, teacher_path: Path) -> Dict[str, Any]:
        """Provenance for the report and the .ncz metadata, plus a probe camera's rays (the render
        compared before and after packing)."""
        probe_camera = self.datamanager.train_dataset.cameras[0:1].to(self.device)
        return {
            # a shared .ncz names its teacher and scene, never the writer's paths (issue 18)
            "teacher_method": teacher_method(teacher_path),
            "teacher_step": teacher_step(teacher_path),
            "data": container.portable_path(self.config.datamanager.dataparser.data),
            "dataparser": type(self.config.datamanager.dataparser).__name__,
            "_probe_bundle": probe_camera.generate_rays(camera_indices=0, keep_shape=True),
        }

    def importance(self, teacher_path: Path, probe: Callable[[Iterator[RayBundle]], Dict[str, Tensor]],
                   ray_budget: int = 1 << 18) -> Dict[str, Tensor]:
        """Eq. 4 scores over the training rays: ``probe(bundles)``, or the cached result for this
        teacher checkpoint and ray selection. The rays are capped at ``ray_budget`` unless the run
        asks for a number (``importance_max_rays``; 0: every pixel)."""
        cfg = self.model.config
        cameras = self.datamanager.train_dataset.cameras
        total = int((cameras.width * cameras.height).sum())
        max_rays = importance_ray_cap(cfg.importance_max_rays, total, ray_budget, self.device)
        used = total if max_rays is None else max_rays
        CONSOLE.print(
            f"{self.method}: importance from {used:,} of {total:,} training rays ({100.0 * used / max(total, 1):.1f}%"
            + ("" if cfg.importance_max_rays is not None or max_rays is None else
               f", the default cap for this teacher on {torch.device(self.device).type}; "
               "--pipeline.model.importance-max-rays 0 uses every pixel")
            + ")"
        )
        self.model.report["importance_rays"] = used
        self.model.report["training_rays"] = total
        cache = None
        if cfg.importance_cache_dir is not None:
            key = importance_key(teacher_path, self.datamanager, max_rays, cfg.seed)
            cache = Path(cfg.importance_cache_dir).expanduser() / f"{key}.npz"
        scores = load_importance(cache) if cache is not None else None
        if scores is None:
            start = time.time()
            bundles = training_ray_bundles(self.datamanager, self.device, cfg.importance_rays_per_batch, max_rays, cfg.seed)
            scores = probe(with_progress(bundles, used, f"{self.method}: importance"))
            if cache is not None:
                save_importance(cache, scores)
            self.model.report["importance_seconds"] = time.time() - start
        else:
            CONSOLE.print(f"{self.method}: importance read from the cache {cache}")
            self.model.report["importance_seconds"] = 0.0
        return {k: v.to(self.device) for k, v in scores.items()}
