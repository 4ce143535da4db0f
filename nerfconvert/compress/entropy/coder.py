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


WEIGHT_AXIS = 1
"""The output-channel dimension of a ``ConvTranspose2d`` weight ([in, out, k, k]): one scale each."""
STORED_FLOAT_BITS = 16
"""``decoder_bits`` of a decoder stored as fp16 (no quantisation-aware training)."""


def quant_max(bits: int) -> int:
    """Largest code of symmetric ``bits``-bit quantisation: codes lie in [-(2^(b-1) - 1), 2^(b-1) - 1]."""
    return (1 << (bits - 1)) - 1


def weight_scales(weight: Tensor, bits: int) -> Tensor:
    """One fp32 scale per output channel (dim 1): max |w| / q_max (an all-zero channel gets a tiny one)."""
    dims = [d for d in range(weight.dim()) if d != WEIGHT_AXIS]
    return (weight.detach().abs().amax(dim=dims).float() / quant_max(bits)).clamp_min(1e-8)


def fake_quantize(weight: Tensor, scale: Tensor, bits: int) -> Tensor:
    """Symmetric per-output-channel fake quantisation, straight-through in the backward pass
    (torch's kernel): the value is exactly ``float(code) * scale``."""
    q = quant_max(bits)
    zero = torch.zeros(scale.shape, dtype=torch.int32, device=scale.device)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, WEIGHT_AXIS, -q, q)


def dequantize_weight(codes: Tensor, scale: Tensor) -> Tensor:
    """Stored codes and scales -> the weight, as the decoder computes it: ``codes.float() * scale`` in fp32."""
    shape = [1] * codes.dim()
    shape[WEIGHT_AXIS] = -1
    return codes.float() * scale.float().view(shape)


class PlaneDecoder(nn.Module):
    """D: two stride-2 transposed 3x3 convolutions with SELU between (Sec. 3.1, 4.1).

    ``bits`` <= 8: the weights are trained quantisation-aware (straight-through fake quantisation,
    symmetric, one fp32 scale per output channel) and stored as those codes and scales; every forward
    pass sees exactly the weights the file's reader computes. ``bits`` = 16 (and a decoded decoder):
    plain float weights."""

    def __init__(self, latent_channels: int, hidden_channels: int, plane_channels: int, bits: int = STORED_FLOAT_BITS) -> None:
        super().__init__()
        if not (2 <= bits <= 8 or bits == STORED_FLOAT_BITS):
            raise ValueError(f"decoder_bits is {bits}: 2 to 8 (int8 codes) or 16 (fp16)")
        self.bits = bits
        # output_padding=1 makes each layer exactly x2 (k=3, s=2, p=1 alone gives 2n-1)
        self.up1 = nn.ConvTranspose2d(latent_channels, hidden_channels, 3, stride=2, padding=1, output_padding=1)
        self.up2 = nn.ConvTranspose2d(hidden_channels, plane_channels, 3, stride=2, padding=1, output_padding=1)

    @property
    def quantized(self) -> bool:
        return self.bits <= 8

    def _weight(self, layer: nn.ConvTranspose2d) -> Tensor:
        if not self.quantized:
            return layer.weight
        return fake_quantize(layer.weight, weight_scales(layer.weight, self.bits), self.bits)

    def _up(self, layer: nn.ConvTranspose2d, x: Tensor) -> Tensor:
        # the same call for trained and decoded decoders: equal weights give bit-equal planes
        return F.conv_transpose2d(x, self._weight(layer), layer.bias, stride=2, padding=1, output_padding=1)

    def forward(self, z: Tensor, resolution: Tuple[int, int]) -> Tensor:
        out = self._up(self.up2, F.selu(self._up(self.up1, z)))
        return out[..., : resolution[0], : resolution[1]]

    @torch.no_grad()
    def quantized_weights(self) -> Dict[str, Tuple[Tensor, Tensor]]:
        """``{"up1.weight": (int8 codes, fp32 scales), ...}``: what the file stores; ``dequantize_weight``
        of them equals the weight every forward pass uses, bit for bit."""
        out = {}
        for name in ("up1", "up2"):
            layer = getattr(self, name)
            scale = weight_scales(layer.weight, self.bits)
            value = fake_quantize(layer.weight.detach(), scale, self.bits)
            shape = [1] * value.dim()
            shape[WEIGHT_AXIS] = -1
            codes = torch.round(value / scale.view(shape))
            if not torch.equal(dequantize_weight(codes, scale), value):
                raise RuntimeError("the decoder's quantised weights are not code x scale; this is a bug, please report it")
            out[name + ".weight"] = (codes.to(torch.int8), scale)
        return out


def importance_weights(importance: Tensor, eps: float = 0.01) -> Tensor:
    """W_i = normalize(log(I_i + eps)) to [0, 1] per plane (Eq. 5). ``importance``: [3, H, W]."""
    logs = torch.log(importance.float().clamp_min(0) + eps)
    flat = logs.flatten(1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    span = (hi - lo).clamp_min(1e-12)
    return (logs - lo[:, None, None]) / span[:, None, None]


def unimportant_blocks(importance: Tensor, latent_shape: Tuple[int, int]) -> Tensor:
    """[3, H, W] importance -> [3, h, w] bool: latent locations whose 4x4 plane block (the part of
    the plane the decoder's x4 upsampling maps them to, cropped at the edge) has zero importance."""
    n, height, width = importance.shape
    lh, lw = latent_shape
    padded = importance.float().abs().new_zeros(n, 4 * lh, 4 * lw)
    padded[:, :height, :width] = importance.float().abs()[:, : 4 * lh, : 4 * lw]
    return padded.view(n, lh, 4, lw, 4).sum(dim=(2, 4)) == 0


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

    def __init__(self, channels: int, mask_shape: Tuple[int, int, int], masked: bool = True, mask_init: float = 2.0,
                 initial_mask: Optional[Tensor] = None) -> None:
        from compressai.entropy_models import EntropyBottleneck

        super().__init__()
        self.masked = masked
        self.bottleneck = EntropyBottleneck(channels)
        n, h, w = mask_shape
        # log pi^0, log pi^1 up to a constant: start with (almost) every location coded, or where
        # ``initial_mask`` ([n, h, w] bool) says so, and (almost) surely not coded elsewhere
        logits = torch.zeros(n, 2, h, w)
        logits[:, 1] = mask_init
        if initial_mask is not None:
            logits[:, 1] = torch.where(initial_mask.cpu().view(n, h, w), abs(mask_init), -abs(mask_init))
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

    def forward(self, z: Tensor, tau: float, rate_fraction: float = 1.0) -> Tuple[Tensor, Tensor]:
        """Training: (decoder input Z_hat * M, estimated bits). The rate uses noisy latents
        (Balle et al. 2016); the decoder sees the rounded ones through a straight-through estimator.

        ``rate_fraction`` < 1: the likelihood is evaluated on that fraction of the (plane, row,
        column) locations only, drawn uniformly without replacement, and their bits are scaled by
        locations / drawn: an unbiased estimate of the full rate at a fraction of the cost."""
        n, c, h, w = z.shape
        locations = n * h * w
        drawn = min(locations, max(1, round(rate_fraction * locations)))
        z_hat = z + (self.quantize(z) - z).detach()
        if drawn >= locations:
            _, likelihood = self.bottleneck(z, training=True)
            mask = self.sample_mask(tau)
            bits = (-torch.log2(likelihood)).sum(dim=1, keepdim=True)  # per location, summed over channels
            return z_hat * mask, (bits * mask).sum()
        index = torch.randperm(locations, device=z.device)[:drawn]
        columns = z.permute(1, 0, 2, 3).reshape(c, locations)[:, index]  # [C, drawn] in (plane, row, column) order
        _, likelihood = self.bottleneck(columns[None], training=True)  # [1, C, drawn]
        mask = self.sample_mask(tau)
        bits = (-torch.log2(likelihood)).sum(dim=1)[0]  # [drawn]
        coded = mask.reshape(locations)[index]
        return z_hat * mask, (bits * coded).sum() * (locations / drawn)

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
