"""The capture path: a default-flag nerfacto run of a capture-like scene (scene contraction, lens
distortion, per-frame intrinsics and exposure, appearance embedding, optimised poses, the
nerfstudio-data parser) through pvd-al to every student, vq-compression, and tensorf -> entropy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from conftest import tree_digests
from nerfconvert.distill.cameras import optimised_cameras
from nerfconvert.distill.method import make_pvd_config
from nerfconvert.distill.students import STUDENTS, UNBOUNDED_STUDENTS
from nerfconvert.views import load_run


def _pvd(teacher: Path, student: str, out: Path, steps: int = 3):
    config = make_pvd_config(teacher, student, out, max_num_iterations=steps, stage_steps=(1, 2), num_rays=32)
    config.timestamp = "pvd"
    config.pipeline.datamanager.steps_per_epoch = 1
    config.pipeline.datamanager.poses_per_epoch = 6
    config.pipeline.active_learning.ray_pool_size = 64
    config.pipeline.model.eval_num_rays_per_chunk = 256
    return config


def _nerfstudio_data(config, scene: Path):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    config.pipeline.datamanager.dataparser = NerfstudioDataParserConfig(data=scene, downscale_factor=1)
    return config


def _eval_render(config_path: Path):
    """What ns-eval does: the run's own eval views, its own metrics."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(config_path, test_mode="test")
    return pipeline.get_average_eval_image_metrics()


def test_capture_teacher_carries_what_real_runs_carry(capture_nerfacto_run):
    pipeline, view = load_run(capture_nerfacto_run, device="cpu")
    model = pipeline.model
    assert view.unbounded  # scene contraction
    assert model.camera_optimizer.config.mode == "SO3xR3"
    assert float(model.camera_optimizer.pose_adjustment.abs().max()) > 0  # the poses moved
    assert model.field.embedding_appearance is not None and model.field.use_average_appearance_embedding
    cameras = pipeline.datamanager.train_dataset.cameras
    assert float(cameras.distortion_params.abs().sum()) > 0
    assert len(set(cameras.fx.flatten().tolist())) > 1  # per-frame intrinsics


@pytest.mark.parametrize("student", STUDENTS)
def test_pvd_from_a_capture_teacher_to_every_student(capture_nerfacto_run, tmp_path, student):
    config = _pvd(capture_nerfacto_run, student, tmp_path)
    config.check_inputs()
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    teacher = pipeline.teacher_pipeline
    # pseudo cameras follow the optimised poses and keep the teacher's lenses
    expected = optimised_cameras(teacher.model, teacher.datamanager.train_dataset.cameras)
    templates = pipeline.datamanager.distribution.templates
    assert torch.allclose(templates.camera_to_worlds, expected.camera_to_worlds)
    assert not torch.allclose(templates.camera_to_worlds, teacher.datamanager.train_dataset.cameras.camera_to_worlds)
    assert torch.equal(templates.distortion_params, expected.distortion_params)
    # the contracted box carries over to the students that can hold it
    assert pipeline.student_view.unbounded == (student in UNBOUNDED_STUDENTS)
    assert (config.student_problems() == []) == (student in UNBOUNDED_STUDENTS)
    # the teacher's targets use its average appearance embedding, as its own eval does
    assert not teacher.model.training
    for step in range(3):
        _, losses, _ = pipeline.get_train_loss_dict(step)
        assert losses and all(torch.isfinite(v) for v in losses.values()), losses


@pytest.fixture(scope="module")
def capture_tensorf_student(capture_nerfacto_run, tmp_path_factory) -> Path:
    """The tensorf student of the capture teacher, distilled through nerfstudio's train loop."""
    from nerfstudio.scripts import train

    out = tmp_path_factory.mktemp("capture_pvd")
    before = tree_digests(capture_nerfacto_run.parent)
    train.main(_pvd(capture_nerfacto_run, "tensorf", out, steps=4))
    assert tree_digests(capture_nerfacto_run.parent) == before
    (student,) = sorted(out.glob("*/tensorf/*/config.yml"))
    return student


def test_capture_student_is_an_unbounded_tensorf_that_ns_eval_scores(capture_tensorf_student):
    from nerfconvert.unbounded import UnboundedTensoRFModel

    pipeline, view = load_run(capture_tensorf_student, device="cpu")
    assert isinstance(pipeline.model, UnboundedTensoRFModel) and view.unbounded
    metrics = _eval_render(capture_tensorf_student)  # ns-eval's path, on the teacher's eval views
    assert math.isfinite(metrics["psnr"])


def test_capture_student_opens_in_ns_viewer_and_ns_export(capture_tensorf_student, stock_viewer_page, tmp_path):
    from processes import ns_export_pointcloud

    # 500 points from batches of 1024 rays (ns-export's own batch is 32768 rays)
    stock_viewer_page(capture_tensorf_student, while_serving=lambda: ns_export_pointcloud(
        capture_tensorf_student, tmp_path, 500, "--num-rays-per-batch", "1024"))


def test_capture_student_through_entropy_compression(capture_tensorf_student, capture_scene, make_entropy_config, tmp_path):
    from nerfstudio.scripts import train

    from nerfconvert.compress import container
    from nerfconvert.compress.entropy.codec import decode
    from nerfconvert.unbounded import UnboundedTensoRFModel

    config = _nerfstudio_data(make_entropy_config(capture_tensorf_student, capture_scene, tmp_path / "entropy"), capture_scene)
    train.main(config)
    run = config.get_base_dir()
    assert (run / "scene.ncz").stat().st_size > 0
    decoded, _ = decode(container.read_ncz(run / "scene.ncz"))
    assert isinstance(decoded, UnboundedTensoRFModel)  # the file rebuilds the variant it was made from
    assert math.isfinite(_eval_render(run / "config.yml")["psnr"])


def test_capture_teacher_through_vq_compression(capture_nerfacto_run, capture_scene, make_vq_config, tmp_path):
    from nerfstudio.scripts import train

    before = tree_digests(capture_nerfacto_run.parent)
    config = _nerfstudio_data(make_vq_config(capture_nerfacto_run, capture_scene, tmp_path / "vq"), capture_scene)
    train.main(config)
    run = config.get_base_dir()
    assert (run / "scene.ncz").stat().st_size > 0
    assert math.isfinite(_eval_render(run / "config.yml")["psnr"])
    assert tree_digests(capture_nerfacto_run.parent) == before
