"""Capture-like scenes: determinism, the ns-process-data layout, loading through nerfstudio's
nerfstudio-data parser (distortion, point cloud, split), pixels rendered along exactly the
distorted rays nerfstudio builds, a background that needs scene contraction, per-frame
exposure, and a stock nerfacto run on it through the real ``ns-train``."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
from PIL import Image
from processes import bin_, read_ply_vertex_count, start_group, stop_group

from nerfconvert import NerfconvertError
from nerfconvert.scenes import generate_capture_scene, generate_object_scene
from nerfconvert.scenes.capture import CaptureCamera, build_scene, distort, render_frame, undistort

SIZE = dict(width=40, height=30, num_frames=20)
INTRINSICS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "p1", "p2")


def file_digests(root: Path) -> Dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def capture_360(tmp_path_factory) -> Path:
    return generate_capture_scene(tmp_path_factory.mktemp("capture_360"), kind="360", seed=0, **SIZE)


@pytest.fixture(scope="module")
def capture_forward(tmp_path_factory) -> Path:
    return generate_capture_scene(tmp_path_factory.mktemp("capture_forward"), kind="forward", seed=0, **SIZE)


def frames_of(scene_dir: Path):
    return json.loads((scene_dir / "transforms.json").read_text())["frames"]


def camera_of(frame) -> CaptureCamera:
    return CaptureCamera(
        c2w=np.array(frame["transform_matrix"]), fx=frame["fl_x"], fy=frame["fl_y"], cx=frame["cx"], cy=frame["cy"],
        width=frame["w"], height=frame["h"], k1=frame["k1"], k2=frame["k2"], p1=frame["p1"], p2=frame["p2"],
    )


def parse(scene_dir: Path, split: str = "train", **kwargs):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    return NerfstudioDataParserConfig(data=scene_dir, **kwargs).setup().get_dataparser_outputs(split)


# ---- determinism and layout -------------------------------------------------------------------


def test_same_arguments_give_identical_bytes(tmp_path, capture_360):
    again = generate_capture_scene(tmp_path / "again", kind="360", seed=0, **SIZE)
    assert file_digests(again) == file_digests(capture_360)
    tiny = dict(width=16, height=12, num_frames=3)
    first = generate_capture_scene(tmp_path / "f1", kind="forward", seed=2, **tiny)
    second = generate_capture_scene(tmp_path / "f2", kind="forward", seed=2, **tiny)
    other = generate_capture_scene(tmp_path / "f3", kind="forward", seed=3, **tiny)
    assert file_digests(first) == file_digests(second)
    assert file_digests(other)["images/frame_00001.png"] != file_digests(first)["images/frame_00001.png"]


@pytest.mark.parametrize("kind", ["360", "forward"])
def test_layout_is_what_ns_process_data_writes(kind, capture_360, capture_forward):
    scene_dir = capture_360 if kind == "360" else capture_forward
    meta = json.loads((scene_dir / "transforms.json").read_text())
    assert meta["camera_model"] == "OPENCV"
    assert np.array(meta["applied_transform"]).shape == (3, 4)
    assert (scene_dir / meta["ply_file_path"]).is_file()
    assert sorted(p.name for p in scene_dir.iterdir()) == ["images", "scene.json", "sparse_pc.ply", "transforms.json"]

    frames = meta["frames"]
    assert len(frames) == SIZE["num_frames"]
    for index, frame in enumerate(frames):
        assert frame["file_path"] == f"images/frame_{index + 1:05d}.png"
        assert frame["colmap_im_id"] == index + 1
        assert set(INTRINSICS) <= set(frame)
        assert (frame["w"], frame["h"]) == (SIZE["width"], SIZE["height"])
        c2w = np.array(frame["transform_matrix"])
        assert c2w.shape == (4, 4)
        np.testing.assert_allclose(c2w[:3, :3].T @ c2w[:3, :3], np.eye(3), atol=1e-6)
        assert -0.1 <= frame["k1"] <= -0.05 and 0.0 <= frame["k2"] <= 0.02
        assert 0 < abs(frame["p1"]) < 1e-3 and 0 < abs(frame["p2"]) < 1e-3
        image = Image.open(scene_dir / frame["file_path"])
        assert image.mode == "RGB" and image.size == (frame["w"], frame["h"])
    # Per-frame intrinsics: no two frames share a focal length; two zoom states ~3% apart.
    focals = np.array([frame["fl_x"] for frame in frames])
    assert len(set(focals)) == len(frames)
    assert 0.02 < focals.max() / focals.min() - 1.0 < 0.05
    assert len({frame["k1"] for frame in frames}) == 2

    info = json.loads((scene_dir / "scene.json").read_text())
    assert (info["kind"], info["seed"], info["width"], info["height"]) == (kind, 0, SIZE["width"], SIZE["height"])
    assert info["generator"] == "nerfconvert.scenes.capture" and info["generator_version"] >= 1
    assert 2000 <= read_ply_vertex_count(scene_dir / "sparse_pc.ply") <= 5000


def test_cameras_orbit_360_and_face_forward(capture_360, capture_forward):
    positions = np.array([np.array(f["transform_matrix"])[:3, 3] for f in frames_of(capture_360)])
    azimuths = np.sort(np.arctan2(positions[:, 1], positions[:, 0]))
    assert np.max(np.diff(np.concatenate([azimuths, azimuths[:1] + 2 * np.pi]))) < np.deg2rad(40)  # all around
    radii = np.linalg.norm(positions[:, :2], axis=1)
    assert radii.max() - radii.min() > 0.2 and positions[:, 2].max() - positions[:, 2].min() > 0.3  # handheld
    for frame in frames_of(capture_360):
        c2w = np.array(frame["transform_matrix"])
        to_object = -c2w[:3, 3] / np.linalg.norm(c2w[:3, 3])
        assert np.dot(-c2w[:3, 2], to_object) > 0.97  # looking at the object (OpenGL: down -z)

    forwards = np.array([-np.array(f["transform_matrix"])[:3, 2] for f in frames_of(capture_forward)])
    assert np.all(forwards[:, 1] > 0.95)  # all roughly along +y
    spread = np.ptp([np.array(f["transform_matrix"])[:3, 3] for f in frames_of(capture_forward)], axis=0)
    assert spread[0] > 0.6 and spread[2] > 0.2 and spread[1] < 0.3  # a grid in the xz plane


# ---- nerfstudio -------------------------------------------------------------------------------


def test_loads_through_nerfstudio_data_parser(capture_360):
    from nerfstudio.cameras.cameras import CameraType

    train = parse(capture_360, "train", load_3D_points=True)
    evaluation = parse(capture_360, "val")
    assert len(train.image_filenames) + len(evaluation.image_filenames) == SIZE["num_frames"]
    assert len(evaluation.image_filenames) >= 1
    assert not set(train.image_filenames) & set(evaluation.image_filenames)
    cameras = train.cameras
    assert bool((cameras.camera_type == CameraType.PERSPECTIVE.value).all())
    assert cameras.distortion_params.shape == (len(train.image_filenames), 6)
    k1, p1 = cameras.distortion_params[:, 0], cameras.distortion_params[:, 4]
    assert bool((k1 < -0.04).all()) and bool((p1 != 0).all())
    assert int(cameras.width[0]) == SIZE["width"] and int(cameras.height[0]) == SIZE["height"]
    assert len(set(cameras.fx.flatten().tolist())) == len(train.image_filenames)

    # The sparse cloud comes through open3d with its colours, in the parser's (scaled) world.
    points, colors = train.metadata["points3D_xyz"], train.metadata["points3D_rgb"]
    assert points.shape[0] == read_ply_vertex_count(capture_360 / "sparse_pc.ply") and points.shape[1] == 3
    assert colors.shape == points.shape and colors.float().std() > 10


def test_rays_match_nerfstudio_cameras_with_distortion(capture_360):
    """Each pixel is rendered along the ray nerfstudio's Cameras generate for it, distortion included."""
    import torch
    from nerfstudio.cameras import camera_utils
    from nerfstudio.cameras.cameras import Cameras, CameraType

    for frame in frames_of(capture_360)[:3]:
        cameras = Cameras(
            camera_to_worlds=torch.tensor(frame["transform_matrix"], dtype=torch.float32)[None, :3, :4],
            fx=frame["fl_x"], fy=frame["fl_y"], cx=frame["cx"], cy=frame["cy"], width=frame["w"], height=frame["h"],
            distortion_params=camera_utils.get_distortion_params(
                k1=frame["k1"], k2=frame["k2"], p1=frame["p1"], p2=frame["p2"]
            ),
            camera_type=CameraType.PERSPECTIVE,
        )
        bundle = cameras.generate_rays(camera_indices=0)
        origins, directions = camera_of(frame).rays()
        np.testing.assert_allclose(bundle.origins.numpy(), origins, atol=1e-5)
        np.testing.assert_allclose(bundle.directions.numpy(), directions, atol=1e-4)
        # The distortion matters at this size: ignoring it would move corner rays by ~a pixel.
        undistorted = cameras.generate_rays(camera_indices=0, disable_distortion=True).directions.numpy()
        assert np.abs(undistorted - directions).max() > 0.01

    # The lens model's inverse is exact, and the distortion is mild (barrel, under 8% in the corners).
    x, y = np.meshgrid(np.linspace(-0.7, 0.7, 9), np.linspace(-0.5, 0.5, 7))
    xd, yd = distort(x, y, -0.1, 0.02, 5e-4, -5e-4)
    np.testing.assert_allclose(undistort(xd, yd, -0.1, 0.02, 5e-4, -5e-4), (x, y), atol=1e-12)
    assert np.all(np.hypot(xd, yd) <= np.hypot(x, y)) and np.all(np.hypot(xd, yd) >= 0.92 * np.hypot(x, y))

    # Through the parser as well: its cameras are ours, rotated by its orientation transform.
    train = parse(capture_360, "train")
    rotation = train.dataparser_transform[:3, :3].numpy()
    first = train.image_filenames[1].name
    frame = next(f for f in frames_of(capture_360) if f["file_path"].endswith(first))
    directions = camera_of(frame).rays()[1] @ rotation.T
    np.testing.assert_allclose(train.cameras.generate_rays(camera_indices=1).directions.numpy(), directions, atol=1e-4)


def test_pixels_are_the_exposed_rendering_along_those_rays(capture_360):
    scene = build_scene("360", 0)
    info = json.loads((capture_360 / "scene.json").read_text())
    for index in (0, 7):
        frame = frames_of(capture_360)[index]
        rendered = render_frame(scene, camera_of(frame))
        gain = info["exposures"][index] * np.array(info["white_balance"][index])
        expected = np.round(np.clip(rendered.rgb * gain, 0.0, 1.0) * 255.0)
        image = np.array(Image.open(capture_360 / frame["file_path"])).astype(float)
        assert np.abs(image - expected).max() <= 1  # the metadata rounds the gains to 6 digits


@pytest.mark.parametrize("kind", ["360", "forward"])
def test_background_needs_scene_contraction(kind, capture_360, capture_forward):
    """Much of every view is ground, wall or sky far outside the parser's [-1, 1]^3 box, while
    the objects are inside it: nerfacto must contract space to model these captures."""
    scene_dir = capture_360 if kind == "360" else capture_forward
    train = parse(scene_dir, "train")
    transform, scale = train.dataparser_transform.numpy().astype(np.float64), train.dataparser_scale
    assert np.allclose(train.scene_box.aabb.numpy(), [[-1, -1, -1], [1, 1, 1]])
    scene = build_scene(kind, 0)
    outside_fractions = []
    for frame in frames_of(scene_dir)[::4]:
        rendered = render_frame(scene, camera_of(frame), supersample=1)
        hit = np.isfinite(rendered.depth)
        points = rendered.origins[hit] + rendered.depth[hit][:, None] * rendered.directions[hit]
        parser_points = scale * (points @ transform[:, :3].T + transform[:, 3])
        outside = np.ones(rendered.depth.shape, dtype=bool)  # the sky is at infinity
        outside[hit] = np.abs(parser_points).max(axis=1) > 1.0
        outside_fractions.append(outside.mean())
        if kind == "360":  # the still life itself stays inside the box
            assert not outside[rendered.alpha > 0.5].any()
        assert (~hit).any() or kind == "forward"  # the 360 cameras see sky
    assert np.mean(outside_fractions) > 0.25
    assert scene.ground.radius * scale > 2.5 or kind == "forward"


def test_exposure_and_white_balance_vary_across_frames(capture_360):
    info = json.loads((capture_360 / "scene.json").read_text())
    gains = np.array(info["exposures"])
    assert gains.min() >= 0.8 and gains.max() <= 1.2 and gains.max() - gains.min() > 0.15
    white_balance = np.array(info["white_balance"])
    assert white_balance.shape == (SIZE["num_frames"], 3) and np.abs(white_balance - 1).max() <= 0.03
    # Brighter exposures give brighter images (the views are similar enough to see it).
    means = [np.array(Image.open(capture_360 / f["file_path"])).mean() for f in frames_of(capture_360)]
    assert np.corrcoef(gains, means)[0, 1] > 0.5


def test_sparse_points_lie_on_visible_surfaces(capture_360):
    scene = build_scene("360", 0)
    lines = (capture_360 / "sparse_pc.ply").read_text().splitlines()
    body = np.array([line.split() for line in lines[lines.index("end_header") + 1 :]], dtype=float)
    points, colors = body[:, :3], body[:, 3:]
    on_ground = np.abs(points[:, 2] - scene.ground.height) < 1e-4
    on_object = np.abs(scene.objects.sdf(points)) < 3 * scene.objects.surface_half_width
    assert np.mean(on_ground | on_object) > 0.99
    assert 0.1 < on_object.mean() < 0.9  # both the still life and the ground
    assert np.hypot(points[on_ground, 0], points[on_ground, 1]).max() > 4.0  # the far ground too
    assert colors.min() >= 0 and colors.max() <= 255 and colors.std() > 10


# ---- arguments --------------------------------------------------------------------------------


def test_bad_arguments_get_one_line_errors(tmp_path):
    bad = [dict(kind="room"), dict(width=0), dict(height=-4), dict(num_frames=0), dict(width=2.5), dict(seed=-1)]
    for kwargs in bad:
        with pytest.raises(NerfconvertError) as error:
            generate_capture_scene(tmp_path / "bad", **kwargs)
        assert "\n" not in str(error.value) and next(iter(kwargs)) in str(error.value)
    assert not (tmp_path / "bad").exists()

    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(NerfconvertError, match="overwrite=True"):
        generate_capture_scene(target, width=8, height=6, num_frames=2)
    assert (target / "notes.txt").read_text() == "keep me"

    # A previous scene of either generator may be replaced freely; staging leaves nothing behind.
    scene = generate_object_scene(tmp_path / "scene", resolution=8, num_train=1, num_val=1, num_test=1)
    generate_capture_scene(scene, kind="forward", width=8, height=6, num_frames=2)
    generate_capture_scene(scene, kind="360", width=8, height=6, num_frames=2)
    assert json.loads((scene / "scene.json").read_text())["kind"] == "360"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious", "scene"]


def test_cli_scene_writes_capture_kinds(tmp_path, capsys):
    from nerfconvert.cli import main

    out = tmp_path / "cli"
    main(["scene", "--kind", "capture-forward", "--output-dir", str(out), "--width", "12", "--height", "9",
          "--num-frames", "2"])
    assert json.loads((out / "scene.json").read_text())["kind"] == "forward"
    assert Image.open(out / "images" / "frame_00002.png").size == (12, 9)
    printed = "".join(capsys.readouterr().out.split())  # rich may wrap the long path
    assert "".join(f"ns-train nerfacto nerfstudio-data --data {out}".split()) in printed


# ---- the capture path: stock nerfacto through ns-train ------------------------------------------


@pytest.mark.slow
def test_stock_nerfacto_trains_on_the_360_capture(capture_360, tmp_path):
    """nerfacto with its default flags (camera optimizer, appearance embedding, scene
    contraction, proposal sampling) through the real ``ns-train`` and nerfstudio-data parser.
    Only the ray batch (512, not 4096) and the steps (3) are smaller: the same code path, in under a
    minute on two CPU cores. Longer in-process runs of the same config are in tests/test_capture_path.py."""
    import torch

    from nerfconvert.compat import install_safe_globals

    out = tmp_path / "outputs"
    command = [
        bin_("ns-train"), "nerfacto", "--machine.device-type", "cpu", "--max-num-iterations", "3",
        "--vis", "tensorboard", "--output-dir", str(out), "--viewer.quit-on-train-completion", "True",
        "--pipeline.datamanager.train-num-rays-per-batch", "512",
        "nerfstudio-data", "--data", str(capture_360), "--downscale-factor", "1",
    ]
    log_path = tmp_path / "ns-train.log"
    with open(log_path, "w") as log:
        proc = start_group(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            returncode = proc.wait(timeout=900)
        finally:
            stop_group(proc)
    log_text = log_path.read_text()
    assert returncode == 0, log_text[-4000:]
    ckpts = sorted(out.glob("*/nerfacto/*/nerfstudio_models/step-*.ckpt"))
    assert ckpts, "ns-train saved no checkpoint:\n" + log_text[-3000:]
    install_safe_globals()  # torch >= 2.6 loads nerfstudio checkpoints safely with these numpy globals
    state = torch.load(ckpts[-1], map_location="cpu")
    assert state["step"] >= 2
    pipeline = state["pipeline"]
    assert any("camera_optimizer" in key for key in pipeline)  # default: SO3xR3 pose refinement
    assert any("embedding_appearance" in key for key in pipeline)  # default: per-image appearance
    assert all(torch.isfinite(v).all() for v in pipeline.values() if v.is_floating_point())
