"""PVD-AL's active learning (Sec. 3.2.4, Algorithm 1): pools of hard camera poses and hard rays.

Hard points (Eq. 11) need no pool and live in :mod:`nerfconvert.distill.losses`.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor


class PoseErrorTracker:
    """Accumulates each pseudo camera's teacher/student RGB gap over an epoch.

    Every error arrives with the index of the pose its ray was drawn from, and is added to that
    pose's own slot, so the pairing holds however the rays were shuffled or mixed.
    """

    def __init__(self, num_poses: int) -> None:
        self.sums = torch.zeros(num_poses, dtype=torch.float64)
        self.counts = torch.zeros(num_poses, dtype=torch.float64)

    def add(self, pose_indices: Tensor, errors: Tensor) -> None:
        """``pose_indices`` [N] (negative: not a fresh ray of this epoch, ignored), ``errors`` [N]."""
        pose_indices = pose_indices.detach().reshape(-1).long().cpu()
        errors = errors.detach().reshape(-1).double().cpu()
        keep = (pose_indices >= 0) & (pose_indices < self.sums.shape[0])
        self.sums.index_add_(0, pose_indices[keep], errors[keep])
        self.counts.index_add_(0, pose_indices[keep], torch.ones_like(errors[keep]))

    def mean_errors(self) -> Tensor:
        """[num_poses] mean error per pose; -inf for poses that got no ray."""
        mean = self.sums / self.counts.clamp_min(1)
        return torch.where(self.counts > 0, mean, torch.full_like(mean, -float("inf")))

    def hardest(self, fraction: float) -> Tensor:
        """Indices of the ``fraction`` of poses with the largest mean gap (PVD-AL Eq. 9, f_cp)."""
        mean = self.mean_errors()
        seen = int((self.counts > 0).sum())
        k = min(seen, max(1, int(round(fraction * mean.shape[0]))))
        if k == 0:
            return torch.zeros(0, dtype=torch.long)
        return torch.topk(mean, k).indices


class HardPosePool:
    """The pool of hard camera poses (TCP in Algorithm 1), first in first out."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, capacity)
        self.c2w = torch.zeros(0, 3, 4)
        self.errors = torch.zeros(0)
        self.version = 0
        """Bumped at every change (the viewer redraws the frustums then)."""

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def add(self, c2w: Tensor, errors: Tensor) -> None:
        if self.capacity == 0 or c2w.shape[0] == 0:
            return
        self.c2w = torch.cat([self.c2w, c2w.detach().float().cpu()])[-self.capacity :]
        self.errors = torch.cat([self.errors, errors.detach().float().cpu()])[-self.capacity :]
        self.version += 1

    def draw(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """[min(n, len)] poses drawn from the pool (with replacement when n > len)."""
        if len(self) == 0 or n <= 0:
            return torch.zeros(0, 3, 4)
        idx = torch.randint(0, len(self), (n,), generator=generator)
        return self.c2w[idx]


class HardRayPool:
    """The pool of hard rays (TSR in Algorithm 1): ring buffer of the rays with the largest
    RGB gap, mixed into later batches."""

    KEYS = ("origins", "directions", "pixel_area", "camera_indices")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, capacity)
        self.rays: Dict[str, Tensor] = {}
        self.size = 0
        self.cursor = 0

    def __len__(self) -> int:
        return self.size

    def add(self, rays: Dict[str, Tensor], errors: Tensor, fraction: float) -> Tensor:
        """Keep the ``fraction`` of ``rays`` with the largest ``errors`` (f_sr, Eq. 10).
        Returns the indices kept."""
        n = errors.shape[0]
        k = min(n, max(1, int(round(fraction * n)))) if self.capacity > 0 and n > 0 else 0
        if k == 0:
            return torch.zeros(0, dtype=torch.long)
        top = torch.topk(errors.detach().reshape(-1), k).indices
        if not self.rays:
            self.rays = {key: torch.zeros((self.capacity, *rays[key].shape[1:]), dtype=rays[key].dtype, device=rays[key].device) for key in self.KEYS}
        slots = (self.cursor + torch.arange(k, device=top.device)) % self.capacity
        for key in self.KEYS:
            self.rays[key][slots.to(self.rays[key].device)] = rays[key][top].detach().to(self.rays[key].device)
        self.cursor = int((self.cursor + k) % self.capacity)
        self.size = min(self.capacity, self.size + k)
        return top

    def draw(self, n: int, generator: Optional[torch.Generator] = None) -> Optional[Dict[str, Tensor]]:
        if self.size == 0 or n <= 0:
            return None
        idx = torch.randint(0, self.size, (n,), generator=generator)
        return {key: value[idx.to(value.device)] for key, value in self.rays.items()}
