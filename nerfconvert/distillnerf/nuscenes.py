"""nuScenes scenes through nuscenes-devkit, as the same records as the procedural scenes.

Each nuScenes scene becomes a ``SceneRecord`` whose time steps are its keyframes (samples, 2 Hz)
and whose frames are the six cameras. Poses follow nerfstudio's nuScenes parser: sensor-to-ego
and ego-to-global from the devkit tables, the camera's OpenCV axes flipped to OpenGL. The world
frame is re-centred on the scene's first LiDAR ego pose (global coordinates are kilometres large).
LiDAR depth is the LIDAR_TOP sweep of the keyframe, cropped to +-50 m x +-6.4 m around the ego,
projected into each camera (nearest return per pixel). Teacher caches live in
``<dataroot>/distillnerf_teacher_cache/<scene>/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from nerfconvert import NerfconvertError
from nerfconvert.distillnerf.records import FrameRecord, SceneRecord, StepRecord

CAMERAS = ("CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
TABLES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log",
          "scene", "sample", "sample_data", "sample_annotation", "map")
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])
LIDAR_RANGE_XY = 50.0
LIDAR_RANGE_Z = 6.4


def _pose(rotation, translation) -> np.ndarray:
    import pyquaternion

    pose = np.eye(4)
    pose[:3, :3] = pyquaternion.Quaternion(rotation).rotation_matrix  # scalar-first (w, x, y, z)
    pose[:3, 3] = translation
    return pose


def _lidar_depth(nusc, lidar_token: str, world_from_global: np.ndarray, c2w: np.ndarray, width: int, height: int, intrinsics):
    """Sparse z-depth image of one camera from a LIDAR_TOP keyframe sweep."""
    from nuscenes.utils.data_classes import LidarPointCloud

    from nerfconvert.scenes.driving import project_points

    sd = nusc.get("sample_data", lidar_token)
    cloud = LidarPointCloud.from_file(str(Path(nusc.dataroot) / sd["filename"]))
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    ego = _pose(**{k: nusc.get("ego_pose", sd["ego_pose_token"])[k] for k in ("rotation", "translation")})
    in_ego = cloud.points[:3].T @ _pose(cs["rotation"], cs["translation"])[:3, :3].T + np.asarray(cs["translation"])
    keep = (np.abs(in_ego[:, 0]) <= LIDAR_RANGE_XY) & (np.abs(in_ego[:, 1]) <= LIDAR_RANGE_XY)
    keep &= np.abs(in_ego[:, 2]) <= LIDAR_RANGE_Z
    world = world_from_global @ ego
    points = in_ego[keep] @ world[:3, :3].T + world[:3, 3]
    return project_points(points, c2w, width, height, intrinsics)


def read_nuscenes(dataroot: Path, version: str = "v1.0-mini") -> List[SceneRecord]:
    """Every scene of a nuScenes dataroot; clear errors for a wrong path, missing tables or images."""
    dataroot = Path(dataroot)
    table_root = dataroot / version
    if not table_root.is_dir():
        found = sorted(p.name for p in dataroot.iterdir() if p.is_dir() and p.name.startswith("v1.0")) if dataroot.is_dir() else []
        raise NerfconvertError(
            f"{dataroot} has no nuScenes table folder {version}/ (found: {', '.join(found) or 'none'}). Point --data at "
            "the nuScenes dataroot (the folder with samples/, sweeps/ and v1.0-*/) and set "
            "--nuscenes-version to the table folder."
        )
    missing = [t for t in TABLES if not (table_root / f"{t}.json").is_file()]
    if missing:
        raise NerfconvertError(
            f"nuScenes tables missing in {table_root}: {', '.join(t + '.json' for t in missing)}. Download and unpack "
            "the metadata archive of this version into the dataroot."
        )
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    records = []
    for scene in nusc.scene:
        samples = []
        token = scene["first_sample_token"]
        while token:
            sample = nusc.get("sample", token)
            samples.append(sample)
            token = sample["next"]
        first_lidar = nusc.get("sample_data", samples[0]["data"]["LIDAR_TOP"])
        first_ego = nusc.get("ego_pose", first_lidar["ego_pose_token"])
        world_from_global = np.linalg.inv(_pose(first_ego["rotation"], first_ego["translation"]))
        steps = []
        for t, sample in enumerate(samples):
            frames = []
            for camera in CAMERAS:
                if camera not in sample["data"]:
                    raise NerfconvertError(f"nuScenes scene {scene['name']}: sample {t} has no {camera} image; it needs all six cameras.")
                sd = nusc.get("sample_data", sample["data"][camera])
                image = dataroot / sd["filename"]
                if not image.is_file():
                    raise NerfconvertError(
                        f"nuScenes scene {scene['name']} has cameras but no images: {image} is missing. Unpack the "
                        "camera archives (samples/CAM_*) into the dataroot."
                    )
                cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
                ego = nusc.get("ego_pose", sd["ego_pose_token"])
                c2w = world_from_global @ _pose(ego["rotation"], ego["translation"]) @ _pose(cs["rotation"], cs["translation"])
                c2w = c2w @ OPENCV_TO_OPENGL
                k = np.asarray(cs["camera_intrinsic"], dtype=np.float64)
                intrinsics = (float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))
                width, height = int(sd["width"]), int(sd["height"])
                lidar_token = sample["data"].get("LIDAR_TOP")

                def lidar_fn(c2w=c2w, width=width, height=height, intrinsics=intrinsics, lidar_token=lidar_token):
                    if lidar_token is None:
                        return np.zeros((height, width), np.float32)
                    return _lidar_depth(nusc, lidar_token, world_from_global, c2w, width, height, intrinsics)

                frames.append(FrameRecord(camera=camera, image=image, c2w=c2w, intrinsics=intrinsics, width=width,
                                          height=height, lidar_fn=lidar_fn))
            lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
            ego = nusc.get("ego_pose", lidar["ego_pose_token"])
            ego_to_world = world_from_global @ _pose(ego["rotation"], ego["translation"])
            steps.append(StepRecord(time=t, ego_to_world=ego_to_world, frames=frames))
        records.append(SceneRecord(name=scene["name"], kind="nuscenes", steps=steps,
                                   cache_dir=dataroot / "distillnerf_teacher_cache" / scene["name"]))
    if not records:
        raise NerfconvertError(f"The nuScenes tables in {table_root} list no scenes.")
    return records
