"""PVD's losses (Eq. 6-8), written against two-level views (each student's regulariser is its view's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfconvert.views.base import FieldView


@dataclass
class PVDLossConfig:
    """Weights of Eq. 7 and the density range of Eq. 8. A weight of 0 switches a term off
    (and skips its computation), which is how the ablations of PVD-AL Table 6 are run."""

    volume_weight: float = 2e-3
    """omega_1, L_v (Eq. 6): phi1 features."""
    density_weight: float = 2e-3
    """omega_2, L_sigma (Eq. 8): clamped raw density."""
    colour_weight: float = 2e-3
    """omega_3, L_c: colour at the sample points."""
    rgb_weight: float = 1.0
    """omega_4, L_rgb: rendered pixel colour."""
    reg_weight: float = 1.0
    """omega_5, L_reg: TV + L1 of grid students (VM, voxel)."""
    standardise_projected_features: bool = True
    """L_v of a pair with a learned projection compares standardised teacher features (our deviation;
    False: raw features, as PVD compares equal-size features)."""
    density_clamp: Optional[Tuple[float, float]] = (-2.0, 7.0)
    """[a, b] of Eq. 8 on the student's raw (pre-activation) density; None: no clamp (ablation)."""
    tv_weight: float = 1e-5
    """TV inside L_reg (PVD supplement: 1e-5)."""
    l1_weight: float = 1e-4
    """L1 sparsity inside L_reg (PVD supplement: 1e-4)."""
    sampler_weight: float = 1.0
    """Losses that keep the student's own sampler working (a nerfacto student's proposal networks
    against the teacher's weights; see the student's view)."""


# ---- density in the student's raw space -------------------------------------------------------


def inverse_activation(name: str, scale: float) -> Callable[[Tensor], Tensor]:
    """density -> a raw value that the activation maps to it (the smallest, for relu)."""
    tiny = 1e-30
    if name == "exp":
        return lambda d: torch.log((d / scale).clamp_min(tiny))
    if name == "softplus":
        # log(exp(d) - 1), stable for small and large d
        return lambda d: d + torch.log(-torch.expm1(-d.clamp_min(1e-12)))
    if name in ("relu", "identity"):
        return lambda d: d / scale
    raise ValueError(f"no inverse for density activation {name!r}")


def teacher_raw_in_student_space(teacher: FieldView, student: FieldView) -> Optional[Callable[[Tensor, Tensor], Tensor]]:
    """How to express the teacher's density as the student's raw density, for Eq. 8.

    PVD clamps raw densities of both models to [a, b]. When the two use different activations
    (exp for hash grids, relu for TensoRF, softplus for NeRF) the raw values live on different
    scales, so the teacher's *activated* density is mapped through the student's inverse
    activation first (a deviation needed for cross-family pairs; same-activation pairs compare
    raw values directly, as in the paper). Returns f(raw_t, density_t) -> target raw.
    """
    t_act, s_act = teacher.density_activation(), student.density_activation()
    if t_act == s_act:
        return lambda raw, density: raw
    inverse = inverse_activation(*s_act)
    return lambda raw, density: inverse(density)


def clamp_density(raw: Tensor, clamp: Optional[Tuple[float, float]]) -> Tensor:
    """min(max(sigma, a), b) of Eq. 8; identity when ``clamp`` is None."""
    if clamp is None:
        return raw
    return raw.clamp(min=clamp[0], max=clamp[1])


def density_loss(student_raw: Tensor, target_raw: Tensor, clamp: Optional[Tuple[float, float]], mask: Optional[Tensor] = None) -> Tensor:
    """L_sigma, Eq. 8: MSE between raw densities clamped to [a, b].

    The student's clamp passes its gradient straight through: the loss value is Eq. 8's, but a
    student below a (e.g. a voxel grid initialised transparent, raw -3) is still pulled up where
    the teacher is above a. With a plain clamp such a student gets no density gradient at all.
    Where both are beyond the same bound the loss, and so the gradient, is zero, as in Eq. 8.
    """
    if clamp is None:
        return masked_mse(student_raw, target_raw, mask)
    clamped = clamp_density(student_raw, clamp)
    student = student_raw + (clamped - student_raw).detach()  # straight-through clamp
    return masked_mse(student, clamp_density(target_raw, clamp), mask)


def masked_mse(a: Tensor, b: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """MSE over the sample points selected by ``mask`` ([...] bool, broadcast over channels)."""
    if mask is None:
        return F.mse_loss(a, b)
    sel = mask.reshape(-1)
    a, b = a.reshape(sel.shape[0], -1)[sel], b.reshape(sel.shape[0], -1)[sel]
    if a.numel() == 0:
        return (a.sum() + b.sum()) * 0.0
    return F.mse_loss(a, b)


def masked_l1(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Mean |a - b| over ``mask`` (zero, with a gradient path, when it selects nothing)."""
    sel = mask.reshape(-1)
    a, b = a.reshape(sel.shape[0], -1)[sel], b.reshape(sel.shape[0], -1)[sel]
    return (a - b).abs().mean() if a.numel() else (a.sum() + b.sum()) * 0.0


# ---- L_v --------------------------------------------------------------------------------------


class FeatureProjection(nn.Module):
    """Student phi1 features -> the teacher's feature size, for L_v (Eq. 6).

    PVD compares phi1 outputs directly. Heterogeneous pairs rarely share a feature size (a
    hash grid gives 16 features, TensoRF 75, NeRF's 4th layer 256), so when sizes differ a
    learned linear map is trained alongside the student (a deviation from the paper). Equal
    sizes compare directly.

    Projected pairs also compare *standardised* teacher features (per channel, with the mean and
    standard deviation of the first teacher batch, then fixed): a second deviation. PVD's weight
    omega_1 = 2e-3 assumes features of about unit scale, as its same-family pairs have; a nerfacto
    teacher's base-MLP outputs have a variance of 20-40, which made L_v the largest term of
    stages 2-3 and cost the VM student 0.7 dB in the quick benchmark (benchmarks/README.md).
    ``standardise=False`` compares raw features (the ablation).
    """

    def __init__(self, student_dim: int, teacher_dim: int, standardise: bool = True) -> None:
        super().__init__()
        self.student_dim, self.teacher_dim, self.standardise = student_dim, teacher_dim, standardise
        self.linear = nn.Linear(student_dim, teacher_dim) if student_dim != teacher_dim else None
        # persistent, so a resumed distillation keeps comparing against the same scale
        self.register_buffer("target_mean", torch.zeros(teacher_dim))
        self.register_buffer("target_std", torch.ones(teacher_dim))
        self.register_buffer("standardised", torch.tensor(False))

    def forward(self, features: Tensor) -> Tensor:
        return features if self.linear is None else self.linear(features)

    def target(self, teacher_features: Tensor) -> Tensor:
        """The teacher features L_v compares against: standardised for a projected pair."""
        if self.linear is None or not self.standardise:
            return teacher_features
        if not bool(self.standardised):
            flat = teacher_features.detach().reshape(-1, self.teacher_dim)
            self.target_mean.copy_(flat.mean(dim=0))
            self.target_std.copy_(flat.std(dim=0).clamp_min(1e-3) if flat.shape[0] > 1 else torch.ones_like(self.target_std))
            self.standardised.fill_(True)
        return (teacher_features - self.target_mean) / self.target_std


def volume_loss(student_features: Tensor, teacher_features: Tensor, projection: FeatureProjection) -> Tensor:
    # L_v, Eq. 6: ||phi1_t(x, d) - P phi1_s(x, d)||^2 (phi1_t standardised for a projected pair)
    return F.mse_loss(projection(student_features), projection.target(teacher_features))


# ---- active learning: hard points ----------------------------------------------------------------


def select_hard_points(teacher_weights: Tensor, student_weights: Tensor, fraction: float) -> Tensor:
    """PVD-AL Eq. 11: the ``fraction`` of sample points with the largest teacher weights, united
    with those with the largest student weights. Weights [R, S(, 1)] -> bool mask [R, S]."""
    w_t = teacher_weights.reshape(teacher_weights.shape[0], -1).detach()
    w_s = student_weights.reshape(student_weights.shape[0], -1).detach()
    n = w_t.numel()
    k = max(1, min(n, int(round(fraction * n))))
    mask = torch.zeros(n, dtype=torch.bool, device=w_t.device)
    mask[torch.topk(w_t.reshape(-1), k).indices] = True
    mask[torch.topk(w_s.reshape(-1), k).indices] = True
    return mask.view_as(w_t)
