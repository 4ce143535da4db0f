"""Cumulative-importance quantiles (VQRF Eq. 5, 6, 10) and the importance-weighted codebook
with EMA updates and code expiry (Eq. 8, 9)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor


def cumulative_mass_masks(importance: Tensor, prune_quantile: float, keep_quantile: float) -> Tuple[Tensor, Tensor]:
    """Split voxels by their share of the total importance.

    ``alive``: all but the least important voxels that together hold ``prune_quantile`` of
    the mass (theta_p = F^-1(beta_p), Eq. 5-6). Voxels of zero importance are always pruned.
    ``kept``: the most important voxels that together hold ``keep_quantile`` of the mass; they
    skip vector quantisation (theta_k, Eq. 10; larger beta_k keeps more, as in Table 4).
    """
    imp = importance.detach().float().reshape(-1)
    total = imp.sum()
    n = imp.numel()
    if n == 0 or float(total) <= 0:
        empty = torch.zeros(n, dtype=torch.bool, device=imp.device)
        return empty, empty.clone()
    order = torch.argsort(imp)  # ascending
    cdf = torch.cumsum(imp[order], 0) / total  # F evaluated at each voxel's own score, Eq. 5
    alive_sorted = (cdf > prune_quantile) & (imp[order] > 0)
    # the top voxels holding keep_quantile of the mass: mass strictly above them < keep_quantile
    mass_above = 1.0 - cdf
    kept_sorted = alive_sorted & (mass_above < keep_quantile)
    alive = torch.empty_like(alive_sorted)
    kept = torch.empty_like(kept_sorted)
    alive[order] = alive_sorted
    kept[order] = kept_sorted
    return alive, kept


@torch.no_grad()
def nearest_code(features: Tensor, codebook: Tensor, chunk: int = 8192) -> Tensor:
    """Index of the nearest code (Euclidean) for each row of ``features``."""
    out = torch.empty(features.shape[0], dtype=torch.long, device=features.device)
    code_sq = (codebook * codebook).sum(-1)
    for start in range(0, features.shape[0], chunk):
        f = features[start : start + chunk]
        # ||f - b||^2 = ||f||^2 - 2 f.b + ||b||^2; ||f||^2 does not change the argmin
        dist = code_sq[None, :] - 2.0 * f @ codebook.t()
        out[start : start + chunk] = dist.argmin(dim=1)
    return out


@dataclass
class CodebookFit:
    codebook: Tensor
    """[K, C] code vectors b_k."""
    assignment: Tensor
    """[M] code index of each input voxel (the fixed voxel -> code mapping of the joint fine-tuning)."""


@torch.no_grad()
def fit_codebook(
    features: Tensor,
    importance: Tensor,
    num_codes: int = 4096,
    iterations: int = 100,
    batch_size: int = 10000,
    decay: float = 0.8,
    num_expire: int = 10,
    generator: Optional[torch.Generator] = None,
) -> CodebookFit:
    """Approximate the importance-weighted k-means of Eq. 8 by mini-batch EMA updates (Eq. 9).

    Each iteration assigns a random batch of voxels to their nearest codes, moves every code
    towards the importance-weighted mean of its voxels with decay lambda_d, and re-seeds the
    ``num_expire`` codes of lowest capacity s_k (EMA of the importance assigned to them) with
    the most important voxels of the batch.
    """
    features = features.detach().float()
    importance = importance.detach().float().clamp_min(0)
    m, c = features.shape
    if m == 0:
        return CodebookFit(torch.zeros(1, c), torch.zeros(0, dtype=torch.long))
    if m <= num_codes:  # one code per voxel is exact
        return CodebookFit(features.clone(), torch.arange(m))
    g = generator or torch.Generator().manual_seed(0)

    # initialise from voxels drawn in proportion to their importance (distinct, so no dead twins)
    probs = importance + 1e-12 * importance.max().clamp_min(1e-30)
    init = torch.multinomial(probs, num_codes, replacement=False, generator=g)
    codebook = features[init].clone()
    mean_w = float(importance.mean()) * batch_size / num_codes
    ema_weight = torch.full((num_codes,), max(mean_w, 1e-12))
    ema_sum = codebook * ema_weight[:, None]

    for _ in range(iterations):
        idx = torch.randint(0, m, (min(batch_size, m),), generator=g)
        u, w = features[idx], importance[idx]
        assign = nearest_code(u, codebook)
        weight = torch.zeros(num_codes).index_add_(0, assign, w)
        weighted_sum = torch.zeros(num_codes, c).index_add_(0, assign, u * w[:, None])
        ema_weight.mul_(decay).add_(weight, alpha=1 - decay)  # capacity s_k
        ema_sum.mul_(decay).add_(weighted_sum, alpha=1 - decay)
        live = ema_weight > 1e-20
        codebook[live] = ema_sum[live] / ema_weight[live, None]  # Eq. 9, normalised
        if num_expire > 0:
            j = min(num_expire, len(idx), max(num_codes // 8, 1))  # never churn most of a small codebook
            dead = torch.argsort(ema_weight)[:j]
            seeds = u[torch.argsort(w, descending=True)[:j]]
            codebook[dead] = seeds
            ema_weight[dead] = ema_weight.mean()
            ema_sum[dead] = seeds * ema_weight[dead, None]
    return CodebookFit(codebook, nearest_code(features, codebook))


@torch.no_grad()
def weighted_code_means(features: Tensor, weights: Tensor, assignment: Tensor, codebook: Tensor) -> Tensor:
    """Importance-weighted mean of the voxels assigned to each code (codes with no voxel keep
    their value): the code synchronisation of the joint fine-tuning (Sec. 5.2)."""
    k, c = codebook.shape
    w = weights.float().clamp_min(0) + 1e-12
    total = torch.zeros(k, device=features.device).index_add_(0, assignment, w)
    sums = torch.zeros(k, c, device=features.device).index_add_(0, assignment, features.float() * w[:, None])
    out = codebook.clone()
    has = total > 0
    out[has] = sums[has] / total[has, None]
    return out
