"""Two-level view of the voxel-grid family: nerfconvert's ``plenoxels`` method.

PVD Table 1 for Plenoxels: phi1 is the full explicit grid and phi2 the identity. Here phi1
is the trilinear interpolation of the grid's vertex values and phi2 the fixed decoding that
the model applies to them: the density activation and the SH colour of PVD Eq. 2. phi2 has
no parameters.

Feature layout (``feature_dim = 1 + 3 K``, K = (sh_degree + 1)^2, 28 at degree 2)::

    [0]          raw density, before the activation (PVD clamps this to [a, b], Eq. 8)
    [1 : 1+3K]   SH coefficients k, colour-major: K for red, K for green, K for blue

Points outside the scene box get the grid's empty value (raw density ``empty_raw_density``,
zero SH), exactly what the model uses there.

``VoxelTables`` is what compression quantises: one table of SH coefficients (VQ) and one of raw
density (8-bit), over the vertices.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.models.base_model import Model

from nerfconvert.compress.validate import float_range, int_range
from nerfconvert.plenoxels.field import PlenoxelsField
from nerfconvert.views.base import Decoded, FieldView, ViewOptions
from nerfconvert.views.tables import VQ_TABLES, CompressionTables, Table, probe_grad

GRID_INIT_DIRECTIONS = 16
"""Directions the teacher's colour is queried from at each occupied vertex, for the SH fit."""
GRID_INIT_MIN_RAW = -6.0
"""Floor of the raw density (exp activation: 0.0025) written where the teacher is empty: trilinear
interpolation of log-densities next to a surface would otherwise reach far below the model's own
empty start (-3) and make the surface thinner than the teacher's."""


# ---- what compression quantises (vq-compression's tables, importance; a decoder's rebuild) --------
class VoxelTables(CompressionTables):
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

        grad = probe_grad(lookup, (1, 1, r, r, r), c.device)
        key = "grid"
        into[key] = into.get(key, torch.zeros(r**3, device=c.device)) + grad.view(-1)

    def apply_alive(self, alive: Dict[str, Tensor]) -> None:
        self.field.restrict_occupancy_(alive["density"])  # a pruned vertex is the grid's empty vertex

    def live_mask(self) -> Tensor:
        """Vertices the teacher itself kept (its pruned ones hold constants, not content)."""
        return self.field.occupancy.reshape(-1)


# ---- the view ------------------------------------------------------------------------------------
class VoxelGridView(FieldView):
    """phi2(phi1(x, d)) == ``PlenoxelsField``."""

    family = "voxel"
    model_names = ("PlenoxelsModel",)
    capabilities = {VQ_TABLES: VoxelTables}
    volume_features = False  # PVD applies only sigma, colour, RGB and regularisation losses to the voxel grid
    student_method = "plenoxels"
    student_description = "plenoxels student (voxel grid), as ns-train plenoxels builds it."

    @classmethod
    def stock_config(cls):
        from method_configs.plenoxels import plenoxels  # our own method (an entry point, not nerfstudio's table)

        return copy.deepcopy(plenoxels.config)

    def __init__(self, model: Model) -> None:
        super().__init__(model)
        field = getattr(model, "field", None)
        if not isinstance(field, PlenoxelsField):
            raise TypeError(
                f"VoxelGridView needs a model whose .field is a PlenoxelsField, got {type(model).__name__} "
                f"with field {type(field).__name__}"
            )
        self.field: PlenoxelsField = field

    @property
    def feature_dim(self) -> int:
        return self.field.feature_dim

    def density_activation(self) -> Tuple[str, float]:
        return str(self.field.density_activation), 1.0

    def regularizer(self, density: Optional[Tensor], tv_weight: float, l1_weight: float) -> Optional[Tensor]:
        loss = 0.0
        if tv_weight > 0:
            tv_density, tv_sh = self.field.tv_losses(getattr(self.model.config, "tv_num_voxels", 2**16))
            loss = loss + tv_weight * (tv_density + tv_sh)
        if l1_weight > 0 and density is not None and density.numel():
            loss = loss + l1_weight * density.abs().mean()
        return loss if torch.is_tensor(loss) else None

    @property
    def raw_density_slice(self) -> slice:
        return slice(0, 1)

    @property
    def sh_slice(self) -> slice:
        return slice(1, self.feature_dim)

    @property
    def sh_degree(self) -> int:
        return self.field.sh_degree

    def field_coordinates(self, positions: Tensor) -> Tensor:
        """World positions -> the [-1, 1] grid_sample coordinates of the grid's vertices (the box
        corners are vertices: align_corners=True)."""
        return self.field.grid_coords(positions)[0]

    # ---- the two levels -----------------------------------------------------------------
    def phi1(self, positions: Tensor, directions: Tensor = None) -> Tensor:
        # phi1, PVD Table 1: the explicit grid, read by trilinear interpolation
        del directions
        return self.field.features(positions)

    def phi2(self, features: Tensor, directions: Tensor) -> Decoded:
        # phi2, PVD Table 1: identity, then the activation and SH colour (Eq. 2)
        density, rgb = self.field.decode(features, directions)
        return Decoded(density=density, raw_density=features[..., self.raw_density_slice], rgb=rgb)

    # ---- as a student: the teacher's field sampled at the vertices --------------------------------
    @classmethod
    def adopt_teacher(cls, model_config, teacher: FieldView, options: Optional[ViewOptions] = None) -> None:
        # A grid filled from the teacher starts at its final resolution: coarse-to-fine exists to find
        # geometry from images, which the teacher already has, and an upsample would blur what it gave.
        if cls.starts_at_teacher(type(teacher), options):
            model_config.grid_resolutions = (int(model_config.grid_resolutions[-1]),)
            model_config.upsample_fractions = ()
            model_config.upsample_iters = None
            # The fill replaces the initial density at once. The model checks that an *empty* start is
            # opaque enough to train at its first grid's step, which the finest grid's short step fails
            # for the default -3: start from density ~1 instead (never seen, it is overwritten).
            model_config.init_raw_density = max(float(model_config.init_raw_density), 1.0 if model_config.density_activation != "exp" else 0.0)

    @classmethod
    def starts_at_teacher(cls, teacher_cls: type, options: Optional[ViewOptions] = None) -> bool:
        # the one place that decides whether the grid is filled (adopt_teacher, teacher_init ask it)
        return (options is None or options.grid_from_teacher) and teacher_cls.has("point_queries")

    @classmethod
    def teacher_init(cls, teacher: FieldView, cameras, options: ViewOptions) -> Optional[Dict[str, Any]]:
        if not cls.starts_at_teacher(type(teacher), options):
            return None
        return {"teacher": teacher}  # the grid is filled once the student exists (initialise_student)

    def initialise_student(self, init: Optional[Dict[str, Any]]) -> None:
        if init is not None:
            self.fill_from(init["teacher"])

    @torch.no_grad()
    def fill_from(self, teacher: FieldView, chunk: int = 1 << 16) -> Dict[str, float]:
        """Set every vertex to the teacher's density there (through this grid's inverse activation) and
        the SH coefficients of occupied vertices to a least-squares fit, in the sigmoid's logit space,
        of the teacher's colour from ``GRID_INIT_DIRECTIONS`` directions. Returns what it did."""
        from nerfstudio.utils.math import components_from_spherical_harmonics

        from nerfconvert.progress import with_progress
        from nerfconvert.views.splat import fibonacci_directions

        field = self.field
        r, device = field.resolution, field.density_grid.device
        lin = torch.linspace(0.0, 1.0, r, device=device)
        z, y, x = torch.meshgrid(lin, lin, lin, indexing="ij")  # grids are [D=z, H=y, W=x]
        box = field.aabb.to(device)
        positions = (box[0] + torch.stack([x, y, z], dim=-1) * (box[1] - box[0])).view(-1, 3)
        up = torch.tensor([0.0, 0.0, 1.0], device=device)
        density = torch.empty(positions.shape[0], device=device)
        chunks = [positions[i : i + chunk] for i in range(0, positions.shape[0], chunk)]
        done = 0
        for part in with_progress(iter(chunks), positions.shape[0], "grid from the teacher: density", unit="vertices",
                                  size=lambda p: p.shape[0]):
            out = teacher.query(part, up.expand_as(part))
            density[done : done + part.shape[0]] = out.density.reshape(-1).float()
            done += part.shape[0]
        raw = self._inverse_activation(density).clamp_min(GRID_INIT_MIN_RAW)
        field.density_grid.data.copy_(raw.view(1, 1, r, r, r))

        # colour where the teacher is not empty over one voxel (alpha > 1e-3), SH fitted to all directions at once
        voxel = float(field.voxel_size.min())
        occupied = (1 - torch.exp(-density * voxel)) > 1e-3
        index = occupied.nonzero().squeeze(-1)
        dirs = fibonacci_directions(GRID_INIT_DIRECTIONS).to(device)
        k = (self.sh_degree + 1) ** 2
        basis = components_from_spherical_harmonics(levels=self.sh_degree + 1, directions=dirs)  # [D, K]
        solve = torch.linalg.pinv(basis)  # [K, D]: least squares, shared by every vertex
        sh = torch.zeros(index.shape[0], 3 * k, device=device)
        per = max(1, chunk // GRID_INIT_DIRECTIONS)
        parts = [index[i : i + per] for i in range(0, index.shape[0], per)]
        done = 0
        for part in with_progress(iter(parts), index.shape[0], "grid from the teacher: colour", unit="vertices",
                                  size=lambda p: p.shape[0]):
            p = positions[part][:, None].expand(-1, GRID_INIT_DIRECTIONS, -1).reshape(-1, 3)
            d = dirs[None].expand(part.shape[0], -1, -1).reshape(-1, 3)
            rgb = teacher.query(p, d).rgb.float().view(part.shape[0], GRID_INIT_DIRECTIONS, 3)
            logits = torch.logit(rgb.clamp(1e-3, 1 - 1e-3))
            coeffs = torch.einsum("kd,ndc->nck", solve, logits)  # [n, 3, K], colour-major as the grid stores them
            sh[done : done + part.shape[0]] = coeffs.reshape(part.shape[0], 3 * k)
            done += part.shape[0]
        flat = field.sh_grid.data.view(3 * k, -1)
        flat.zero_()
        flat[:, index] = sh.t()
        return {"vertices": float(positions.shape[0]), "occupied": float(index.shape[0])}

    def _inverse_activation(self, density: Tensor) -> Tensor:
        name = str(self.field.density_activation)
        if name == "exp":
            return torch.log(density.clamp_min(1e-12))
        if name == "softplus":
            d = density.clamp_min(1e-12)
            return d + torch.log(-torch.expm1(-d))
        return density  # relu

    # ---- sampling -------------------------------------------------------------------------
    def sample(self, ray_bundle: RayBundle) -> RaySamples:
        """The model's marcher: constant steps through the occupied box (no jitter in eval)."""
        with torch.no_grad():
            return self.model.sample(ray_bundle)

    # ---- parameters -----------------------------------------------------------------------
    def phi1_parameters(self) -> list[nn.Parameter]:
        # Looked up on each call: upsampling replaces the grid Parameters.
        return [self.field.density_grid, self.field.sh_grid]

    def phi2_parameters(self) -> list[nn.Parameter]:
        return []
