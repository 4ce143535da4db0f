"""Single-view lifting (Sec. 3.1, Fig. 1 left): per camera, a two-stage depth distribution and
a frustum of features scaled by occupancy, as 3D points in the world frame."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfstudio.cameras.cameras import Cameras

from nerfconvert.distillnerf.param_space import contract_depth, uncontract_depth


def occupancy_weights(density: Tensor, delta: float | Tensor = 1.0) -> Tuple[Tensor, Tensor]:
    """Eq. 1 along dim 1: O_d = exp(-sum_{j<d} delta_j sigma_j) (1 - exp(-delta_d sigma_d)).

    Returns (O [N, D, h, w], leftover mass 1 - sum_d O_d: what lies beyond the last entry)."""
    tau = density * delta
    before = torch.cumsum(tau, dim=1) - tau
    weights = torch.exp(-before) * (1.0 - torch.exp(-tau))
    return weights, torch.exp(-tau.sum(dim=1))


def pixel_rays(cameras: Cameras, height: int, width: int, shift: Tuple[int, int] = (0, 0)) -> Tuple[Tensor, Tensor, Tensor]:
    """Rays through the centres of a height x width grid laid over each camera's image, the grid
    moved by ``shift`` (rows, columns) pixels.

    Returns origins, unit directions [N, h, w, 3] and directions_norm [N, h, w, 1] (ray length
    per unit of z-depth), from nerfstudio's camera model."""
    device = cameras.device
    full_h, full_w = int(cameras.height.view(-1)[0]), int(cameras.width.view(-1)[0])
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * (full_h / height) + float(shift[0])
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * (full_w / width) + float(shift[1])
    # nerfstudio adds no offset to explicit coords: these are the cell centres in pixel units
    coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)
    origins, directions, norms = [], [], []
    for i in range(cameras.shape[0]):
        rays = cameras.generate_rays(camera_indices=i, coords=coords, keep_shape=True)
        origins.append(rays.origins)
        directions.append(rays.directions)
        norms.append(rays.metadata["directions_norm"])
    return torch.stack(origins), torch.stack(directions), torch.stack(norms)


@dataclass
class Frustum:
    """What lifting hands to fusion, plus the depth maps it predicted (for supervision)."""

    points: Tensor
    """[P, 3] world positions of the frustum entries (N cameras x D' candidates x h x w)."""
    features: Tensor
    """[P, C + 1]: [O' phi, sigma'] per entry."""
    raw_depth: Tensor
    """[N, h, w] z-depth of the coarse stage (Eq. 2), metres."""
    fine_depth: Tensor
    """[N, h, w] z-depth expected under the fine candidates' occupancy O', metres."""
    raw_depth_s: Tensor
    fine_depth_s: Tensor
    """The same two maps in parameterized depth (Eq. 3), where the depth losses are taken."""


class DepthLifter(nn.Module):
    """Coarse stage: densities over D bins uniform in parameterized depth -> occupancy (Eq. 1) ->
    raw depth (Eq. 2). Fine stage: D' candidates around the raw depth, densities from the depth
    features and an embedding of each candidate, occupancy again by Eq. 1."""

    def __init__(self, depth_channels: int, num_bins: int, num_candidates: int, candidate_halfwidth: float,
                 depth_range: Tuple[float, float], depth_inner: float, alpha: float, embed_freqs: int = 4) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.num_candidates = num_candidates
        self.depth_inner = depth_inner
        self.alpha = alpha
        self.embed_freqs = embed_freqs
        near, far = depth_range
        s_near = float(contract_depth(torch.tensor(near), depth_inner, alpha))
        s_far = float(contract_depth(torch.tensor(far), depth_inner, alpha))
        self.s_near, self.s_far = s_near, s_far
        step = (s_far - s_near) / num_bins
        self.register_buffer("bin_s", s_near + step * (torch.arange(num_bins) + 0.5), persistent=False)
        # candidates span +-halfwidth coarse bins around the raw depth
        self.register_buffer(
            "candidate_offsets", torch.linspace(-1.0, 1.0, num_candidates) * candidate_halfwidth * step, persistent=False
        )
        self.coarse_head = nn.Conv2d(depth_channels, num_bins, 1)
        embed_dim = 2 + 4 * embed_freqs
        self.fine_head = nn.Sequential(
            nn.Conv2d(depth_channels + embed_dim, depth_channels, 1), nn.ReLU(inplace=True), nn.Conv2d(depth_channels, 1, 1)
        )

    def embed(self, s: Tensor, offset: Tensor) -> Tensor:
        """Candidate embedding [N, D', E, h, w]: its parameterized depth and offset, with sinusoids."""
        base = torch.stack([s, offset], dim=2)
        freqs = (2.0 ** torch.arange(self.embed_freqs, device=s.device, dtype=s.dtype)) * math.pi
        angles = base[:, :, :, None] * freqs.view(1, 1, 1, -1, 1, 1)
        angles = angles.flatten(2, 3)
        return torch.cat([base, torch.sin(angles), torch.cos(angles)], dim=2)

    def forward(self, depth_features: Tensor, image_features: Tensor, origins: Tensor, directions: Tensor,
                directions_norm: Tensor) -> Frustum:
        n, _, h, w = depth_features.shape
        # coarse stage: density per bin (one bin = unit length, so sigma is "per bin")
        sigma = F.softplus(self.coarse_head(depth_features))  # [N, D, h, w]
        occupancy, beyond = occupancy_weights(sigma)  # Eq. 1
        # Eq. 2, taken in parameterized depth so that far bins do not dominate; mass past the
        # last bin (sky) sits at the far end
        raw_s = (occupancy * self.bin_s.view(1, -1, 1, 1)).sum(1) + beyond * self.s_far

        # fine stage: D' candidates around the raw depth. Their positions are discrete (voxelized),
        # so no gradient flows through them; the depth losses train the raw depth directly.
        cand_s = (raw_s.detach()[:, None] + self.candidate_offsets.view(1, -1, 1, 1)).clamp(self.s_near, self.s_far)
        emb = self.embed(cand_s, self.candidate_offsets.view(1, -1, 1, 1).expand_as(cand_s))  # [N, D', E, h, w]
        d = self.num_candidates
        head_in = torch.cat([depth_features[:, None].expand(-1, d, -1, -1, -1), emb], dim=2).flatten(0, 1)
        sigma_fine = F.softplus(self.fine_head(head_in)).view(n, d, h, w)
        occ_fine, beyond_fine = occupancy_weights(sigma_fine)  # Eq. 1 on the candidates
        fine_s = (occ_fine * cand_s).sum(1) + beyond_fine * cand_s[:, -1]

        cand_z = uncontract_depth(cand_s, self.depth_inner, self.alpha)  # [N, D', h, w] z-depth, metres
        dist = cand_z[..., None] * directions_norm[:, None]  # along the ray
        points = origins[:, None] + directions[:, None] * dist  # [N, D', h, w, 3]
        # [O' phi, sigma']: image features scaled by occupancy, concatenated with density
        feats = torch.cat([occ_fine[:, :, None] * image_features[:, None], sigma_fine[:, :, None]], dim=2)
        feats = feats.permute(0, 1, 3, 4, 2)  # [N, D', h, w, C + 1]
        return Frustum(
            points=points.reshape(-1, 3),
            features=feats.reshape(-1, feats.shape[-1]),
            raw_depth=uncontract_depth(raw_s, self.depth_inner, self.alpha),
            fine_depth=uncontract_depth(fine_s, self.depth_inner, self.alpha),
            raw_depth_s=raw_s,
            fine_depth_s=fine_s,
        )
