"""The DistillNeRF data side: procedural driving scenes, the multi-scene data manager, errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from nerfconvert import NerfconvertError
from nerfconvert.distillnerf.data import DistillNerfDataManagerConfig, z_depth_factor
from nerfconvert.scenes.driving import CAMERA_RIG, generate_driving_scene


def make_dm(data: Path, **kwargs):
    return DistillNerfDataManagerConfig(data=data, **kwargs).setup(device="cpu")


@pytest.fixture(scope="module")
def dm(distillnerf_scenes):
    return make_dm(distillnerf_scenes)


def test_layout_is_nerfstudio_compatible(distillnerf_scenes):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    scene = distillnerf_scenes / "scene-000"
    assert sorted(p.name for p in distillnerf_scenes.iterdir()) == ["scene-000", "scene-001", "scene-002"]
    # One time step, and the whole scene (what a teacher trains on), through nerfstudio's own parser.
    step = NerfstudioDataParserConfig(data=scene / "t001", eval_mode="all").setup().get_dataparser_outputs("train")
    assert len(step.image_filenames) == 6
    whole = NerfstudioDataParserConfig(data=scene, eval_mode="all").setup().get_dataparser_outputs("train")
    assert len(whole.image_filenames) == 4 * 6
    assert int(whole.cameras.width[0, 0]) == 64 and int(whole.cameras.height[0, 0]) == 36


def test_batch_shapes(dm):
    cameras, batch = dm.next_train(0)
    n, h, w = 6, 36, 64
    assert cameras.shape == (n,) and cameras.camera_to_worlds.shape == (n, 3, 4)
    assert batch["image"].shape == (n, h, w, 3) and batch["image"].dtype == torch.float32
    assert 0.0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1.0
    for key in ("lidar_depth", "gt_depth"):
        assert batch[key].shape == (n, h, w) and batch[key].dtype == torch.float32
    assert batch["sky_mask"].shape == (n, h, w) and batch["sky_mask"].dtype == torch.bool
    assert "dense_depth" not in batch  # no teacher cache yet
    assert batch["ego_to_world"].shape == (4, 4)
    assert isinstance(batch["scene"], str) and isinstance(batch["time"], int)
    assert [t["offset"] for t in batch["targets"]] == [0]
    # Sky has no depth; LiDAR covers part of the image only, and only where there is geometry.
    assert torch.all(batch["gt_depth"][batch["sky_mask"]] == 0)
    covered = batch["lidar_depth"] > 0
    assert 0.02 < covered.float().mean() < 0.9
    assert not torch.any(covered & batch["sky_mask"])
    # Splits are by scene and disjoint for 3 scenes.
    names = [dm.scene_names(s) for s in ("train", "val", "test")]
    assert sorted(sum(names, [])) == ["scene-000", "scene-001", "scene-002"]


def test_eval_targets_are_neighbouring_steps(dm):
    assert dm.num_eval_frames == 2  # 4 steps, offsets -1/+1: steps 1 and 2
    cameras, batch = dm.next_eval(0)
    assert batch["scene"] in dm.scene_names("val")
    assert [t["offset"] for t in batch["targets"]] == [-1, 1]
    for target in batch["targets"]:
        assert target["time"] == batch["time"] + target["offset"]
        assert target["image"].shape == batch["image"].shape
        assert target["cameras"].camera_to_worlds.shape == (6, 3, 4)
        # The ego moved: the target cameras are elsewhere.
        shift = (target["cameras"].camera_to_worlds[:, :, 3] - cameras.camera_to_worlds[:, :, 3]).norm(dim=-1)
        assert torch.all(shift > 1.0)
    frames = list(dm.iter_frames("test"))
    assert len(frames) == 4 and {b["time"] for _, b in frames} == {0, 1, 2, 3}


def _world_points(cameras, depth):
    """Unproject z-depth [N,H,W] through nerfstudio's own rays of ``cameras``."""
    rays = cameras.generate_rays(camera_indices=torch.arange(cameras.shape[0])[:, None])
    # generate_rays with [N,1] indices gives [H, W, N] ray bundles.
    origins = rays.origins.permute(2, 0, 1, 3)
    directions = rays.directions.permute(2, 0, 1, 3)
    distance = depth / z_depth_factor(cameras)
    return origins + directions * distance[..., None]


def _project(points, c2w, fx, fy, cx, cy):
    rotation, centre = c2w[:, :3], c2w[:, 3]
    cam = (points - centre) @ rotation
    z = -cam[:, 2]
    u = cx + fx * cam[:, 0] / z
    v = cy - fy * cam[:, 1] / z
    return u, v, z


def test_poses_reproject_ground_truth_depth(dm):
    """GT depth of every camera, lifted with the batch's poses, lands on the same surfaces when
    seen from the other cameras (same step) and from the next step's cameras (static parts)."""
    cameras, batch = dm.get_frame("scene-000", 1, offsets=(0, 1))
    points = _world_points(cameras, batch["gt_depth"])
    valid = batch["gt_depth"] > 0
    checked = agreed = 0
    views = [(cameras, batch["gt_depth"]), (batch["targets"][1]["cameras"], batch["targets"][1]["gt_depth"])]
    for view_cameras, view_depth in views:
        for j in range(6):
            c2w = view_cameras.camera_to_worlds[j]
            fx, fy = float(view_cameras.fx[j]), float(view_cameras.fy[j])
            cx, cy = float(view_cameras.cx[j]), float(view_cameras.cy[j])
            for i in range(6):
                if view_cameras is cameras and i == j:
                    continue
                p = points[i][valid[i]]
                u, v, z = _project(p, c2w, fx, fy, cx, cy)
                inside = (z > 0.5) & (u >= 0) & (u < 64) & (v >= 0) & (v < 36)
                if inside.sum() == 0:
                    continue
                seen = view_depth[j][v[inside].long(), u[inside].long()]
                ok = seen > 0
                rel = (seen[ok] - z[inside][ok]).abs() / z[inside][ok]
                checked += int(ok.sum())
                agreed += int((rel < 0.05).sum())
    # Pixel quantisation, occlusions and moving cars disagree; a wrong pose convention fails almost everywhere.
    assert checked > 500
    assert agreed / checked > 0.8, (agreed, checked)
    # LiDAR returns sit on the same surfaces as the exact depth.
    lidar, gt = batch["lidar_depth"], batch["gt_depth"]
    hit = lidar > 0
    assert float(((lidar[hit] - gt[hit]).abs() / gt[hit]).median()) < 0.05


def test_same_seed_same_files(tmp_path):
    def digest(root):
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
        return h.hexdigest()

    a = generate_driving_scene(tmp_path / "a", seed=3, num_steps=1, width=16, height=9)
    b = generate_driving_scene(tmp_path / "b", seed=3, num_steps=1, width=16, height=9)
    c = generate_driving_scene(tmp_path / "c", seed=4, num_steps=1, width=16, height=9)
    assert digest(a) == digest(b) != digest(c)
    meta = json.loads((a / "scene.json").read_text())
    assert meta["cameras"] == [name for name, _, _ in CAMERA_RIG]


def test_downscale_and_fewer_cameras(distillnerf_scenes):
    small = make_dm(distillnerf_scenes, downscale=2, num_cameras=3)
    cameras, batch = small.next_train(0)
    assert batch["image"].shape == (3, 18, 32, 3) and batch["lidar_depth"].shape == (3, 18, 32)
    assert int(cameras.width[0, 0]) == 32 and float(cameras.fx[0]) == pytest.approx(float(small.train_dataset.cameras.fx[0]))


def _copy(distillnerf_scenes, tmp_path, names=("scene-000", "scene-001", "scene-002")):
    root = tmp_path / "root"
    for name in names:
        shutil.copytree(distillnerf_scenes / name, root / name)
    return root


def test_clear_errors(distillnerf_scenes, tmp_path):
    with pytest.raises(NerfconvertError, match="does not exist"):
        make_dm(tmp_path / "nowhere")
    with pytest.raises(NerfconvertError, match="Scene folder .*scene-009 is missing"):
        make_dm(distillnerf_scenes, dataparser=type(DistillNerfDataManagerConfig().dataparser)(scenes=("scene-009",)))
    with pytest.raises(NerfconvertError, match="single scene"):
        make_dm(distillnerf_scenes / "scene-000")
    root = _copy(distillnerf_scenes, tmp_path)
    shutil.rmtree(root / "scene-001" / "t002" / "images")
    with pytest.raises(NerfconvertError, match="scene-001 has cameras but no images"):
        make_dm(root)
    shutil.rmtree(root / "scene-001")
    shutil.rmtree(root / "scene-002" / "t003")
    with pytest.raises(NerfconvertError, match="scene-002: time step 3 has no t003/transforms.json"):
        make_dm(root)


def test_cache_from_another_teacher_is_an_error(distillnerf_scenes, tmp_path):
    root = _copy(distillnerf_scenes, tmp_path)
    cache = root / "scene-000" / "teacher_cache"
    cache.mkdir()
    (cache / "teacher.json").write_text(json.dumps({"teacher": "tensorf", "complete": True}))
    with pytest.raises(NerfconvertError, match="made by teacher 'tensorf', not 'depth-nerfacto'"):
        make_dm(root)
    make_dm(root, use_dense_depth=False)  # ignoring caches is always allowed


def test_explicit_train_and_held_out_scene_lists(distillnerf_scenes):
    """Issue 28: the benchmark names its train and held-out scenes; no seeded shuffle decides."""
    dm = make_dm(distillnerf_scenes, eval_target_offsets=(-1, 1))
    dm_explicit = DistillNerfDataManagerConfig(data=distillnerf_scenes)
    dm_explicit.dataparser.train_scenes = ("scene-002", "scene-000")
    dm_explicit.dataparser.eval_scenes = ("scene-001",)
    explicit = dm_explicit.setup(device="cpu")
    assert explicit.scene_names("train") == ["scene-002", "scene-000"]
    assert explicit.scene_names("val") == explicit.scene_names("test") == ["scene-001"]
    assert {s for _, b in [explicit.next_eval(i) for i in range(explicit.num_eval_frames)] for s in [b["scene"]]} == {"scene-001"}
    assert explicit.num_eval_frames == 2  # 4 steps: t=1 and t=2 have a previous and a next step
    assert dm.scene_names("train") != [] and len(explicit.train_dataset) == 2 * 4 * 6
    for train, held, match in ((("scene-000",), ("scene-000",), "in both the train and the eval list"),
                               (("scene-000",), (), "needs --eval-scenes"),
                               (("scene-000",), ("scene-009",), "scene-009")):
        config = DistillNerfDataManagerConfig(data=distillnerf_scenes)
        config.dataparser.train_scenes, config.dataparser.eval_scenes = train, held
        with pytest.raises(NerfconvertError, match=match):
            config.setup(device="cpu")
