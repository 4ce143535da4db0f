"""Weight quantisation and bit packing for compressed scenes (VQRF, Sec. 6).

Everything here is exact in one direction: ``dequantize(quantize(x))`` is what the decoder
computes, so a model whose tensors are replaced by their dequantised values renders exactly
like the model decoded from the file.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch
from torch import Tensor


def index_bits(num_codes: int) -> int:
    """Bits per index for a codebook of ``num_codes`` entries: ceil(log2 K), at least 1."""
    return max(1, math.ceil(math.log2(max(num_codes, 2))))


def pack_indices(indices: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers < 2**bits at ``bits`` bits each (little-endian bit order)."""
    indices = np.asarray(indices, dtype=np.uint64).reshape(-1)
    if indices.size and int(indices.max()) >= (1 << bits):
        raise ValueError(f"index {int(indices.max())} does not fit in {bits} bits")
    shifts = np.arange(bits, dtype=np.uint64)
    bit_matrix = ((indices[:, None] >> shifts[None, :]) & np.uint64(1)).astype(np.uint8)  # [N, bits]
    return np.packbits(bit_matrix.reshape(-1), bitorder="little").tobytes()


def unpack_indices(data: bytes, bits: int, count: int) -> np.ndarray:
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count * bits, bitorder="little")
    weights = (np.uint64(1) << np.arange(bits, dtype=np.uint64))
    return (flat.reshape(count, bits).astype(np.uint64) * weights[None, :]).sum(axis=1).astype(np.int64)


def pack_mask(mask: Tensor) -> np.ndarray:
    return np.packbits(mask.detach().cpu().numpy().astype(bool).reshape(-1))


def unpack_mask(packed: np.ndarray, count: int) -> Tensor:
    return torch.from_numpy(np.unpackbits(np.asarray(packed, dtype=np.uint8), count=count).astype(bool))


def quantize_uint8(values: Tensor, low_quantile: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    """Uniform 8-bit quantisation per channel of [N, C] ``values``.

    Returns ``(codes [N, C] uint8, range [2, C] float32 = (offset, step))``. ``low_quantile`` > 0
    clips the lowest values (used for log-densities, whose far tail is invisible anyway).
    """
    x = values.detach().float().cpu()
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[0] == 0:
        return np.zeros(x.shape, np.uint8), np.zeros((2, x.shape[1]), np.float32)
    hi = x.max(dim=0).values
    if low_quantile > 0:
        lo = torch.quantile(x[torch.randperm(x.shape[0])[: 1 << 20]], low_quantile, dim=0) if x.shape[0] > 1 else x.min(0).values
        lo = torch.minimum(lo, hi)
    else:
        lo = x.min(dim=0).values
    step = ((hi - lo) / 255.0).clamp_min(1e-12)
    codes = torch.round((x - lo) / step).clamp_(0, 255).to(torch.uint8)
    rng = torch.stack([lo, step]).numpy().astype(np.float32)
    return codes.numpy(), rng


def dequantize_uint8(codes: np.ndarray, rng: np.ndarray) -> Tensor:
    rng_t = torch.from_numpy(np.array(rng, dtype=np.float32))
    return torch.from_numpy(np.array(codes, dtype=np.uint8)).float() * rng_t[1] + rng_t[0]
