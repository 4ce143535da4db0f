"""Seeded procedural object scenes: analytic radiance fields rendered exactly, written in
nerfstudio's blender format. The default scene of the demo and of every test.

    from nerfconvert.scenes import generate_object_scene
    data = generate_object_scene("data/object", seed=0, resolution=64)
    # ns-train <method> blender-data --data data/object

Capture-like scenes (ground, sky, lens distortion, exposure) in ns-process-data's layout:

    from nerfconvert.scenes import generate_capture_scene
    data = generate_capture_scene("data/capture", kind="360", seed=0)
    # ns-train nerfacto nerfstudio-data --data data/capture
"""

from nerfconvert.scenes.cameras import CAMERA_ANGLE_X, look_at, orbit_position, pixel_rays
from nerfconvert.scenes.capture import generate_capture_scene
from nerfconvert.scenes.generate import (
    GENERATOR_VERSION,
    generate_object_scene,
    is_generated_scene,
    render_preview,
    render_view,
)
from nerfconvert.scenes.object_scene import ObjectScene
from nerfconvert.scenes.raymarch import AnalyticField, RenderedRays, SdfField, render_rays

__all__ = [
    "AnalyticField",
    "CAMERA_ANGLE_X",
    "GENERATOR_VERSION",
    "ObjectScene",
    "RenderedRays",
    "SdfField",
    "generate_capture_scene",
    "generate_object_scene",
    "is_generated_scene",
    "look_at",
    "orbit_position",
    "pixel_rays",
    "render_preview",
    "render_rays",
    "render_view",
]
