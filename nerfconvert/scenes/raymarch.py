"""Effectively exact volume rendering of analytic radiance fields.

The marcher is generic: any object with ``density(points)``, ``color(points, directions)``
and an axis-aligned ``bounding_box`` can be rendered. Without
more information it samples every ray densely and uniformly.

Fields whose density is a sharp function of a signed distance (``SdfField``) are rendered
much faster with the same accuracy: a coarse pass evaluates the distance only, and because
a signed distance is 1-Lipschitz it bounds the distance over a whole coarse segment. Segments
certainly farther than ``sdf_band`` from the surface are empty (zero optical depth),
segments certainly deeper than ``sdf_band`` inside are solid (constant density, integrated
exactly), and only the remaining thin shell around the surface is integrated with fine
samples. Everything is float64 numpy and sequential, so results are bit-reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

Array = np.ndarray

DEPTH_ALPHA_MIN = 0.5 / 255.0
"""Rays with less accumulated opacity than this (those whose 8-bit alpha rounds to 0) get
depth 0, nerfstudio's "no depth" value in its depth losses."""

OPTICAL_DEPTH_CUTOFF = 40.0
"""Behind this much certain optical depth the transmittance is below 1e-17: stop there."""


class AnalyticField(Protocol):
    """What the marcher needs from a field. Points and directions are [N, 3] float64 arrays."""

    bounding_box: Array
    """[2, 3] min and max corners of a box outside which the density is negligible."""

    def density(self, points: Array) -> Array:
        """[N] volume density."""

    def color(self, points: Array, directions: Array) -> Array:
        """[N, 3] emitted colour in [0, 1] seen along the unit ray ``directions``."""


@runtime_checkable
class SdfField(Protocol):
    """A field whose density is a function of a 1-Lipschitz signed distance ``sdf``: it is
    negligible (< 1e-10 of its maximum) where ``sdf > sdf_band`` and constant where
    ``sdf < -sdf_band``."""

    sdf_band: float

    def sdf(self, points: Array) -> Array:
        """[N] signed distance, negative inside."""


@dataclass
class RenderedRays:
    """Volume-rendered ray attributes, batch shape of the input rays."""

    rgb: Array
    """[..., 3] accumulated colour over a black background (premultiplied by alpha)."""
    alpha: Array
    """[...] accumulated opacity, 1 - transmittance."""
    depth: Array
    """[...] expected termination distance along the unit ray direction, normalised by
    alpha (like nerfstudio's expected depth); 0 where alpha < DEPTH_ALPHA_MIN."""

    def rgb_over(self, background: Array) -> Array:
        """Colour composited over a constant ``background`` colour."""
        return self.rgb + (1.0 - self.alpha[..., None]) * np.asarray(background, dtype=np.float64)

    def straight_rgb(self) -> Array:
        """Un-premultiplied colour, what an RGBA image with straight alpha stores."""
        safe_alpha = np.maximum(self.alpha, 1e-12)[..., None]
        return np.where(self.alpha[..., None] > 0, np.clip(self.rgb / safe_alpha, 0.0, 1.0), 0.0)


def _box_interval(origins: Array, directions: Array, box: Array, near: float):
    """Entry and exit distances of rays through an axis-aligned box (slab test), and which
    rays cross it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / directions
        t_low = (box[0] - origins) * inverse
        t_high = (box[1] - origins) * inverse
    # Rays parallel to a slab: inside it for all t, or never.
    parallel = directions == 0.0
    inside_slab = (origins >= box[0]) & (origins <= box[1])
    t_low = np.where(parallel, np.where(inside_slab, -np.inf, np.inf), t_low)
    t_high = np.where(parallel, np.where(inside_slab, np.inf, -np.inf), t_high)
    t_enter = np.maximum(np.max(np.minimum(t_low, t_high), axis=-1), near)
    t_exit = np.min(np.maximum(t_low, t_high), axis=-1)
    return t_enter, t_exit, t_exit > t_enter


def _evaluate_in_batches(fn, points: Array, max_points: int) -> Array:
    """``fn`` over [A, M, 3] points, at most ``max_points`` points at a time."""
    rows_per_batch = max(1, max_points // max(points.shape[1], 1))
    parts = [fn(points[i : i + rows_per_batch]) for i in range(0, points.shape[0], rows_per_batch)]
    return np.concatenate(parts, axis=0) if parts else np.zeros(points.shape[:2])


def _render_chunk(
    field: AnalyticField,
    origins: Array,
    directions: Array,
    near: float,
    num_coarse: int,
    num_fine: int,
    weight_threshold: float,
    max_points: int,
):
    num_rays = origins.shape[0]
    rgb = np.zeros((num_rays, 3))
    alpha = np.zeros(num_rays)
    depth = np.zeros(num_rays)

    t_enter, t_exit, hits = _box_interval(origins, directions, np.asarray(field.bounding_box, dtype=np.float64), near)
    ray_ids = np.nonzero(hits)[0]
    if ray_ids.size == 0:
        return rgb, alpha, depth
    o, d = origins[ray_ids], directions[ray_ids]
    t0 = t_enter[ray_ids]
    seg_len = (t_exit[ray_ids] - t0) / num_coarse  # [R]
    edges = t0[:, None] + seg_len[:, None] * np.arange(num_coarse + 1)[None, :]  # [R, C+1]

    def points_at(rows: Array, t: Array) -> Array:
        return o[rows][:, None, :] + t[..., None] * d[rows][:, None, :]

    all_rows = np.arange(ray_ids.size)
    tau_seg = np.zeros((ray_ids.size, num_coarse))  # optical depth per coarse segment
    if isinstance(field, SdfField):
        dist = _evaluate_in_batches(
            lambda p: field.sdf(p.reshape(-1, 3)).reshape(p.shape[:2]), points_at(all_rows, edges), max_points
        )
        # Lipschitz bounds of the distance over each segment, from its two end values.
        lower = 0.5 * (dist[:, :-1] + dist[:, 1:] - seg_len[:, None])
        upper = 0.5 * (dist[:, :-1] + dist[:, 1:] + seg_len[:, None])
        empty = lower > field.sdf_band
        solid = upper < -field.sdf_band
        solid_rows, solid_segs = np.nonzero(solid)
        mid = 0.5 * (edges[solid_rows, solid_segs] + edges[solid_rows, solid_segs + 1])
        interior_density = field.density(o[solid_rows] + mid[:, None] * d[solid_rows])
        tau_seg[solid_rows, solid_segs] = interior_density * seg_len[solid_rows]
        # Solid segments alone already bound the transmittance: skip what is hidden behind them.
        hidden = (np.cumsum(tau_seg, axis=1) - tau_seg) > OPTICAL_DEPTH_CUTOFF
        tau_seg[hidden] = 0.0
        solid &= ~hidden
        shell = ~empty & ~solid & ~hidden
    else:
        solid = np.zeros_like(tau_seg, dtype=bool)
        shell = np.ones_like(tau_seg, dtype=bool)

    # Fine midpoint quadrature inside the shell segments.
    shell_rows, shell_segs = np.nonzero(shell)  # row-major: sorted by ray, then along the ray
    fine_len = seg_len[shell_rows] / num_fine  # [S]
    fine_t = edges[shell_rows, shell_segs][:, None] + fine_len[:, None] * (np.arange(num_fine) + 0.5)[None, :]
    fine_sigma = _evaluate_in_batches(
        lambda p: field.density(p.reshape(-1, 3)).reshape(p.shape[:2]), points_at(shell_rows, fine_t), max_points
    )
    fine_tau = fine_sigma * fine_len[:, None]  # [S, F]
    tau_seg[shell_rows, shell_segs] = np.sum(fine_tau, axis=1)

    # Transmittance at the start of every coarse segment, then inside the shell segments.
    trans_seg = np.exp(-(np.cumsum(tau_seg, axis=1) - tau_seg))
    fine_trans = trans_seg[shell_rows, shell_segs][:, None] * np.exp(-(np.cumsum(fine_tau, axis=1) - fine_tau))
    fine_weight = fine_trans * -np.expm1(-fine_tau)

    solid_rows, solid_segs = np.nonzero(solid)
    solid_weight = trans_seg[solid_rows, solid_segs] * -np.expm1(-tau_seg[solid_rows, solid_segs])
    solid_t = 0.5 * (edges[solid_rows, solid_segs] + edges[solid_rows, solid_segs + 1])

    sample_rows = np.concatenate([np.repeat(shell_rows, num_fine), solid_rows])
    sample_t = np.concatenate([fine_t.reshape(-1), solid_t])
    sample_weight = np.concatenate([fine_weight.reshape(-1), solid_weight])

    hit_alpha = -np.expm1(-np.sum(tau_seg, axis=1))
    weight_sum = np.bincount(sample_rows, weights=sample_weight, minlength=ray_ids.size)
    weighted_t = np.bincount(sample_rows, weights=sample_weight * sample_t, minlength=ray_ids.size)
    hit_depth = np.where(hit_alpha >= DEPTH_ALPHA_MIN, weighted_t / np.maximum(weight_sum, 1e-300), 0.0)

    # Colour only where it can matter; the neglected weights sum to far below 1/255.
    visible = sample_weight > weight_threshold
    rows, t, w = sample_rows[visible], sample_t[visible], sample_weight[visible]
    hit_rgb = np.zeros((ray_ids.size, 3))
    if rows.size:
        colors = field.color(o[rows] + t[:, None] * d[rows], d[rows])
        for channel in range(3):
            hit_rgb[:, channel] = np.bincount(rows, weights=w * colors[:, channel], minlength=ray_ids.size)

    rgb[ray_ids], alpha[ray_ids], depth[ray_ids] = hit_rgb, hit_alpha, hit_depth
    return rgb, alpha, depth


def render_rays(
    field: AnalyticField,
    origins: Array,
    directions: Array,
    near: float = 0.0,
    num_coarse: int = 64,
    num_fine: int = 32,
    chunk_size: int = 4096,
    weight_threshold: float = 1e-7,
    max_points: int = 1 << 20,
) -> RenderedRays:
    """Volume-render rays through an analytic field.

    Args:
        field: the field; ``SdfField``s get empty-space and interior skipping.
        origins: [..., 3] ray origins.
        directions: [..., 3] ray directions (normalised here).
        near: rays start at this distance from their origin.
        num_coarse: coarse segments per ray across the bounding sphere.
        num_fine: midpoint samples per coarse segment where the density is not known to be
            constant; the quadrature is as fine as ``num_coarse * num_fine`` uniform samples.
        chunk_size: rays rendered at a time.
        weight_threshold: samples with a smaller weight do not evaluate the colour.
        max_points: cap on points per field call (memory).
    """
    origins = np.asarray(origins, dtype=np.float64)
    directions = np.asarray(directions, dtype=np.float64)
    batch_shape = origins.shape[:-1]
    origins = origins.reshape(-1, 3)
    directions = np.broadcast_to(directions, batch_shape + (3,)).reshape(-1, 3)
    directions = directions / np.linalg.norm(directions, axis=-1, keepdims=True)

    num_rays = origins.shape[0]
    rgb = np.zeros((num_rays, 3))
    alpha = np.zeros(num_rays)
    depth = np.zeros(num_rays)
    for start in range(0, num_rays, chunk_size):
        end = min(start + chunk_size, num_rays)
        rgb[start:end], alpha[start:end], depth[start:end] = _render_chunk(
            field, origins[start:end], directions[start:end], near, num_coarse, num_fine, weight_threshold, max_points
        )
    return RenderedRays(
        rgb=rgb.reshape(batch_shape + (3,)), alpha=alpha.reshape(batch_shape), depth=depth.reshape(batch_shape)
    )
