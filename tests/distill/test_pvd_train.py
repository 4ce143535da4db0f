"""pvd-al: every teacher/student pair of the four families in-process (pipeline built, a few
optimizer steps through all three stages, the student written as a standalone run), four pairs
through nerfstudio's real ``ns-train`` path (every student family, every teacher family), staged
work, resume, and bad input."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from processes import bin_
import torch
import yaml

from nerfconvert.distill.method import make_pvd_config
from nerfconvert.distill.students import STUDENT_VIEWS

FAMILIES = ["nerfacto", "tensorf", "vanilla-nerf", "plenoxels"]
PAIRS = [(t, s) for t in FAMILIES for s in FAMILIES]
# the pairs that also run through ns-train: each student family once, each teacher family once
NS_TRAIN_PAIRS = [("plenoxels", "nerfacto"), ("nerfacto", "tensorf"), ("tensorf", "vanilla-nerf"), ("vanilla-nerf", "plenoxels")]
PVD_RESUME_PSNR_TOLERANCE = 0.1
"""dB between the test PSNR of a killed-and-resumed student and that of an uninterrupted run with the
same seeds. Measured on the 6-step nerfacto -> tensorf run of ``test_resume_after_sigkill`` (2026-12-02):
seeds 42-45 give 8.43-8.65 dB (0.23 apart), a run that lost its first 4 steps (2 steps from scratch)
7.99 (-0.47). A resume restores the weights, Adam moments, pools, pseudo-camera stream and random state,
so the resumed run repeats the uninterrupted one: 8.4596 against 8.4596 (and, on a 20-step run killed
after step 9, the same checkpoint bit for bit at steps 10-19). 0.1 dB leaves room for floating-point
differences between machines and is a fifth of the loss of a restart."""


def tiny_pvd(teacher: Path, student: str, out: Path, steps: int = 3, stage_steps=(1, 2)):
    """A pvd-al config that passes all three stages in ``steps`` CPU steps."""
    config = make_pvd_config(teacher, student, out, max_num_iterations=steps, stage_steps=stage_steps, num_rays=48)
    config.timestamp = "pvd"
    config.pipeline.datamanager.steps_per_epoch = 1
    config.pipeline.datamanager.poses_per_epoch = 10
    config.pipeline.active_learning.ray_pool_size = 64
    config.pipeline.model.eval_num_rays_per_chunk = 256
    if hasattr(config.pipeline.model, "grid_resolutions"):
        # a voxel-grid student is filled from the teacher at its finest grid: 96^3 vertices through a
        # vanilla-nerf teacher take 3 CPU minutes, 32^3 (the tiny runs' grid) a few seconds
        config.pipeline.model.grid_resolutions = (32,)
        config.pipeline.model.upsample_fractions = ()
        config.pipeline.model.prune_fractions = ()
    return config


def student_runs(out: Path, student: str):
    return sorted(out.glob(f"*/{student}/*/config.yml"))


def distil_in_process(config, steps: int):
    """What ns-train's trainer does for ``steps`` steps, in-process (pipeline, optimizers, training
    callbacks, one optimizer step per iteration), then the student written as PVDTrainer writes it.
    Returns (pipeline, losses per step)."""
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
    from nerfstudio.engine.optimizers import Optimizers

    from nerfconvert.distill.trainer import PVDTrainer

    config.check_inputs()
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    pipeline.train()
    pipeline.initial_student = {k: v.detach().clone() for k, v in pipeline.student.named_parameters()}
    optimizers = Optimizers(config.optimizers, pipeline.get_param_groups())
    scaler = torch.cuda.amp.GradScaler(enabled=False)
    callbacks = pipeline.get_training_callbacks(TrainingCallbackAttributes(optimizers, scaler, pipeline, None))
    losses_per_step = []
    for step in range(steps):
        for callback in callbacks:
            callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        optimizers.zero_grad_all()
        _, losses, _ = pipeline.get_train_loss_dict(step)
        scaler.scale(sum(losses.values())).backward()
        optimizers.optimizer_scaler_step_all(scaler)
        scaler.update()
        optimizers.scheduler_step_all(step)
        for callback in callbacks:
            callback.run_callback_at_location(step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
        losses_per_step.append({k: float(v) for k, v in losses.items()})
    trainer = PVDTrainer.__new__(PVDTrainer)  # only its write_student: the end of an ns-train run
    trainer.config, trainer.pipeline, trainer.step = config, pipeline, steps - 1
    trainer.write_student()
    return pipeline, losses_per_step


def _check_student_run(out: Path, student: str, teacher_cfg: Path, step: int) -> None:
    from nerfconvert.views import load_run

    runs = student_runs(out, student)
    assert len(runs) == 1, list(out.rglob("config.yml"))
    run = yaml.load(runs[0].read_text(), Loader=yaml.Loader)
    assert run.method_name == student
    teacher_run = yaml.load(teacher_cfg.read_text(), Loader=yaml.Loader)
    assert Path(run.pipeline.datamanager.dataparser.data).resolve() == Path(teacher_run.pipeline.datamanager.dataparser.data).resolve()
    # the student is a run of its own: it loads, and could be a teacher in turn
    pipeline, view = load_run(runs[0], device="cpu")
    assert isinstance(view, STUDENT_VIEWS[student])
    assert all(torch.isfinite(p).all() for p in pipeline.model.parameters())
    ckpt = torch.load(next((runs[0].parent / "nerfstudio_models").glob("*.ckpt")), map_location="cpu")
    assert ckpt["step"] == step


@pytest.mark.parametrize("teacher,student", PAIRS, ids=[f"{t}->{s}" for t, s in PAIRS])
def test_pair_distils_in_process(trained_run, digest_tree, tmp_path, teacher, student):
    teacher_cfg = trained_run(teacher)
    before = digest_tree(teacher_cfg.parent)  # SHA-256 of every file, tfevents included
    config = tiny_pvd(teacher_cfg, student, tmp_path / "out")
    pipeline, losses = distil_in_process(config, steps=3)
    assert digest_tree(teacher_cfg.parent) == before, "the teacher's run directory was modified"
    assert all(losses) and "density_loss" in losses[1] and "rgb_loss" in losses[2]  # stages 1, 2, 3 at steps 0, 1, 2
    assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in losses)
    moved = [k for k, v in pipeline.student.named_parameters() if not torch.equal(v.detach(), pipeline.initial_student[k])]
    assert moved, "no student parameter was updated"
    _check_student_run(tmp_path / "out", student, teacher_cfg, step=2)


@pytest.fixture(scope="module")
def ns_train_pair(trained_run, digest_tree, tmp_path_factory):
    """``ns_train_pair(teacher, student)`` -> the output folder of a tiny pvd-al run through ns-train's
    main, trained once per module (the later tests reuse its student); the teacher's run directory is
    left byte-identical (SHA-256 of every file, tfevents included)."""
    from nerfstudio.scripts import train

    from nerfconvert.compat import own_event_writers

    cache = {}

    def _get(teacher: str, student: str) -> Path:
        if (teacher, student) not in cache:
            teacher_cfg = trained_run(teacher)
            before = digest_tree(teacher_cfg.parent)
            out = tmp_path_factory.mktemp(f"pvd_{teacher}_{student}")
            with own_event_writers():  # this run's scalars go to its own log only
                train.main(tiny_pvd(teacher_cfg, student, out))
            assert digest_tree(teacher_cfg.parent) == before, "the teacher's run directory was modified"
            cache[teacher, student] = out
        return cache[teacher, student]

    return _get


@pytest.mark.parametrize("teacher,student", NS_TRAIN_PAIRS, ids=[f"{t}->{s}" for t, s in NS_TRAIN_PAIRS])
def test_pair_distils_through_ns_train(trained_run, ns_train_pair, teacher, student):
    _check_student_run(ns_train_pair(teacher, student), student, trained_run(teacher), step=2)

def test_student_can_be_a_teacher_again(ns_train_pair, digest_tree, tmp_path):
    """VM -> MLP (the ns-train pair's student) -> voxel grid; the student run, now a teacher, is only read."""
    from nerfstudio.scripts import train

    from nerfconvert.compat import own_event_writers

    mlp = student_runs(ns_train_pair("tensorf", "vanilla-nerf"), "vanilla-nerf")[0]
    before = digest_tree(mlp.parent)
    with own_event_writers():
        train.main(tiny_pvd(mlp, "plenoxels", tmp_path / "b", steps=2))
    assert len(student_runs(tmp_path / "b", "plenoxels")) == 1
    assert digest_tree(mlp.parent) == before


def _pipeline(trained_run, teacher, student, tmp_path, **changes):
    config = tiny_pvd(trained_run(teacher), student, tmp_path / "out")
    for key, value in changes.items():
        target = config.pipeline
        *path, last = key.split(".")
        for p in path:
            target = getattr(target, p)
        setattr(target, last, value)
    config.check_inputs()
    return config.pipeline.setup(device="cpu", test_mode="val")


class _Counter:
    def __init__(self, obj, name):
        self.calls = 0
        original = getattr(obj, name)

        def wrapped(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        setattr(obj, name, wrapped)


def test_stages_skip_the_work_they_do_not_need(trained_run, tmp_path):
    pipeline = _pipeline(trained_run, "nerfacto", "tensorf", tmp_path, stage_steps=(3, 6))
    counters = {
        "student_phi2": _Counter(pipeline.student_view, "phi2"),
        "teacher_phi2": _Counter(pipeline.teacher_view, "phi2"),
        "student_render": _Counter(pipeline.student_view, "render_decoded"),
        "teacher_render": _Counter(pipeline.teacher_view, "render_decoded"),
    }
    seen = {}
    for step, stage in [(0, 1), (3, 2), (6, 3)]:
        for c in counters.values():
            c.calls = 0
        assert pipeline.stage(step) == stage
        _, losses, metrics = pipeline.get_train_loss_dict(step)
        seen[stage] = (set(losses), {k: c.calls for k, c in counters.items()})
    assert seen[1][0] == {"volume_loss"}
    assert all(v == 0 for v in seen[1][1].values())  # stage 1: phi1 only, nothing rendered
    assert seen[2][0] == {"volume_loss", "density_loss", "colour_loss", "reg_loss"}
    assert seen[2][1]["student_phi2"] > 0 and seen[2][1]["student_render"] == 0 and seen[2][1]["teacher_render"] == 0
    assert seen[3][0] == {"volume_loss", "density_loss", "colour_loss", "reg_loss", "rgb_loss"}
    assert seen[3][1]["student_render"] == 1 and seen[3][1]["teacher_render"] == 1


def test_teacher_queries_are_chunked(trained_run, tmp_path):
    pipeline = _pipeline(trained_run, "nerfacto", "tensorf", tmp_path)
    torch.manual_seed(0)
    positions, directions = torch.rand(5, 41, 3) * 2 - 1, torch.nn.functional.normalize(torch.randn(5, 41, 3), dim=-1)
    whole_f, whole_d = pipeline.teacher_query(positions, directions, decode=True)
    sizes = []
    original = pipeline.teacher_view.phi1
    pipeline.teacher_view.phi1 = lambda p, d: (sizes.append(p.shape[0]), original(p, d))[1]
    pipeline.config.teacher_chunk = 37
    f, d = pipeline.teacher_query(positions, directions, decode=True)
    assert max(sizes) == 37 and sum(sizes) == 5 * 41  # never more than a chunk of points at once
    assert torch.allclose(f, whole_f, atol=1e-5) and torch.allclose(d.rgb, whole_d.rgb, atol=1e-5)
    assert torch.allclose(d.raw_density, whole_d.raw_density, atol=1e-4)


def test_student_samples_at_the_teachers_points_and_gradients_reach_only_phi1_in_stage_1(trained_run, tmp_path):
    pipeline = _pipeline(trained_run, "tensorf", "nerfacto", tmp_path, stage_steps=(3, 6))
    seen = {}
    teacher_sample = pipeline.teacher_view.sample

    def spy_sample(bundle):
        samples = teacher_sample(bundle)
        seen["teacher"] = samples.frustums.get_positions().detach().clone()
        return samples

    pipeline.teacher_view.sample = spy_sample
    student_phi1 = pipeline.student_view.phi1

    def spy_phi1(positions, directions):
        seen["student"] = positions.detach().clone()
        return student_phi1(positions, directions)

    pipeline.student_view.phi1 = spy_phi1
    _, losses, _ = pipeline.get_train_loss_dict(0)
    assert torch.equal(seen["teacher"], seen["student"])
    sum(losses.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in pipeline.student_view.phi1_parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in pipeline.student_view.phi2_parameters())
    assert pipeline.projection is not None and pipeline.projection.linear is not None  # 16 + 1 vs 75 features


def test_teacher_targets_are_labelled_in_batches_and_reused(trained_run, tmp_path):
    pipeline = _pipeline(
        trained_run, "nerfacto", "tensorf", tmp_path, stage_steps=(4, 8), teacher_cache_batches=2, teacher_reuse=2,
        **{"datamanager.steps_per_epoch": 100},
    )
    calls = _Counter(pipeline.teacher_view, "sample")
    used = []
    for step in range(4):  # stage 1: one labelling of 2 batches, each ray handed out twice
        pipeline.get_train_loss_dict(step)
        used.append(pipeline.teacher_cache.data.samples.frustums.origins.shape[0])
    assert calls.calls == 1 and used == [96] * 4
    pipeline.get_train_loss_dict(4)  # stage 2 needs phi2 from the teacher: labelled again
    assert calls.calls == 2 and pipeline.teacher_cache.data.decoded is not None
    cache = pipeline.teacher_cache
    counts = torch.bincount(torch.cat(cache.order), minlength=96)
    assert len(cache.order) == 3 and counts.sum() == 3 * 48  # the first of 4 batches is in use


def test_hash_student_takes_the_hash_teachers_density_scale(trained_run, tmp_path):
    pipeline = _pipeline(trained_run, "nerfacto", "nerfacto", tmp_path, **{"model.average_init_density": 0.01})
    assert pipeline.student.field.average_init_density == pipeline.teacher_view.field.average_init_density
    assert pipeline.raw_target(torch.tensor([1.5]), torch.tensor([9.0])).item() == 1.5  # raw compared directly


def test_active_learning_feeds_the_pools(trained_run, tmp_path):
    pipeline = _pipeline(trained_run, "nerfacto", "tensorf", tmp_path, stage_steps=(0, 0))
    dm = pipeline.datamanager
    for step in range(3):  # one step per epoch (tiny_pvd): poses are ranked at every step
        _, _, metrics = pipeline.get_train_loss_dict(step)
    assert len(pipeline.ray_pool) > 0
    assert len(dm.pose_pool) > 0
    assert 0.3 <= float(metrics["hard_points_fraction"]) <= 0.6 + 1e-6


def test_active_learning_levels_switch_off(trained_run, tmp_path):
    pipeline = _pipeline(
        trained_run, "nerfacto", "tensorf", tmp_path, stage_steps=(0, 0),
        **{"active_learning.hard_rays": False, "active_learning.hard_poses": False, "active_learning.hard_points": False},
    )
    for step in range(3):
        _, _, metrics = pipeline.get_train_loss_dict(step)
    assert len(pipeline.ray_pool) == 0 and len(pipeline.datamanager.pose_pool) == 0
    assert "hard_points_fraction" not in metrics


def test_viewer_switches_to_teacher_and_draws_hard_poses(trained_run, tmp_path):
    from nerfconvert.distill.trainer import PVDTrainer

    pipeline = _pipeline(trained_run, "nerfacto", "tensorf", tmp_path, stage_steps=(0, 0))
    assert pipeline.model is pipeline.student
    pipeline.viewer_render.value = "teacher"
    assert pipeline.model is pipeline.teacher_pipeline.model
    pipeline.viewer_render.value = "student"

    class FakeScene:
        def __init__(self):
            self.frustums = []

        def add_camera_frustum(self, **kwargs):
            self.frustums.append(kwargs)

            class Handle:
                visible = kwargs["visible"]

                def remove(self_inner):
                    self.frustums.remove(kwargs)

            return Handle()

    class FakeServer:
        scene = FakeScene()

    trainer = PVDTrainer.__new__(PVDTrainer)
    trainer.pipeline, trainer._drawn_pose_version = pipeline, -1
    trainer.config = type("C", (), {"hard_pose_frustum_scale": 0.1})()
    pipeline.datamanager.pose_pool.add(torch.eye(4)[:3][None].repeat(3, 1, 1), torch.ones(3))
    server = FakeServer()
    assert trainer.draw_hard_poses(server) == 3
    assert len(server.scene.frustums) == 3 and server.scene.frustums[0]["color"] == (230, 40, 40)
    pipeline.viewer_hard_poses.value = False  # the checkbox hides them
    pipeline._show_hard_poses(pipeline.viewer_hard_poses)
    assert not any(handle.visible for handle in pipeline.hard_pose_frustums)


def test_resume_from_last_checkpoint(trained_run, tmp_path):
    from nerfstudio.scripts import train

    first = tiny_pvd(trained_run("nerfacto"), "tensorf", tmp_path / "out", steps=2)
    train.main(first)
    ckpt_dir = first.get_checkpoint_dir()
    state = torch.load(next(ckpt_dir.glob("*.ckpt")), map_location="cpu")
    assert state["step"] == 1
    assert any(k.startswith("projection.") for k in state["pipeline"])
    assert not any("teacher" in k for k in state["pipeline"])  # the teacher is not copied

    second = tiny_pvd(trained_run("nerfacto"), "tensorf", tmp_path / "out", steps=2)
    second.timestamp = "resumed"
    second.load_dir = ckpt_dir
    train.main(second)
    resumed = torch.load(next(second.get_checkpoint_dir().glob("*.ckpt")), map_location="cpu")
    assert resumed["step"] == 3  # continued at step 2, not from scratch
    assert len(student_runs(tmp_path / "out", "tensorf")) == 2


@pytest.mark.slow
def test_resume_after_sigkill(trained_run, digest_tree, tmp_path):
    """A pvd-al run SIGKILLed after its step-3 checkpoint (in stage 3, with active learning on),
    resumed with --load-dir and the steps left: the hard-ray and hard-pose pools, the epoch's pseudo
    cameras and the generator come back from the checkpoint, the stages and schedules are those of
    the whole run, the resumed run writes its student, and the student's test PSNR is that of an
    uninterrupted run of the same length. The teacher's run directory stays byte-identical."""
    from common import evaluate
    from nerfstudio.scripts import train
    from processes import train_until_killed

    from nerfconvert.compat import own_event_writers

    teacher = trained_run("nerfacto")
    teacher_files = digest_tree(teacher.parent)
    steps = 6  # stage 1 at step 0, stage 2 at 1, stage 3 and active learning from 2

    uninterrupted = tiny_pvd(teacher, "tensorf", tmp_path / "uninterrupted", steps=steps)
    with own_event_writers():
        train.main(uninterrupted)

    killed = tiny_pvd(teacher, "tensorf", tmp_path / "killed", steps=steps)
    killed.steps_per_save = 1
    killed.set_timestamp()
    train_until_killed(killed, kill_step=3)
    assert [p.name for p in killed.get_checkpoint_dir().iterdir()] == ["step-000000003.ckpt"]
    assert student_runs(tmp_path / "killed", "tensorf") == []  # killed before the end: no student yet
    saved = torch.load(killed.get_checkpoint_dir() / "step-000000003.ckpt", map_location="cpu")["pipeline"]
    saved_rays, saved_stream = saved["ray_pool._extra_state"], saved["datamanager._extra_state"]
    assert saved_rays["size"] > 0 and len(saved_stream["pose_pool"]["c2w"]) > 0 and saved_stream["epoch"] == 3

    resumed = tiny_pvd(teacher, "tensorf", tmp_path / "resumed", steps=steps - 4)  # steps 4 and 5
    resumed.load_dir = killed.get_checkpoint_dir()
    resumed.set_timestamp()  # as ns-train's main: the run is checked and its schedules fitted
    assert resumed.pipeline.total_steps == steps  # stages and schedules of the whole run, not of 2 steps
    assert all(group["scheduler"].max_steps == steps for group in resumed.optimizers.values() if group.get("scheduler"))
    resumed.save_config()
    with own_event_writers():
        train._set_random_seed(resumed.machine.seed)  # what ns-train's train_loop does: seed,
        trainer = resumed.setup(local_rank=0, world_size=1)  # set up, load the checkpoint, train
        trainer.setup()
        pipeline = trainer.pipeline
        assert trainer._start_step == 4 and pipeline.stage(4) == 3 and pipeline.active_learning_on(4)
        pool, stream = pipeline.ray_pool, pipeline.datamanager
        assert pool.size == saved_rays["size"] and pool.cursor == saved_rays["cursor"]
        assert all(torch.equal(pool.rays[k].cpu(), saved_rays["rays"][k]) for k in pool.KEYS)
        assert torch.equal(stream.pose_pool.c2w, saved_stream["pose_pool"]["c2w"]) and stream.epoch == 3
        assert torch.equal(stream.generator.get_state(), saved_stream["generator"])
        assert torch.equal(stream.epoch_cameras.camera_to_worlds.cpu(), saved_stream["epoch_cameras"]["camera_to_worlds"])
        trainer.train()
    final = sorted(resumed.get_checkpoint_dir().glob("step-*.ckpt"))
    assert torch.load(final[-1], map_location="cpu")["step"] == steps - 1
    _check_student_run(tmp_path / "resumed", "tensorf", teacher, step=steps - 1)  # written, and it loads

    # quality within noise of the uninterrupted run (see PVD_RESUME_PSNR_TOLERANCE)
    ours = evaluate(student_runs(tmp_path / "resumed", "tensorf")[0])
    theirs = evaluate(student_runs(tmp_path / "uninterrupted", "tensorf")[0])
    assert abs(ours["psnr"] - theirs["psnr"]) < PVD_RESUME_PSNR_TOLERANCE, (ours, theirs)
    assert digest_tree(teacher.parent) == teacher_files  # the teacher: byte-identical, tfevents included


# ---- bad input ---------------------------------------------------------------------------------


def _expect_error(config, *needles):
    from nerfstudio.scripts import train

    with pytest.raises(SystemExit) as info:
        train.main(config)
    message = str(info.value)
    assert message.startswith("error: ") and "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_missing_teacher_run(tmp_path):
    _expect_error(tiny_pvd(tmp_path / "nope" / "config.yml", "tensorf", tmp_path / "out"), "does not exist", "config.yml")
    assert not (tmp_path / "out").exists()


def test_teacher_of_an_unsupported_method(trained_run, tmp_path):
    from nerfstudio.models.mipnerf import MipNerfModel
    from nerfstudio.models.vanilla_nerf import VanillaModelConfig

    run = yaml.load(trained_run("vanilla-nerf").read_text(), Loader=yaml.Loader)
    run.pipeline.model = VanillaModelConfig(_target=MipNerfModel)
    run.method_name = "mipnerf"
    path = tmp_path / "mip" / "config.yml"
    path.parent.mkdir()
    path.write_text(yaml.dump(run))
    _expect_error(tiny_pvd(path, "tensorf", tmp_path / "out"), "MipNerfModel", "Supported")


def test_teacher_without_checkpoint(trained_run, tmp_path):
    run = yaml.load(trained_run("nerfacto").read_text(), Loader=yaml.Loader)
    run.output_dir = tmp_path / "elsewhere"  # a run directory without nerfstudio_models
    path = tmp_path / "run" / "config.yml"
    path.parent.mkdir()
    path.write_text(yaml.dump(run))
    _expect_error(tiny_pvd(path, "tensorf", tmp_path / "out"), "No checkpoint")


def test_student_that_is_not_a_family(trained_run, tmp_path):
    config = tiny_pvd(trained_run("nerfacto"), "tensorf", tmp_path / "out")
    config.student = "mipnerf"
    _expect_error(config, "'mipnerf' is not an architecture family", "nerfacto, tensorf, vanilla-nerf, plenoxels")


def test_cli_errors_are_one_line(tmp_path, capsys):
    """ns-train's own parsing and main, in-process (the installed ns-train: tests/test_errors.py)."""
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion
    from nerfstudio.scripts import train

    config = tyro.cli(AnnotatedBaseConfigUnion, args=["pvd-al", "--teacher-ckpt", str(tmp_path / "missing.yml"), "--student",
                                                      "tensorf", "--output-dir", str(tmp_path / "out"), "--vis", "tensorboard"])
    with pytest.raises(SystemExit) as exit_info:
        train.main(config)
    message = str(exit_info.value)
    assert message.startswith("error: ") and "\n" not in message and "missing.yml does not exist" in message
    with pytest.raises(SystemExit) as exit_info:
        tyro.cli(AnnotatedBaseConfigUnion, args=["pvd-al", "--teacher-ckpt", str(tmp_path / "missing.yml"), "--student", "mipnerf"])
    assert exit_info.value.code != 0
    stderr = capsys.readouterr().err
    assert "mipnerf" in stderr and "Traceback" not in stderr


# ---- the written student opens with stock tools ------------------------------------------------


@pytest.fixture(scope="module")
def distilled_student(ns_train_pair) -> Path:
    """The tensorf student of the nerfacto teacher, from its ns-train pair run."""
    return student_runs(ns_train_pair("nerfacto", "tensorf"), "tensorf")[0]


def test_student_opens_with_ns_viewer_and_ns_export_pointcloud(distilled_student, stock_viewer_page, tmp_path):
    from processes import ns_export_pointcloud

    stock_viewer_page(distilled_student, while_serving=lambda: ns_export_pointcloud(distilled_student, tmp_path, 500))


def test_student_scores_with_ns_eval_on_the_teachers_test_views(distilled_student, tmp_path):
    import json

    out = tmp_path / "eval.json"
    result = subprocess.run(
        [bin_("ns-eval"), "--load-config", str(distilled_student), "--output-path", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["method_name"] == "tensorf" and torch.isfinite(torch.tensor(results["results"]["psnr"]))


def test_finetune_on_real_data_starts_from_the_distilled_student(trained_run, object_scene, tmp_path):
    from nerfstudio.scripts import train

    config = tiny_pvd(trained_run("nerfacto"), "tensorf", tmp_path / "out", steps=2)
    config.finetune_data = object_scene
    config.finetune_steps = 2
    train.main(config)
    distilled, finetuned = sorted((tmp_path / "out").glob("*/tensorf/*/config.yml"))
    assert finetuned.parent.name.endswith("-finetuned")
    run = yaml.load(finetuned.read_text(), Loader=yaml.Loader)
    assert Path(run.pipeline.datamanager.dataparser.data) == Path(object_scene).resolve()

    def weights(cfg):
        state = torch.load(next((cfg.parent / "nerfstudio_models").glob("*.ckpt")), map_location="cpu")["pipeline"]
        return state["_model.field.density_encoding.plane_coef"]

    d, f = weights(distilled), weights(finetuned)
    assert not torch.equal(d, f)  # it trained on the images
    assert (f - d).norm() < 0.5 * d.norm()  # from the distilled weights, not from a fresh start
