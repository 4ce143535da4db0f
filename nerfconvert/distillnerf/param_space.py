"""The parameterized space of DistillNeRF (Eq. 3): real scale inside an ego-centred box, the
rest of the world contracted into a shell around it. The same map is used for the depth bins of
single-view lifting (on the depth axis) and for the voxels of multi-view fusion (in 3D), so the
two agree on where a lifted point lands."""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

Range = Union[Sequence[float], Tensor]


def contract(points: Tensor, inner: Range, alpha: float) -> Tensor:
    """Ego-frame points [..., 3] -> parameterized coordinates in [-1, 1]^3 (Eq. 3).

    |p| is the max-norm of p / p_inner, so the inner region is the box +-p_inner (not a ball)
    and maps linearly onto [-alpha, alpha]^3; the outside is contracted towards the unit box."""
    inner_t = torch.as_tensor(inner, dtype=points.dtype, device=points.device)
    q = points / inner_t
    norm = q.abs().amax(dim=-1, keepdim=True).clamp_min(1e-9)
    outer = (1.0 - (1.0 - alpha) / norm) * q / norm
    return torch.where(norm <= 1.0, alpha * q, outer)


def uncontract(coords: Tensor, inner: Range, alpha: float) -> Tensor:
    """Inverse of :func:`contract` (coordinates on the unit box's surface map to ~infinity)."""
    inner_t = torch.as_tensor(inner, dtype=coords.dtype, device=coords.device)
    norm = coords.abs().amax(dim=-1, keepdim=True)
    outer_norm = (1.0 - alpha) / (1.0 - norm).clamp_min(1e-6)
    q = torch.where(norm <= alpha, coords / alpha, coords / norm.clamp_min(1e-9) * outer_norm)
    return q * inner_t


def contract_depth(depth: Tensor, inner: float, alpha: float) -> Tensor:
    """Eq. 3 on the depth axis: metres -> [0, 1), linear up to ``inner`` metres."""
    depth = depth.clamp_min(0.0)
    return torch.where(depth <= inner, alpha * depth / inner, 1.0 - (1.0 - alpha) * inner / depth.clamp_min(1e-9))


def uncontract_depth(s: Tensor, inner: float, alpha: float) -> Tensor:
    """Inverse of :func:`contract_depth`."""
    return torch.where(s <= alpha, s * inner / alpha, (1.0 - alpha) * inner / (1.0 - s).clamp_min(1e-6))


def world_to_ego(points: Tensor, ego_to_world: Tensor) -> Tensor:
    """World points [..., 3] -> ego frame, with the ego pose [4, 4] of the input frame."""
    world_to_ego_m = torch.linalg.inv(ego_to_world.to(points.dtype))
    return points @ world_to_ego_m[:3, :3].T + world_to_ego_m[:3, 3]
