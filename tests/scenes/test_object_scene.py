"""The procedural object scene: determinism, blender-format loading, and that the written
images and depths are the exact rendering of the analytic field."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
from PIL import Image

from nerfconvert import NerfconvertError
from nerfconvert.scenes import ObjectScene, generate_object_scene, look_at, orbit_position, pixel_rays, render_rays
from nerfconvert.scenes.primitives import Material, SolidTexture, Sphere

TINY = dict(resolution=16, num_train=2, num_val=1, num_test=1)


def file_digests(root: Path) -> Dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def single_sphere(center=(0.0, 0.0, 0.0), radius=0.5, specular=0.3) -> ObjectScene:
    red = np.array([0.8, 0.3, 0.2])
    material = Material(SolidTexture(red, red), specular=specular, shininess=20.0)
    return ObjectScene([Sphere(np.array(center, dtype=float), np.eye(3), material, radius=radius)])


def frame_rays(scene_dir: Path, split: str, index: int):
    meta = json.loads((scene_dir / f"transforms_{split}.json").read_text())
    frame = meta["frames"][index]
    image = np.array(Image.open(scene_dir / (frame["file_path"][2:] + ".png")))
    c2w = np.array(frame["transform_matrix"])
    origins, directions = pixel_rays(c2w, image.shape[1], image.shape[0], meta["camera_angle_x"])
    return image, np.load(scene_dir / frame["depth_file_path"]), origins, directions


# ---- determinism ------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_other_seed_differs(tmp_path, object_scene):
    first = generate_object_scene(tmp_path / "a", seed=0, **TINY)
    second = generate_object_scene(tmp_path / "b", seed=0, **TINY)
    other = generate_object_scene(tmp_path / "c", seed=1, **TINY)
    assert file_digests(first) == file_digests(second)
    assert len(file_digests(first)) == 3 + 4 * 2 + 1  # 3 transforms, png + depth per view, scene.json
    differing = [name for name, digest in file_digests(other).items() if file_digests(first).get(name) != digest]
    assert any(name.endswith(".png") for name in differing)

    # The session fixture, made in this process with the same arguments, matches a fresh run.
    again = generate_object_scene(tmp_path / "d", seed=0, resolution=32, num_train=8, num_val=2, num_test=2)
    assert file_digests(again) == file_digests(object_scene)


def test_identical_bytes_across_processes(tmp_path):
    """Hash randomisation or thread counts must not leak into the files."""
    here = generate_object_scene(tmp_path / "here", seed=3, **TINY)
    code = (
        "import sys; from nerfconvert.scenes import generate_object_scene; "
        "generate_object_scene(sys.argv[1], seed=3, resolution=16, num_train=2, num_val=1, num_test=1)"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "there")], check=True, env=env)
    assert file_digests(here) == file_digests(tmp_path / "there")


def test_committed_tiny_scene_is_up_to_date(object_scene):
    """assets/scenes/tiny is the fixture's scene; regenerate it (python -m nerfconvert.scenes)
    whenever the generator changes. Compared with a tolerance: other platforms' libm may
    differ in the last bit."""
    committed = Path(__file__).resolve().parents[2] / "assets" / "scenes" / "tiny"
    assert sorted(file_digests(committed)) == sorted(file_digests(object_scene))
    for split in ("train", "val", "test"):
        for name in (f"{split}/r_0.png", f"{split}/r_1.png"):
            old = np.array(Image.open(committed / name)).astype(int)
            new = np.array(Image.open(object_scene / name)).astype(int)
            assert np.abs(old - new).max() <= 1
        old_meta = json.loads((committed / f"transforms_{split}.json").read_text())
        new_meta = json.loads((object_scene / f"transforms_{split}.json").read_text())
        for old_frame, new_frame in zip(old_meta["frames"], new_meta["frames"]):
            np.testing.assert_allclose(old_frame["transform_matrix"], new_frame["transform_matrix"], atol=1e-6)
    old_depth, new_depth = np.load(committed / "train/r_0_depth.npy"), np.load(object_scene / "train/r_0_depth.npy")
    both = (old_depth > 0) & (new_depth > 0)
    assert np.sum((old_depth > 0) != (new_depth > 0)) <= 2  # a silhouette pixel may flip
    np.testing.assert_allclose(old_depth[both], new_depth[both], atol=1e-4)


# ---- blender format -------------------------------------------------------------------------


def test_loads_through_nerfstudio_blender_dataparser(object_scene):
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    parser = BlenderDataParserConfig(data=object_scene).setup()
    for split, count in (("train", 8), ("val", 2), ("test", 2)):
        outputs = parser.get_dataparser_outputs(split=split)
        assert len(outputs.image_filenames) == count
        assert len(outputs.cameras) == count
        assert int(outputs.cameras.width[0]) == 32 and int(outputs.cameras.height[0]) == 32
        for filename in outputs.image_filenames:
            image = np.array(Image.open(filename))
            assert image.shape == (32, 32, 4) and image.dtype == np.uint8
            assert np.load(str(filename)[: -len(".png")] + "_depth.npy").shape == (32, 32)

    meta = json.loads((object_scene / "scene.json").read_text())
    assert (meta["seed"], meta["resolution"], meta["num_train"]) == (0, 32, 8)
    assert meta["generator_version"] >= 1


def test_pixel_rays_match_nerfstudio_cameras(object_scene):
    """Ground truth is rendered along exactly the rays nerfstudio generates for the same pixels."""
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    outputs = BlenderDataParserConfig(data=object_scene).setup().get_dataparser_outputs(split="train")
    ray_bundle = outputs.cameras.generate_rays(camera_indices=3)
    _, _, origins, directions = frame_rays(object_scene, "train", 3)
    np.testing.assert_allclose(ray_bundle.origins.numpy(), origins, atol=1e-5)
    np.testing.assert_allclose(ray_bundle.directions.numpy(), directions, atol=1e-5)


def test_cameras_look_at_origin_from_upper_hemisphere(object_scene):
    for split in ("train", "val", "test"):
        meta = json.loads((object_scene / f"transforms_{split}.json").read_text())
        assert abs(meta["camera_angle_x"] - 0.6911) < 1e-3
        for frame in meta["frames"]:
            c2w = np.array(frame["transform_matrix"])
            assert c2w.shape == (4, 4)
            position, forward = c2w[:3, 3], -c2w[:3, 2]  # OpenGL: the camera looks down -z
            assert abs(np.linalg.norm(position) - 4.0) < 1e-5 and position[2] > 0
            np.testing.assert_allclose(forward, -position / np.linalg.norm(position), atol=1e-6)
            np.testing.assert_allclose(c2w[:3, :3].T @ c2w[:3, :3], np.eye(3), atol=1e-6)


# ---- images and depth -------------------------------------------------------------------------


def test_alpha_is_zero_at_corners_and_opaque_in_the_centre(object_scene):
    for split, count in (("train", 8), ("val", 2), ("test", 2)):
        for index in range(count):
            image, depth, _, _ = frame_rays(object_scene, split, index)
            alpha = image[..., 3]
            assert alpha[0, 0] == alpha[0, -1] == alpha[-1, 0] == alpha[-1, -1] == 0
            assert alpha[12:20, 12:20].max() == 255
            assert 0.1 < (alpha > 0).mean() < 0.9  # an object, not an empty or full frame
            # Depth is 0 exactly where the PNG alpha is 0, and inside the camera sphere elsewhere.
            assert np.array_equal(depth == 0, alpha == 0)
            assert np.all((depth[alpha > 0] > 2.0) & (depth[alpha > 0] < 6.0))


def test_saved_depth_lies_on_the_analytic_surface(object_scene):
    scene = ObjectScene.from_seed(0)
    width = scene.surface_half_width
    for split, index in (("train", 0), ("train", 5), ("test", 1)):
        image, depth, origins, directions = frame_rays(object_scene, split, index)
        opaque = image[..., 3] == 255
        hits = origins[opaque] + depth[opaque][:, None] * directions[opaque]
        distance = np.abs(scene.sdf(hits))
        # Rays terminate within the density transition (|sdf| < w); a few rays at depth
        # discontinuities average two surfaces and may land in between.
        assert np.mean(distance < width) > 0.97
        assert np.median(distance) < 0.6 * width


def test_depth_of_a_sphere_is_the_distance_to_its_surface():
    scene = single_sphere(center=(0.2, -0.1, 0.3), radius=0.5)
    width = scene.surface_half_width
    origin = np.array([3.0, 1.0, 2.0])
    to_center = scene.primitives[0].center - origin
    distance = np.linalg.norm(to_center)
    axis = to_center / distance
    side = np.cross(axis, [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side)
    # Rays passing the centre at these distances: head-on, at half the radius, and a miss
    # just outside the density shell.
    closest = np.array([0.0, 0.25, 0.5 + 1.5 * width])
    sin = closest / distance
    rays = np.sqrt(1.0 - sin**2)[:, None] * axis + sin[:, None] * side
    rendered = scene.render_rays(np.broadcast_to(origin, rays.shape), rays)
    expected = np.sqrt(distance**2 - closest[:2] ** 2) - np.sqrt(0.25 - closest[:2] ** 2)
    assert np.all(rendered.alpha[:2] > 0.999)
    assert np.all(np.abs(rendered.depth[:2] - expected) < width)
    assert rendered.alpha[2] == 0.0 and rendered.depth[2] == 0.0


def test_colour_is_view_dependent():
    scene = single_sphere(radius=0.5, specular=0.3)
    # The point of the sphere facing the key light, seen from the mirror direction (highlight)
    # and from the side.
    light = scene.light_direction
    point = 0.5 * light
    side = np.cross(light, [0.0, 1.0, 0.0])
    side /= np.linalg.norm(side)
    view_dirs = np.stack([-light, -(0.5 * light + 0.866 * side)])  # ray directions arriving at the point
    colors = scene.color(np.stack([point, point]), view_dirs)
    assert np.max(np.abs(colors[0] - colors[1])) > 0.1
    np.testing.assert_allclose(scene.albedo(point[None])[0], [0.8, 0.3, 0.2])

    # And it shows in rendered pixels: the same surface point through two rays.
    origins = point[None, :] - 3.0 * view_dirs
    rendered = scene.render_rays(origins, view_dirs)
    assert np.all(rendered.alpha > 0.999)
    assert np.max(np.abs(rendered.rgb[0] - rendered.rgb[1])) > 0.1


def test_skipping_marcher_matches_dense_quadrature():
    """Empty-space and interior skipping must not change the result: render a view with the
    SDF-accelerated path and with plain dense sampling of the same field."""
    scene = ObjectScene.from_seed(2)

    class DenseOnly:  # the same field without the sdf, so the marcher samples everything
        bounding_box = scene.bounding_box
        density = staticmethod(scene.density)
        color = staticmethod(scene.color)

    origins, directions = pixel_rays(look_at(orbit_position(4.0, 0.7, 0.4)), 12, 12)
    fast = render_rays(scene, origins, directions, num_coarse=32, num_fine=16)
    dense = render_rays(DenseOnly(), origins, directions, num_coarse=32, num_fine=16)
    assert (fast.alpha > 0.5).sum() > 20
    np.testing.assert_allclose(fast.alpha, dense.alpha, atol=1e-9)
    np.testing.assert_allclose(fast.rgb, dense.rgb, atol=1e-5)
    np.testing.assert_allclose(fast.depth, dense.depth, atol=1e-6)


def test_seeded_scenes_fit_the_unit_cube():
    kinds = set()
    for seed in range(12):
        scene = ObjectScene.from_seed(seed)
        boxes = np.stack([p.bounding_box for p in scene.primitives])
        assert boxes.min() >= -1.0 and boxes.max() <= 1.0
        assert len(scene.primitives) >= 4  # pedestal + at least three objects
        kinds |= {type(p).__name__ for p in scene.primitives}
    assert kinds == {"Sphere", "RoundedBox", "Cylinder", "Torus"}
    assert ObjectScene.from_seed(5).describe() == ObjectScene.from_seed(5).describe()
    assert ObjectScene.from_seed(5).describe() != ObjectScene.from_seed(6).describe()


# ---- output directory safety --------------------------------------------------------------------


def test_refuses_foreign_non_empty_directory(tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(NerfconvertError) as error:
        generate_object_scene(target, **TINY)
    message = str(error.value)
    assert "\n" not in message and str(target) in message and "overwrite=True" in message
    assert (target / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]  # no staging leftovers

    generate_object_scene(target, overwrite=True, **TINY)
    assert not (target / "notes.txt").exists() and (target / "scene.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


def test_regenerates_over_its_own_output_and_rejects_bad_paths(tmp_path):
    target = generate_object_scene(tmp_path / "scene", seed=0, **TINY)
    before = file_digests(target)
    generate_object_scene(target, seed=1, **TINY)  # a previous output may be replaced freely
    assert json.loads((target / "scene.json").read_text())["seed"] == 1
    assert file_digests(target) != before

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(NerfconvertError, match="is a file"):
        generate_object_scene(a_file, **TINY)
    with pytest.raises(NerfconvertError, match="resolution"):
        generate_object_scene(tmp_path / "bad", resolution=0)
    assert not (tmp_path / "bad").exists()
