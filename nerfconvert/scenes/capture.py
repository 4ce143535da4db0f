"""Capture-like procedural scenes, written exactly as ``ns-process-data`` writes a phone capture.

Every other scene floats in white. A real capture has a ground that runs to the horizon, a sky,
lens distortion, per-frame intrinsics and exposure, and a COLMAP sparse point cloud: nerfacto's
default path (the nerfstudio-data parser, scene contraction, the appearance embedding, the camera
optimizer) exists for exactly that, and these scenes exercise it. Layout::

    output_dir/
        transforms.json         camera_model OPENCV; per frame file_path, transform_matrix (OpenGL
                                camera-to-world), colmap_im_id, w h fl_x fl_y cx cy k1 k2 p1 p2;
                                applied_transform (identity), ply_file_path
        images/frame_00001.png  RGB, no alpha, 1-based like ns-process-data
        sparse_pc.ply           a few thousand coloured points on visible surfaces (splatfacto's init)
        scene.json              generator, seed, kind, sizes, per-frame exposure and white balance

    ns-train nerfacto nerfstudio-data --data output_dir

Kinds: ``"360"`` walks around the seeded still life of ``ObjectScene.from_seed`` standing on a
textured ground disc that reaches far outside the cameras' box, under a sky with mountains;
``"forward"`` is LLFF-like: a jittered grid of cameras looking at objects at several depths in
front of a brick wall, with sky above it. Pixels are rendered along the exact (distorted) rays
nerfstudio's ``Cameras.generate_rays`` builds for them: objects by the exact volume renderer,
ground, wall and sky analytically (3x3 supersampled, so far textures do not alias).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image
from typing_extensions import Literal

from nerfconvert import NerfconvertError
from nerfconvert.scenes.cameras import look_at
from nerfconvert.scenes.generate import _check_output_dir, _install, _write_json
from nerfconvert.scenes.object_scene import ObjectScene, _hsv, _make_object, _moved, _scaled, _unit
from nerfconvert.scenes.primitives import Primitive
from nerfconvert.scenes.raymarch import RenderedRays, _box_interval

Array = np.ndarray

GENERATOR_NAME = "nerfconvert.scenes.capture"
GENERATOR_VERSION = 1
"""Bump when the same arguments would produce different files."""

KINDS = ("360", "forward")
HORIZONTAL_FOV_DEG = 65.0
"""A phone's main camera (about 26 mm equivalent) in landscape."""
SUPERSAMPLE = 3
"""Background rays per pixel side: the ground's far texture and the mountains' edges are box filtered."""
PLY_POINTS = 4000
"""About this many sparse points in all (COLMAP gives a few thousand on a small capture)."""
GROUND_RADIUS_360 = 12.0
"""The 360 ground disc: about 3.5x the camera distance, so nerfstudio's auto-scaled poses leave it
far outside the unit box (and the sky is at infinity): nerfacto must contract it."""
FORWARD_CAMERA = np.array([0.0, -3.0, 0.9])
"""Centre of the forward-facing cameras' grid; they look along +y, slightly down."""
FORWARD_PITCH = np.deg2rad(-10.0)
FORWARD_WALL_Y = 4.5


# ---- lens ---------------------------------------------------------------------------------------


def distort(x: Array, y: Array, k1: float, k2: float, p1: float, p2: float) -> Tuple[Array, Array]:
    """OpenCV radial-tangential model on normalised image coordinates (x right, y down)."""
    r2 = x * x + y * y
    d = 1.0 + r2 * (k1 + r2 * k2)
    return d * x + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x), d * y + 2.0 * p2 * x * y + p1 * (r2 + 2.0 * y * y)


def undistort(xd: Array, yd: Array, k1: float, k2: float, p1: float, p2: float, iterations: int = 50):
    """Inverse of ``distort`` by Newton's method (nerfstudio's ``radial_and_tangential_undistort``
    in float64, run to convergence)."""
    x, y = xd.copy(), yd.copy()
    for _ in range(iterations):
        r2 = x * x + y * y
        d = 1.0 + r2 * (k1 + r2 * k2)
        fx = d * x + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x) - xd
        fy = d * y + 2.0 * p2 * x * y + p1 * (r2 + 2.0 * y * y) - yd
        d_r = k1 + 2.0 * k2 * r2
        d_x, d_y = 2.0 * x * d_r, 2.0 * y * d_r
        fx_x = d + d_x * x + 2.0 * p1 * y + 6.0 * p2 * x
        fx_y = d_y * x + 2.0 * p1 * x + 2.0 * p2 * y
        fy_x = d_x * y + 2.0 * p2 * y + 2.0 * p1 * x
        fy_y = d + d_y * y + 2.0 * p2 * x + 6.0 * p1 * y
        det = fx_x * fy_y - fx_y * fy_x
        step_x, step_y = (fx * fy_y - fy * fx_y) / det, (fy * fx_x - fx * fy_x) / det
        x, y = x - step_x, y - step_y
        if max(np.max(np.abs(step_x), initial=0.0), np.max(np.abs(step_y), initial=0.0)) < 1e-15:
            break
    return x, y


@dataclass
class CaptureCamera:
    """One frame's OPENCV camera. Every value is float32-exact, the precision nerfstudio keeps,
    so the rays rendered here are the rays nerfstudio builds from transforms.json."""

    c2w: Array
    """[4, 4] camera-to-world, OpenGL convention (looks down -z, +y up)."""
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    k1: float
    k2: float
    p1: float
    p2: float

    def intrinsics_json(self) -> Dict[str, Any]:
        """The keys ``parse_colmap_camera_params`` writes for an OPENCV camera."""
        return {
            "w": self.width, "h": self.height, "fl_x": self.fx, "fl_y": self.fy, "cx": self.cx, "cy": self.cy,
            "k1": self.k1, "k2": self.k2, "p1": self.p1, "p2": self.p2, "camera_model": "OPENCV",
        }

    def rays(self, offset: Tuple[float, float] = (0.5, 0.5)) -> Tuple[Array, Array]:
        """Origins and unit directions [H, W, 3] through (col + offset[0], row + offset[1]); the
        default pixel centres are what ``Cameras.generate_rays`` uses. The distorted pixel is
        undistorted in OpenCV's y-down frame, then flipped to OpenGL, as nerfstudio does."""
        rows, cols = np.meshgrid(np.arange(self.height) + offset[1], np.arange(self.width) + offset[0], indexing="ij")
        x, y = undistort((cols - self.cx) / self.fx, (rows - self.cy) / self.fy, self.k1, self.k2, self.p1, self.p2)
        rotation = self.c2w[:3, :3]
        # rotation @ (x, -y, -1), elementwise to stay independent of BLAS threading.
        directions = np.stack([rotation[i, 0] * x - rotation[i, 1] * y - rotation[i, 2] for i in range(3)], axis=-1)
        directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
        return np.broadcast_to(self.c2w[:3, 3], directions.shape).copy(), directions


def _f32(value: float) -> float:
    return float(np.float32(value))


def _with_roll(c2w: Array, roll: float) -> Array:
    """``c2w`` turned by ``roll`` radians about its own viewing axis (a handheld tilt)."""
    c, s = np.cos(roll), np.sin(roll)
    out = c2w.copy()
    out[:3, 0] = c * c2w[:3, 0] + s * c2w[:3, 1]
    out[:3, 1] = -s * c2w[:3, 0] + c * c2w[:3, 1]
    return out.astype(np.float32).astype(np.float64)


# ---- background: ground, wall, sky -------------------------------------------------------------


def _smoothstep(edge0: float, edge1: float, x: Array) -> Array:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _mix(a: Array, b: Array, t: Array) -> Array:
    t = np.asarray(t)[..., None]
    return a * (1.0 - t) + b * t


def _waves(rng: np.random.Generator, count: int, low: float, high: float, dims: int = 2) -> Tuple[Array, Array]:
    """Random plane waves (wave vectors with |k| in [low, high], phases) for smooth noise."""
    directions = rng.normal(size=(count, dims))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return directions * rng.uniform(low, high, size=(count, 1)), rng.uniform(0.0, 2.0 * np.pi, size=count)


def _noise(coords: Sequence[Array], waves: Tuple[Array, Array]) -> Array:
    """Smooth noise in about [0, 1]: a normalised sum of plane waves (like ``NoiseTexture``)."""
    vectors, phases = waves
    total = np.zeros(coords[0].shape)
    for k, phase in zip(vectors, phases):
        arg = phase + sum(k[i] * coords[i] for i in range(len(coords)))
        total = total + np.sin(arg)
    return np.clip(0.5 + total / (2.0 * np.sqrt(2.0 * len(phases))), 0.0, 1.0)


@dataclass
class Sky:
    """Radiance from infinitely far away, by direction: a gradient sky with soft clouds and a sun
    glow, two mountain ranges on the horizon, and hazy far land below it (seen past the ground)."""

    zenith: Array
    horizon: Array
    land: Array
    sun: Array
    clouds: Tuple[Array, Array]
    ranges: List[Dict[str, Any]]

    @classmethod
    def from_rng(cls, rng: np.random.Generator, sun: Array) -> "Sky":
        hue = rng.uniform(0.55, 0.62)
        ranges = []
        # Far bluish peaks first, then nearer green hills over them; integer frequencies keep
        # the ridge continuous all around.
        for (lo, hi), color in (
            ((0.03, 0.2), _hsv(hue + rng.uniform(-0.03, 0.03), 0.28, 0.66)),
            ((0.01, 0.09), _hsv(rng.uniform(0.22, 0.36), 0.4, 0.42)),
        ):
            freqs = np.array([1, 2, 3, 5, 7, 11, 17])
            amps = rng.uniform(0.3, 1.0, size=freqs.size) / freqs**0.7
            amps *= 0.5 * (hi - lo) / amps.sum()
            ranges.append(
                {"base": 0.5 * (lo + hi), "freqs": freqs, "amps": amps,
                 "phases": rng.uniform(0, 2 * np.pi, size=freqs.size), "color": color}
            )
        return cls(
            zenith=_hsv(hue, rng.uniform(0.45, 0.6), rng.uniform(0.75, 0.85)),
            horizon=_hsv(hue + 0.02, rng.uniform(0.1, 0.2), 0.95),
            land=_hsv(rng.uniform(0.2, 0.3), 0.35, 0.45),
            sun=sun,
            clouds=_waves(rng, 6, 2.5, 6.0, dims=3),
            ranges=ranges,
        )

    def __call__(self, d: Array) -> Array:
        x, y, z = d[..., 0], d[..., 1], d[..., 2]
        elevation = np.arcsin(np.clip(z, -1.0, 1.0))
        azimuth = np.arctan2(y, x)
        up = np.clip(z, 0.0, 1.0)
        color = _mix(self.horizon, self.zenith, np.sqrt(up))
        cover = _smoothstep(0.45, 0.8, _noise((x, y, z), self.clouds)) * _smoothstep(0.02, 0.25, z)
        color = _mix(color, np.array([0.96, 0.96, 0.97]), 0.85 * cover)
        glow = np.exp(30.0 * (x * self.sun[0] + y * self.sun[1] + z * self.sun[2] - 1.0))
        color = color + 0.25 * glow[..., None] * np.array([1.0, 0.92, 0.75])
        for mountains in self.ranges:
            terms = zip(mountains["freqs"], mountains["amps"], mountains["phases"])
            ridge = mountains["base"] + sum(a * np.sin(f * azimuth + p) for f, a, p in terms)
            # Lighter towards the ridge (haze at the top, as seen in real distance).
            height = np.clip(elevation / np.maximum(ridge, 1e-3), 0.0, 1.0)
            shade = mountains["color"] * (0.8 + 0.35 * height)[..., None]
            color = _mix(color, shade, _smoothstep(0.004, -0.004, elevation - ridge))
        land = self.land * (0.85 + 0.3 * np.sin(7.0 * azimuth) * np.sin(3.0 * azimuth + 1.0))[..., None]
        land = _mix(self.horizon, land, _smoothstep(0.0, 0.08, -elevation))
        return np.clip(_mix(color, land, _smoothstep(0.0, -0.003, elevation)), 0.0, 1.0)


@dataclass
class Ground:
    """The horizontal plane z = ``height``: a meadow of two colours of smooth noise with a tiled
    patio (soft checker) of ``patio_radius`` around the origin, soft contact shadows under the
    objects, lit like the objects' upward faces. Finite: a disc of ``radius``, or the half plane
    y < ``wall_y`` in front of a wall."""

    height: float
    radius: float
    grass: Tuple[Array, Array]
    tiles: Tuple[Array, Array]
    tile_cell: float
    tile_angle: float
    patio_radius: float
    coarse: Tuple[Array, Array]
    fine: Tuple[Array, Array]
    light: float
    shadows: List[Tuple[float, float, float]] = field(default_factory=list)
    """(x, y, radius) of soft dark discs under objects."""
    wall_y: float = np.inf

    def intersect(self, origins: Array, directions: Array) -> Array:
        """[N] distance to the ground along the rays, inf where they miss it."""
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.height - origins[..., 2]) / directions[..., 2]
        t = np.where((directions[..., 2] < 0.0) & (t > 0.0), t, np.inf)
        x = origins[..., 0] + np.where(np.isfinite(t), t, 0.0) * directions[..., 0]
        y = origins[..., 1] + np.where(np.isfinite(t), t, 0.0) * directions[..., 1]
        return np.where((x * x + y * y < self.radius**2) & (y < self.wall_y), t, np.inf)

    def albedo(self, x: Array, y: Array) -> Array:
        meadow = _mix(self.grass[0], self.grass[1], _noise((x, y), self.coarse))
        meadow = meadow * (0.8 + 0.4 * _noise((x, y), self.fine))[..., None]
        c, s = np.cos(self.tile_angle), np.sin(self.tile_angle)
        k = np.pi / self.tile_cell
        checker = np.sin(k * (c * x + s * y)) * np.sin(k * (-s * x + c * y))
        tiles = _mix(self.tiles[0], self.tiles[1], 0.5 + 0.5 * np.tanh(5.0 * checker))
        r = np.sqrt(x * x + y * y)
        return _mix(meadow, tiles, _smoothstep(self.patio_radius + 0.12, self.patio_radius - 0.12, r))

    def radiance(self, points: Array) -> Array:
        x, y = points[..., 0], points[..., 1]
        shade = np.ones(x.shape)
        for sx, sy, radius in self.shadows:
            d = np.sqrt((x - sx) ** 2 + (y - sy) ** 2)
            shade = shade * (1.0 - 0.45 * _smoothstep(1.25 * radius, 0.7 * radius, d))
        return np.clip(self.albedo(x, y) * (self.light * shade)[..., None], 0.0, 1.0)


@dataclass
class Wall:
    """A vertical brick wall facing -y at y = ``y``, |x| < ``half_width``, from the ground to ``top``."""

    y: float
    half_width: float
    bottom: float
    top: float
    brick: Array
    mortar: Array
    light: float
    brick_size: Tuple[float, float] = (0.5, 0.22)

    def intersect(self, origins: Array, directions: Array) -> Array:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.y - origins[..., 1]) / directions[..., 1]
        t = np.where((directions[..., 1] > 0.0) & (t > 0.0), t, np.inf)
        safe = np.where(np.isfinite(t), t, 0.0)
        x = origins[..., 0] + safe * directions[..., 0]
        z = origins[..., 2] + safe * directions[..., 2]
        inside = (np.abs(x) < self.half_width) & (z > self.bottom) & (z < self.top)
        return np.where(inside, t, np.inf)

    def radiance(self, points: Array) -> Array:
        width, height = self.brick_size
        u, v = points[..., 0] + self.half_width, points[..., 2] - self.bottom
        row = np.floor(v / height)
        u = u + 0.5 * width * (row % 2)
        col = np.floor(u / width)
        edge = np.minimum(
            np.minimum(u - col * width, (col + 1) * width - u), np.minimum(v - row * height, (row + 1) * height - v)
        )
        # Per-brick tone from a smooth function of the brick's index (no amplifying hash).
        tone = 0.78 + 0.22 * np.sin(2.39996 * row + 1.7 * col) * np.cos(0.37 * row * col + 0.5 * col)
        color = _mix(self.brick * tone[..., None], self.mortar, _smoothstep(0.03, 0.012, edge))
        return np.clip(color * self.light, 0.0, 1.0)


@dataclass
class CaptureScene:
    """Objects (an exact SDF radiance field) in front of an analytic backdrop."""

    kind: str
    objects: ObjectScene
    ground: Ground
    sky: Sky
    wall: Optional[Wall] = None

    def _hits(self, origins: Array, directions: Array) -> Tuple[Array, Array]:
        t_ground = self.ground.intersect(origins, directions)
        t_wall = self.wall.intersect(origins, directions) if self.wall is not None else np.full(t_ground.shape, np.inf)
        return t_ground, t_wall

    def distance(self, origins: Array, directions: Array) -> Array:
        """[...] distance along unit rays to the backdrop; inf at the sky."""
        return np.minimum(*self._hits(origins, directions))

    def background(self, origins: Array, directions: Array) -> Tuple[Array, Array]:
        """Colour [..., 3] and distance [...] (inf at the sky) of the backdrop along unit rays."""
        t_ground, t_wall = self._hits(origins, directions)
        t = np.minimum(t_ground, t_wall)
        color = np.zeros(directions.shape)
        sky = ~np.isfinite(t)
        color[sky] = self.sky(directions[sky])
        for surface, t_surface in ((self.ground, t_ground), (self.wall, t_wall)):
            hit = np.isfinite(t_surface) & (t_surface <= t)
            if surface is not None and hit.any():
                color[hit] = surface.radiance(origins[hit] + t_surface[hit][:, None] * directions[hit])
        return color, t

    def describe(self) -> Dict[str, Any]:
        return {
            "kind": self.kind,
            "ground_height": self.ground.height,
            "ground_radius": self.ground.radius,
            "wall": None if self.wall is None else {"y": self.wall.y, "top": self.wall.top},
            "objects": self.objects.describe(),
        }


@dataclass
class RenderedFrame:
    """One frame, before exposure: linear colour, and the centre rays with their depth."""

    rgb: Array
    """[H, W, 3] in [0, 1]."""
    depth: Array
    """[H, W] distance along the unit ray to the object (where its alpha >= 0.5) or to the
    backdrop; inf at the sky."""
    alpha: Array
    """[H, W] the objects' opacity."""
    origins: Array
    directions: Array


def render_objects(objects: ObjectScene, origins: Array, directions: Array) -> RenderedRays:
    """``objects.render_rays``, marching only the rays that cross some primitive's box: the
    density is exactly 0 outside them, so the others are exactly empty (alpha, colour, depth 0)
    and the result is the same. The forward scene's objects are far apart, so most rays that
    cross the union's box cross no primitive."""
    flat_o, flat_d = origins.reshape(-1, 3), directions.reshape(-1, 3)
    flat_d = flat_d / np.linalg.norm(flat_d, axis=-1, keepdims=True)
    hits = np.zeros(flat_o.shape[0], dtype=bool)
    for primitive in objects.primitives:
        box = primitive.bounding_box + np.array([[-1.0], [1.0]]) * objects.sdf_band
        hits |= _box_interval(flat_o, flat_d, box, 0.0)[2]
    rgb, alpha, depth = np.zeros(flat_o.shape), np.zeros(hits.shape), np.zeros(hits.shape)
    if hits.any():
        marched = objects.render_rays(flat_o[hits], flat_d[hits])
        rgb[hits], alpha[hits], depth[hits] = marched.rgb, marched.alpha, marched.depth
    shape = origins.shape[:-1]
    return RenderedRays(rgb=rgb.reshape(shape + (3,)), alpha=alpha.reshape(shape), depth=depth.reshape(shape))


def render_frame(scene: CaptureScene, camera: CaptureCamera, supersample: int = SUPERSAMPLE) -> RenderedFrame:
    """Objects along the pixel-centre rays, composited over the supersampled backdrop. The
    backdrop lies behind every object (objects stand on the ground, in front of the wall)."""
    origins, directions = camera.rays()
    rendered = render_objects(scene.objects, origins, directions)
    t_background = scene.distance(origins, directions)
    background = np.zeros(origins.shape)
    seen = rendered.alpha < 1.0 - 1e-6  # the backdrop shows through (it is hidden elsewhere)
    steps = (np.arange(supersample) + 0.5) / supersample
    offsets = [(float(u), float(v)) for u in steps for v in steps]
    for offset in offsets:
        o, d = camera.rays(offset)
        background[seen] += scene.background(o[seen], d[seen])[0]
    background /= len(offsets)
    rgb = np.clip(rendered.rgb + (1.0 - rendered.alpha[..., None]) * background, 0.0, 1.0)
    depth = np.where(rendered.alpha >= 0.5, rendered.depth, t_background)
    return RenderedFrame(rgb=rgb, depth=depth, alpha=rendered.alpha, origins=origins, directions=directions)


# ---- scene composition ---------------------------------------------------------------------------


def _ground(rng: np.random.Generator, height: float, radius: float, light: float, patio_radius: float) -> Ground:
    hue = rng.uniform(0.18, 0.32)
    tile_hue = rng.uniform(0.0, 1.0)
    return Ground(
        height=height,
        radius=radius,
        grass=(_hsv(hue, 0.5, 0.5), _hsv(hue + rng.uniform(-0.1, -0.05), 0.45, 0.62)),
        tiles=(_hsv(tile_hue, 0.12, 0.78), _hsv(tile_hue + 0.05, 0.3, 0.5)),
        tile_cell=float(rng.uniform(0.4, 0.55)),
        tile_angle=float(rng.uniform(0.0, 0.5 * np.pi)),
        patio_radius=patio_radius,
        coarse=_waves(rng, 8, 0.8, 2.0),
        fine=_waves(rng, 8, 4.0, 8.0),
        light=light,
    )


def _upward_light(objects: ObjectScene) -> float:
    """The objects' shading of an upward face with albedo 1, so the ground matches them."""
    return objects.ambient_sky + objects.light_intensity * max(float(objects.light_direction[2]), 0.0)


def build_scene(kind: str, seed: int) -> CaptureScene:
    """The seeded scene of one kind (no cameras)."""
    rng = np.random.default_rng([seed, 11])
    if kind == "360":
        objects = ObjectScene.from_seed(seed)
        pedestal = objects.primitives[0]
        ground = _ground(rng, float(pedestal.bounding_box[0, 2]), GROUND_RADIUS_360, _upward_light(objects),
                         patio_radius=float(rng.uniform(2.0, 2.6)))
        radius = float(np.max(np.abs(pedestal.bounding_box[:, :2])))
        ground.shadows = [(-0.12, 0.1, radius)]
        return CaptureScene(kind, objects, ground, Sky.from_rng(rng, objects.light_direction))

    primitives, footprints = _forward_objects(np.random.default_rng([seed, 12]))
    objects = ObjectScene(primitives=primitives, light_direction=_unit([0.35, -0.6, 0.72]))
    ground = _ground(rng, 0.0, 40.0, _upward_light(objects), patio_radius=float(rng.uniform(2.5, 3.5)))
    ground.shadows = footprints
    wall_light = objects.ambient_ground + 0.5 * (objects.ambient_sky - objects.ambient_ground)
    wall_light += objects.light_intensity * max(-float(objects.light_direction[1]), 0.0)
    brick_hue = rng.uniform(0.0, 0.08)
    wall = Wall(y=FORWARD_WALL_Y, half_width=12.0, bottom=0.0, top=float(rng.uniform(1.5, 1.9)),
                brick=_hsv(brick_hue, rng.uniform(0.45, 0.65), 0.62), mortar=np.array([0.78, 0.76, 0.72]),
                light=wall_light)
    ground.wall_y = wall.y
    return CaptureScene(kind, objects, ground, Sky.from_rng(rng, objects.light_direction), wall)


def _forward_objects(rng: np.random.Generator) -> Tuple[List[Primitive], List[Tuple[float, float, float]]]:
    """5-6 objects on the ground (z = 0) spread over depths 2-5.5 in front of the cameras,
    each inside the view at its depth and clear of the others."""
    shapes = ["sphere", "box", "cylinder", "torus"]
    count = int(rng.integers(5, 7))
    kinds = [shapes[i % 4] for i in rng.permutation(count)]
    hue0 = rng.random()
    depths = FORWARD_CAMERA[1] + 2.0 + 3.5 * (np.arange(count) + rng.uniform(0.1, 0.9, size=count)) / count
    half_fov = np.tan(0.5 * np.deg2rad(HORIZONTAL_FOV_DEG))
    primitives: List[Primitive] = []
    placed: List[Tuple[float, float, float]] = []
    for i, (kind, y) in enumerate(zip(kinds, depths)):
        primitive, footprint, _ = _make_object(rng, kind, hue0 + 0.618 * i)
        scale = float(rng.uniform(1.1, 1.5))
        primitive, footprint = _scaled(primitive, scale), footprint * scale
        reach = max(0.75 * (y - FORWARD_CAMERA[1]) * half_fov - footprint, 0.0)
        side = 1.0 if i % 2 else -1.0  # alternate sides, so nearer objects do not hide farther ones
        for _ in range(100):
            x = float(side * reach * rng.uniform(0.1, 1.0))
            if all(np.hypot(x - px, y - py) > footprint + pr + 0.1 for px, py, pr in placed):
                break
        primitives.append(_moved(primitive, np.array([x, y, 0.0])))
        placed.append((x, float(y), footprint))
    return primitives, placed


# ---- cameras, lens states, exposure -------------------------------------------------------------


def _orbit_c2ws(rng: np.random.Generator, count: int) -> List[Array]:
    """A handheld walk around the object: non-constant radius and height, a jittered look-at
    point and a small roll, in path order (like frames sampled from a video)."""
    start = rng.uniform(0.0, 2.0 * np.pi)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=2)
    poses = []
    for i in range(count):
        azimuth = start + 2.0 * np.pi * (i + rng.uniform(-0.25, 0.25)) / count
        radius = 3.4 + 0.35 * np.sin(2.0 * azimuth + phases[0]) + rng.normal(0.0, 0.06)
        height = 0.75 + 0.45 * np.sin(azimuth + phases[1]) + rng.normal(0.0, 0.05)
        position = np.array([radius * np.cos(azimuth), radius * np.sin(azimuth), height])
        target = np.array([0.0, 0.0, -0.2]) + rng.normal(0.0, 0.06, size=3)
        poses.append(_with_roll(look_at(position, target), np.deg2rad(np.clip(rng.normal(0.0, 2.0), -5.0, 5.0))))
    return poses


def _forward_c2ws(rng: np.random.Generator, count: int) -> List[Array]:
    """An LLFF-style sweep: a jittered grid in the plane facing +y, visited row by row in a
    serpentine, every camera looking about the same way (+y, pitched down)."""
    cols = int(np.ceil(np.sqrt(1.6 * count)))
    rows = int(np.ceil(count / cols))
    poses = []
    for i in range(count):
        row, col = divmod(i, cols)
        if row % 2:
            col = cols - 1 - col
        u = (col + 0.5) / cols - 0.5 if cols > 1 else 0.0
        v = (row + 0.5) / rows - 0.5 if rows > 1 else 0.0
        position = FORWARD_CAMERA + np.array([1.1 * u, 0.0, -0.5 * v]) + rng.normal(0.0, [0.04, 0.05, 0.03])
        yaw, pitch = rng.normal(0.0, np.deg2rad(2.0)), FORWARD_PITCH + rng.normal(0.0, np.deg2rad(1.5))
        forward = np.array([np.sin(yaw) * np.cos(pitch), np.cos(yaw) * np.cos(pitch), np.sin(pitch)])
        roll = np.deg2rad(np.clip(rng.normal(0.0, 1.5), -4.0, 4.0))
        poses.append(_with_roll(look_at(position, position + forward), roll))
    return poses


def _lens_states(rng: np.random.Generator, width: int, height: int) -> List[Dict[str, float]]:
    """Two zoom states of one phone lens, 3% apart in focal length, each with its own mild
    barrel distortion and principal point, as COLMAP would calibrate them."""
    focal = 0.5 * width / np.tan(0.5 * np.deg2rad(HORIZONTAL_FOV_DEG))
    states = []
    for scale in (0.985, 1.015):
        states.append(
            {
                "focal": focal * scale,
                "aspect": float(rng.uniform(-0.003, 0.003)),
                "cx": 0.5 * width + float(rng.uniform(-0.015, 0.015)) * width,
                "cy": 0.5 * height + float(rng.uniform(-0.015, 0.015)) * height,
                "k1": float(rng.uniform(-0.1, -0.05)),
                "k2": float(rng.uniform(0.0, 0.02)),
                "p1": float(rng.uniform(-5e-4, 5e-4)),
                "p2": float(rng.uniform(-5e-4, 5e-4)),
            }
        )
    return states


def capture_cameras(
    kind: str, seed: int, width: int, height: int, num_frames: int
) -> Tuple[List[CaptureCamera], List[int]]:
    """The frames' cameras and the lens state (0 or 1) of each: per-frame focal length breathes
    by +-0.4% around the state's (autofocus), so no two frames share intrinsics."""
    rng = np.random.default_rng([seed, 13])
    c2ws = _orbit_c2ws(rng, num_frames) if kind == "360" else _forward_c2ws(rng, num_frames)
    lens_rng = np.random.default_rng([seed, 14])
    states = _lens_states(lens_rng, width, height)
    cameras, state_ids = [], []
    for c2w in c2ws:
        state_id = int(lens_rng.integers(2))
        state = states[state_id]
        focal = state["focal"] * (1.0 + lens_rng.uniform(-0.004, 0.004))
        cx, cy = state["cx"] + lens_rng.uniform(-0.05, 0.05), state["cy"] + lens_rng.uniform(-0.05, 0.05)
        cameras.append(
            CaptureCamera(
                c2w=c2w,
                fx=_f32(focal), fy=_f32(focal * (1.0 + state["aspect"])), cx=_f32(cx), cy=_f32(cy),
                width=width, height=height,
                k1=_f32(state["k1"]), k2=_f32(state["k2"]), p1=_f32(state["p1"]), p2=_f32(state["p2"]),
            )
        )
        state_ids.append(state_id)
    return cameras, state_ids


def _exposures(seed: int, count: int) -> Tuple[Array, Array]:
    """Per-frame exposure gain in [0.8, 1.2] (auto exposure) and a white balance within +-3%
    per channel: what nerfacto's appearance embedding is for."""
    rng = np.random.default_rng([seed, 15])
    gains = np.exp(rng.uniform(np.log(0.8), np.log(1.2), size=count))
    white_balance = 1.0 + rng.uniform(-0.03, 0.03, size=(count, 3))
    return gains, white_balance


# ---- writing ------------------------------------------------------------------------------------


def _sparse_points(rng: np.random.Generator, frame: RenderedFrame, count: int) -> Tuple[Array, Array]:
    """Points on surfaces this frame sees clearly (opaque objects or the backdrop, not the sky),
    with their unexposed colour, like COLMAP's triangulated features."""
    solid = ((frame.alpha > 0.99) | (frame.alpha < 0.01)) & np.isfinite(frame.depth)
    candidates = np.flatnonzero(solid.reshape(-1))
    if candidates.size == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.uint8)
    chosen = np.sort(rng.choice(candidates, size=min(count, candidates.size), replace=False))
    depth = frame.depth.reshape(-1)[chosen]
    points = frame.origins.reshape(-1, 3)[chosen] + depth[:, None] * frame.directions.reshape(-1, 3)[chosen]
    colors = np.round(frame.rgb.reshape(-1, 3)[chosen] * 255.0).astype(np.uint8)
    return points, colors


def _write_ply(path: Path, points: Array, colors: Array) -> None:
    """ASCII PLY in the layout of nerfstudio's ``create_ply_from_colmap`` (open3d reads it)."""
    lines = [
        "ply", "format ascii 1.0", f"element vertex {len(points)}",
        "property float x", "property float y", "property float z",
        "property uint8 red", "property uint8 green", "property uint8 blue", "end_header",
    ]
    lines += [f"{x:8f} {y:8f} {z:8f} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(points.astype(np.float32), colors)]
    path.write_text("\n".join(lines) + "\n")


def is_capture_scene(path: Path) -> bool:
    """Whether ``path`` holds a previous output of ``generate_capture_scene`` (safe to replace)."""
    try:
        meta = json.loads((Path(path) / "scene.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("generator") == GENERATOR_NAME


def generate_capture_scene(
    output_dir: Union[str, Path],
    kind: Literal["360", "forward"] = "360",
    seed: int = 0,
    width: int = 64,
    height: int = 48,
    num_frames: int = 40,
    overwrite: bool = False,
) -> Path:
    """Render a seeded capture-like scene into ``output_dir`` as ``ns-process-data`` would
    have written a phone capture of it (see the module docstring for the layout).

    The same arguments always give byte-identical files. ``output_dir`` may be missing, empty,
    or a previous generated scene; anything else needs ``overwrite=True``. Load it with
    ``NerfstudioDataParserConfig(data=output_dir)``.

    Returns:
        ``output_dir`` as a Path.
    """
    output_dir = Path(output_dir)
    if kind not in KINDS:
        raise NerfconvertError(f"kind must be one of {', '.join(repr(k) for k in KINDS)}, got {kind!r}.")
    for name, value in {"width": width, "height": height, "num_frames": num_frames}.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise NerfconvertError(f"{name} must be a positive integer, got {value!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NerfconvertError(f"seed must be a non-negative integer, got {seed!r}.")
    if not is_capture_scene(output_dir):
        _check_output_dir(output_dir, overwrite)
    width, height, num_frames, seed = int(width), int(height), int(num_frames), int(seed)

    scene = build_scene(kind, seed)
    cameras, state_ids = capture_cameras(kind, seed, width, height, num_frames)
    gains, white_balance = _exposures(seed, num_frames)
    point_rng = np.random.default_rng([seed, 16])
    points_per_frame = -(-PLY_POINTS // num_frames)

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = output_dir.parent / f".{output_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    os.mkdir(staging)
    try:
        (staging / "images").mkdir()
        frames: List[Dict[str, Any]] = []
        all_points, all_colors = [], []
        for index, camera in enumerate(cameras):
            rendered = render_frame(scene, camera)
            exposed = np.clip(rendered.rgb * (gains[index] * white_balance[index]), 0.0, 1.0)
            name = f"frame_{index + 1:05d}.png"
            Image.fromarray(np.round(exposed * 255.0).astype(np.uint8), mode="RGB").save(staging / "images" / name)
            points, colors = _sparse_points(point_rng, rendered, points_per_frame)
            all_points.append(points)
            all_colors.append(colors)
            frames.append(
                {
                    "file_path": f"images/{name}",
                    "transform_matrix": camera.c2w.tolist(),
                    "colmap_im_id": index + 1,
                    **camera.intrinsics_json(),
                }
            )
        _write_ply(staging / "sparse_pc.ply", np.concatenate(all_points), np.concatenate(all_colors))
        _write_json(
            staging / "transforms.json",
            {
                "camera_model": "OPENCV",
                "frames": frames,
                "applied_transform": np.eye(4)[:3].tolist(),
                "ply_file_path": "sparse_pc.ply",
            },
        )
        _write_json(
            staging / "scene.json",
            {
                "generator": GENERATOR_NAME,
                "generator_version": GENERATOR_VERSION,
                "seed": seed,
                "kind": kind,
                "width": width,
                "height": height,
                "num_frames": num_frames,
                "exposures": [round(float(g), 6) for g in gains],
                "white_balance": white_balance.round(6).tolist(),
                "lens_states": state_ids,
                "notes": "images = clip(exposure * white_balance * linear colour); world z is up; "
                "sparse_pc.ply is in the frames' world coordinates (applied_transform is the identity)",
                "scene": scene.describe(),
            },
        )
        _install(staging, output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return output_dir
