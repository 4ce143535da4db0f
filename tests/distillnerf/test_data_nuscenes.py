"""nuScenes through the same data manager, on a tiny nuScenes-format fixture made here: the
devkit's JSON tables, JPEG camera images and a LIDAR_TOP .pcd.bin per keyframe, all taken from a
procedural driving scene so that the expected poses and depths are known exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import pyquaternion
import torch
from PIL import Image

from nerfconvert import NerfconvertError
from nerfconvert.distillnerf.data import DistillNerfDataManagerConfig
from nerfconvert.scenes.driving import (
    CAMERA_RIG,
    LIDAR_HEIGHT,
    DrivingScene,
    camera_to_ego,
    generate_driving_scene,
    lidar_points,
)

GLOBAL = np.array([[np.cos(0.3), -np.sin(0.3), 0.0, 600.0], [np.sin(0.3), np.cos(0.3), 0.0, 1200.0], [0, 0, 1, 0], [0, 0, 0, 1]])
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def _quat(matrix):
    return [float(x) for x in pyquaternion.Quaternion(matrix=matrix[:3, :3], atol=1e-6).elements]


def build_nuscenes_fixture(root: Path, num_steps: int = 3, width: int = 32, height: int = 18, seed: int = 0) -> Path:
    """A nuScenes v1.0-mini dataroot with one scene of ``num_steps`` keyframes."""
    scene_dir = generate_driving_scene(root / "_procedural", seed=seed, num_steps=num_steps, width=width, height=height)
    world = DrivingScene.from_seed(seed, num_steps)
    tables = {name: [] for name in ("category", "attribute", "visibility", "instance", "sample_annotation")}
    tables["log"] = [{"token": "log0", "logfile": "fixture", "vehicle": "ego", "date_captured": "2026-11-21", "location": "procedural"}]
    tables["map"] = [{"token": "map0", "log_tokens": ["log0"], "category": "semantic_prior", "filename": ""}]
    sensors = [name for name, _, _ in CAMERA_RIG] + ["LIDAR_TOP"]
    tables["sensor"] = [{"token": f"s_{n}", "channel": n, "modality": "lidar" if n == "LIDAR_TOP" else "camera"} for n in sensors]
    fx = json.loads((scene_dir / "t000" / "transforms.json").read_text())["frames"][0]
    intrinsic = [[fx["fl_x"], 0.0, fx["cx"]], [0.0, fx["fl_y"], fx["cy"]], [0.0, 0.0, 1.0]]
    tables["calibrated_sensor"] = []
    for name, yaw, mount in CAMERA_RIG:
        cam_to_ego = camera_to_ego(yaw, mount) @ GL_TO_CV
        tables["calibrated_sensor"].append({"token": f"cs_{name}", "sensor_token": f"s_{name}", "translation": list(mount),
                                            "rotation": _quat(cam_to_ego), "camera_intrinsic": intrinsic})
    tables["calibrated_sensor"].append({"token": "cs_LIDAR_TOP", "sensor_token": "s_LIDAR_TOP", "translation": [0.0, 0.0, LIDAR_HEIGHT],
                                        "rotation": [1.0, 0.0, 0.0, 0.0], "camera_intrinsic": []})
    tables["ego_pose"], tables["sample"], tables["sample_data"] = [], [], []
    for t in range(num_steps):
        ego = GLOBAL @ world.ego_to_world(t)
        stamp = 1_000_000 + 500_000 * t
        tables["ego_pose"].append({"token": f"ep{t}", "timestamp": stamp, "rotation": _quat(ego), "translation": ego[:3, 3].tolist()})
        tables["sample"].append({"token": f"sample{t}", "timestamp": stamp, "scene_token": "scene0",
                                 "prev": f"sample{t - 1}" if t else "", "next": f"sample{t + 1}" if t + 1 < num_steps else ""})
        for name in sensors:
            if name == "LIDAR_TOP":
                filename = f"samples/LIDAR_TOP/{t}.pcd.bin"
                points = lidar_points(world, t)
                local = (points - world.ego_to_world(t)[:3, 3]) @ world.ego_to_world(t)[:3, :3] - [0.0, 0.0, LIDAR_HEIGHT]
                cloud = np.concatenate([local, np.zeros((len(local), 2))], axis=1).astype(np.float32)
                (root / "samples" / "LIDAR_TOP").mkdir(parents=True, exist_ok=True)
                cloud.tofile(root / filename)
            else:
                filename = f"samples/{name}/{t}.jpg"
                (root / "samples" / name).mkdir(parents=True, exist_ok=True)
                Image.open(scene_dir / f"t{t:03d}" / "images" / f"{name}.png").convert("RGB").save(root / filename, quality=95)
            tables["sample_data"].append({
                "token": f"sd_{name}_{t}", "sample_token": f"sample{t}", "ego_pose_token": f"ep{t}",
                "calibrated_sensor_token": f"cs_{name}", "timestamp": stamp, "is_key_frame": True,
                "fileformat": "pcd" if name == "LIDAR_TOP" else "jpg", "height": 0 if name == "LIDAR_TOP" else height,
                "width": 0 if name == "LIDAR_TOP" else width, "filename": filename,
                "prev": f"sd_{name}_{t - 1}" if t else "", "next": f"sd_{name}_{t + 1}" if t + 1 < num_steps else ""})
    tables["scene"] = [{"token": "scene0", "log_token": "log0", "nbr_samples": num_steps, "first_sample_token": "sample0",
                        "last_sample_token": f"sample{num_steps - 1}", "name": "scene-0001", "description": "fixture"}]
    (root / "v1.0-mini").mkdir(parents=True)
    for name, rows in tables.items():
        (root / "v1.0-mini" / f"{name}.json").write_text(json.dumps(rows))
    return scene_dir


@pytest.fixture(scope="module")
def nuscenes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuscenes")
    scene_dir = build_nuscenes_fixture(root)
    shutil.move(str(scene_dir), str(tmp_path_factory.mktemp("procedural_twin") / "scene"))
    return root


def test_nuscenes_fixture_loads_through_the_data_manager(nuscenes_root):
    dm = DistillNerfDataManagerConfig(data=nuscenes_root).setup(device="cpu")
    assert dm.scene_names("train") == ["scene-0001"]
    cameras, batch = dm.get_frame("scene-0001", 1, offsets=(-1, 1))
    assert batch["image"].shape == (6, 18, 32, 3) and batch["lidar_depth"].shape == (6, 18, 32)
    assert "gt_depth" not in batch and "sky_mask" not in batch  # no ground truth, no teacher cache yet
    # Poses: the procedural cameras, re-centred on the first ego pose (devkit quaternions, OpenCV -> OpenGL).
    world = DrivingScene.from_seed(0, 3)
    recentre = np.linalg.inv(world.ego_to_world(0))
    for i, (name, yaw, mount) in enumerate(CAMERA_RIG):
        expected = recentre @ world.ego_to_world(1) @ camera_to_ego(yaw, mount)
        np.testing.assert_allclose(cameras.camera_to_worlds[i].numpy(), expected[:3], atol=1e-4)
    np.testing.assert_allclose(batch["ego_to_world"].numpy(), (recentre @ world.ego_to_world(1)), atol=1e-4)
    # LiDAR projected through the nuScenes path lands on the same surfaces as the exact depth.
    gt = torch.stack([torch.from_numpy(np.load(_twin(nuscenes_root) / "t001" / "depth" / f"{n}.npy")) for n, _, _ in CAMERA_RIG])
    hit = batch["lidar_depth"] > 0
    assert hit.float().mean() > 0.05
    assert float(((batch["lidar_depth"][hit] - gt[hit]).abs() / gt[hit]).median()) < 0.05
    assert [t["offset"] for t in batch["targets"]] == [-1, 1]


def _twin(nuscenes_root: Path) -> Path:
    return next(nuscenes_root.parent.glob("procedural_twin*")) / "scene"


def test_nuscenes_errors(nuscenes_root, tmp_path):
    from nerfconvert.distillnerf.nuscenes import read_nuscenes

    wrong = tmp_path / "trainval"
    (wrong / "v1.0-trainval").mkdir(parents=True)
    with pytest.raises(NerfconvertError, match=r"no nuScenes table folder v1.0-mini/ \(found: v1.0-trainval\)"):
        read_nuscenes(wrong, "v1.0-mini")
    with pytest.raises(NerfconvertError, match="nuScenes tables missing .*sample_data.json"):
        DistillNerfDataManagerConfig(data=wrong, dataparser=type(DistillNerfDataManagerConfig().dataparser)(
            nuscenes_version="v1.0-trainval")).setup(device="cpu")
    broken = tmp_path / "broken"
    shutil.copytree(nuscenes_root, broken)
    (broken / "samples" / "CAM_BACK" / "2.jpg").unlink()
    with pytest.raises(NerfconvertError, match="scene-0001 has cameras but no images: .*CAM_BACK/2.jpg"):
        DistillNerfDataManagerConfig(data=broken).setup(device="cpu")
