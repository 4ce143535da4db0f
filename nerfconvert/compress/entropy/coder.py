"""The learned parts of ECTensoRF (Pham & Mandt, 2024): the plane decoder, the masked
spike-and-slab entropy model, and the importance weight maps.

Latents live at 1/4 of the plane resolution; one decoder and one entropy model serve the three
planes (each plane = density and appearance planes of TensoRF concatenated channel-wise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PRESETS: Dict[str, Tuple[int, int]] = {
    "low": (384, 192),  # ECTensoRF-L: latent channels, decoder hidden channels
    "high": (192, 96),  # ECTensoRF-H
}


def latent_size(resolution: int) -> int:
    """Latent side for a plane side: the decoder upsamples x4 (and the output is cropped)."""
    return max(1, math.ceil(resolution / 4))


class PlaneDecoder(nn.Module):
    """D: two stride-2 transposed 3x3 convolutions with SELU between (Sec. 3.1, 4.1)."""

    def __init__(self, latent_channels: int, hidden_channels: int, plane_channels: int) -> None:
        super().__init__()
        # output_padding=1 makes each layer exactly x2 (k=3, s=2, p=1 alone gives 2n-1)
        self.up1 = nn.ConvTranspose2d(latent_channels, hidden_channels, 3, stride=2, padding=1, output_padding=1)
        self.up2 = nn.ConvTranspose2d(hidden_channels, plane_channels, 3, stride=2, padding=1, output_padding=1)

    def forward(self, z: Tensor, resolution: Tuple[int, int]) -> Tensor:
        out = self.up2(F.selu(self.up1(z)))
        return out[..., : resolution[0], : resolution[1]]


def importance_weights(importance: Tensor, eps: float = 0.01) -> Tensor:
    """W_i = normalize(log(I_i + eps)) to [0, 1] per plane (Eq. 5). ``importance``: [3, H, W]."""
    logs = torch.log(importance.float().clamp_min(0) + eps)
    flat = logs.flatten(1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    span = (hi - lo).clamp_min(1e-12)
    return (logs - lo[:, None, None]) / span[:, None, None]


@dataclass
class LatentState:
    """The quantised, masked latents: what the bitstream carries."""

    values: Tensor
    """[3, C, h, w] dequantised latents (zero where masked out)."""
    mask: Tensor
    """[3, 1, h, w] bool: locations coded by the slab (M = 1)."""
    bits: Tensor
    """Estimated bits of the coded locations: sum of -log2 p(z) over M = 1 (Eq. 6)."""


class MaskedEntropyModel(nn.Module):
    """P: a spike-and-slab factorised prior (Eq. 6). The slab is CompressAI's
    ``EntropyBottleneck`` (one non-parametric density per channel); the spike is a Dirac at zero,
    selected per spatial location by a binary mask shared across channels and learned with the
    straight-through Gumbel-softmax (Eq. 8). ``masked=False`` is the plain factorised prior."""

    def __init__(self, channels: int, mask_shape: Tuple[int, int, int], masked: bool = True, mask_init: float = 2.0) -> None:
        from compressai.entropy_models import EntropyBottleneck

        super().__init__()
        self.masked = masked
        self.bottleneck = EntropyBottleneck(channels)
        n, h, w = mask_shape
        # log pi^0, log pi^1 up to a constant: start with (almost) every location coded
        logits = torch.zeros(n, 2, h, w)
        logits[:, 1] = mask_init
        self.mask_logits = nn.Parameter(logits, requires_grad=masked)

    def medians(self) -> Tensor:
        return self.bottleneck._get_medians().detach().view(1, -1, 1, 1)

    def quantize(self, z: Tensor) -> Tensor:
        """Round to the bottleneck's integer grid (offset by the per-channel medians)."""
        return self.bottleneck.quantize(z, "dequantize", self.medians())

    def hard_mask(self) -> Tensor:
        if not self.masked:
            return torch.ones_like(self.mask_logits[:, :1], dtype=torch.bool)
        return self.mask_logits[:, 1:2] > self.mask_logits[:, 0:1]

    def sample_mask(self, tau: float) -> Tensor:
        """M ~ straight-through Gumbel-softmax (Eq. 8): hard 0/1 forward, soft gradients at temperature tau."""
        if not self.masked:
            return torch.ones_like(self.mask_logits[:, :1])
        return F.gumbel_softmax(self.mask_logits, tau=tau, hard=True, dim=1)[:, 1:2]

    def forward(self, z: Tensor, tau: float) -> Tuple[Tensor, Tensor]:
        """Training: (decoder input Z_hat * M, estimated bits). The rate uses noisy latents
        (Balle et al. 2016); the decoder sees the rounded ones through a straight-through estimator."""
        _, likelihood = self.bottleneck(z, training=True)
        mask = self.sample_mask(tau)
        bits = (-torch.log2(likelihood)).sum(dim=1, keepdim=True)  # per location, summed over channels
        z_hat = z + (self.quantize(z) - z).detach()
        return z_hat * mask, (bits * mask).sum()

    @torch.no_grad()
    def quantized(self, z: Tensor) -> LatentState:
        """The deterministic state that is coded: rounded latents, argmax mask, estimated bits."""
        values, likelihood = self.bottleneck(z, training=False)
        mask = self.hard_mask()
        bits = ((-torch.log2(likelihood)).sum(dim=1, keepdim=True) * mask).sum()
        return LatentState(values=values * mask, mask=mask, bits=bits)

    def aux_loss(self) -> Tensor:
        """Fits the bottleneck's quantiles (its CDF range); touches only ``quantiles``."""
        return self.bottleneck.loss()


def gumbel_temperature(step: int, total_steps: int, start: float = 10.0, end: float = 0.1) -> float:
    """tau annealed exponentially from ``start`` to ``end`` over training (Sec. 3.3)."""
    t = min(max(step / max(total_steps - 1, 1), 0.0), 1.0)
    return float(start * (end / start) ** t)


def split_planes(planes: Tensor, density_channels: int) -> Tuple[Tensor, Tensor]:
    """[3, C_sigma + C_app, R, R] -> (density plane_coef, appearance plane_coef)."""
    return planes[:, :density_channels], planes[:, density_channels:]


def join_planes(density: Tensor, color: Tensor) -> Tensor:
    """P_i: the density and appearance planes concatenated channel-wise (Sec. 3, Notation)."""
    return torch.cat([density, color], dim=1)


def mask_fraction(mask: Optional[Tensor]) -> float:
    return 1.0 if mask is None else float(mask.float().mean())
