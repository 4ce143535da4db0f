"""``VQCompressionModel``: a stock model of the teacher's architecture, compressed with VQRF.

While training (the joint fine-tuning, Sec. 5.2) it holds the teacher's model with pruned
voxels kept empty and every vector-quantised voxel tied to its code (fixed assignment; codes
re-synchronised every ``sync_every`` steps). At the last step it packs itself into a ``.ncz``
and replaces its weights by the file's decoded ones, so what it renders afterwards is exactly
what any reader of the file renders.

Its checkpoint holds only the ``.ncz`` bytes (``{"ncz": uint8 tensor}``): loading a checkpoint,
as ``ns-viewer``, ``ns-eval`` and ``ns-export`` do, decodes the file. No teacher is needed then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Type

import torch
from torch import Tensor
from torch.nn import Parameter

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils.rich_utils import CONSOLE

from nerfconvert import NerfconvertError
from nerfconvert.compress import container
from nerfconvert.compress.checkpoint import NCZ_KEY, NczCheckpointMixin  # noqa: F401 (NCZ_KEY re-exported)
from nerfconvert.compress.vq import codec
from nerfconvert.compress.vq.compressor import VQSettings, apply_states, build_states, move_states
from nerfconvert.compress.tables import vq_tables_for



@dataclass
class VQCompressionModelConfig(ModelConfig, VQSettings):
    """VQRF (Li et al. 2023) on a trained voxel-grid, VM or hash-grid scene (VQ settings: ``VQSettings``)."""

    _target: Type = field(default_factory=lambda: VQCompressionModel)
    enable_collider: bool = False
    """The compressed model applies its own collider."""
    sync_every: int = 5
    """Joint fine-tuning: every this many steps each code becomes the importance-weighted mean of its voxels."""
    importance_rays_per_batch: int = 4096
    """Rays per backward pass of the importance probe (Eq. 4)."""
    importance_max_rays: Optional[int] = None
    """Cap on the training rays used for importance. Default: a budget that fits the teacher on this device
    (logged at the start; nerfacto 32,768 rays on CPU, grids 262,144; x16 on CUDA). 0: every pixel of every
    training image."""
    importance_cache_dir: Optional[Path] = Path("~/.cache/nerfconvert/vq_importance")
    """Where Eq. 4 scores are cached, keyed by the teacher checkpoint's hash and the ray settings
    (re-runs with other codebook sizes or quantiles skip the pass). None: no cache."""
    ncz_name: str = "scene.ncz"
    """File name of the compressed scene, written into the run directory at the end of training."""


class VQCompressionModel(NczCheckpointMixin, Model):
    config: VQCompressionModelConfig
    ncz_method = "vq-compression"

    def populate_modules(self) -> None:
        super().populate_modules()
        self.inner: Optional[Model] = None
        self.family = None
        self.states = None
        self.ncz_bytes: Optional[bytes] = None
        self.teacher_step = 0
        self.report: Dict[str, Any] = {}

    # ---- building -------------------------------------------------------------------------
    def start_from_teacher(self, teacher_model: Model, teacher_step: int, importance: Dict[str, Tensor],
                           info: Dict[str, Any]) -> None:
        """Pruning and codebooks from the Eq. 4 ``importance``: the model fine-tuning starts from
        (a copy; the teacher's files are only read)."""
        self.inner = teacher_model
        self.family = vq_tables_for(teacher_model, self.config.quantizer)
        self.teacher_step = teacher_step
        start = time.time()
        self.states = build_states(self.family, importance, self.config)
        self.report["codebook_seconds"] = time.time() - start
        self.report.update(info)

    def load_ncz(self, data: bytes, source: str = "the checkpoint's .ncz") -> None:
        """Become the file's model; while fine-tuning (``states`` built: ``ns-train --load-dir``
        resuming), continue from the file instead (``resume_from``)."""
        ncz = container.from_bytes(data, source=source)
        if self.states is not None and self.inner is not None:
            self.resume_from(ncz)
            self.ncz_bytes = bytes(data)
            return
        inner, family = codec.decode(ncz, device=self.device)
        self.inner = inner
        self.family = family
        self.states = None
        self.ncz_bytes = bytes(data)

    @torch.no_grad()
    def resume_from(self, ncz: container.NczFile) -> None:
        """Resume the joint fine-tuning from a checkpoint's file. The trainer has built the optimizers
        from ``inner``'s parameters before loading the checkpoint (and restores their state after it):
        the decoded tensors are copied into those same Parameters, and the tables' compressed state
        (masks, codebooks and assignment, lattice steps and values) comes from the file, with the
        importance just computed from the teacher."""
        decoded, _ = codec.decode(ncz, device=torch.device("cpu"))
        own = self.inner.state_dict()
        theirs = decoded.state_dict()
        unfit = sorted(k for k in set(own) | set(theirs) if k not in own or k not in theirs or own[k].shape != theirs[k].shape)
        if unfit:
            raise NerfconvertError(
                f"The checkpoint does not fit the model built from --teacher-ckpt ({', '.join(unfit[:3])} differ): "
                "resume with the teacher the run was started from."
            )
        states = codec.table_states(ncz, self.family)
        for name, state in states.items():
            state.importance = self.states[name].importance
        codec.load_state_into(self.inner, theirs)  # copies in place: the optimizers' Parameters stay
        device = next(self.inner.parameters()).device
        move_states(states, device)
        self.states = states
        self.family.apply_alive({name: s.alive for name, s in states.items()})
        apply_states(self.family, self.states)

    def _require_inner(self) -> Model:
        if self.inner is None:
            raise NerfconvertError(
                "This vq-compression model holds no scene yet: load a checkpoint of the run, or start it with --teacher-ckpt."
            )
        return self.inner

    @torch.no_grad()
    def pack(self) -> bytes:
        if self.states is None:
            if self.ncz_bytes is None:
                self._require_inner()
            return self.ncz_bytes
        metadata = {k: v for k, v in self.report.items() if isinstance(v, (int, float, str))}
        return codec.pack(self.family, self.states, metadata)

    @torch.no_grad()
    def finalize(self) -> bytes:
        """Last code sync, pack, and become the decoded file (post-processing, Sec. 6)."""
        apply_states(self.family, self.states, sync_codes=True)
        data = self.pack()
        self.states = None  # become the file's model (not a resume)
        self.load_ncz(data, source="the freshly packed .ncz")
        self.inner.train(self.training)
        return data

    # ---- training -------------------------------------------------------------------------------
    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        if self.inner is None:
            return {}
        groups = {}
        for name, params in self.inner.get_param_groups().items():
            if name == "camera_opt":
                continue  # poses stay as the teacher had them
            if params:
                groups[f"{self.family.name}_{name}"] = list(params)
        return groups

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        callbacks = []
        # Keep the teacher's per-step callbacks (e.g. nerfacto's proposal annealing), continuing its
        # step count; drop one-off schedule events (upsampling, pruning), which would break the structure.
        for cb in self._require_inner().get_training_callbacks(attrs):
            if cb.update_every_num_iters is None:
                continue

            def shifted(step: int, cb=cb) -> None:
                cb.func(*cb.args, **cb.kwargs, step=step + self.teacher_step)

            callbacks.append(TrainingCallback(cb.where_to_run, shifted, update_every_num_iters=cb.update_every_num_iters))

        trainer = attrs.trainer
        last_step = None
        if trainer is not None:
            last_step = trainer._start_step + trainer.config.max_num_iterations - 1

        def after_step(step: int) -> None:
            if self.states is None:
                return
            apply_states(self.family, self.states, sync_codes=step % max(self.config.sync_every, 1) == 0)
            if last_step is not None and step >= last_step:
                self.report["steps"] = step + 1
                self.finish(Path(trainer.base_dir))

        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], after_step, update_every_num_iters=1))
        return callbacks

    @torch.no_grad()
    def finish(self, run_dir: Path) -> Path:
        """Pack, write ``<run_dir>/<ncz_name>`` atomically, and compare renders before/after packing."""
        probe = self.report.pop("_probe_bundle", None)
        before = self._render_probe(probe)
        data = self.finalize()
        after = self._render_probe(probe)
        self.report["ncz_bytes"] = len(data)
        if before is not None:
            self.report["max_pixel_diff_vs_unpacked"] = float((before - after).abs().max())
        path = self.write_outputs(run_dir, self.config.ncz_name, data, self.report, "vq_report.json")
        CONSOLE.print(f"[green]vq-compression: wrote {path} ({len(data) / 1e6:.3f} MB)[/green]")
        return path

    def _render_probe(self, bundle: Optional[RayBundle]) -> Optional[Tensor]:
        if bundle is None:
            return None
        inner = self._require_inner()
        was = inner.training
        inner.eval()
        try:
            return inner.get_outputs_for_camera_ray_bundle(bundle)["rgb"].detach().cpu()
        finally:
            inner.train(was)

    # ---- rendering: the compressed model's own ------------------------------------------------
    def forward(self, ray_bundle):
        return self._require_inner().forward(ray_bundle)

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        return self._require_inner().get_outputs(ray_bundle)

    def get_outputs_for_camera_ray_bundle(self, camera_ray_bundle: RayBundle) -> Dict[str, Tensor]:
        return self._require_inner().get_outputs_for_camera_ray_bundle(camera_ray_bundle)

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        return self._require_inner().get_metrics_dict(outputs, batch)

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        return self._require_inner().get_loss_dict(outputs, batch, metrics_dict)

    def get_image_metrics_and_images(self, outputs, batch):
        return self._require_inner().get_image_metrics_and_images(outputs, batch)
