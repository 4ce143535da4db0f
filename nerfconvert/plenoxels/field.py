"""A dense voxel grid of density and spherical-harmonic coefficients (Plenoxels-style, no MLP).

Values live on the grid *vertices* and are interpolated trilinearly with
``F.grid_sample(..., align_corners=True)``: vertex ``i`` of an axis sits at
``aabb_min + i / (R - 1) * (aabb_max - aabb_min)``, so an upsampled grid keeps the old vertex
positions and the field barely changes.

Per vertex the grid stores one raw (pre-activation) density and ``3 x (degree + 1)^2`` SH
coefficients k. Colour is ``sigmoid(sum_lm k_lm Y_lm(d))`` (PVD Eq. 2). The density activation
defaults to ``exp`` (nerfacto's ``trunc_exp``): with Adam every step moves density by a
constant *factor*, so surfaces grow from a transparent start in tens of steps, and the raw
value is on the same log scale as nerfacto's, which is the range PVD clamps to [-2, 7]
(Eq. 8). ``relu`` (Plenoxels) and ``softplus`` (DVGO) are available too.

Pruning keeps a persistent boolean occupancy mask over vertices. A pruned vertex holds the
constant ``empty_raw_density`` (whose activation is ~0) and zero SH; samples in cells whose
eight corners are all pruned are skipped without touching the grid. Because pruned vertices
hold exactly those constants, skipping gives the same values as interpolating.
"""

from __future__ import annotations

import math
from typing import Dict, Literal, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfstudio.cameras.rays import RaySamples
from nerfstudio.field_components.activations import trunc_exp
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.fields.base_field import Field
from nerfstudio.utils.math import components_from_spherical_harmonics

DensityActivation = Literal["exp", "relu", "softplus"]

_BOX_TOLERANCE = 1e-5

_ACTIVATIONS = {
    "exp": trunc_exp,
    "relu": torch.relu,
    "softplus": F.softplus,
}


def num_sh_coeffs(sh_degree: int) -> int:
    """Number of SH basis functions up to ``sh_degree`` (degree 2 -> 9)."""
    return (sh_degree + 1) ** 2


def eval_sh_colour(sh: Tensor, directions: Tensor, sh_degree: int) -> Tensor:
    """Colour from SH coefficients, PVD Eq. 2: c(d; k) = S(sum_{l, m} k_l^m Y_l^m(d)).

    ``sh`` is [..., 3 * K] laid out colour-major (all K coefficients of red, then green, then
    blue), the layout of nerfstudio's ``SHRenderer``; ``directions`` are unit vectors.
    """
    k = num_sh_coeffs(sh_degree)
    basis = components_from_spherical_harmonics(levels=sh_degree + 1, directions=directions)  # Y_l^m(d)
    basis = basis.to(sh.dtype)
    coeffs = sh.reshape(*sh.shape[:-1], 3, k)
    return torch.sigmoid((coeffs * basis[..., None, :]).sum(dim=-1))  # S = sigmoid


def trilinear(grid: Tensor, coords: Tensor) -> Tensor:
    """Interpolate a [1, C, R, R, R] grid at [N, 3] coordinates in [-1, 1] (x, y, z) -> [N, C]."""
    n = coords.shape[0]
    out = F.grid_sample(grid, coords.view(1, n, 1, 1, 3), mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(grid.shape[1], n).t()


class PlenoxelsField(Field):
    """Dense voxel grid of raw density and SH coefficients over the scene box ``aabb``."""

    def __init__(
        self,
        aabb: Tensor,
        resolution: int = 128,
        sh_degree: int = 2,
        density_activation: DensityActivation = "exp",
        init_raw_density: float = -3.0,
        empty_raw_density: float = -100.0,
    ) -> None:
        super().__init__()
        if density_activation not in _ACTIVATIONS:
            raise ValueError(f"density_activation must be one of {sorted(_ACTIVATIONS)}, got {density_activation!r}")
        if resolution < 2:
            raise ValueError(f"grid resolution must be at least 2, got {resolution}")
        self.sh_degree = sh_degree
        self.density_activation = density_activation
        self.empty_raw_density = float(empty_raw_density)
        self.register_buffer("aabb", aabb.detach().clone().float())
        r = resolution
        self.density_grid = nn.Parameter(torch.full((1, 1, r, r, r), float(init_raw_density)))
        self.sh_grid = nn.Parameter(torch.zeros((1, 3 * num_sh_coeffs(sh_degree), r, r, r)))
        # Vertex occupancy, [D=z, H=y, W=x] like the grids. Persistent: it is part of the model.
        self.register_buffer("occupancy", torch.ones((r, r, r), dtype=torch.bool))
        # Derived from occupancy; rebuilt by _refresh_occupancy_cache, never saved.
        self.register_buffer("cell_occupancy", torch.ones((r - 1,) * 3, dtype=torch.bool), persistent=False)
        self.register_buffer("occupied_aabb", self.aabb.clone(), persistent=False)
        self._all_occupied = True

    # ---- shapes ---------------------------------------------------------------------------
    @property
    def resolution(self) -> int:
        return int(self.density_grid.shape[-1])

    @property
    def num_sh_channels(self) -> int:
        return 3 * num_sh_coeffs(self.sh_degree)

    @property
    def feature_dim(self) -> int:
        """Channels per vertex: raw density + 3 x K SH coefficients."""
        return 1 + self.num_sh_channels

    @property
    def voxel_size(self) -> Tensor:
        """[3] world-space spacing between neighbouring vertices."""
        return (self.aabb[1] - self.aabb[0]) / (self.resolution - 1)

    # ---- the two levels (PVD Table 1: phi1 = trilinear grid, phi2 = identity + SH) -----------
    def grid_coords(self, positions: Tensor) -> Tuple[Tensor, Tensor]:
        """World positions [..., 3] -> grid_sample coordinates in [-1, 1] and an inside-box mask.

        The box test allows float rounding (1e-5), so that samples placed on the box faces by
        the model's sampler count as inside here too."""
        coords = (positions - self.aabb[0]) / (self.aabb[1] - self.aabb[0]) * 2.0 - 1.0
        inside = (coords.abs() <= 1.0 + _BOX_TOLERANCE).all(dim=-1)
        return coords, inside

    def ray_grid_coords(self, origins: Tensor, directions: Tensor, t: Tensor) -> Tensor:
        """Grid coordinates of ``origins + t * directions`` ([N, 3], [N, 3], [N, S, 1] -> [N, S, 3]),
        with one fused pass over the samples instead of one per arithmetic step."""
        scale = 2.0 / (self.aabb[1] - self.aabb[0])
        return torch.addcmul(((origins - self.aabb[0]) * scale - 1.0)[:, None], (directions * scale)[:, None], t)

    def activate(self, raw_density: Tensor) -> Tensor:
        return _ACTIVATIONS[self.density_activation](raw_density)

    def features(self, positions: Tensor) -> Tensor:
        """phi1: [..., 3] -> [..., 1 + 3K] = [raw density, SH coefficients], no skipping."""
        coords, inside = self.grid_coords(positions)
        flat = coords.reshape(-1, 3)
        # Two lookups rather than one on a concatenated grid: no copy of the whole grid per call.
        feats = torch.cat([trilinear(self.density_grid, flat), trilinear(self.sh_grid, flat)], dim=-1)
        feats = feats.view(*positions.shape[:-1], self.feature_dim)
        return torch.where(inside[..., None], feats, self._empty_features(feats))

    def decode(self, features: Tensor, directions: Tensor) -> Tuple[Tensor, Tensor]:
        """phi2: identity + activation + SH evaluation -> (density [..., 1], rgb [..., 3])."""
        return self.activate(features[..., :1]), eval_sh_colour(features[..., 1:], directions, self.sh_degree)

    def _empty_features(self, like: Tensor) -> Tensor:
        empty = torch.zeros(self.feature_dim, dtype=like.dtype, device=like.device)
        empty[0] = self.empty_raw_density
        return empty

    # ---- sparse evaluation (what the model uses) --------------------------------------------
    def active_from_coords(self, coords: Tensor, inside: Optional[Tensor] = None) -> Tensor:
        """[...] True where a sample is in a cell with an occupied corner (and inside the box,
        when ``inside`` is given; the model's samples are inside by construction)."""
        if self._all_occupied:
            return inside if inside is not None else torch.ones(coords.shape[:-1], dtype=torch.bool, device=coords.device)
        r = self.resolution
        cell = (coords + 1.0).mul_(0.5 * (r - 1)).long().clamp_(0, r - 2)  # truncation == floor here
        flat = (cell[..., 2] * (r - 1) + cell[..., 1]) * (r - 1) + cell[..., 0]
        active = self.cell_occupancy.view(-1)[flat]
        return active & inside if inside is not None else active

    def active_mask(self, positions: Tensor) -> Tensor:
        return self.active_from_coords(*self.grid_coords(positions))

    def raw_density_at(self, coords: Tensor) -> Tensor:
        """[M, 1] raw density at [M, 3] grid coordinates (no skipping)."""
        return trilinear(self.density_grid, coords)

    def raw_density(self, positions: Tensor, active: Optional[Tensor] = None) -> Tensor:
        """[..., 1] raw density; skipped samples get ``empty_raw_density`` without a grid lookup."""
        coords, inside = self.grid_coords(positions)
        if active is None:
            active = self.active_from_coords(coords, inside)
        return scatter_active(
            self.raw_density_at, coords, active, fill=self.empty_raw_density, channels=1
        )

    def colour(self, positions: Tensor, directions: Tensor) -> Tensor:
        """[N, 3] colour at [N, 3] positions (no skipping; callers pass only samples they need)."""
        coords, inside = self.grid_coords(positions)
        return self.colour_at(coords, directions, inside)

    def colour_at(self, coords: Tensor, directions: Tensor, inside: Optional[Tensor] = None) -> Tensor:
        """[M, 3] colour from [M, 3] grid coordinates; SH is zero outside the box, as in phi1."""
        sh = trilinear(self.sh_grid, coords)
        if inside is not None:
            sh = sh * inside[:, None].to(sh.dtype)
        return eval_sh_colour(sh, directions, self.sh_degree)

    # ---- nerfstudio Field API ------------------------------------------------------------------
    def get_density(self, ray_samples: RaySamples) -> Tuple[Tensor, Tensor]:
        """Density [..., 1] and, as the "embedding", the raw density it came from."""
        raw = self.raw_density(ray_samples.frustums.get_positions())
        return self.activate(raw), raw

    def get_outputs(self, ray_samples: RaySamples, density_embedding: Optional[Tensor] = None) -> Dict:
        positions = ray_samples.frustums.get_positions()
        directions = ray_samples.frustums.directions
        rgb = self.colour(positions.reshape(-1, 3), directions.reshape(-1, 3))
        return {FieldHeadNames.RGB: rgb.view(*positions.shape[:-1], 3)}

    # ---- regularisers -----------------------------------------------------------------------
    def tv_losses(self, num_voxels: int, density_range: Optional[Tuple[float, float]] = None) -> Tuple[Tensor, Tensor]:
        """Total variation of raw density and SH (Plenoxels' L_TV), mean squared neighbour difference.

        ``density_range`` clamps the raw density first: outside the range that matters (PVD's
        [a, b], Eq. 8) values are physically alike, and a TV pull between, say, -4 and -10
        would only hold empty space back from becoming empty. On large grids a random subset
        of ``num_voxels`` cells is used (as Plenoxels does), so the cost does not grow with
        the resolution.
        """
        density = self.density_grid
        if density_range is not None:
            density = density.clamp(*density_range)
        r = self.resolution
        if (r - 1) ** 3 <= num_voxels:
            return _tv_dense(density), _tv_dense(self.sh_grid)
        ijk = torch.randint(0, r - 1, (num_voxels, 3), device=self.density_grid.device)
        base = (ijk[:, 0] * r + ijk[:, 1]) * r + ijk[:, 2]  # flat index in [z, y, x] order
        # The vertex and its +x, +y, +z neighbours, gathered at once (one backward scatter).
        index = torch.cat([base, base + 1, base + r, base + r * r])
        return _tv_at(density, index), _tv_at(self.sh_grid, index)

    # ---- coarse-to-fine and pruning --------------------------------------------------------------
    @torch.no_grad()
    def upsample(self, resolution: int) -> None:
        """Resample the grid to ``resolution``^3 vertices (trilinear, same vertex convention).

        The grids become new Parameter objects (autograd caches a leaf's shape), so an
        optimizer holding the old ones must be pointed at the new ones.
        """
        size = (resolution,) * 3
        occ = F.interpolate(self.occupancy[None, None].float(), size=size, mode="trilinear", align_corners=True)
        for name in ("density_grid", "sh_grid"):
            old = getattr(self, name).detach()
            setattr(self, name, nn.Parameter(F.interpolate(old, size=size, mode="trilinear", align_corners=True)))
        # A new vertex stays occupied if any old vertex that it interpolates from was occupied.
        self.occupancy = occ[0, 0] > 0
        self.enforce_occupancy_()
        self._refresh_occupancy_cache()

    @torch.no_grad()
    def prune(self, alpha_threshold: float, dilation: int = 1) -> int:
        """Prune vertices whose density is negligible over one voxel, keeping a ``dilation``-voxel
        shell around the rest so that surfaces keep their interpolation neighbours.

        A vertex is kept if ``1 - exp(-density * voxel_size) >= alpha_threshold``. Returns the
        number of vertices pruned by this call.
        """
        before = int(self.occupancy.sum())
        density = self.activate(self.density_grid[0, 0])
        alpha = 1.0 - torch.exp(-density * float(self.voxel_size.min()))
        keep = (alpha >= alpha_threshold) & self.occupancy
        if dilation > 0:
            k = 2 * dilation + 1
            keep = F.max_pool3d(keep[None, None].float(), kernel_size=k, stride=1, padding=dilation)[0, 0] > 0
        self.occupancy = keep & self.occupancy
        self.enforce_occupancy_()
        self._refresh_occupancy_cache()
        return before - int(self.occupancy.sum())

    @torch.no_grad()
    def restrict_occupancy_(self, keep: Tensor) -> None:
        """Keep only the occupied vertices in ``keep`` (a mask of ``occupancy``'s size); the rest become
        the empty vertex, whose cells the field then skips (e.g. vertices a compression pruned)."""
        self.occupancy = self.occupancy & keep.view(self.occupancy.shape).to(self.occupancy.device)
        self.enforce_occupancy_()
        self._refresh_occupancy_cache()

    @torch.no_grad()
    def enforce_occupancy_(self) -> None:
        """Reset pruned vertices to the empty constants (after optimizer steps, loads, resizes)."""
        if bool(self.occupancy.all()):
            return
        empty = ~self.occupancy
        self.density_grid.data[0, 0].masked_fill_(empty, self.empty_raw_density)
        self.sh_grid.data[0].masked_fill_(empty[None], 0.0)

    @torch.no_grad()
    def _refresh_occupancy_cache(self) -> None:
        occ = self.occupancy
        self._all_occupied = bool(occ.all())
        # A cell is needed if any of its eight corner vertices is occupied.
        self.cell_occupancy = F.max_pool3d(occ[None, None].float(), kernel_size=2, stride=1)[0, 0] > 0
        if self._all_occupied or not bool(occ.any()):
            self.occupied_aabb = self.aabb.clone()
            return
        r = self.resolution
        lo, hi = [], []
        for axis_dim in (2, 1, 0):  # x, y, z live in W, H, D
            other = tuple(d for d in (0, 1, 2) if d != axis_dim)
            used = torch.nonzero(occ.any(dim=other[1]).any(dim=other[0])).view(-1)
            lo.append(used.min())
            hi.append(used.max())
        idx_lo = torch.stack(lo).float()
        idx_hi = torch.stack(hi).float()
        # Grow by one vertex: the cells around occupied boundary vertices are still active.
        idx_lo = (idx_lo - 1).clamp(min=0)
        idx_hi = (idx_hi + 1).clamp(max=r - 1)
        self.occupied_aabb = torch.stack([self.aabb[0] + idx_lo * self.voxel_size, self.aabb[0] + idx_hi * self.voxel_size])

    # ---- storage -------------------------------------------------------------------------------
    @property
    def num_occupied(self) -> int:
        return int(self.occupancy.sum())

    def dense_bytes(self) -> int:
        """Bytes of the dense float32 grid (every vertex, every channel)."""
        return self.resolution**3 * self.feature_dim * 4

    def stored_bytes(self) -> int:
        """Bytes of the pruned representation: occupied vertices x channels x float32 + the
        bit-packed occupancy mask (one bit per vertex). Equals ``len(to_sparse()`` buffers)."""
        return self.num_occupied * self.feature_dim * 4 + math.ceil(self.resolution**3 / 8)

    @torch.no_grad()
    def to_sparse(self) -> Dict[str, np.ndarray]:
        """The pruned representation as arrays: ``mask`` (np.packbits of the occupancy, C order
        over [z, y, x]) and ``values`` ([occupied, 1 + 3K] float32, same vertex order)."""
        occ = self.occupancy.cpu()
        grid = torch.cat([self.density_grid, self.sh_grid], dim=1)[0].detach().cpu()  # [C, R, R, R]
        values = grid.permute(1, 2, 3, 0)[occ].contiguous().numpy().astype(np.float32)
        mask = np.packbits(occ.numpy().reshape(-1))
        return {"mask": mask, "values": values}

    @torch.no_grad()
    def load_sparse(self, mask: np.ndarray, values: np.ndarray, resolution: int) -> None:
        """Inverse of :meth:`to_sparse`: rebuild the dense grid at ``resolution``."""
        r = resolution
        occ = torch.from_numpy(np.unpackbits(mask, count=r**3).astype(bool).reshape(r, r, r))
        dense = self._empty_features(torch.empty(0)).repeat(r, r, r, 1)
        dense[occ] = torch.from_numpy(np.asarray(values, dtype=np.float32))
        dense = dense.permute(3, 0, 1, 2)[None].contiguous().to(self.density_grid.device)
        self.density_grid.data = dense[:, :1].contiguous()
        self.sh_grid.data = dense[:, 1:].contiguous()
        self.occupancy = occ.to(self.density_grid.device)
        self.enforce_occupancy_()
        self._refresh_occupancy_cache()

    # ---- checkpoints at any resolution -------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # A checkpoint saved after an upsample holds larger grids than a freshly built field:
        # adopt the stored shapes before the copy. In place (same Parameter objects), so that
        # an optimizer built before a resumed run's load keeps pointing at them.
        for name in ("density_grid", "sh_grid"):
            stored = state_dict.get(prefix + name)
            param = getattr(self, name)
            if stored is not None and stored.shape != param.shape:
                param.data = torch.empty(stored.shape, dtype=param.dtype, device=param.device)
        stored = state_dict.get(prefix + "occupancy")
        if stored is not None and stored.shape != self.occupancy.shape:
            self.occupancy = torch.empty(stored.shape, dtype=torch.bool, device=self.occupancy.device)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._refresh_occupancy_cache()


def _tv_dense(grid: Tensor) -> Tensor:
    g = grid[0]
    dx = (g[:, :-1, :-1, 1:] - g[:, :-1, :-1, :-1]) ** 2
    dy = (g[:, :-1, 1:, :-1] - g[:, :-1, :-1, :-1]) ** 2
    dz = (g[:, 1:, :-1, :-1] - g[:, :-1, :-1, :-1]) ** 2
    return (dx.mean() + dy.mean() + dz.mean()) / 3.0


def _tv_at(grid: Tensor, index: Tensor) -> Tensor:
    values = grid.view(grid.shape[1], -1).index_select(1, index).view(grid.shape[1], 4, -1)
    return ((values[:, 1:] - values[:, :1]) ** 2).mean()


def scatter_active(fn, coords: Tensor, active: Tensor, fill: float, channels: int) -> Tensor:
    """``fn`` evaluated only at the active entries of [..., 3] ``coords``; ``fill`` elsewhere."""
    flat_active = active.reshape(-1)
    index = flat_active.nonzero().squeeze(-1)
    out = torch.full((flat_active.shape[0], channels), fill, device=coords.device, dtype=coords.dtype)
    if index.numel():
        out = out.index_copy(0, index, fn(coords.reshape(-1, 3).index_select(0, index)))
    return out.view(*active.shape, channels)
