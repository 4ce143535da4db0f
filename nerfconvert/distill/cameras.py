"""Pseudo cameras for data-free distillation: random poses drawn from the distribution of the
teacher's training cameras (PVD supplement, "Pseudo Data for Distillation").

Only camera parameters are used; no image of the teacher's data is ever read here.

* object-centric captures (optical axes converge): an orbit around the look-at centre, with
  the training cameras' range of radius and elevation;
* forward-facing captures (optical axes roughly parallel): camera centres uniform in the box
  of the training centres (grown by ``box_margin``), orientation of a random training camera
  perturbed by up to ``rotation_jitter_deg``.

Intrinsics (size, focal, principal point, distortion, camera type) are those of a random
training camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import Tensor

from nerfstudio.cameras.cameras import Cameras

Kind = Literal["orbit", "forward"]


def _normalize(v: Tensor) -> Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-9)


def look_at(positions: Tensor, center: Tensor, up: Tensor) -> Tensor:
    """[N, 3] camera centres looking at ``center`` -> [N, 3, 4] nerfstudio c2w (camera looks down -z)."""
    forward = _normalize(center[None] - positions)
    right = torch.cross(forward, up.expand_as(forward), dim=-1)
    # a camera straight above/below the centre: any right vector perpendicular to forward
    degenerate = right.norm(dim=-1) < 1e-6
    if degenerate.any():
        alt = torch.tensor([1.0, 0.0, 0.0], dtype=positions.dtype, device=positions.device)
        right[degenerate] = torch.cross(forward[degenerate], alt.expand_as(forward[degenerate]), dim=-1)
    right = _normalize(right)
    cam_up = torch.cross(right, forward, dim=-1)
    return torch.stack([right, cam_up, -forward, positions], dim=-1)


def random_rotations(n: int, max_angle_rad: float, generator: Optional[torch.Generator] = None) -> Tensor:
    """[n, 3, 3] rotations about random axes by angles uniform in [0, max_angle]."""
    axis = _normalize(torch.randn(n, 3, generator=generator))
    angle = torch.rand(n, generator=generator) * max_angle_rad
    k = torch.zeros(n, 3, 3)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(1, 2)
    s, c = angle.sin()[:, None, None], angle.cos()[:, None, None]
    return torch.eye(3)[None] + s * k + (1 - c) * (k @ k)  # Rodrigues


@torch.no_grad()
def optimised_cameras(model, cameras: Cameras) -> Cameras:
    """The training cameras at the poses the model's camera optimizer moved them to.

    A run trained with pose refinement (nerfacto's default) saw its scene from the corrected
    poses, so pseudo cameras are fitted to those. The correction is applied as nerfstudio's
    ``CameraOptimizer.apply_to_camera`` does: rotation on the left of the camera's rotation,
    translation added to its centre."""
    optimizer = getattr(model, "camera_optimizer", None)
    if optimizer is None or getattr(optimizer.config, "mode", "off") == "off":
        return cameras
    c2w = cameras.camera_to_worlds.reshape(-1, 3, 4)
    n = min(c2w.shape[0], int(optimizer.num_cameras))
    adj = optimizer(torch.arange(n, device=optimizer.pose_adjustment.device)).to(c2w)
    corrected = c2w.clone()
    corrected[:n, :, :3] = torch.bmm(adj[:, :3, :3], c2w[:n, :, :3])
    corrected[:n, :, 3] = c2w[:n, :, 3] + adj[:, :3, 3]
    out = Cameras(
        camera_to_worlds=corrected.reshape(cameras.camera_to_worlds.shape),
        fx=cameras.fx,
        fy=cameras.fy,
        cx=cameras.cx,
        cy=cameras.cy,
        width=cameras.width,
        height=cameras.height,
        distortion_params=cameras.distortion_params,
        camera_type=cameras.camera_type,
        times=cameras.times,
        metadata=cameras.metadata,
    )
    return out


@dataclass
class PseudoCameraDistribution:
    """Where pseudo cameras are drawn from, fitted to a set of training cameras (CPU tensors)."""

    kind: Kind
    center: Tensor
    """[3] orbit: the point the optical axes pass closest to."""
    up: Tensor
    """[3] the capture's up direction (mean camera up)."""
    radius_range: tuple
    elevation_range: tuple
    """Radians above the plane perpendicular to ``up``."""
    box_min: Tensor
    box_max: Tensor
    """[3] forward-facing: box of camera centres, margin included."""
    rotations: Tensor
    """[N, 3, 3] the training cameras' orientations (forward-facing)."""
    templates: Cameras
    """The training cameras, whose intrinsics the pseudo cameras copy."""
    rotation_jitter_deg: float = 5.0

    @classmethod
    def fit(
        cls,
        cameras: Cameras,
        forward_threshold: float = 0.9,
        box_margin: float = 0.1,
        rotation_jitter_deg: float = 5.0,
        kind: Optional[Kind] = None,
    ) -> "PseudoCameraDistribution":
        """``kind`` None: orbit unless the mean viewing direction has length > ``forward_threshold``."""
        c2w = cameras.camera_to_worlds.detach().float().cpu().reshape(-1, 3, 4)
        origins = c2w[:, :, 3]
        forwards = _normalize(-c2w[:, :, 2])
        up = _normalize(c2w[:, :, 1].mean(dim=0))
        if kind is None:
            kind = "forward" if forwards.mean(dim=0).norm() > forward_threshold else "orbit"

        # least-squares point closest to all optical axes: sum_i (I - d d^T) (p - o_i) = 0
        proj = torch.eye(3)[None] - forwards[:, :, None] * forwards[:, None, :]
        a, b = proj.sum(0), (proj @ origins[:, :, None]).sum(0)[:, 0]
        center = torch.linalg.lstsq(a, b).solution if kind == "orbit" else origins.mean(0)

        offsets = origins - center
        radius = offsets.norm(dim=-1)
        elevation = torch.asin((_normalize(offsets) * up).sum(-1).clamp(-1, 1))
        lo, hi = origins.min(0).values, origins.max(0).values
        margin = (hi - lo) * box_margin
        return cls(
            kind=kind,
            center=center,
            up=up,
            radius_range=(float(radius.min()), float(radius.max())),
            elevation_range=(float(elevation.min()), float(elevation.max())),
            box_min=lo - margin,
            box_max=hi + margin,
            rotations=c2w[:, :, :3],
            templates=cameras.to("cpu"),
            rotation_jitter_deg=rotation_jitter_deg,
        )

    # ---- poses ------------------------------------------------------------------------------
    def _orbit_positions(self, radius: Tensor, elevation: Tensor, azimuth: Tensor) -> Tensor:
        e1 = _normalize(torch.cross(self.up, torch.tensor([1.0, 0.0, 0.0]), dim=-1))
        if e1.norm() < 0.5 or not torch.isfinite(e1).all():
            e1 = _normalize(torch.cross(self.up, torch.tensor([0.0, 1.0, 0.0]), dim=-1))
        e2 = torch.cross(self.up, e1, dim=-1)
        horizontal = azimuth.cos()[:, None] * e1 + azimuth.sin()[:, None] * e2
        direction = elevation.cos()[:, None] * horizontal + elevation.sin()[:, None] * self.up
        return self.center + radius[:, None] * direction

    def sample_poses(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """[n, 3, 4] fresh camera-to-world matrices."""
        u = torch.rand(n, 3, generator=generator)
        if self.kind == "orbit":
            r0, r1 = self.radius_range
            e0, e1 = self.elevation_range
            positions = self._orbit_positions(r0 + u[:, 0] * (r1 - r0), e0 + u[:, 1] * (e1 - e0), u[:, 2] * 2 * math.pi)
            return look_at(positions, self.center, self.up)
        positions = self.box_min + u * (self.box_max - self.box_min)
        pick = torch.randint(0, self.rotations.shape[0], (n,), generator=generator)
        jitter = random_rotations(n, math.radians(self.rotation_jitter_deg), generator)
        return torch.cat([jitter @ self.rotations[pick], positions[:, :, None]], dim=-1)

    def jitter_poses(self, c2w: Tensor, scale: float = 1.0, generator: Optional[torch.Generator] = None) -> Tensor:
        """Nearby poses of hard poses (PVD-AL: hard poses are re-drawn with jitter)."""
        n = c2w.shape[0]
        if self.kind == "orbit":
            # rotate about the orbit centre (keeps the object in view), and jitter the radius
            rot = random_rotations(n, math.radians(self.rotation_jitter_deg * scale), generator)
            offsets = (rot @ (c2w[:, :, 3] - self.center)[:, :, None])[:, :, 0]
            r0, r1 = self.radius_range
            factor = 1 + (torch.rand(n, 1, generator=generator) - 0.5) * 0.1 * scale
            positions = self.center + offsets * factor
            radius = (positions - self.center).norm(dim=-1, keepdim=True).clamp(r0, r1) if r1 > r0 else None
            if radius is not None:
                positions = self.center + _normalize(positions - self.center) * radius
            return look_at(positions, self.center, self.up)
        step = (self.box_max - self.box_min) * 0.05 * scale
        positions = c2w[:, :, 3] + (torch.rand(n, 3, generator=generator) * 2 - 1) * step
        rot = random_rotations(n, math.radians(self.rotation_jitter_deg * scale), generator)
        return torch.cat([rot @ c2w[:, :, :3], positions[:, :, None]], dim=-1)

    # ---- cameras ----------------------------------------------------------------------------
    def make_cameras(self, c2w: Tensor, generator: Optional[torch.Generator] = None) -> Cameras:
        """Cameras at the given poses with the intrinsics of random training cameras."""
        t = self.templates
        pick = torch.randint(0, t.shape[0], (c2w.shape[0],), generator=generator)
        return Cameras(
            camera_to_worlds=c2w.float(),
            fx=t.fx[pick],
            fy=t.fy[pick],
            cx=t.cx[pick],
            cy=t.cy[pick],
            width=t.width[pick],
            height=t.height[pick],
            distortion_params=t.distortion_params[pick] if t.distortion_params is not None else None,
            camera_type=t.camera_type[pick],
        )

    def sample_cameras(self, n: int, generator: Optional[torch.Generator] = None) -> Cameras:
        return self.make_cameras(self.sample_poses(n, generator), generator)
