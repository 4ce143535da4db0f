"""Analytic building blocks of the procedural scenes: signed distance primitives and
procedural textures.

Everything is float64 numpy and purely elementwise (no BLAS, no threaded reductions), so
that a scene renders to the same bytes on every run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

import numpy as np

Array = np.ndarray


def rotation_z(angle: float) -> Array:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_x(angle: float) -> Array:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _length(v: Array) -> Array:
    return np.sqrt(v[..., 0] ** 2 + v[..., 1] ** 2 + v[..., 2] ** 2)


def _mix(t: Array, color_a: Array, color_b: Array) -> Array:
    t = np.clip(t, 0.0, 1.0)[..., None]
    return color_a * (1.0 - t) + color_b * t


# ---- textures ---------------------------------------------------------------------------
# Textures are functions of the primitive's *local* coordinates, so the pattern is glued
# to the object. Frequencies stay moderate: a 128^3 voxel grid over [-1, 1]^3 must be able
# to reproduce them, so we use smoothed (tanh) edges rather than hard steps.


@dataclass
class Texture(ABC):
    """Albedo as a function of local position, values in [0, 1]."""

    color_a: Array
    color_b: Array

    @abstractmethod
    def mix_weight(self, local: Array) -> Array:
        """[...] in [0, 1]: 0 -> color_a, 1 -> color_b."""

    def __call__(self, local: Array) -> Array:
        return _mix(self.mix_weight(local), self.color_a, self.color_b)

    def describe(self) -> Dict[str, Any]:
        return {
            "texture": type(self).__name__,
            "color_a": self.color_a.round(4).tolist(),
            "color_b": self.color_b.round(4).tolist(),
        }


@dataclass
class SolidTexture(Texture):
    def mix_weight(self, local: Array) -> Array:
        return np.zeros(local.shape[:-1])


@dataclass
class CheckerTexture(Texture):
    """3D checkerboard with soft edges; ``cell`` is the side of one cell in scene units."""

    cell: float = 0.15
    sharpness: float = 6.0

    def mix_weight(self, local: Array) -> Array:
        k = np.pi / self.cell
        # A product of sines changes sign exactly where a checker cell boundary is.
        s = np.sin(k * local[..., 0]) * np.sin(k * local[..., 1]) * np.sin(k * local[..., 2] + 0.5 * np.pi)
        return 0.5 + 0.5 * np.tanh(self.sharpness * s)


@dataclass
class StripeTexture(Texture):
    """Soft parallel stripes across ``axis`` with the given period."""

    axis: Array = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    period: float = 0.3
    phase: float = 0.0
    sharpness: float = 4.0

    def mix_weight(self, local: Array) -> Array:
        u = local[..., 0] * self.axis[0] + local[..., 1] * self.axis[1] + local[..., 2] * self.axis[2]
        return 0.5 + 0.5 * np.tanh(self.sharpness * np.sin(2.0 * np.pi * u / self.period + self.phase))


@dataclass
class NoiseTexture(Texture):
    """Smooth marble-like noise: a normalised sum of a few random plane waves."""

    wave_vectors: Array = field(default_factory=lambda: np.zeros((1, 3)))
    phases: Array = field(default_factory=lambda: np.zeros(1))

    def mix_weight(self, local: Array) -> Array:
        total = np.zeros(local.shape[:-1])
        for k, phase in zip(self.wave_vectors, self.phases):
            total = total + np.sin(local[..., 0] * k[0] + local[..., 1] * k[1] + local[..., 2] * k[2] + phase)
        # Sum of n unit sines has standard deviation sqrt(n / 2); map roughly +-2 sigma to [0, 1].
        return 0.5 + total / (2.0 * np.sqrt(2.0 * len(self.phases)))


@dataclass
class RingTexture(Texture):
    """Concentric soft rings around the local z axis (wood-grain like on cylinders and tori)."""

    period: float = 0.12
    sharpness: float = 3.0

    def mix_weight(self, local: Array) -> Array:
        radius = np.sqrt(local[..., 0] ** 2 + local[..., 1] ** 2)
        return 0.5 + 0.5 * np.tanh(self.sharpness * np.sin(2.0 * np.pi * radius / self.period))


# ---- material -----------------------------------------------------------------------------


@dataclass
class Material:
    """Textured albedo plus a Blinn-Phong highlight (the view-dependent part)."""

    texture: Texture
    specular: float = 0.25
    """Strength of the highlight, added on top of the diffuse colour."""
    shininess: float = 20.0
    """Blinn-Phong exponent; small values keep highlights broad enough to be learnable."""

    def describe(self) -> Dict[str, Any]:
        return {**self.texture.describe(), "specular": round(self.specular, 4), "shininess": round(self.shininess, 4)}


# ---- primitives ---------------------------------------------------------------------------
# All signed distances below are exact Euclidean distances (hence 1-Lipschitz), which the
# ray marcher relies on to skip empty space safely. They work on separate x, y, z arrays:
# strided [..., 3] slices are several times slower in numpy, and the distance is the hot path.

Components = Tuple[Array, Array, Array]


@dataclass
class Primitive(ABC):
    """A rigidly placed shape: world = rotation @ local + center."""

    center: Array
    rotation: Array
    material: Material

    def to_local(self, points: Array) -> Components:
        """Local x, y, z of world ``points`` [..., 3]."""
        dx = points[..., 0] - self.center[0]
        dy = points[..., 1] - self.center[1]
        dz = points[..., 2] - self.center[2]
        r = self.rotation  # orthonormal: local = r.T @ (world - center)
        if r[2, 2] == 1.0:  # a spin about z (the common case) leaves z alone
            return r[0, 0] * dx + r[1, 0] * dy, r[0, 1] * dx + r[1, 1] * dy, dz
        return (
            r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
            r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
            r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz,
        )

    @abstractmethod
    def local_sdf(self, x: Array, y: Array, z: Array) -> Array:
        """Signed distance in local coordinates, negative inside."""

    @property
    @abstractmethod
    def local_half_extents(self) -> Array:
        """[3] half sizes of the shape's bounding box in local coordinates."""

    @property
    def bounding_box(self) -> Array:
        """[2, 3] world-space axis-aligned box (min, max) containing the shape."""
        half = np.abs(self.rotation) @ self.local_half_extents
        return np.stack([self.center - half, self.center + half])

    def sdf(self, points: Array) -> Array:
        """Signed distance of world ``points`` [..., 3]."""
        return self.local_sdf(*self.to_local(points))

    def albedo(self, points: Array) -> Array:
        """[..., 3] texture colour at world ``points``."""
        return self.material.texture(np.stack(self.to_local(points), axis=-1))

    def normal(self, points: Array, step: float = 1e-5) -> Array:
        """Unit outward normal from central differences of this primitive's distance."""
        grad = np.empty(points.shape)
        for axis in range(3):
            offset = np.zeros(3)
            offset[axis] = step
            grad[..., axis] = self.sdf(points + offset) - self.sdf(points - offset)
        return grad / np.maximum(_length(grad), 1e-12)[..., None]

    def describe(self) -> Dict[str, Any]:
        return {
            "kind": type(self).__name__,
            "center": self.center.round(4).tolist(),
            "bounding_box": self.bounding_box.round(4).tolist(),
            "material": self.material.describe(),
        }


@dataclass
class Sphere(Primitive):
    radius: float = 0.3

    def local_sdf(self, x: Array, y: Array, z: Array) -> Array:
        return np.sqrt(x * x + y * y + z * z) - self.radius

    @property
    def local_half_extents(self) -> Array:
        return np.full(3, self.radius)


@dataclass
class RoundedBox(Primitive):
    """Box with half side lengths ``half_extents`` whose edges are rounded by ``rounding``."""

    half_extents: Array = field(default_factory=lambda: np.full(3, 0.25))
    rounding: float = 0.03

    def local_sdf(self, x: Array, y: Array, z: Array) -> Array:
        inner = self.half_extents - self.rounding
        qx, qy, qz = np.abs(x) - inner[0], np.abs(y) - inner[1], np.abs(z) - inner[2]
        px, py, pz = np.maximum(qx, 0.0), np.maximum(qy, 0.0), np.maximum(qz, 0.0)
        inside = np.minimum(np.maximum(np.maximum(qx, qy), qz), 0.0)
        return np.sqrt(px * px + py * py + pz * pz) + inside - self.rounding

    @property
    def local_half_extents(self) -> Array:
        return np.asarray(self.half_extents, dtype=np.float64)


@dataclass
class Cylinder(Primitive):
    """Capped cylinder along local z with rounded rims."""

    radius: float = 0.25
    half_height: float = 0.3
    rounding: float = 0.03

    def local_sdf(self, x: Array, y: Array, z: Array) -> Array:
        radial = np.sqrt(x * x + y * y) - (self.radius - self.rounding)
        axial = np.abs(z) - (self.half_height - self.rounding)
        pr, pa = np.maximum(radial, 0.0), np.maximum(axial, 0.0)
        inside = np.minimum(np.maximum(radial, axial), 0.0)
        return np.sqrt(pr * pr + pa * pa) + inside - self.rounding

    @property
    def local_half_extents(self) -> Array:
        return np.array([self.radius, self.radius, self.half_height])


@dataclass
class Torus(Primitive):
    """Torus in the local xy plane."""

    major_radius: float = 0.25
    minor_radius: float = 0.08

    def local_sdf(self, x: Array, y: Array, z: Array) -> Array:
        ring = np.sqrt(x * x + y * y) - self.major_radius
        return np.sqrt(ring * ring + z * z) - self.minor_radius

    @property
    def local_half_extents(self) -> Array:
        ring = self.major_radius + self.minor_radius
        return np.array([ring, ring, self.minor_radius])
