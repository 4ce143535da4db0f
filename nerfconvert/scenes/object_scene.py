"""The object scene: a seeded still life of textured primitives on a pedestal, as an
analytic radiance field (density from a signed distance, view-dependent colour)."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import numpy as np

from nerfconvert.scenes.primitives import (
    CheckerTexture,
    Cylinder,
    Material,
    NoiseTexture,
    Primitive,
    RingTexture,
    RoundedBox,
    SolidTexture,
    Sphere,
    StripeTexture,
    Texture,
    Torus,
    rotation_x,
    rotation_z,
)
from nerfconvert.scenes.raymarch import RenderedRays, render_rays

Array = np.ndarray


def _unit(v) -> Array:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


@dataclass
class ObjectScene:
    """Union of primitives as an analytic radiance field.

    density(x) = sigma_max * smootherstep((w - sdf(x)) / 2w), with sdf the union (min) of
    the primitives' exact distances and w = ``surface_half_width``: a C2 step from 0 at
    sdf = w to sigma_max at sdf = -w. Unlike a sigmoid it is exactly 0 outside the thin
    shell, so empty space is truly empty and the marcher only integrates the shell finely.
    colour(x, d) = Blinn-Phong shading of the albedo of the closest primitive, lit by a
    fixed key light plus a sky/ground ambient term.
    """

    primitives: List[Primitive]
    sigma_max: float = 2000.0
    """Interior density: the optical depth is ~3 at the zero level set and 20 at sdf = -w, so
    rays terminate within ~w of the surface (median ~0.4 w before it)."""
    surface_half_width: float = 0.01
    """Half thickness of the density transition in scene units (a 128^3 grid over
    [-1, 1]^3 has 0.0156 voxels)."""
    light_direction: Array = field(default_factory=lambda: _unit([0.45, -0.35, 0.82]))
    """Unit vector towards the key light (world z is up, as in Blender)."""
    light_intensity: float = 0.8
    ambient_sky: float = 0.38
    ambient_ground: float = 0.16

    # ---- geometry -------------------------------------------------------------------------
    @property
    def sdf_band(self) -> float:
        """The density is 0 where sdf > sdf_band and sigma_max where sdf < -sdf_band."""
        return self.surface_half_width

    @property
    def bounding_box(self) -> Array:
        """[2, 3] box outside which the density is negligible: the primitives' boxes grown by the band."""
        boxes = np.stack([p.bounding_box for p in self.primitives])
        return np.stack([boxes[:, 0].min(axis=0) - self.sdf_band, boxes[:, 1].max(axis=0) + self.sdf_band])

    def primitive_distances(self, points: Array) -> Array:
        """[N, P] signed distance to each primitive."""
        return np.stack([p.sdf(points) for p in self.primitives], axis=-1)

    def sdf(self, points: Array) -> Array:
        """[N] signed distance to the union of all primitives (exact outside, 1-Lipschitz)."""
        dist = self.primitives[0].sdf(points)
        for primitive in self.primitives[1:]:
            dist = np.minimum(dist, primitive.sdf(points))
        return dist

    def closest_primitive(self, points: Array) -> Array:
        """[N] index of the primitive whose surface is nearest (the one that colours x)."""
        return np.argmin(self.primitive_distances(points), axis=-1)

    def normal(self, points: Array) -> Array:
        """[N, 3] unit outward normal of the closest primitive."""
        points = np.asarray(points, dtype=np.float64)
        normals = np.zeros(points.shape)
        owner = self.closest_primitive(points)
        for index, primitive in enumerate(self.primitives):
            mask = owner == index
            if mask.any():
                normals[mask] = primitive.normal(points[mask])
        return normals

    # ---- radiance field -------------------------------------------------------------------
    def density(self, points: Array) -> Array:
        """[N] volume density."""
        w = self.surface_half_width
        u = np.clip((w - self.sdf(points)) / (2.0 * w), 0.0, 1.0)
        return self.sigma_max * u * u * u * (u * (6.0 * u - 15.0) + 10.0)

    def albedo(self, points: Array) -> Array:
        """[N, 3] view-independent texture colour of the closest primitive."""
        points = np.asarray(points, dtype=np.float64)
        albedo = np.zeros(points.shape)
        owner = self.closest_primitive(points)
        for index, primitive in enumerate(self.primitives):
            mask = owner == index
            if mask.any():
                albedo[mask] = primitive.albedo(points[mask])
        return albedo

    def color(self, points: Array, directions: Array) -> Array:
        """[N, 3] radiance leaving x towards the camera, for unit ray ``directions``."""
        points = np.asarray(points, dtype=np.float64)
        directions = np.broadcast_to(np.asarray(directions, dtype=np.float64), points.shape)
        owner = self.closest_primitive(points)
        out = np.zeros(points.shape)
        for index, primitive in enumerate(self.primitives):
            mask = owner == index
            if mask.any():
                x = points[mask]
                out[mask] = self._shade(
                    primitive.albedo(x), primitive.normal(x), -directions[mask], primitive.material
                )
        return out

    def _shade(self, albedo: Array, normal: Array, to_eye: Array, material: Material) -> Array:
        light = self.light_direction
        n_dot_l = normal[:, 0] * light[0] + normal[:, 1] * light[1] + normal[:, 2] * light[2]
        # Hemisphere ambient: faces looking up get more sky light, so shapes read as 3D.
        ambient = self.ambient_ground + (self.ambient_sky - self.ambient_ground) * (0.5 + 0.5 * normal[:, 2])
        diffuse = albedo * (ambient + self.light_intensity * np.maximum(n_dot_l, 0.0))[:, None]
        half = to_eye + light
        half = half / np.maximum(np.linalg.norm(half, axis=-1, keepdims=True), 1e-12)
        n_dot_h = np.maximum(np.sum(normal * half, axis=-1), 0.0)
        # Fade the highlight out as the surface turns away from the light (no glints on the dark side).
        facing = np.clip(4.0 * n_dot_l, 0.0, 1.0)
        specular = material.specular * self.light_intensity * facing * n_dot_h**material.shininess
        return np.clip(diffuse + specular[:, None], 0.0, 1.0)

    def render_rays(self, origins: Array, directions: Array, **kwargs) -> RenderedRays:
        """Volume-render rays; keyword arguments go to ``raymarch.render_rays``."""
        return render_rays(self, origins, directions, **kwargs)

    def describe(self) -> Dict[str, Any]:
        return {
            "sigma_max": self.sigma_max,
            "surface_half_width": self.surface_half_width,
            "bounding_box": self.bounding_box.round(4).tolist(),
            "primitives": [p.describe() for p in self.primitives],
        }

    # ---- seeded composition ---------------------------------------------------------------
    @classmethod
    def from_seed(cls, seed: int = 0) -> "ObjectScene":
        """A still life: a pedestal with 3-5 textured objects on it, some stacked, all
        inside [-1, 1]^3. Everything (shapes, placement, colours, textures) follows ``seed``."""
        return cls(primitives=_compose_still_life(np.random.default_rng(seed)))


# ---- composition helpers ---------------------------------------------------------------------

_PEDESTAL_TOP = -0.4
_USABLE_RADIUS = 0.76
"""Objects stand within this distance of the pedestal's axis."""


def _hsv(h: float, s: float, v: float) -> Array:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def _random_texture(rng: np.random.Generator, base: Array, accent: Array, shape: str) -> Texture:
    kinds = ["checker", "stripes", "noise", "solid"] + (["rings"] if shape in ("cylinder", "torus") else [])
    kind = kinds[rng.integers(len(kinds))]
    if kind == "checker":
        return CheckerTexture(base, accent, cell=float(rng.uniform(0.13, 0.2)))
    if kind == "stripes":
        axis = _unit(rng.normal(size=3)) if rng.random() < 0.5 else np.array([0.0, 0.0, 1.0])
        period, phase = float(rng.uniform(0.22, 0.34)), float(rng.uniform(0, 2 * np.pi))
        return StripeTexture(base, accent, axis=axis, period=period, phase=phase)
    if kind == "noise":
        count = 4
        directions = rng.normal(size=(count, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wave_vectors = directions * rng.uniform(4.0, 8.0, size=(count, 1))
        return NoiseTexture(base, accent, wave_vectors=wave_vectors, phases=rng.uniform(0, 2 * np.pi, size=count))
    if kind == "rings":
        return RingTexture(base, accent, period=float(rng.uniform(0.12, 0.18)))
    return SolidTexture(base, base)


def _random_material(rng: np.random.Generator, hue: float, shape: str) -> Material:
    base = _hsv(hue, rng.uniform(0.45, 0.75), rng.uniform(0.7, 0.95))
    if rng.random() < 0.5:
        accent = _hsv(hue + rng.uniform(0.35, 0.65), rng.uniform(0.3, 0.6), rng.uniform(0.75, 0.95))
    else:  # a light tint of the same hue
        accent = 0.35 * base + 0.65 * np.array([0.96, 0.94, 0.9])
    return Material(
        texture=_random_texture(rng, base, accent, shape),
        specular=float(rng.uniform(0.15, 0.35)),
        shininess=float(rng.uniform(10.0, 30.0)),
    )


def _make_object(rng: np.random.Generator, shape: str, hue: float) -> Tuple[Primitive, float, float]:
    """A shape resting with its lowest point at z = 0, centred on the z axis.
    Returns the primitive, its footprint radius, and its height."""
    material = _random_material(rng, hue, shape)
    spin = rotation_z(rng.uniform(0, 2 * np.pi))
    if shape == "sphere":
        radius = float(rng.uniform(0.22, 0.34))
        return Sphere(np.array([0.0, 0.0, radius]), spin, material, radius=radius), radius, 2 * radius
    if shape == "box":
        half = np.array([rng.uniform(0.15, 0.26), rng.uniform(0.15, 0.26), rng.uniform(0.15, 0.4)])
        rounding = float(rng.uniform(0.02, 0.06))
        box = RoundedBox(np.array([0.0, 0.0, half[2]]), spin, material, half_extents=half, rounding=rounding)
        return box, float(np.hypot(half[0], half[1])), 2 * half[2]
    if shape == "cylinder":
        radius, half_height = float(rng.uniform(0.15, 0.25)), float(rng.uniform(0.16, 0.42))
        center = np.array([0.0, 0.0, half_height])
        cylinder = Cylinder(center, spin, material, radius=radius, half_height=half_height, rounding=0.03)
        return cylinder, radius, 2 * half_height
    # Torus: standing on its rim, or lying flat.
    major, minor = float(rng.uniform(0.18, 0.26)), float(rng.uniform(0.065, 0.1))
    if rng.random() < 0.5:
        standing = spin @ rotation_x(0.5 * np.pi)
        torus = Torus(np.array([0.0, 0.0, major + minor]), standing, material, major_radius=major, minor_radius=minor)
        return torus, major + minor, 2 * (major + minor)
    torus = Torus(np.array([0.0, 0.0, minor]), spin, material, major_radius=major, minor_radius=minor)
    return torus, major + minor, 2 * minor


def _moved(primitive: Primitive, offset: Array) -> Primitive:
    primitive.center = primitive.center + offset
    return primitive


def _scaled(primitive: Primitive, factor: float) -> Primitive:
    """The primitive uniformly scaled about the origin (its resting point)."""
    if factor == 1.0:
        return primitive
    primitive.center = primitive.center * factor
    for name in ("radius", "rounding", "half_height", "major_radius", "minor_radius", "half_extents"):
        if hasattr(primitive, name):
            setattr(primitive, name, getattr(primitive, name) * factor)
    return primitive


def _place_footprints(rng: np.random.Generator, footprints: List[float], usable_radius: float, attempts: int = 100):
    """Centres for discs of the given radii inside a disc, without overlaps, or None."""
    count = len(footprints)
    for _ in range(attempts):
        start = rng.uniform(0.0, 2.0 * np.pi)
        angles = start + 2.0 * np.pi * (np.arange(count) + rng.uniform(-0.2, 0.2, size=count)) / count
        xys = []
        for angle, footprint in zip(angles, footprints):
            distance = rng.uniform(0.45, 1.0) * max(usable_radius - footprint, 0.0)
            xys.append(distance * np.array([np.cos(angle), np.sin(angle)]))
        if all(
            np.linalg.norm(xys[i] - xys[j]) > footprints[i] + footprints[j] + 0.04
            for i in range(count)
            for j in range(i)
        ):
            return xys
    return None


def _compose_still_life(rng: np.random.Generator) -> List[Primitive]:
    hue0 = rng.random()
    # Pedestal: a low rounded slab or disc in warm neutral tones, usually with a pattern.
    light_tone, dark_tone = _hsv(hue0 + 0.08, 0.12, 0.88), _hsv(hue0 + 0.08, 0.22, 0.55)
    if rng.random() < 0.6:
        texture: Texture = CheckerTexture(light_tone, dark_tone, cell=float(rng.uniform(0.24, 0.3)))
    else:
        texture = RingTexture(light_tone, dark_tone, period=0.24)
    pedestal_material = Material(texture, specular=0.1, shininess=12.0)
    thickness = 0.1
    center = np.array([0.0, 0.0, _PEDESTAL_TOP - thickness])
    upright = np.eye(3)
    if rng.random() < 0.5:
        pedestal: Primitive = Cylinder(
            center, upright, pedestal_material, radius=0.9, half_height=thickness, rounding=0.04
        )
    else:
        half_extents = np.array([0.84, 0.84, thickness])
        pedestal = RoundedBox(center, upright, pedestal_material, half_extents=half_extents, rounding=0.06)
    primitives: List[Primitive] = [pedestal]

    # Objects on the pedestal, one per angular slot around the centre so that the layout
    # reads from every side; retry whole layouts until no two footprints overlap.
    shapes = ["sphere", "box", "cylinder", "torus"]
    num_objects = int(rng.integers(4, 6))
    kinds = [shapes[i] if i < len(shapes) else shapes[rng.integers(len(shapes))] for i in range(num_objects)]
    kinds = [kinds[i] for i in rng.permutation(num_objects)]
    # Golden-ratio hue steps give distinct but harmonious colours.
    made = [_make_object(rng, kind, hue0 + 0.5 + 0.618 * i) for i, kind in enumerate(kinds)]
    scale = 1.0
    while True:
        xys = _place_footprints(rng, [footprint * scale for _, footprint, _ in made], _USABLE_RADIUS)
        if xys is not None:
            break
        scale *= 0.92  # too crowded: shrink everything a little and try again
    placed: List[Tuple[Array, float, float, str]] = []
    for (primitive, footprint, height), kind, xy in zip(made, kinds, xys):
        primitive = _scaled(primitive, scale)
        primitives.append(_moved(primitive, np.array([xy[0], xy[1], _PEDESTAL_TOP])))
        placed.append((xy, footprint * scale, height * scale, kind))

    # Stack a small ball on top of one flat-topped object, for a less flat silhouette.
    flat_tops = [entry for entry in placed if entry[3] in ("box", "cylinder")]
    if flat_tops and rng.random() < 0.7:
        xy, footprint, height, _ = flat_tops[rng.integers(len(flat_tops))]
        radius = float(min(rng.uniform(0.1, 0.16), footprint))
        material = _random_material(rng, hue0 + rng.uniform(0.0, 1.0), "sphere")
        top = _PEDESTAL_TOP + height + radius
        primitives.append(Sphere(np.array([xy[0], xy[1], top]), np.eye(3), material, radius=radius))
    return primitives
