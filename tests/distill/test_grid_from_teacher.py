"""A voxel-grid student starts from its teacher's field sampled at its vertices (density through the
grid's inverse activation, SH fitted to the teacher's colour from 16 directions), at its final
resolution: before any distillation step it already renders close to the teacher."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from test_pvd_train import tiny_pvd


def ball_teacher(trained_run, out: Path) -> Path:
    """A copy of the session's tiny plenoxels run whose grid holds a ball of radius 0.6 with a colour
    that varies over the ball and with the viewing direction (SH degrees 0 and 1)."""
    source = trained_run("plenoxels")
    config = yaml.load(source.read_text(), Loader=yaml.Loader)
    ckpt = torch.load(next((source.parent / "nerfstudio_models").glob("step-*.ckpt")), map_location="cpu", weights_only=False)
    state = ckpt["pipeline"]
    density = state["_model.field.density_grid"]
    r = density.shape[-1]
    aabb = state["_model.field.aabb"]
    idx = torch.stack(torch.meshgrid(*[torch.arange(r)] * 3, indexing="ij"), dim=-1).flip(-1).float()
    pos = aabb[0] + idx / (r - 1) * (aabb[1] - aabb[0])
    density[0, 0] = torch.where(pos.norm(dim=-1) < 0.6, torch.tensor(4.0), torch.tensor(-10.0))
    sh = state["_model.field.sh_grid"]
    k = sh.shape[1] // 3
    sh.zero_()
    for c in range(3):
        sh[0, c * k] = 2.0 * pos[..., c] / 0.6  # DC: colour across the ball
        sh[0, c * k + 1 + c % 3] = 0.8  # degree 1: view-dependent
    config.output_dir, config.experiment_name, config.timestamp = out, "ball", "teacher"
    base = config.get_base_dir()
    (base / "nerfstudio_models").mkdir(parents=True)
    (base / "config.yml").write_text(yaml.dump(config), "utf8")
    torch.save(ckpt, base / "nerfstudio_models" / "step-000000006.ckpt")
    return base / "config.yml"


def _student(teacher: Path, tmp_path: Path, on: bool, **pipeline_changes):
    config = tiny_pvd(teacher, "plenoxels", tmp_path / ("on" if on else "off") / str(len(pipeline_changes)))
    # coarse to fine as stock plenoxels (16^3 -> 32^3 here, the teacher's grid), which the fill skips
    config.pipeline.model.grid_resolutions = (16, 32)
    config.pipeline.model.upsample_fractions = (0.5,)
    config.pipeline.grid_from_teacher = on
    for key, value in pipeline_changes.items():
        setattr(config.pipeline, key, value)
    config.check_inputs()
    return config.pipeline.setup(device="cpu", test_mode="val")


def test_a_grid_student_filled_from_the_teacher_renders_like_it_before_training(trained_run, tmp_path):
    teacher = ball_teacher(trained_run, tmp_path / "teacher")
    filled = _student(teacher, tmp_path, True)
    empty = _student(teacher, tmp_path, False)
    model = filled.student
    # the final resolution from the start, and no upsampling left that would blur the fill
    assert model.field.resolution == model.config.grid_resolutions[-1] == empty.student.config.grid_resolutions[-1]
    assert model.config.upsample_fractions == () and empty.student.field.resolution < model.field.resolution

    # the field: opacity over a step and colour at random points follow the teacher's
    gen = torch.Generator().manual_seed(0)
    points = (torch.rand(8192, 3, generator=gen) - 0.5) * 1.6
    dirs = torch.nn.functional.normalize(torch.randn(8192, 3, generator=gen), dim=-1)
    teacher_out = filled.teacher_view.query(points, dirs)
    student_out = filled.student_view.query(points, dirs)
    t_alpha, s_alpha = (1 - torch.exp(-o.density * 0.05) for o in (teacher_out, student_out))
    assert torch.corrcoef(torch.stack([t_alpha.flatten(), s_alpha.flatten()]))[0, 1] > 0.95
    inside = points.norm(dim=-1) < 0.55
    colour_error = (teacher_out.rgb[inside] - student_out.rgb[inside]).abs().mean()
    assert colour_error < 0.03, colour_error

    psnr_filled = filled.get_average_eval_image_metrics()["psnr_vs_teacher"]
    psnr_empty = empty.get_average_eval_image_metrics()["psnr_vs_teacher"]
    print(f"PSNR vs teacher before training: {psnr_filled:.2f} dB filled, {psnr_empty:.2f} dB empty")
    assert psnr_filled > 30.0 and psnr_filled > psnr_empty + 10.0, (psnr_filled, psnr_empty)


def test_a_filled_student_starts_in_stage_3_unless_asked(trained_run, tmp_path):
    """Stages 1-2 bring a student's fields to the teacher's; a filled grid is there already, so its run
    is stage 3 (rendered colour, with L_sigma, L_c and active learning) from the first step."""
    teacher = ball_teacher(trained_run, tmp_path / "teacher")
    filled = _student(teacher, tmp_path, True, stage_steps=None)
    assert [filled.stage(s) for s in (0, 1, 2)] == [3, 3, 3] and filled.active_learning_on(0)
    kept = _student(teacher, tmp_path, True, stage_steps=None, stages_after_fill=True)
    empty = _student(teacher, tmp_path, False, stage_steps=None)
    for pipeline in (kept, empty):  # PVD's stages (no stage 1 for a voxel grid: L_v is left out)
        s2 = pipeline.stage_starts[1]
        assert s2 > 0 and pipeline.stage(0) == 2 and pipeline.stage(s2) == 3 and not pipeline.active_learning_on(0)


def test_distil_on_images_trains_a_grid_student_with_its_own_renderer(trained_run, tmp_path):
    """--pipeline.distil-on images: a point-query pair distils on the teacher's pseudo views through the
    student's own sampler and loss (PVD's point losses off), and the loss reaches the student's grid."""
    teacher = ball_teacher(trained_run, tmp_path / "teacher")
    pipeline = _student(teacher, tmp_path, True, distil_on="images", stage_steps=None)
    assert pipeline.image_level and pipeline.stage(0) == 3
    pipeline.train()
    _, losses, metrics = pipeline.get_train_loss_dict(0)
    assert not {"density_loss", "colour_loss", "volume_loss"} & set(losses), losses.keys()
    sum(losses.values()).backward()
    grad = pipeline.student.field.density_grid.grad
    assert grad is not None and grad.abs().sum() > 0
    assert float(metrics["psnr_vs_teacher"]) > 20.0  # the filled grid renders the ball already
    # one step's rays come from many of the epoch's pseudo views, each rendered whole by the teacher once
    assert len(pipeline._teacher_images) > 1
    assert all(key[2:] == (0, 0) for key in pipeline._teacher_images)
