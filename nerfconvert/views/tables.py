"""The interface of what compression quantises in a family, and how importance reaches it.

Each family's ``CompressionTables`` lives in its view's module (``views/<family>.py``) and is declared
in the view's ``capabilities`` under ``"vq_tables"``. vq-compression and entropy-compression ask the
registry for it (``nerfconvert.compress.tables.vq_tables_for``), never for a family by name.

A family names the *tables* of a model: parameters seen as N "voxels" x C channels that share
one codebook (or, for the voxel grid's density, one 8-bit scale). Importance (Eq. 3-4) is
accumulated per table with the rendering-weight backward trick: every lookup in these models is
linear in the table, so the gradient of sum_i w_i * lookup(x_i) with respect to a table of ones
is sum_i (1 - |v_l - x_i|) w_i, exactly Eq. 4 with w_i = T_i alpha_i (Eq. 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.models.base_model import Model

from nerfconvert import NerfconvertError
from nerfconvert.compress.validate import Range, _short as validate_short
from nerfconvert.views.base import FieldView
from nerfconvert.views.registry import view_for

VQ_TABLES = "vq_tables"
"""The capability under which a view class registers its ``CompressionTables`` (``FieldView.capabilities``)."""


@dataclass
class Table:
    """N voxels x C channels inside one parameter."""

    name: str
    param_name: str
    """Key of the parameter in the model's state dict."""
    rows: Callable[[Tensor], Tensor]
    """Parameter data -> [N, C] view (writes through)."""
    kind: str
    """"vq": codebook + kept voxels; "scalar": 8-bit for every live voxel (voxel-grid density);
    "lattice": every live voxel rounded to a multiple of a step (finer for kept voxels), stored as
    entropy-coded integers (hash tables)."""
    importance_key: str
    empty_value: float = 0.0
    """Value of a pruned voxel (what the architecture treats as empty)."""
    fill: str = "empty"
    """What a pruned voxel holds: "empty" (``empty_value``), or "mean" (the per-channel mean of the pruned
    voxels, stored in the file: C floats). A VM plane entry is not a voxel of its own: it is shared by
    every point along one axis, and in empty space the teacher's entries are the negative terms that keep
    the ReLU'd sum of three plane-line products at zero; zeros there put density back (lego100 teacher,
    lattice step 0.7, no fine-tuning: 21.44 dB against the teacher's own renders with zeros, 33.36 dB with
    the mean; ``benchmarks/vm_quantizer_options.py``)."""
    low_quantile: float = 0.0
    """Passed to the 8-bit quantiser (clip the far low tail of log-densities)."""


class CompressionTables:
    """What compression quantises in one family: its tables, importance and pruning, and what a
    decoder needs to rebuild the model (method, config ranges, size estimate)."""

    name: ClassVar[str]
    """The family as a file names it (``architecture["family"]``; the decoder looks the class up by it)."""
    model_classes: ClassVar[Optional[Tuple[str, ...]]] = None
    """The registered model classes of the view that this family serves (None: all of them)."""
    teacher_method: ClassVar[str]
    """The stock method whose config rebuilds this model class when decoding."""
    config_ranges: ClassVar[Dict[str, Range]] = {}
    """Decoding a file from a stranger: the ranges of the size-setting fields of the model config
    (``validate.model_config``; lists: each item)."""
    default_keep_quantile: ClassVar[float]
    importance_ray_budget: ClassVar[int] = 1 << 18
    """Default cap on the training rays of the importance pass (a CPU-sized budget per family)."""
    quantizers: ClassVar[Tuple[str, ...]] = ("codebook",)
    """How the family's multi-channel tables may be quantised: "codebook" (VQRF's vector quantisation:
    a codebook, code indices, and 8-bit kept voxels) or "lattice" (every live voxel an integer multiple
    of a step, a finer one for the kept voxels, the integers entropy-coded). The first is what a file
    that names no quantiser used (files written before the choice existed)."""
    default_quantizer: ClassVar[str] = "codebook"
    finetune_lr: ClassVar[Dict[str, Tuple[float, float]]] = {}
    """The model's parameter group -> (lr, lr_final) of vq-compression's joint fine-tuning, for a family
    the vq-compression method config does not list (its ``optimizers``, one per family and group)."""

    def __init__(self, model: Model, quantizer: Optional[str] = None) -> None:
        self.model = model
        quantizer = quantizer or self.default_quantizer
        if quantizer not in self.quantizers:
            raise NerfconvertError(
                f"vq-compression cannot quantise {self.teacher_method}'s tables with {validate_short(quantizer)}: "
                f"choose --pipeline.model.quantizer from {', '.join(self.quantizers)}."
            )
        self.quantizer = quantizer

    def vq_kind(self) -> str:
        """The kind of a table that VQRF vector-quantises, under this family's quantiser."""
        return "lattice" if self.quantizer == "lattice" else "vq"

    @property
    def view(self) -> FieldView:
        """The model's two-level view (its sampler, rendering and coordinate normalisation)."""
        return view_for(self.model)

    @staticmethod
    def model_size(config) -> Optional[int]:
        """Tensor elements the model of ``config`` allocates when set up (an estimate from above),
        charged to a file's budget before decoding builds it; None: no estimate."""
        return None

    def tables(self) -> List[Table]:
        raise NotImplementedError

    def accumulate_importance(self, ray_bundle: RayBundle, into: Dict[str, Tensor]) -> None:
        """Add Eq. 4 for one batch of training rays to ``into[importance_key]`` ([N] each)."""
        raise NotImplementedError

    def apply_alive(self, alive: Dict[str, Tensor]) -> None:
        """Family bookkeeping after pruning (e.g. the voxel grid's occupancy)."""

    def eight_bit_state_keys(self) -> Tuple[str, ...]:
        """Large state entries outside the tables that are stored at 8 bits (not fp16)."""
        return ()

    def plane_importance(self, importance: Dict[str, Tensor]) -> Optional[Tensor]:
        """[3, H, W] importance of the density feature planes' entries, from ``accumulate_importance``'s
        result (what entropy-compression weights its plane loss with); None where the family has no planes."""
        return None

    def state_param(self, name: str) -> Tensor:
        return dict(self.model.named_parameters())[name]

    # helpers
    def _collide(self, ray_bundle: RayBundle) -> RayBundle:
        collider = getattr(self.model, "collider", None)
        return collider(ray_bundle) if collider is not None else ray_bundle

    def _weighted_points(self, view, ray_bundle: RayBundle) -> Optional[Tuple[Tensor, Tensor]]:
        """Sample points of the view's own sampler with non-zero weight T_i alpha_i (Eq. 3), or None."""
        samples = view.sample(ray_bundle)
        weights = view.render_samples(samples)["weights"][..., 0]
        sel = weights > 0
        if not bool(sel.any()):
            return None
        return samples.frustums.get_positions()[sel], weights[sel]


def param_name(model: nn.Module, param: Tensor) -> str:
    """The state-dict name of ``param`` in ``model``."""
    for name, p in model.named_parameters():
        if p is param:
            return name
    raise KeyError("parameter not found in model")


def probe_grad(lookup: Callable[[Tensor], Tensor], shape: Tuple[int, ...], device) -> Tensor:
    """Gradient of sum(lookup(ones)) w.r.t. a table of ones of ``shape`` (the backward trick of Eq. 4)."""
    probe = torch.ones(shape, device=device, requires_grad=True)
    with torch.enable_grad():
        total = lookup(probe)
        (grad,) = torch.autograd.grad(total, probe)
    return grad
