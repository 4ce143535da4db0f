"""A short run with default stage fractions reaches stage 3 and renders better than the same run
kept in stage 1 (what the absolute 3k/8k boundaries did to every CPU-length run)."""

from __future__ import annotations

import pytest

from nerfconvert.distill.method import make_pvd_config

STEPS = 300


def _train(teacher, out, **pipeline_changes):
    config = make_pvd_config(teacher, "tensorf", out, max_num_iterations=STEPS, num_rays=32)
    config.timestamp = "short"
    config.pipeline.datamanager.poses_per_epoch = 20
    config.pipeline.datamanager.steps_per_epoch = 50
    config.pipeline.model.eval_num_rays_per_chunk = 1024
    config.pipeline.model.init_resolution = 24
    config.pipeline.model.num_uniform_samples = 64
    config.pipeline.model.num_samples = 32
    config.pipeline.teacher_cache_batches = 8  # the teacher labels 8 batches at once, each ray used twice
    config.pipeline.teacher_reuse = 2
    for key, value in pipeline_changes.items():
        setattr(config.pipeline, key, value)
    config.check_inputs()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    stages = []
    original = trainer.pipeline.get_train_loss_dict

    def recording(step):
        stages.append(trainer.pipeline.stage(step))
        return original(step)

    trainer.pipeline.get_train_loss_dict = recording
    trainer.train()
    metrics = trainer.pipeline.get_average_eval_image_metrics(step=STEPS)
    return stages, metrics["psnr_vs_teacher"]


@pytest.mark.slow
def test_a_300_step_run_reaches_stage_3_and_beats_stage_1_alone(trained_run, tmp_path):
    teacher = trained_run("tensorf")  # VM -> VM: L_v applies, so stage 1 exists; cheap steps on a CPU
    stages, psnr = _train(teacher, tmp_path / "fractions")
    assert stages[0] == 1 and stages[-1] == 3
    assert stages.count(1) == round(0.15 * STEPS) and stages.count(3) == STEPS - round(0.40 * STEPS)

    kept, psnr_stage1 = _train(teacher, tmp_path / "stage1", stage_steps=(3000, 8000))
    assert set(kept) == {1}
    print(f"PSNR vs teacher: {psnr:.2f} dB (stages by fractions), {psnr_stage1:.2f} dB (kept in stage 1)")
    assert psnr > psnr_stage1 + 3.0, (psnr, psnr_stage1)
