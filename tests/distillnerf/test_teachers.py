"""``nerfconvert distillnerf-teachers``: per-scene teachers, the depth cache, resuming, errors.

Teachers are stock depth-nerfacto (the default: images + the scene's LiDAR) trained through
nerfstudio's real ``ns-train`` path for a few steps on a smaller set than the data tests
(2 scenes x 2 steps x 6 cameras at 24x16) to stay cheap.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nerfconvert import NerfconvertError


def _tiny(config) -> None:
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
    from nerfstudio.data.datamanagers.parallel_datamanager import ParallelDataManagerConfig

    dm = config.pipeline.datamanager
    if not isinstance(dm, ParallelDataManagerConfig):  # depth-nerfacto's (keeps its depth dataset)
        dm.train_num_rays_per_batch = 128
    else:  # In-process data manager (nerfacto's parallel one spawns workers: seconds of start-up each).
        config.pipeline.datamanager = VanillaDataManagerConfig(dataparser=dm.dataparser, train_num_rays_per_batch=128)
    model = config.pipeline.model
    model.eval_num_rays_per_chunk = 4096
    model.num_nerf_samples_per_ray = 8
    model.num_proposal_samples_per_ray = (8, 8)
    # Small hash tables: Adam over stock nerfacto's 2^19 x 16 levels dominated a step.
    model.num_levels, model.max_res, model.log2_hashmap_size = 4, 64, 12
    model.proposal_net_args_list = [dict(args, log2_hashmap_size=12) for args in model.proposal_net_args_list]
    model.implementation = "torch"


@pytest.fixture(scope="module")
def teacher_root(tmp_path_factory):
    from nerfconvert.distillnerf.teachers import run_teachers
    from nerfconvert.scenes.driving import generate_driving_dataset

    root = generate_driving_dataset(tmp_path_factory.mktemp("teachers"), num_scenes=2, num_steps=2, width=24, height=16)
    # First run: one scene only (the second test runs on both).
    status = run_teachers(root, scenes=("scene-000",), max_num_iterations=3, config_hook=_tiny, device_type="cpu")
    assert status == {"scene-000": "done"}
    return root


def test_cache_written_and_loaded(teacher_root):
    from nerfconvert.distillnerf.data import DistillNerfDataManagerConfig

    for scene in ("scene-000",):
        meta = json.loads((teacher_root / scene / "teacher_cache" / "teacher.json").read_text())
        assert meta["complete"] and meta["teacher"] == "depth-nerfacto" and meta["frames"] == 2 * 6
        assert meta["lidar_supervised"]
        lidar = json.loads((teacher_root / scene / "transforms_lidar.json").read_text())
        assert all(f["depth_file_path"] == f["lidar_path"] for f in lidar["frames"]) and len(lidar["frames"]) == 12
        assert (teacher_root / scene / meta["config"]).is_file()  # a normal nerfstudio run
        depth = np.load(teacher_root / scene / "teacher_cache" / "t001" / "CAM_FRONT_depth.npy")
        assert depth.shape == (16, 24) and np.all(np.isfinite(depth)) and np.all(depth > 0)
    dm = DistillNerfDataManagerConfig(data=teacher_root, eval_target_offsets=(1,)).setup(device="cpu")
    _, batch = dm.get_frame("scene-000", 0, offsets=(0, 1))
    _, uncached = dm.get_frame("scene-001", 0)
    assert "dense_depth" not in uncached
    assert batch["dense_depth"].shape == (6, 16, 24) and batch["dense_opacity"].shape == (6, 16, 24)
    assert torch.all(batch["dense_depth"] > 0)
    assert batch["targets"][1]["dense_depth"].shape == (6, 16, 24)
    with pytest.raises(NerfconvertError, match="made by teacher 'depth-nerfacto', not 'tensorf'"):
        DistillNerfDataManagerConfig(data=teacher_root, teacher="tensorf").setup(device="cpu")


def test_second_run_skips_finished_and_redoes_interrupted(teacher_root, digest_tree, monkeypatch):
    from nerfconvert.distillnerf import teachers
    from nerfconvert.distillnerf.teachers import run_teachers

    digests = digest_tree  # SHA-256 of every file
    finished = teacher_root / "scene-000" / "teacher_cache" / "teacher.json"
    stamp = finished.stat().st_mtime_ns
    run = teacher_root / "scene-000" / "teacher_runs"
    run_files = digests(run)
    rendered = []
    render_cache = teachers.render_cache

    def read_only_render(config_path, *args, **kwargs):
        """The new teacher's run is only read while its depth cache is rendered: byte-identical before and after."""
        before = digests(config_path.parent)
        frames = render_cache(config_path, *args, **kwargs)
        assert digests(config_path.parent) == before, "rendering the depth cache changed the teacher's run"
        rendered.append(config_path)
        return frames

    monkeypatch.setattr(teachers, "render_cache", read_only_render)
    assert any("tfevents" in name for name in run_files)
    # scene-001 "interrupted": a half-written cache (no teacher.json) and a stray run folder.
    partial = teacher_root / "scene-001" / "teacher_cache" / "t000"
    partial.mkdir(parents=True)
    (partial / "CAM_FRONT_depth.npy").write_bytes(b"truncated")
    (teacher_root / "scene-001" / "teacher_runs" / "scene-001").mkdir(parents=True)
    status = run_teachers(teacher_root, max_num_iterations=3, config_hook=_tiny, device_type="cpu")
    assert status == {"scene-000": "skipped", "scene-001": "done"}
    assert len(rendered) == 1 and "scene-001" in str(rendered[0])
    assert finished.stat().st_mtime_ns == stamp
    # the finished teacher's run, used for its cache and left alone while the next scene's teacher trained in this
    # process: byte-identical, tfevents included
    assert digests(run) == run_files
    assert (teacher_root / "scene-001" / "teacher_cache" / "teacher.json").is_file()
    assert np.load(partial / "CAM_FRONT_depth.npy").shape == (16, 24)
    with pytest.raises(NerfconvertError, match="already has a depth cache from teacher 'depth-nerfacto'"):
        run_teachers(teacher_root, method="tensorf", max_num_iterations=3, device_type="cpu")


def test_cli_errors(tmp_path, capsys):
    from nerfconvert.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["distillnerf-teachers", "--scenes", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err


def test_lidar_transforms_need_lidar(tmp_path):
    from nerfconvert.distillnerf.teachers import write_lidar_transforms

    (tmp_path / "transforms.json").write_text(json.dumps({"frames": [{"file_path": "t000/images/CAM_FRONT.png"}]}))
    with pytest.raises(NerfconvertError, match="has no lidar_path.*--method nerfacto"):
        write_lidar_transforms(tmp_path)


def test_virtual_views_are_the_teacher_at_a_shifted_rig(teacher_root):
    """Issue 28 item 3: the teacher rendered with the rig moved (ego frame) at the input step, added to
    a finished cache without retraining and served as extra training targets."""
    from nerfconvert.distillnerf.data import DistillNerfDataManagerConfig
    from nerfconvert.distillnerf.dataparser import read_scenes, read_virtual_meta
    from nerfconvert.distillnerf.teachers import add_virtual_views

    scene = read_scenes(teacher_root, ("scene-000",))[0]
    assert read_virtual_meta(scene) is None
    assert add_virtual_views(scene, ((0.0, 0.0, 0.0), (4.0, 0.0, 0.0)), device="cpu")
    assert not add_virtual_views(scene, ((0.0, 0.0, 0.0), (4.0, 0.0, 0.0)), device="cpu")  # cached
    assert read_virtual_meta(scene)["shifts"] == [[0.0, 0.0, 0.0], [4.0, 0.0, 0.0]]
    cache = teacher_root / "scene-000" / "teacher_cache"
    # a zero shift is the cached view itself
    same = np.load(cache / "virtual" / "v00" / "t001" / "CAM_FRONT_depth.npy")
    assert np.allclose(same, np.load(cache / "t001" / "CAM_FRONT_depth.npy"), rtol=1e-4, atol=1e-4)
    rgb = np.load(cache / "virtual" / "v01" / "t001" / "CAM_BACK_rgb.npy")
    assert rgb.shape == (16, 24, 3) and 0.0 <= rgb.min() and rgb.max() <= 1.0

    config = DistillNerfDataManagerConfig(data=teacher_root, num_virtual_targets=2)
    config.dataparser.train_scenes, config.dataparser.eval_scenes = ("scene-000",), ("scene-001",)
    dm = config.setup(device="cpu")
    cameras, batch = dm.next_train(0)
    virtual = [t for t in batch["targets"] if t.get("virtual")]
    assert len(virtual) == 2 and len(batch["targets"]) == 3
    moved = next(t for t in virtual if t["shift"] == (4.0, 0.0, 0.0))
    step = scene.steps[batch["time"]]
    ego = torch.tensor(step.ego_to_world[:3, :3], dtype=torch.float32)
    delta = moved["cameras"].camera_to_worlds[:, :, 3] - cameras.camera_to_worlds[:, :, 3]
    assert torch.allclose(delta, (ego @ torch.tensor([4.0, 0.0, 0.0]))[None].expand(6, 3), atol=1e-4)
    assert torch.equal(moved["cameras"].camera_to_worlds[:, :, :3], cameras.camera_to_worlds[:, :, :3])
    assert moved["image"].shape == (6, 16, 24, 3) and moved["dense_depth"].shape == (6, 16, 24)
    assert torch.equal(moved["sky_mask"], batch["sky_mask"])  # the sky, at infinity, stays on its pixels
    # switched off, or without distillation: no virtual targets
    for off in ({"virtual_cameras": False}, {"use_dense_depth": False}):
        config = DistillNerfDataManagerConfig(data=teacher_root, **off)
        config.dataparser.train_scenes, config.dataparser.eval_scenes = ("scene-000",), ("scene-001",)
        _, plain = config.setup(device="cpu").next_train(0)
        assert not any(t.get("virtual") for t in plain["targets"])
