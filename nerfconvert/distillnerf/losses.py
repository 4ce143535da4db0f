"""The loss terms of DistillNeRF (Sec. 3.2): L = L_rgb + L_depth + L_density + L_depth'.

Depth terms are L1 in parameterized depth (Eq. 3 on the depth axis), so a metre near the car
weighs more than a metre at 500 m, and sky targets (at the far plane) stay finite."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor



def block_mean_depth(depth: Tensor, valid: Tensor, size: Tuple[int, int], min_fraction: float = 0.0
                     ) -> Tuple[Tensor, Tensor]:
    """Full-resolution depth [N, H, W] with a validity mask -> the mean of the valid pixels in each
    cell of a ``size`` grid, and the cells' validity: more than ``min_fraction`` of their pixels
    valid (sparse LiDAR stays sparse, never zero-filled)."""
    v = valid.to(depth.dtype)[:, None]
    sums = F.adaptive_avg_pool2d(depth[:, None] * v, size)
    fraction = F.adaptive_avg_pool2d(v, size)
    return (sums / fraction.clamp_min(1e-9))[:, 0], fraction[:, 0] > min_fraction


def depth_l1(pred_s: Tensor, target_s: Tensor, valid: Tensor) -> Tensor:
    """L1 in parameterized depth on the valid cells."""
    if not bool(valid.any()):
        return pred_s.sum() * 0.0
    return (pred_s - target_s).abs()[valid].mean()


def ray_entropy(weights: Tensor, eps: float = 1e-7) -> Tensor:
    """L_density: entropy of each ray's normalised weights, pushing mass onto one surface."""
    w = weights[..., 0]
    p = w / (w.sum(dim=-1, keepdim=True) + eps)
    return -(p * torch.log(p + eps)).sum(dim=-1).mean()


def depth_target(batch_depth: Optional[Tensor], sky: Optional[Tensor], far: float, sky_far: bool
                 ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Depth map [N, H, W] (0 = no value) and sky mask -> (target, valid). Sky pixels, when a mask is
    given and ``sky_far``, are targets at the far plane."""
    if batch_depth is None:
        return None, None
    target = batch_depth.clone()
    valid = target > 0
    if sky is not None:
        sky = sky.to(torch.bool)
        valid = valid & ~sky
        if sky_far:
            target = torch.where(sky, torch.full_like(target, far), target)
            valid = valid | sky
    return target, valid
