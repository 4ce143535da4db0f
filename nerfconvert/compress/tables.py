"""What compression quantises in each architecture family, and how importance reaches it: the
compression core that vq-compression and entropy-compression share (neither imports the other).

Each ``Family`` is the companion of a view: the view class registers it under the ``"vq_tables"``
capability (``FieldView.capabilities``), and vq-compression asks the view registry for it
(``vq_tables_for(model)``), never for a family by name.

A family names the *tables* of a model: parameters seen as N "voxels" x C channels that share
one codebook (or, for the voxel grid's density, one 8-bit scale). Importance (Eq. 3-4) is
accumulated per table with the rendering-weight backward trick: every lookup in these models is
linear in the table, so the gradient of sum_i w_i * lookup(x_i) with respect to a table of ones
is sum_i (1 - |v_l - x_i|) w_i, exactly Eq. 4 with w_i = T_i alpha_i (Eq. 3).

  voxel (plenoxels)  one table of SH coefficients (VQ) and one of raw density (8-bit), over vertices
  vm (tensorf)       one table per density plane and per appearance plane; plane entries get the
                     importance of the virtual grid summed along the plane's axis. Quantised to a
                     lattice by default, or with VQ-TensoRF's six codebooks (``quantizer="codebook"``)
  hash (nerfacto)    the entries of the field's and the proposal networks' hash tables are the voxels;
                     they are quantised to a lattice rather than a codebook (see ``HashFamily``)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Iterable, Dict, List, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.models.base_model import Model

from nerfconvert import NerfconvertError
from nerfconvert.compress.validate import Range, _short as validate_short, float_range, int_range
from nerfconvert.views.base import FieldView
from nerfconvert.views.registry import companion_class, companions, view_for

VQ_TABLES = "vq_tables"
"""The capability under which a view class registers its ``Family`` (``FieldView.capabilities``)."""


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


class Family:
    """One architecture family: its tables, importance and pruning."""

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


def _param_name(model: nn.Module, param: Tensor) -> str:
    for name, p in model.named_parameters():
        if p is param:
            return name
    raise KeyError("parameter not found in model")


def _probe_grad(lookup: Callable[[Tensor], Tensor], shape: Tuple[int, ...], device) -> Tensor:
    """Gradient of sum(lookup(ones)) w.r.t. a table of ones of ``shape`` (the backward trick)."""
    probe = torch.ones(shape, device=device, requires_grad=True)
    with torch.enable_grad():
        total = lookup(probe)
        (grad,) = torch.autograd.grad(total, probe)
    return grad


# ---- voxel grid ---------------------------------------------------------------------------------
class VoxelFamily(Family):
    name = "voxel"
    teacher_method = "plenoxels"
    default_keep_quantile = 0.6
    quantizers = ("codebook", "lattice")
    config_ranges = {"grid_resolutions": int_range(1, 1024), "sh_degree": int_range(0, 4),
                     "max_num_samples": int_range(1, 1 << 14), "tv_num_voxels": int_range(1, 1 << 24),
                     "prune_dilation": int_range(0, 16), "step_ratio": float_range(1e-3, 16)}

    @staticmethod
    def model_size(c) -> int:
        r = int(c.grid_resolutions[0]) if c.grid_resolutions else 1
        return r**3 * (2 + 3 * (int(c.sh_degree) + 1) ** 2)

    def __init__(self, model: Model, quantizer: Optional[str] = None) -> None:
        super().__init__(model, quantizer)
        self.field = model.field

    def tables(self) -> List[Table]:
        field = self.field
        return [
            Table("density", "field.density_grid", lambda d: d.view(1, -1).t(), "scalar", "grid",
                  empty_value=field.empty_raw_density, low_quantile=1e-3),
            Table("sh", "field.sh_grid", lambda d: d.view(d.shape[1], -1).t(), self.vq_kind(), "grid"),
        ]

    def accumulate_importance(self, ray_bundle: RayBundle, into: Dict[str, Tensor]) -> None:
        view = self.view
        points = self._weighted_points(view, self._collide(ray_bundle))
        if points is None:
            return
        positions, w = points
        c = view.field_coordinates(positions)  # vertices sit at the box corners (align_corners=True)
        r = self.field.resolution

        def lookup(g):
            out = F.grid_sample(g, c.view(1, -1, 1, 1, 3), mode="bilinear", padding_mode="border", align_corners=True)
            return (out.view(-1) * w).sum()

        grad = _probe_grad(lookup, (1, 1, r, r, r), c.device)
        key = "grid"
        into[key] = into.get(key, torch.zeros(r**3, device=c.device)) + grad.view(-1)

    def apply_alive(self, alive: Dict[str, Tensor]) -> None:
        # a pruned vertex is the grid's empty vertex: the field then skips its cells
        self.field.occupancy = self.field.occupancy & alive["density"].view(self.field.occupancy.shape)
        self.field.enforce_occupancy_()
        self.field._refresh_occupancy_cache()

    def live_mask(self) -> Tensor:
        """Vertices the teacher itself kept (its pruned ones hold constants, not content)."""
        return self.field.occupancy.reshape(-1)


# ---- VM (TensoRF) -----------------------------------------------------------------------------------
_PLANE_AXES = ((0, 1), (0, 2), (1, 2))  # as TensorVMEncoding.forward


class VMFamily(Family):
    """TensoRF's six planes. By default each is a "lattice" table: on the lego100 teacher (planes
    3 x 64 x 213², 15-35% of each plane's entries alive after pruning) VQ-TensoRF's 4096-code
    codebooks held about as many vectors as they coded (4,089-4,096 codes for 4,089-8,957 vectors a
    plane) and were 1.47 MB of a 2.19 MB file; a lattice has no codebook to store
    (``benchmarks/compress_lego.py``)."""

    name = "vm"
    teacher_method = "tensorf"
    default_keep_quantile = 0.7
    quantizers = ("codebook", "lattice")
    default_quantizer = "lattice"
    config_ranges = {"init_resolution": int_range(1, 2048), "final_resolution": int_range(1, 2048),
                     "num_den_components": int_range(1, 1024), "num_color_components": int_range(1, 1024),
                     "appearance_dim": int_range(1, 1024), "num_samples": int_range(1, 1 << 14),
                     "num_uniform_samples": int_range(1, 1 << 14)}

    @staticmethod
    def model_size(c) -> int:
        r = int(c.init_resolution)
        comps = int(c.num_den_components) + int(c.num_color_components)
        return 3 * comps * (r * r + r) + 3 * int(c.num_color_components) * int(c.appearance_dim)

    def __init__(self, model: Model, quantizer: Optional[str] = None) -> None:
        super().__init__(model, quantizer)
        self.view.check_planes()

    def _planes(self):
        return zip(("density", "color"), self.view.planes())

    def tables(self) -> List[Table]:
        out = []
        for prefix, planes in self._planes():
            name = _param_name(self.model, planes)
            for k in range(3):
                out.append(
                    Table(f"{prefix}_plane{k}", name, lambda d, k=k: d[k].view(d.shape[1], -1).t(), self.vq_kind(),
                          f"{prefix}_plane{k}", fill="mean")
                )
        return out

    def accumulate_importance(self, ray_bundle: RayBundle, into: Dict[str, Tensor]) -> None:
        view = self.view
        points = self._weighted_points(view, ray_bundle)
        if points is None:
            return
        positions, w = points
        x = view.field_coordinates(positions)
        for prefix, planes in self._planes():
            h, wd = planes.shape[-2:]
            coords = torch.stack([x[:, list(axes)] for axes in _PLANE_AXES]).view(3, -1, 1, 2)

            def lookup(g):  # planes with the lines set to one: the virtual grid summed along each axis
                return (F.grid_sample(g, coords, align_corners=True)[:, 0, :, 0] * w[None]).sum()

            grad = _probe_grad(lookup, (3, 1, h, wd), x.device)
            for k in range(3):
                key = f"{prefix}_plane{k}"
                into[key] = into.get(key, torch.zeros(h * wd, device=x.device)) + grad[k].view(-1)


# ---- hash grid (nerfacto) ------------------------------------------------------------------------------
class HashFamily(Family):
    """nerfacto's hash tables: the field's and each proposal network's, every one a "lattice" table.

    Measured on a capture-like nerfacto run (``benchmarks/hash_vq_options.py``): a 4096-code
    codebook of the 2-D hash entries spreads its codes evenly (11.9 bits of index entropy of 12),
    so entropy coding cannot shrink its indices, while a uniform grid of the same distortion
    entropy-codes to less than half the bytes. Hash entries therefore keep VQRF's importance
    pruning and keeping, but are quantised to a lattice (codes = integer multiples of a step, a
    finer step for the kept entries) whose symbols the container entropy-codes.
    """

    name = "hash"
    quantizers = ("lattice",)
    default_quantizer = "lattice"
    model_classes = ("NerfactoModel",)
    """Not instant-ngp (the same view): its hash tables are tiny-cuda-nn's, and it has no proposal weights."""
    teacher_method = "nerfacto"
    default_keep_quantile = 0.3
    importance_ray_budget = 1 << 15
    """Default cap on importance rays (nerfacto renders ~500 rays/s on 2 CPU cores)."""
    config_ranges = {"hidden_dim": int_range(1, 4096), "hidden_dim_color": int_range(1, 4096),
                     "hidden_dim_transient": int_range(1, 4096), "num_levels": int_range(1, 64),
                     "base_res": int_range(1, 1 << 20), "max_res": int_range(1, 1 << 24),
                     "log2_hashmap_size": int_range(1, 26), "features_per_level": int_range(1, 16),
                     "num_proposal_samples_per_ray": int_range(1, 1 << 14),
                     "num_nerf_samples_per_ray": int_range(1, 1 << 14), "num_proposal_iterations": int_range(0, 8),
                     "appearance_embed_dim": int_range(0, 4096)}

    @staticmethod
    def model_size(c) -> int:
        def elements(levels, log2, features) -> int:
            # one level holds at most min(2^log2, res^3) entries; count the full table (nerfstudio allocates it)
            return int(levels) * (1 << int(log2)) * int(features)

        total = elements(c.num_levels, c.log2_hashmap_size, c.features_per_level)
        for args in getattr(c, "proposal_net_args_list", None) or []:
            if isinstance(args, dict):
                total += elements(args.get("num_levels", 16), args.get("log2_hashmap_size", 19), 2)
        return total + 64 * int(getattr(c, "hidden_dim", 64)) ** 2

    def __init__(self, model: Model, quantizer: Optional[str] = None) -> None:
        super().__init__(model, quantizer)
        self.field = model.field
        self.encoding = self._hash_encoding(self.field.mlp_base)
        if self.encoding is None:
            raise NerfconvertError(
                "vq-compression needs nerfacto's hash table as a torch tensor, but the teacher uses tiny-cuda-nn. "
                "Train the teacher with --pipeline.model.implementation torch."
            )

    @staticmethod
    def _hash_encoding(module: nn.Module):
        from nerfstudio.field_components.encodings import HashEncoding

        for m in module.modules():
            if isinstance(m, HashEncoding) and isinstance(getattr(m, "hash_table", None), nn.Parameter) \
                    and m.hash_table.numel() > 0:
                return m
        return None

    def _encodings(self) -> List[Tuple[str, nn.Module, List[int]]]:
        """(table name, hash encoding, indices into nerfacto's ``weights_list`` of the samples it sees)."""
        out = [("hash", self.encoding, [-1])]
        nets = list(getattr(self.model, "proposal_networks", []))
        iterations = int(getattr(self.model.config, "num_proposal_iterations", len(nets)))
        for i, net in enumerate(nets):
            enc = self._hash_encoding(net)
            if enc is None or any(enc is e for _, e, _ in out):
                continue
            # one shared proposal network serves every proposal iteration
            levels = list(range(iterations)) if len(nets) == 1 else [i]
            out.append((f"proposal{i}", enc, levels))
        return out

    def tables(self) -> List[Table]:
        return [Table(name, _param_name(self.model, enc.hash_table), lambda d: d, "lattice", name)
                for name, enc, _ in self._encodings()]

    def accumulate_importance(self, ray_bundle: RayBundle, into: Dict[str, Tensor]) -> None:
        """Eq. 4 for every hash table, each with the weights of the samples it was queried at:
        the inputs of each encoding are captured while nerfacto renders the rays as in training
        (its optimised poses and proposal sampler), then the probe's backward gives Eq. 4."""
        encodings = self._encodings()
        captured: Dict[int, List[Tensor]] = {id(enc): [] for _, enc, _ in encodings}
        hooks = [enc.register_forward_hook(lambda m, inputs, output: captured[id(m)].append(inputs[0].detach()))
                 for _, enc, _ in encodings]
        was = self.model.training
        self.model.train()  # training mode applies the camera optimizer's poses to the rays
        try:
            with torch.no_grad():
                outputs = self.model(ray_bundle)  # collider, then get_outputs
        finally:
            for hook in hooks:
                hook.remove()
            self.model.train(was)
        weights_list = outputs["weights_list"]
        for name, enc, levels in encodings:
            calls = captured[id(enc)]
            if len(calls) != len(levels):
                raise NerfconvertError(
                    f"vq-compression: the {name} hash table was queried {len(calls)} times for {len(levels)} sample "
                    "sets; this nerfacto variant is not supported."
                )
            table = enc.hash_table
            total = into.get(name, torch.zeros(table.shape[0], device=table.device))
            for x, level in zip(calls, levels):
                w = weights_list[level].detach().reshape(-1)
                if x.shape[0] != w.shape[0]:
                    raise NerfconvertError(f"vq-compression: the {name} hash table saw {x.shape[0]} points for "
                                           f"{w.shape[0]} sample weights; this nerfacto variant is not supported.")
                # samples of negligible weight add nothing to Eq. 4 but most of the cost (a proposal
                # network sees 256 samples a ray): at most 256 * 1e-5 of a ray's weight is left out
                keep = w > 1e-5
                if not bool(keep.any()):
                    continue
                with torch.enable_grad():
                    out = enc(x[keep])  # [M, levels * features]; linear in the table
                    (grad,) = torch.autograd.grad((out * w[keep, None]).sum(), table)
                # every feature of an entry gets the same coefficient; one column is Eq. 4
                total = total + grad[:, 0]
            into[name] = total


# ---- the view registry's vq tables ---------------------------------------------------------------------
def _supported() -> str:
    unique = list(dict.fromkeys(companions(VQ_TABLES).values()))
    return ", ".join(f"{c.teacher_method} ({c.name})" for c in unique)


def vq_tables_class_for(model_class: type) -> Type[Family]:
    """The ``Family`` the view of ``model_class`` registers; a one-line error naming the supported
    methods where it has none."""
    family_cls = companion_class(model_class, VQ_TABLES)
    if family_cls is None:
        raise NerfconvertError(
            f"vq-compression cannot compress a {model_class.__name__} teacher: it quantises grids, and supports "
            f"{_supported()}. Pass the config.yml of a run of one of those methods."
        )
    return family_cls


def vq_tables_for(model: Model, quantizer: Optional[str] = None) -> Family:
    """The vq tables of a model (its view's ``"vq_tables"`` companion), quantised with ``quantizer``
    (None: the family's default)."""
    return vq_tables_class_for(type(model))(model, quantizer)


def vq_tables_named(name: str) -> Optional[Type[Family]]:
    """The ``Family`` a file's ``architecture["family"]`` names, among those the registered views offer."""
    return next((c for c in companions(VQ_TABLES).values() if c.name == name), None)


@torch.no_grad()
def accumulate_importance(family: Family, ray_bundles: Iterable[RayBundle]) -> Dict[str, Tensor]:
    """Eq. 4 summed over all given rays (one backward pass of the probe per batch)."""
    was_training = family.model.training
    family.model.eval()
    importance: Dict[str, Tensor] = {}
    try:
        for bundle in ray_bundles:
            family.accumulate_importance(bundle, importance)
    finally:
        family.model.train(was_training)
    return importance
