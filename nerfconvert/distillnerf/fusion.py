"""Multi-view fusion (Sec. 3.1, Fig. 1 centre): lifted points from all cameras -> two sparse
voxel levels (fine and coarse) in the parameterized space, scatter-mean pooled, then 3D convs.

Sparse convolution library: none is used. spconv builds its CPU kernels with a C++ toolchain
at first use and ships CUDA wheels per CUDA version; torchsparse and MinkowskiEngine compile from
source. None installs and runs on both CPU and CUDA from the package registry alone. Both levels
are therefore kept truly sparse here (sorted voxel keys) and convolved with a submanifold 3x3x3
convolution written in torch (neighbours found by binary search): its cost grows with the
occupied voxels only. A dense Conv3d on the coarse level was the simpler fallback, but it cost
more than the rest of the model on CPU (32 x 32 x 16 cells, mostly empty).
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
    coarse_keys: Tensor
    """[K] sorted linear indices of the occupied coarse voxels."""
    coarse_density: Tensor
    """[K] density (1/m)."""
    coarse_features: Tensor
    """[K, C]."""
    ego_to_world: Tensor
    fine_resolution: Tuple[int, int, int]
    coarse_resolution: Tuple[int, int, int]
    inner_range: Tuple[float, float, float]
    alpha: float

    def to_state(self) -> Dict[str, Tensor]:
        return {
            "fine_keys": self.fine_keys, "fine_density": self.fine_density, "fine_features": self.fine_features,
            "coarse_keys": self.coarse_keys, "coarse_density": self.coarse_density, "coarse_features": self.coarse_features,
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
        cpos, cfound = lookup(self.coarse_keys, linear_key(grid_index(coords, self.coarse_resolution), self.coarse_resolution))
        cmask = cfound.to(positions.dtype)
        coarse_density = self.coarse_density[cpos] * cmask if self.coarse_keys.numel() else fine_density * 0
        coarse_feats = (self.coarse_features[cpos] * cmask[..., None] if self.coarse_keys.numel()
                        else torch.zeros_like(fine_feats))
        density = torch.where(found & (fine_density > 0), fine_density, coarse_density)
        return density[..., None], torch.cat([fine_feats, coarse_feats], dim=-1)


def sparse_pool(coords: Tensor, features: Tensor, resolution: Sequence[int]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Scatter-mean pooling of points into the voxels of one level: (sorted keys [M], voxel
    indices [M, 3], pooled features [M, C], each point's voxel [P])."""
    keys, inverse = torch.unique(linear_key(grid_index(coords, resolution), resolution), sorted=True, return_inverse=True)
    pooled, _ = scatter_mean(features, inverse, keys.numel())
    _, ry, rz = resolution
    idx = torch.stack([keys // (ry * rz), (keys // rz) % ry, keys % rz], dim=-1)
    return keys, idx, pooled, inverse


class SparseVoxelFusion(nn.Module):
    """Scatter-mean pooling of lifted points into fine and coarse voxels, sparse convs on the fine
    level, fine features pooled into their coarse cells and concatenated, sparse convs on the
    coarse level, then density and feature heads on both."""

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
        self.inner_range = tuple(float(r) for r in inner_range)
        self.alpha = float(alpha)
        self.fine_in = nn.Linear(in_channels, channels)
        self.fine_convs = nn.ModuleList([SubmanifoldConv3d(channels, channels) for _ in range(2)])
        self.fine_head = nn.Linear(channels, channels + 1)
        self.coarse_in = nn.Linear(in_channels + channels, channels)
        self.coarse_convs = nn.ModuleList([SubmanifoldConv3d(channels, channels) for _ in range(2)])
        self.coarse_head = nn.Linear(channels, channels + 1)
        self.density_bias = density_bias

    def _level(self, keys: Tensor, idx: Tensor, pooled: Tensor, resolution, inp: nn.Module, convs: nn.ModuleList,
               head: nn.Module) -> Tuple[Tensor, Tensor, Tensor]:
        x = F.relu(inp(pooled))
        for conv in convs:
            x = F.relu(x + conv(keys, idx, x, resolution))
        out = head(x)
        return x, F.softplus(out[:, 0] + self.density_bias), out[:, 1:]

    def forward(self, points: Tensor, features: Tensor, ego_to_world: Tensor) -> SparseVoxels:
        coords = contract(world_to_ego(points, ego_to_world), self.inner_range, self.alpha)
        fine_keys, fine_idx, fine_pooled, _ = sparse_pool(coords, features, self.fine_resolution)
        fine_x, fine_density, fine_feats = self._level(fine_keys, fine_idx, fine_pooled, self.fine_resolution,
                                                       self.fine_in, self.fine_convs, self.fine_head)
        # coarse level: the points themselves, plus the fine voxels' features downsampled into it
        coarse_keys, coarse_idx, coarse_pooled, _ = sparse_pool(coords, features, self.coarse_resolution)
        fine_centres = (fine_idx.to(coords.dtype) + 0.5) / torch.as_tensor(self.fine_resolution, device=coords.device) * 2 - 1
        parent = linear_key(grid_index(fine_centres, self.coarse_resolution), self.coarse_resolution)
        pos, _ = lookup(coarse_keys, parent)  # every fine voxel's parent is occupied by the same points
        from_fine, _ = scatter_mean(fine_x, pos, coarse_keys.numel())
        _, coarse_density, coarse_feats = self._level(
            coarse_keys, coarse_idx, torch.cat([coarse_pooled, from_fine], dim=-1), self.coarse_resolution,
            self.coarse_in, self.coarse_convs, self.coarse_head,
        )
        return SparseVoxels(
            fine_keys=fine_keys,
            fine_density=fine_density,
            fine_features=fine_feats,
            coarse_keys=coarse_keys,
            coarse_density=coarse_density,
            coarse_features=coarse_feats,
            ego_to_world=ego_to_world,
            fine_resolution=self.fine_resolution,
            coarse_resolution=self.coarse_resolution,
            inner_range=self.inner_range,
            alpha=self.alpha,
        )
