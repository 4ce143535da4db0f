"""Multi-view fusion (Sec. 3.1, Fig. 1 centre): lifted points from all cameras -> two sparse
voxel levels (fine and coarse) in the parameterized space, scatter-mean pooled, then 3D convs.

Sparse convolution library: none is used. spconv builds its CPU kernels with a C++ toolchain
at first use and ships CUDA wheels per CUDA version; torchsparse and MinkowskiEngine compile from
source. None installs and runs on both CPU and CUDA from the package registry alone, so:
- the fine level is truly sparse: sorted voxel keys, a submanifold 3x3x3 convolution written in
  torch (neighbours found by binary search), cost linear in the occupied voxels;
- the coarse level is small (32 x 32 x 16 by default), so its convolutions are dense Conv3d, and
  its density is kept only on occupied cells, which keeps the representation sparse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfconvert.distillnerf.param_space import contract, world_to_ego


def scatter_mean(values: Tensor, index: Tensor, size: int) -> Tuple[Tensor, Tensor]:
    """Mean of ``values`` [P, C] per target in ``index`` [P] -> ([size, C], counts [size])."""
    sums = values.new_zeros(size, values.shape[-1]).index_add_(0, index, values)
    counts = torch.bincount(index, minlength=size).to(values.dtype)
    return sums / counts.clamp_min(1.0)[:, None], counts


def grid_index(coords: Tensor, resolution: Sequence[int]) -> Tensor:
    """Parameterized coordinates [..., 3] in [-1, 1] -> integer voxel indices [..., 3]."""
    res = torch.as_tensor(resolution, device=coords.device)
    idx = torch.floor((coords + 1.0) * 0.5 * res).long()
    return torch.minimum(idx.clamp_min(0), res - 1)


def linear_key(idx: Tensor, resolution: Sequence[int]) -> Tensor:
    _, ry, rz = resolution
    return (idx[..., 0] * ry + idx[..., 1]) * rz + idx[..., 2]


def lookup(sorted_keys: Tensor, query: Tensor) -> Tuple[Tensor, Tensor]:
    """Positions of ``query`` keys in ``sorted_keys`` (binary search) and whether they exist."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(query), torch.zeros_like(query, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, query).clamp(max=sorted_keys.numel() - 1)
    return pos, sorted_keys[pos] == query


_OFFSETS = torch.stack(
    torch.meshgrid(torch.arange(-1, 2), torch.arange(-1, 2), torch.arange(-1, 2), indexing="ij"), dim=-1
).view(-1, 3)


class SubmanifoldConv3d(nn.Module):
    """3x3x3 convolution evaluated only at occupied voxels, reading only occupied neighbours
    (Graham & van der Maaten's submanifold sparse convolution)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(27 * c_in, c_out)

    def forward(self, keys: Tensor, idx: Tensor, feats: Tensor, resolution: Sequence[int]) -> Tensor:
        res = torch.as_tensor(resolution, device=idx.device)
        nbr = idx[:, None, :] + _OFFSETS.to(idx.device)[None]  # [M, 27, 3]
        inside = ((nbr >= 0) & (nbr < res)).all(-1)
        pos, found = lookup(keys, linear_key(nbr.clamp_min(0), resolution))
        found = found & inside
        gathered = feats[pos] * found[..., None].to(feats.dtype)  # [M, 27, C]
        return self.linear(gathered.flatten(1))


@dataclass
class SparseVoxels:
    """A predicted scene: two voxel levels in the parameterized space of one ego pose."""

    fine_keys: Tensor
    """[M] sorted linear indices of the occupied fine voxels."""
    fine_density: Tensor
    """[M] density (1/m)."""
    fine_features: Tensor
    """[M, C]."""
    coarse_density: Tensor
    """[Rx * Ry * Rz] density of the coarse cells (0 where no point landed)."""
    coarse_features: Tensor
    """[Rx * Ry * Rz, C]."""
    ego_to_world: Tensor
    fine_resolution: Tuple[int, int, int]
    coarse_resolution: Tuple[int, int, int]
    inner_range: Tuple[float, float, float]
    alpha: float

    def to_state(self) -> Dict[str, Tensor]:
        return {
            "fine_keys": self.fine_keys, "fine_density": self.fine_density, "fine_features": self.fine_features,
            "coarse_density": self.coarse_density, "coarse_features": self.coarse_features,
            "ego_to_world": self.ego_to_world,
        }

    def query(self, positions: Tensor) -> Tuple[Tensor, Tensor]:
        """World positions [..., 3] -> density [..., 1] and features [..., 2C] (fine, coarse).

        The fine level is read first; where it has no voxel the coarse density fills in (Sec. 3.1)."""
        coords = contract(world_to_ego(positions, self.ego_to_world), self.inner_range, self.alpha)
        fine_idx = grid_index(coords, self.fine_resolution)
        pos, found = lookup(self.fine_keys, linear_key(fine_idx, self.fine_resolution))
        fmask = found.to(positions.dtype)
        if self.fine_keys.numel():
            fine_density = self.fine_density[pos] * fmask
            fine_feats = self.fine_features[pos] * fmask[..., None]
        else:
            fine_density = positions.new_zeros(positions.shape[:-1])
            fine_feats = positions.new_zeros(*positions.shape[:-1], self.fine_features.shape[-1])
        coarse_key = linear_key(grid_index(coords, self.coarse_resolution), self.coarse_resolution)
        coarse_density = self.coarse_density[coarse_key]
        coarse_feats = self.coarse_features[coarse_key]
        density = torch.where(found & (fine_density > 0), fine_density, coarse_density)
        return density[..., None], torch.cat([fine_feats, coarse_feats], dim=-1)


class SparseVoxelFusion(nn.Module):
    """Scatter-mean pooling of lifted points into fine and coarse voxels, sparse convs on the fine
    level, fine features pooled into the coarse cells and concatenated, dense convs on the coarse
    level, then density and feature heads on both."""

    def __init__(self, in_channels: int, channels: int, fine_resolution: Sequence[int],
                 coarse_resolution: Sequence[int], inner_range: Sequence[float], alpha: float,
                 density_bias: float = -1.0) -> None:
        super().__init__()
        self.fine_resolution = tuple(int(r) for r in fine_resolution)
        self.coarse_resolution = tuple(int(r) for r in coarse_resolution)
        for f, c in zip(self.fine_resolution, self.coarse_resolution):
            if f % c:
                raise ValueError(
                    f"fine resolution {self.fine_resolution} must be a multiple of coarse {self.coarse_resolution}"
                )
        self.factor = tuple(f // c for f, c in zip(self.fine_resolution, self.coarse_resolution))
        self.inner_range = tuple(float(r) for r in inner_range)
        self.alpha = float(alpha)
        self.fine_in = nn.Linear(in_channels, channels)
        self.fine_convs = nn.ModuleList([SubmanifoldConv3d(channels, channels) for _ in range(2)])
        self.fine_head = nn.Linear(channels, channels + 1)
        self.coarse_net = nn.Sequential(
            nn.Conv3d(in_channels + channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels + 1, 1),
        )
        self.density_bias = density_bias

    def forward(self, points: Tensor, features: Tensor, ego_to_world: Tensor) -> SparseVoxels:
        coords = contract(world_to_ego(points, ego_to_world), self.inner_range, self.alpha)
        fine_idx = grid_index(coords, self.fine_resolution)
        keys, inverse = torch.unique(linear_key(fine_idx, self.fine_resolution), sorted=True, return_inverse=True)
        pooled, _ = scatter_mean(features, inverse, keys.numel())  # scatter-mean pooling
        rx, ry, rz = self.fine_resolution
        vox_idx = torch.stack([keys // (ry * rz), (keys // rz) % ry, keys % rz], dim=-1)

        x = F.relu(self.fine_in(pooled))
        for conv in self.fine_convs:
            x = F.relu(x + conv(keys, vox_idx, x, self.fine_resolution))
        fine_out = self.fine_head(x)
        fine_density = F.softplus(fine_out[:, 0] + self.density_bias)

        # coarse level: the points themselves, plus the fine voxels' features downsampled into it
        n_coarse = self.coarse_resolution[0] * self.coarse_resolution[1] * self.coarse_resolution[2]
        point_coarse = linear_key(grid_index(coords, self.coarse_resolution), self.coarse_resolution)
        coarse_points, counts = scatter_mean(features, point_coarse, n_coarse)
        factor = torch.as_tensor(self.factor, device=vox_idx.device)
        fine_to_coarse = linear_key(vox_idx // factor, self.coarse_resolution)
        coarse_from_fine, _ = scatter_mean(x, fine_to_coarse, n_coarse)
        grid = torch.cat([coarse_points, coarse_from_fine], dim=-1).T.reshape(1, -1, *self.coarse_resolution)
        coarse_out = self.coarse_net(grid).reshape(-1, n_coarse).T
        occupied = (counts > 0).to(coarse_out.dtype)
        coarse_density = F.softplus(coarse_out[:, 0] + self.density_bias) * occupied
        return SparseVoxels(
            fine_keys=keys,
            fine_density=fine_density,
            fine_features=fine_out[:, 1:],
            coarse_density=coarse_density,
            coarse_features=coarse_out[:, 1:] * occupied[:, None],
            ego_to_world=ego_to_world,
            fine_resolution=self.fine_resolution,
            coarse_resolution=self.coarse_resolution,
            inner_range=self.inner_range,
            alpha=self.alpha,
        )
