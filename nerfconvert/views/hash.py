"""Two-level view of the hash-grid family: nerfacto and instant-ngp, which share ``NerfactoField``.

phi1 (PVD Table 1, "hash tables"): hash encoding + base MLP, i.e. everything ``get_density``
computes. phi2: the density activation and the colour head.

Feature layout (``feature_dim = geo_feat_dim + 2``)::

    [0]                       raw density (the value nerfacto feeds to trunc_exp)
    [1 : 1 + geo_feat_dim]    geometry features (input of the colour head)
    [-1]                      1.0 inside the field's unit cube, 0.0 where the field masks density

``volume_feature_slice`` selects the first two blocks: what the hash tables and base MLP
produce, the quantity compared by L_v (Eq. 6). The in-box flag is bookkeeping for phi2.

Density is ``average_init_density * exp(raw)`` (nerfstudio 1.1.5 has no shift inside
trunc_exp; its initial-density factor multiplies afterwards). phi2 always reproduces the
field's eval-mode colour: mean appearance code or zeros, as configured, never per camera.

``HashTables`` is what compression quantises: the entries of the field's and the proposal networks'
hash tables are the voxels, quantised to a lattice rather than a codebook.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.field_components.activations import trunc_exp
from nerfstudio.fields.base_field import get_normalized_directions
from nerfstudio.fields.nerfacto_field import NerfactoField
from nerfstudio.model_components.losses import lossfun_outer
from nerfstudio.models.base_model import Model

from nerfconvert import NerfconvertError
from nerfconvert.compress.validate import int_range
from nerfconvert.views.base import Decoded, FieldView, ViewOptions
from nerfconvert.views.tables import VQ_TABLES, CompressionTables, Table, param_name

EMPTY_RAW_DENSITY = -100.0
"""Raw density reported where the field masks density to zero (trunc_exp(-100) ~ 4e-44).

Finite, so that clamped (Eq. 8) and unclamped losses stay finite; any clamp range [a, b]
with a > -100 sees these points as empty.
"""


# ---- what compression quantises (vq-compression's tables, importance; a decoder's rebuild) --------
class HashTables(CompressionTables):
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
        return [Table(name, param_name(self.model, enc.hash_table), lambda d: d, "lattice", name)
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


# ---- the view ------------------------------------------------------------------------------------
class HashGridView(FieldView):
    """phi2(phi1(x, d)) == ``NerfactoField`` in eval mode, for nerfacto and instant-ngp."""

    family = "hash"
    model_names = ("NerfactoModel", "NGPModel")
    capabilities = {VQ_TABLES: HashTables}
    student_method = "nerfacto"
    student_description = "nerfacto student (hash grid), as ns-train nerfacto builds it."
    models_background = True
    # PVD's 0.02 for the grids, decayed 10x (nerfacto's own 1e-2 -> 1e-4 suits 30k steps from
    # scratch; over a short distillation it stops the hash tables before they reach the teacher's values)
    student_lr = {"proposal_networks": (2e-2, 2e-3), "fields": (2e-2, 2e-3)}

    def __init__(self, model: Model) -> None:
        super().__init__(model)
        field = getattr(model, "field", None)
        if not isinstance(field, NerfactoField):
            raise TypeError(
                f"HashGridView needs a model whose .field is a NerfactoField, got {type(model).__name__} "
                f"with field {type(field).__name__}"
            )
        self.field: NerfactoField = field
        geo = field.geo_feat_dim
        self.volume_feature_slice = slice(0, 1 + geo)
        self.geometry_feature_slice = slice(1, 1 + geo)

    @property
    def feature_dim(self) -> int:
        return self.field.geo_feat_dim + 2

    def density_activation(self) -> Tuple[str, float]:
        return "exp", float(self.field.average_init_density)

    # ---- as a student -------------------------------------------------------------------
    @classmethod
    def adopt_teacher(cls, model_config, teacher: FieldView, options: Optional[ViewOptions] = None) -> None:
        # hash -> hash: the same density scale, so that phi1's raw density (L_v) and the raw
        # density of Eq. 8 (L_sigma) ask the student for the same value
        name, scale = teacher.density_activation()
        if name == "exp" and hasattr(model_config, "average_init_density"):
            model_config.average_init_density = scale

    def student_losses(self, rays: Dict[str, Tensor], ray_samples: RaySamples, teacher_weights: Tensor) -> Dict[str, Tensor]:
        """``sampler_loss``: a nerfacto student's proposal networks learn to envelope the teacher's weights."""
        model = self.model
        if not hasattr(model, "proposal_sampler"):
            return {}
        bundle = RayBundle(**rays)
        if getattr(model, "collider", None) is not None:
            bundle = model.collider(bundle)
        _, weights_list, samples_list = model.proposal_sampler(bundle, density_fns=model.density_fns)
        return {"sampler_loss": interlevel_loss_metric(list(weights_list) + [teacher_weights], list(samples_list) + [ray_samples])}

    # ---- phi1 ---------------------------------------------------------------------------
    @property
    def unbounded(self) -> bool:
        return self.field.spatial_distortion is not None

    @classmethod
    def config_unbounded(cls, model_config) -> bool:
        return True  # nerfacto always contracts (its flag only switches the contraction's norm)

    def unit_cube(self, positions: Tensor) -> Tensor:
        """World positions -> the [0, 1]^3 coordinates the hash grid is indexed with."""
        if self.field.spatial_distortion is not None:
            # contraction maps R^3 into the L_inf ball of radius 2
            return (self.field.spatial_distortion(positions) + 2.0) / 4.0
        return SceneBox.get_normalized_positions(positions, self.field.aabb)

    def phi1(self, positions: Tensor, directions: Optional[Tensor] = None) -> Tensor:
        # phi1, PVD Table 1: hash tables (+ base MLP); view-independent
        del directions
        x = self.unit_cube(positions)
        inside = ((x > 0.0) & (x < 1.0)).all(dim=-1, keepdim=True)
        # same masking as the field: points outside query the grid at the origin corner
        x = x * inside
        h = self.field.mlp_base(x.reshape(-1, 3)).view(*positions.shape[:-1], -1)
        # tcnn returns half precision; the field casts the raw density the same way
        return torch.cat([h.to(positions.dtype), inside.to(positions.dtype)], dim=-1)

    # ---- phi2 ---------------------------------------------------------------------------
    def _appearance(self, num: int, like: Tensor) -> Optional[Tensor]:
        """The eval-mode appearance code: the mean embedding, or zeros, as the field does."""
        field = self.field
        if field.embedding_appearance is None:
            return None
        if field.use_average_appearance_embedding:
            return field.embedding_appearance.mean(dim=0).expand(num, -1)
        return torch.zeros((num, field.appearance_embedding_dim), device=like.device, dtype=like.dtype)

    def phi2(self, features: Tensor, directions: Tensor) -> Decoded:
        # phi2, PVD Table 1: MLP decoder (density activation + colour head)
        field = self.field
        geo_dim = field.geo_feat_dim
        raw, geo, inside = torch.split(features, [1, geo_dim, 1], dim=-1)
        inside_mask = inside > 0.5
        density = field.average_init_density * trunc_exp(raw) * inside_mask

        shape = directions.shape[:-1]
        d = field.direction_encoding(get_normalized_directions(directions).reshape(-1, 3))
        parts = [d, geo.reshape(-1, geo_dim)]
        appearance = self._appearance(d.shape[0], directions)
        if appearance is not None:
            parts.append(appearance)
        rgb = field.mlp_head(torch.cat(parts, dim=-1)).view(*shape, -1).to(directions)

        raw_density = torch.where(inside_mask, raw, torch.full_like(raw, EMPTY_RAW_DENSITY))
        return Decoded(density=density, raw_density=raw_density, rgb=rgb)

    # ---- sampling -----------------------------------------------------------------------
    def sample(self, ray_bundle: RayBundle) -> RaySamples:
        model = self.model
        if getattr(model, "collider", None) is not None:
            ray_bundle = model.collider(ray_bundle)
        with torch.no_grad():
            if hasattr(model, "proposal_sampler"):
                return self._sample_proposal(ray_bundle)
            if hasattr(model, "occupancy_grid"):
                return self._sample_occupancy(ray_bundle)
        raise TypeError(f"{type(model).__name__} has neither a proposal sampler nor an occupancy grid")

    def _sample_proposal(self, ray_bundle: RayBundle) -> RaySamples:
        """nerfacto: proposal networks, then the final PDF pass (as in NerfactoModel.get_outputs)."""
        sampler = self.model.proposal_sampler
        # the sampler counts calls to schedule proposal updates; sampling from a view must not
        # change the model's training schedule
        steps_since_update = sampler._steps_since_update
        try:
            ray_samples, _, _ = sampler(ray_bundle, density_fns=self.model.density_fns)
        finally:
            sampler._steps_since_update = steps_since_update
        return ray_samples

    def _sample_occupancy(self, ray_bundle: RayBundle) -> RaySamples:
        """instant-ngp: nerfacc occupancy-grid marching, padded to [num_rays, max_samples]."""
        config = self.model.config
        packed, ray_indices = self.model.sampler(
            ray_bundle=ray_bundle,
            near_plane=config.near_plane,
            far_plane=config.far_plane,
            render_step_size=config.render_step_size,
            alpha_thre=config.alpha_thre,
            cone_angle=config.cone_angle,
        )
        return pad_packed_samples(
            ray_bundle,
            packed.frustums.starts[..., 0],
            packed.frustums.ends[..., 0],
            ray_indices,
            fill=config.near_plane,
        )

    # ---- parameters ---------------------------------------------------------------------
    def phi1_parameters(self) -> list[nn.Parameter]:
        return list(self.field.mlp_base.parameters())

    def phi2_parameters(self) -> list[nn.Parameter]:
        params = list(self.field.mlp_head.parameters())
        # the mean appearance code is an input of the colour head in eval mode
        if self.field.embedding_appearance is not None and self.field.use_average_appearance_embedding:
            params += list(self.field.embedding_appearance.parameters())
        return params


def pad_packed_samples(
    ray_bundle: RayBundle, starts: Tensor, ends: Tensor, ray_indices: Tensor, fill: float = 0.0
) -> RaySamples:
    """Packed samples (nerfacc) -> dense [num_rays, max_samples] RaySamples.

    Padding intervals have zero length (start == end == the ray's last end, or ``fill`` for a
    ray without samples), so they get zero weight and leave rendering unchanged.
    """
    num_rays = len(ray_bundle)
    device = starts.device
    ray_indices = ray_indices.long()
    counts = torch.bincount(ray_indices, minlength=num_rays)
    width = max(int(counts.max().item()) if counts.numel() else 0, 1)
    offsets = torch.cumsum(counts, 0) - counts
    slot = torch.arange(starts.shape[0], device=device) - offsets[ray_indices]

    last_end = torch.full((num_rays,), float(fill), device=device, dtype=ends.dtype)
    has_samples = counts > 0
    last_end[has_samples] = ends[(offsets + counts - 1)[has_samples]]
    dense_starts = last_end[:, None].repeat(1, width)
    dense_ends = dense_starts.clone()
    dense_starts[ray_indices, slot] = starts
    dense_ends[ray_indices, slot] = ends
    return ray_bundle.get_ray_samples(bin_starts=dense_starts[..., None], bin_ends=dense_ends[..., None])


def _tdist(samples: RaySamples) -> Tensor:
    return torch.cat([samples.frustums.starts[..., 0], samples.frustums.ends[..., -1:, 0]], dim=-1)


def interlevel_loss_metric(weights_list: List[Tensor], samples_list: List[RaySamples]) -> Tensor:
    """mip-NeRF 360's proposal loss, on metric ray distances: the teacher's samples and the
    student's proposal samples come from different spacing functions, so their normalised
    spacings are not comparable, their distances along the ray are."""
    c = _tdist(samples_list[-1]).detach()
    w = weights_list[-1][..., 0].detach()
    loss = 0.0
    for samples, wp in zip(samples_list[:-1], weights_list[:-1]):
        loss = loss + torch.mean(lossfun_outer(c, w, _tdist(samples), wp[..., 0]))
    return loss
