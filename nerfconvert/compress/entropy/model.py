"""``EntropyCompressionModel``: a TensoRF-VM scene whose feature planes are decoded from learned
latents (ECTensoRF, Pham & Mandt 2024).

While training it holds the teacher's TensoRF with its planes replaced, at every step, by
P_hat_i = D(Z_hat_i * M_i) (Eq. 7); lines, basis and colour MLP stay frozen (Sec. 4.1). The loss
is Eq. 9: rendering loss + importance-weighted plane reconstruction + lambda * rate. At the last
step it encodes itself into a ``.ncz`` (CompressAI ``update()`` then ``compress()``) and becomes
the model decoded from that file, so what it renders afterwards is what any reader renders.

Its checkpoint holds only the ``.ncz`` bytes (``{"ncz": uint8 tensor}``): loading it, as
``ns-viewer``, ``ns-eval`` and ``ns-export`` do, decodes the planes once; rendering is then
plain TensoRF.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Type

import torch
from torch import Tensor, nn
from torch.nn import Parameter

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils.rich_utils import CONSOLE

from nerfconvert import NerfconvertError
from nerfconvert.compress import container
from nerfconvert.compress.checkpoint import NCZ_KEY, NczCheckpointMixin  # noqa: F401 (NCZ_KEY re-exported)
from nerfconvert.compress.entropy import codec
from nerfconvert.compress.entropy.coder import (
    PRESETS,
    MaskedEntropyModel,
    PlaneDecoder,
    gumbel_temperature,
    importance_weights,
    join_planes,
    unimportant_blocks,
    latent_size,
    split_planes,
)
from nerfconvert.compress.quant import unpack_mask
from nerfconvert.compress.tables import feature_planes_needed, has_feature_planes, vq_tables_for
from nerfconvert.views.registry import view_for

PLANE_FIT_LEARNING_RATES = {"latents": 0.02, "masks": 0.02, "decoder": 1e-3, "entropy_model": 1e-3, "entropy_quantiles": 1e-3}
"""The plane fit's Adam learning rate per optimizer group where a run gives none (the method's defaults)."""


@dataclass
class EntropyCompressionModelConfig(ModelConfig):
    """ECTensoRF on a trained TensoRF-VM scene."""

    _target: Type = field(default_factory=lambda: EntropyCompressionModel)
    enable_collider: bool = False
    """The TensoRF model inside applies its own collider."""
    preset: Literal["low", "high"] = "low"
    """low (ECTensoRF-L): 384 latent / 192 hidden channels; high (ECTensoRF-H): 192 / 96."""
    lmbda: float = 1e-3
    """lambda of Eq. 9. The rate is counted in bits per plane entry (bits / (3 x C x R x R)),
    so lambda is independent of the scene's resolution; larger is smaller and blurrier."""
    plane_loss_weight: float = 1.0
    """Weight of the importance-weighted plane reconstruction term (mean over plane entries)."""
    use_importance: bool = True
    """Weight the plane reconstruction by W_i (Eq. 5); False is the 'no importance' ablation (W = 1)."""
    masked: bool = True
    """Masked spike-and-slab prior (Eq. 6); False is the plain factorised prior ablation."""
    mask_init: float = 2.0
    """Initial log-odds of M = 1 (coded) at every location (see mask_from_importance)."""
    mask_from_importance: bool = False
    """Start M = 0 (log-odds -mask_init) at the latent locations whose 4x4 plane block has zero importance
    (the Eq. 4 scores), when masked and use_importance are on. Off by default: a plane entry no training ray
    reached is still one of the terms that keep empty space empty (see importance_floor); on the lego100
    teacher this start left renders at 14.7 dB against the teacher's after 300 plane-fit iterations."""
    importance_floor: float = 0.2
    """Least weight of a plane entry in the plane reconstruction term: W = floor + (1 - floor) * W_paper. The
    paper's Eq. 5 gives the least important entries weight 0, but in a VM plane those are the negative terms
    of the ReLU'd density sum that keep empty space empty; left free, the decoder fills them with floaters
    (lego100 teacher, 300 plane-fit iterations: 34.7 dB against the teacher's renders with a floor of 0.2,
    14.7 dB with the paper's weights and importance-masked latents; ``benchmarks/README.md``). 0: the paper's."""
    plane_fit_iterations: Optional[int] = None
    """At the first training step of a run (not of a resumed one), fit the latents, decoder and entropy model
    to the teacher's planes alone (weighted plane term + lambda * rate, no rendering: about a third of a
    step's cost), so that the rendering steps start from planes that already render the scene instead of
    from zero latents. None: min(300, the run's --max-num-iterations); 0: start from zeros, as the paper."""
    finetune_renderer: bool = True
    """Fine-tune the TensoRF parts outside the planes (lines, appearance basis, colour MLP) with the latents,
    as vq-compression's joint fine-tuning does, at the precision the file stores them; False freezes them
    as the paper does (Sec. 4.1)."""
    decoder_bits: int = 8
    """Bits of the plane decoder's weights in the file: 2 to 8 trains them quantisation-aware (symmetric,
    straight-through, one fp32 scale per output channel) and stores int8 codes + scales (biases fp32);
    16 stores every decoder tensor in fp16, as files written before this option."""
    rate_sample_fraction: float = 0.25
    """Each training step estimates the rate from this fraction of the (plane, row, column) latent locations,
    drawn uniformly at random, their bits scaled by 1/fraction (unbiased; the decoder still sees every
    latent). 1.0: the exact rate every step. The packed bitstream and the reported rate are always exact."""
    tau_start: float = 10.0
    """Gumbel-softmax temperature at the first step (annealed exponentially)."""
    tau_end: float = 0.1
    """Gumbel-softmax temperature at the last step."""
    importance_eps: float = 0.01
    """epsilon of Eq. 5."""
    importance_rays_per_batch: int = 4096
    """Rays per backward pass of the importance probe (Eq. 4)."""
    importance_max_rays: Optional[int] = None
    """Cap on the training rays used for importance. Default: a budget that fits the teacher on this device
    (logged at the start; nerfacto 32,768 rays on CPU, grids 262,144; x16 on CUDA). 0: every pixel of every
    training image."""
    importance_cache_dir: Optional[Path] = Path("~/.cache/nerfconvert/vq_importance")
    """Eq. 4 scores are cached here (shared with vq-compression: the same scores). None: no cache."""
    ncz_name: str = "scene.ncz"
    """File name of the compressed scene, written into the run directory at the end of training."""
    seed: int = 0


class EntropyCompressionModel(NczCheckpointMixin, Model):
    config: EntropyCompressionModelConfig
    ncz_method = "entropy-compression"

    def populate_modules(self) -> None:
        super().populate_modules()
        if not (2 <= self.config.decoder_bits <= 8 or self.config.decoder_bits == 16):
            raise NerfconvertError(f"--pipeline.model.decoder-bits is {self.config.decoder_bits}: use 2 to 8 (int8 codes) or 16 (fp16).")
        if not 0.0 < self.config.rate_sample_fraction <= 1.0:
            raise NerfconvertError(f"--pipeline.model.rate-sample-fraction is {self.config.rate_sample_fraction:g}: use a fraction in (0, 1].")
        self.inner: Optional[Model] = None
        self.latents: Optional[Parameter] = None
        self.decoder: Optional[PlaneDecoder] = None
        self.entropy: Optional[MaskedEntropyModel] = None
        self.ncz_bytes: Optional[bytes] = None
        self.teacher_step = 0
        self.report: Dict[str, Any] = {}
        self.spec: Dict[str, Any] = {}
        self._tau = self.config.tau_start
        self._train_terms: Optional[Dict[str, Tensor]] = None
        self._eval_planes_version = -1
        self._planes_version = 0
        self._schedule: Optional[Tuple[int, int]] = None
        """(first step, steps) of the temperature annealing; a resumed run continues its run's."""

    # ---- building -----------------------------------------------------------------------------
    def start_from_teacher(self, teacher_model: Model, teacher_step: int, importance: Optional[Dict[str, Tensor]],
                           info: Dict[str, Any]) -> None:
        """Freeze the teacher's TensoRF, keep its planes as targets P_i, and set up Z_i (zeros), D and P."""
        check_feature_planes(teacher_model)
        view = view_for(teacher_model)
        view.check_planes()
        torch.manual_seed(self.config.seed)
        self.teacher_step = teacher_step
        density, color = (p.detach() for p in view.planes())
        target = join_planes(density, color)  # [3, C_sigma + C_app, R, R]
        n, c, h, w = target.shape
        latent_channels, hidden = PRESETS[self.config.preset]
        lh, lw = latent_size(h), latent_size(w)
        self.spec = {
            "preset": self.config.preset,
            "latent_channels": latent_channels,
            "hidden_channels": hidden,
            "plane_channels": c,
            "density_channels": int(density.shape[1]),
            "plane_resolution": [h, w],
        }
        # everything but the planes starts at the precision the file keeps (fp16); frozen, or fine-tuned
        # with the latents (finetune_renderer) and rounded to that precision again when packed
        view.set_planes(density, color)  # placeholders until the first decode
        with torch.no_grad():
            for p in teacher_model.parameters():
                p.data = codec.round_like_storage(p.data)
                p.requires_grad_(False)
        self.inner = teacher_model
        for p in self._renderer_params().values():
            p.requires_grad_(True)
        self.register_buffer("target_planes", target.clone(), persistent=False)
        initial_mask = None
        if importance is not None and self.config.use_importance:
            imp = vq_tables_for(teacher_model).plane_importance(importance).to(target.device)  # [3, h, w]
            floor = float(self.config.importance_floor)
            weights = floor + (1.0 - floor) * importance_weights(imp, self.config.importance_eps)[:, None]
            if self.config.masked and self.config.mask_from_importance:
                unimportant = unimportant_blocks(imp, (lh, lw))
                if bool(unimportant.all()):
                    CONSOLE.print("[yellow]entropy-compression: no plane block has any importance; every latent location starts coded[/yellow]")
                else:
                    initial_mask = ~unimportant
                self.report["initially_uncoded_fraction"] = float(unimportant.float().mean()) if initial_mask is not None else 0.0
        else:
            weights = torch.ones(n, 1, h, w, device=target.device)
        self.register_buffer("plane_weights", weights, persistent=False)
        self.latents = Parameter(torch.zeros(n, latent_channels, lh, lw, device=target.device))  # Z_i = 0 (Sec. 3.1)
        self.decoder = PlaneDecoder(latent_channels, hidden, c, bits=self.config.decoder_bits).to(target.device)
        self.entropy = MaskedEntropyModel(latent_channels, (n, lh, lw), masked=self.config.masked,
                                          mask_init=self.config.mask_init, initial_mask=initial_mask).to(target.device)
        self.report.update(info)
        self.report.update({k: v for k, v in self.spec.items() if not isinstance(v, list)})
        self.report["plane_entries"] = int(target.numel())
        self.report["decoder_bits"] = self.config.decoder_bits
        self.report["rate_sample_fraction"] = self.config.rate_sample_fraction
        CONSOLE.print(
            f"[bold]entropy-compression[/bold]: planes 3 x {c} x {h} x {w} -> latents 3 x {latent_channels} x {lh} x {lw}, "
            f"decoder hidden {hidden} ({self.config.preset}), lambda {self.config.lmbda:g}, "
            f"{'masked' if self.config.masked else 'plain factorised'} prior, importance weights {'on' if self.config.use_importance else 'off'}, "
            f"decoder {self.config.decoder_bits}-bit, training rate on {100 * self.config.rate_sample_fraction:g}% of the latent locations"
            + (f", {100 * self.report['initially_uncoded_fraction']:.1f}% of them start uncoded (zero importance)"
               if self.report.get("initially_uncoded_fraction") else "")
        )

    def fit_planes(self, iterations: int, learning_rates: Optional[Dict[str, float]] = None) -> None:
        """Fit latents, decoder and entropy model to the target planes alone (``plane_fit_iterations``):
        the weighted plane term + lambda * rate of Eq. 9 without the rendering term, the mask temperature
        annealed as in training. Adam at the run's initial learning rate of each group (``learning_rates``,
        by optimizer group; the method's defaults where a group is not given)."""
        if iterations <= 0:
            return
        from nerfstudio.utils.rich_utils import get_progress

        rates = {**PLANE_FIT_LEARNING_RATES, **(learning_rates or {})}
        groups = {k: v for k, v in self.get_param_groups().items() if k in PLANE_FIT_LEARNING_RATES}
        quantiles = groups.pop("entropy_quantiles")
        optimizer = torch.optim.Adam([{"params": params, "lr": rates[name]} for name, params in groups.items()])
        aux = torch.optim.Adam(quantiles, lr=rates["entropy_quantiles"])
        resolution = tuple(self.spec["plane_resolution"])
        start = time.perf_counter()
        with torch.enable_grad(), get_progress("entropy-compression: fitting the planes", suffix="iterations") as progress:
            task = progress.add_task("fit", total=iterations)
            for i in range(iterations):
                tau = gumbel_temperature(i, iterations, self.config.tau_start, self.config.tau_end)
                z_hat, bits = self.entropy(self.latents, tau, self.config.rate_sample_fraction)
                planes = self.decoder(z_hat, resolution)
                plane_loss, rate_loss = self._plane_and_rate_losses(planes, bits)
                loss = plane_loss + rate_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                aux.zero_grad(set_to_none=True)
                self.entropy.aux_loss().backward()
                aux.step()
                progress.advance(task)
        self._planes_version += 1
        self.report["plane_fit_iterations"] = iterations
        self.report["plane_fit_seconds"] = time.perf_counter() - start
        self.report["plane_fit_loss"] = float(loss)

    @property
    def training_state(self) -> bool:
        return self.latents is not None

    def load_ncz(self, data: bytes, source: str = "the checkpoint's .ncz") -> None:
        """Become the file's model; while fine-tuning (``ns-train --load-dir`` resuming) continue
        from the file instead: latents, decoder and masks as stored (a checkpoint's ``resume_state``
        then restores them at full precision)."""
        ncz = container.from_bytes(data, source=source)
        if self.training_state:
            self._resume_from_file(ncz)
            self.ncz_bytes = bytes(data)
            return
        inner, info = codec.decode(ncz, device=self.device)
        self.inner = inner
        self.latents = None
        self.decoder = None
        self.entropy = None
        self.ncz_bytes = bytes(data)
        self.report["decode_seconds"] = info["decode_seconds"]

    @torch.no_grad()
    def _resume_from_file(self, ncz: container.NczFile) -> None:
        # the optimizers hold this model's Parameters (built before the checkpoint is loaded): copy into them
        latents, decoder, entropy = codec.decode_sections(ncz)
        if tuple(latents.shape) != tuple(self.latents.shape) or ncz.architecture.get("preset") != self.config.preset:
            raise NerfconvertError(
                f"The checkpoint's latents {tuple(latents.shape)} ({ncz.architecture.get('preset')!r} preset) do not fit this "
                f"run's {tuple(self.latents.shape)} ({self.config.preset!r}): resume with the teacher and --pipeline.model.preset "
                "the run was started with."
            )
        self.latents.copy_(latents.to(self.latents.device))
        stored = codec.stored_state(ncz)
        for key, param in self._renderer_params().items():  # the fine-tuned renderer, as the file stores it
            if key in stored and tuple(stored[key].shape) == tuple(param.shape):
                param.copy_(stored[key].to(param.device, param.dtype))
        own = dict(self.decoder.named_parameters())
        for name, value in decoder.named_parameters():
            own[name].copy_(value.to(own[name].device))
        if self.config.masked and ncz.architecture.get("masked", True):
            n, _, h, w = latents.shape
            mask = unpack_mask(ncz.array("latents/mask"), n * h * w).view(n, h, w)  # checked by decode_sections
            logits = self.entropy.mask_logits
            logits[:, 0] = 0.0
            logits[:, 1] = torch.where(mask.to(logits.device), abs(self.config.mask_init), -abs(self.config.mask_init))
        self.entropy.bottleneck.quantiles[:, 0, 1] = entropy.bottleneck.quantiles[:, 0, 1].to(self.latents.device)
        self._planes_version += 1

    def _renderer_params(self) -> Dict[str, Parameter]:
        """The inner TensoRF's trainable parameters outside the planes (``finetune_renderer``), by state key;
        camera poses stay as the teacher had them."""
        if not self.config.finetune_renderer or self.inner is None:
            return {}
        groups = self.inner.get_param_groups()
        wanted = {id(p) for name, params in groups.items() if name != "camera_opt" for p in params}
        return {name: p for name, p in self.inner.named_parameters() if id(p) in wanted}

    def resume_state(self) -> Dict[str, Tensor]:
        if not self.training_state:
            return {}
        state = {"latents": self.latents}
        state.update({"renderer." + k: v for k, v in self._renderer_params().items()})
        state.update({"decoder." + k: v for k, v in self.decoder.named_parameters()})
        state.update({"entropy." + k: v for k, v in self.entropy.named_parameters()})
        if self._schedule is not None:
            state["schedule"] = torch.tensor(self._schedule, dtype=torch.long)
        return state

    @torch.no_grad()
    def load_resume_state(self, state: Dict[str, Tensor]) -> None:
        if not self.training_state:
            return
        own = self.resume_state()
        own.pop("schedule", None)
        if set(own) - set(state) or any(tuple(state[k].shape) != tuple(v.shape) for k, v in own.items()):
            raise NerfconvertError("The checkpoint's training state does not fit this run: resume with the teacher and "
                                   "--pipeline.model.* settings the run was started with.")
        for key, value in own.items():
            value.copy_(state[key].to(value.device))
        if "schedule" in state:
            first, total = (int(v) for v in state["schedule"].tolist())
            self._schedule = (first, total)
        self._planes_version += 1

    def _require_inner(self) -> Model:
        if self.inner is None:
            raise NerfconvertError(
                "This entropy-compression model holds no scene yet: load a checkpoint of the run, or start it with --teacher-ckpt."
            )
        return self.inner

    # ---- planes ---------------------------------------------------------------------------------------
    def _set_planes(self, planes: Tensor) -> None:
        view_for(self.inner).set_planes(*split_planes(planes, self.spec["density_channels"]))

    def _install_training_planes(self) -> None:
        z_hat, bits = self.entropy(self.latents, self._tau, self.config.rate_sample_fraction)
        planes = self.decoder(z_hat, tuple(self.spec["plane_resolution"]))  # P_hat = D(Z_hat * M), Eq. 7
        self._set_planes(planes)
        self._train_terms = {"planes": planes, "bits": bits}

    @torch.no_grad()
    def _install_eval_planes(self) -> None:
        if not self.training_state:
            return  # a decoded model holds its planes as ordinary tensors
        if self._eval_planes_version == self._planes_version:
            return
        state = self.entropy.quantized(self.latents)
        self._set_planes(self.decoder(state.values, tuple(self.spec["plane_resolution"])))
        self._eval_planes_version = self._planes_version

    # ---- packing ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def pack(self) -> bytes:
        if not self.training_state:
            if self.ncz_bytes is None:
                self._require_inner()
            return self.ncz_bytes
        metadata = {k: v for k, v in self.report.items() if isinstance(v, (int, float, str)) and not k.startswith("_")}
        data, report = codec.pack(self.inner, self.entropy, self.decoder, self.latents, self.spec, metadata)
        self.report.update(report)
        return data

    @torch.no_grad()
    def finalize(self) -> bytes:
        """Round the decoder to what the file stores, pack, and become the decoded file."""
        self._round_decoder_like_storage()
        self._planes_version += 1
        data = self.pack()
        was = self.training
        self.latents = None  # become the file's model (not a resume)
        self.load_ncz(data, source="the freshly packed .ncz")
        self.inner.train(was)
        return data

    @torch.no_grad()
    def _round_decoder_like_storage(self) -> None:
        """fp16 storage: round every decoder tensor to fp16. Quantised storage: nothing to do, the
        forward pass already uses code x scale (and the fp32 biases are stored as they are). A
        fine-tuned renderer is rounded to the file's precision too."""
        for p in self._renderer_params().values():
            p.data = codec.round_like_storage(p.data)
        if not self.decoder.quantized:
            for p in self.decoder.parameters():
                p.data = p.data.half().float()

    # ---- training --------------------------------------------------------------------------------------
    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        if not self.training_state:
            return {}
        eb = self.entropy.bottleneck
        groups = {
            "latents": [self.latents],
            "decoder": list(self.decoder.parameters()),
            "entropy_model": [p for name, p in eb.named_parameters() if name != "quantiles"],
            "masks": [self.entropy.mask_logits] if self.config.masked else [],
            "entropy_quantiles": [eb.quantiles],
        }
        if self.config.finetune_renderer:
            for name, params in self.inner.get_param_groups().items():
                if name != "camera_opt":
                    groups["renderer_" + name] = [p for p in params if p.requires_grad]
        return {name: params for name, params in groups.items() if params}

    def get_training_callbacks(self, attrs: TrainingCallbackAttributes) -> List[TrainingCallback]:
        trainer = attrs.trainer
        first, last = 0, None
        if trainer is not None:
            first = trainer._start_step
            last = first + trainer.config.max_num_iterations - 1

        fresh = self._schedule is None
        if fresh:  # not restored from a checkpoint: this run's
            self._schedule = (first, (last - first + 1) if last is not None else 30000)
        fit = self.config.plane_fit_iterations
        fit = min(300, self._schedule[1]) if fit is None else int(fit)
        # the plane fit runs at the run's own learning rates (--optimizers.latents.optimizer.lr ...)
        rates = {name: float(group["optimizer"].lr) for name, group in (trainer.config.optimizers if trainer is not None else {}).items()
                 if isinstance(group, dict) and group.get("optimizer") is not None}
        pending = [fresh and self.training_state and fit > 0]

        def before_step(step: int) -> None:
            if pending[0]:  # a fresh run's first step: the planes first (a resumed run has its latents)
                pending[0] = False
                self.fit_planes(fit, rates)
            start, total = self._schedule
            self._tau = gumbel_temperature(step - start, total, self.config.tau_start, self.config.tau_end)

        def after_step(step: int) -> None:
            self._planes_version += 1
            if self.training_state and last is not None and step >= last:
                self.report["steps"] = step + 1
                self.finish(Path(trainer.base_dir))

        return [
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], before_step, update_every_num_iters=1),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], after_step, update_every_num_iters=1),
        ]

    @torch.no_grad()
    def finish(self, run_dir: Path) -> Path:
        """Pack, write ``<run_dir>/<ncz_name>`` atomically, and check that the decoded file renders
        exactly as the in-memory model (decoder already rounded to what the file stores)."""
        probe = self.report.pop("_probe_bundle", None)
        if self._train_terms is not None:
            self.report["last_training_rate_bits"] = float(self._train_terms["bits"])
            self._train_terms = None
        self._round_decoder_like_storage()
        self._planes_version += 1
        before = self._render_probe(probe)
        data = self.finalize()
        after = self._render_probe(probe)
        self.report["ncz_bytes"] = len(data)
        if before is not None:
            self.report["max_pixel_diff_decoded_vs_in_memory"] = float((before - after).abs().max())
        path = self.write_outputs(run_dir, self.config.ncz_name, data, self.report, "entropy_report.json")
        CONSOLE.print(
            f"[green]entropy-compression: wrote {path} ({len(data) / 1e6:.3f} MB; latent bitstream "
            f"{self.report['bitstream_bytes']:,} B, estimated {self.report['estimated_bitstream_bytes']:,.0f} B, "
            f"mismatch {100 * self.report['rate_mismatch']:+.2f}%; decode {self.report['decode_seconds']:.2f} s)[/green]"
        )
        return path

    def _render_probe(self, bundle: Optional[RayBundle]) -> Optional[Tensor]:
        if bundle is None:
            return None
        was = self.training
        self.eval()
        try:
            return self.get_outputs_for_camera_ray_bundle(bundle)["rgb"].detach().cpu()
        finally:
            self.train(was)

    # ---- rendering: plain TensoRF on the decoded planes ---------------------------------------------------
    def _prepare(self) -> Model:
        inner = self._require_inner()
        if self.training_state:
            if self.training and torch.is_grad_enabled():
                self._install_training_planes()
            else:
                self._install_eval_planes()
        return inner

    def forward(self, ray_bundle):
        return self._prepare().forward(ray_bundle)

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        return self._prepare().get_outputs(ray_bundle)

    def get_outputs_for_camera_ray_bundle(self, camera_ray_bundle: RayBundle) -> Dict[str, Tensor]:
        inner = self._require_inner()
        if self.training_state:
            self._install_eval_planes()
        return inner.get_outputs_for_camera_ray_bundle(camera_ray_bundle)

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        metrics = self._require_inner().get_metrics_dict(outputs, batch)
        if self._train_terms is not None:
            metrics["rate_bits"] = self._train_terms["bits"].detach()
            metrics["tau"] = torch.tensor(self._tau)
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        inner_losses = self._require_inner().get_loss_dict(outputs, batch, metrics_dict)
        losses = {"rgb_loss": inner_losses["rgb_loss"]}  # L_render; TensoRF's regularisers act on frozen parts
        if self.training_state and self._train_terms is not None:
            planes = self._train_terms["planes"]
            losses["plane_loss"], losses["rate_loss"] = self._plane_and_rate_losses(planes, self._train_terms["bits"])
            losses["entropy_aux_loss"] = self.entropy.aux_loss()
        return losses

    def _plane_and_rate_losses(self, planes: Tensor, bits: Tensor) -> Tuple[Tensor, Tensor]:
        """Eq. 9 without the rendering term: the weighted plane reconstruction ((P_i - P_hat_i) * W_i) and
        lambda * rate in bits per plane entry (the plane fit and every training step)."""
        err = (self.target_planes - planes) * self.plane_weights
        return (self.config.plane_loss_weight * err.pow(2).mean(),
                self.config.lmbda * bits / self.target_planes.numel())

    def get_image_metrics_and_images(self, outputs, batch):
        return self._require_inner().get_image_metrics_and_images(outputs, batch)


def check_feature_planes(model: nn.Module) -> None:
    """One-line error unless the model's view has feature planes (entropy-compression codes planes)."""
    if not has_feature_planes(type(model)):
        raise NerfconvertError(feature_planes_needed())
