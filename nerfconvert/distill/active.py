"""PVD-AL's active learning (Sec. 3.2.4, Algorithm 1): pools of hard camera poses and hard rays.

Hard points (Eq. 11) need no pool and live in :mod:`nerfconvert.distill.losses`.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

import torch
from torch import Tensor

from nerfconvert.resume import OptionalExtraState


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

    def state(self) -> Dict[str, Tensor]:
        return {"sums": self.sums.clone(), "counts": self.counts.clone()}

    def load(self, state: Dict[str, Tensor]) -> None:
        self.sums, self.counts = state["sums"].double().clone(), state["counts"].double().clone()

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

    def state(self) -> Dict[str, Any]:
        return {"c2w": self.c2w.clone(), "errors": self.errors.clone(), "version": self.version}

    def load(self, state: Dict[str, Any]) -> None:
        keep = slice(-self.capacity, None) if self.capacity else slice(0, 0)
        self.c2w, self.errors = state["c2w"].float()[keep].clone(), state["errors"].float()[keep].clone()
        self.version = int(state["version"]) + 1  # changed: the viewer redraws

    def draw(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """[min(n, len)] poses drawn from the pool (with replacement when n > len)."""
        if len(self) == 0 or n <= 0:
            return torch.zeros(0, 3, 4)
        idx = torch.randint(0, len(self), (n,), generator=generator)
        return self.c2w[idx]


class HardRayPool(OptionalExtraState):
    """The pool of hard rays (TSR in Algorithm 1): ring buffer of the rays with the largest
    RGB gap, mixed into later batches. A submodule of the pipeline, so that checkpoints keep the
    pool (its extra state) and a resumed run mixes the same hard rays in."""

    KEYS = ("origins", "directions", "pixel_area", "camera_indices")

    def __init__(self, capacity: int, device: Union[torch.device, str, None] = None) -> None:
        super().__init__()
        self.device = device
        """Where restored rays go (the pipeline's device); None: where a checkpoint left them."""
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

    def get_extra_state(self) -> Dict[str, Any]:
        return {"size": self.size, "cursor": self.cursor, "rays": {k: v.detach().clone() for k, v in self.rays.items()}}

    def set_extra_state(self, state: Optional[Dict[str, Any]]) -> None:
        if not state or not state.get("rays"):
            return
        rays = {k: v.to(self.device) if self.device is not None else v for k, v in state["rays"].items()}
        if set(rays) != set(self.KEYS) or any(v.shape[0] != self.capacity for v in rays.values()):
            return  # a pool of another size (the option changed): start empty
        self.rays, self.size, self.cursor = rays, int(state["size"]), int(state["cursor"])

    def draw(self, n: int, generator: Optional[torch.Generator] = None) -> Optional[Dict[str, Tensor]]:
        if self.size == 0 or n <= 0:
            return None
        idx = torch.randint(0, self.size, (n,), generator=generator)
        return {key: value[idx.to(value.device)] for key, value in self.rays.items()}
