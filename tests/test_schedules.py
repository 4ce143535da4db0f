"""Every schedule follows --max-num-iterations: users on a CPU run short (config level, no training)."""

from __future__ import annotations

import copy

import pytest

from nerfconvert.distill.students import STUDENTS, student_model_config, student_optimizers

RUN_LENGTHS = (100, 1000, 20000)


def _scheduler_lengths(optimizers) -> dict:
    return {
        name: group["scheduler"].max_steps
        for name, group in optimizers.items()
        if group.get("scheduler") is not None and hasattr(group["scheduler"], "max_steps")
    }


def _pvd_config(student: str, steps: int):
    from method_configs.pvd_al import pvd_al

    config = copy.deepcopy(pvd_al.config)
    config.student = student
    config.max_num_iterations = steps
    config.apply_student()
    config.fit_to_run_length()
    return config


@pytest.mark.parametrize("steps", RUN_LENGTHS)
def test_pvd_stages_are_fractions_of_the_run(steps):
    config = _pvd_config("tensorf", steps)
    s1, s2, al = config.pipeline.schedule()
    assert (s1, s2) == (round(0.15 * steps), round(0.40 * steps))
    assert al == s2  # active learning starts with stage 3, as in PVD-AL
    assert config.pipeline.schedule_problems(steps) == []
    if steps == 20000:
        assert (s1, s2) == (3000, 8000)  # the paper's boundaries at the paper's length


@pytest.mark.parametrize("steps", RUN_LENGTHS)
@pytest.mark.parametrize("student", STUDENTS)
def test_pvd_optimizer_schedules_follow_the_run_for_every_student(student, steps):
    config = _pvd_config(student, steps)
    lengths = _scheduler_lengths(config.optimizers)
    assert lengths, f"{student}: no scheduled optimizer group"
    assert set(lengths.values()) == {steps}, lengths


def test_default_student_schedules_follow_the_run_too():
    """The default student's config is built at import for 20k steps; it must still follow the run."""
    from method_configs.pvd_al import pvd_al

    config = copy.deepcopy(pvd_al.config)
    config.max_num_iterations = 150
    config.apply_student()  # --student left at its default: the model config is kept as built
    config.fit_to_run_length()
    assert set(_scheduler_lengths(config.optimizers).values()) == {150}
    assert config.pipeline.total_steps == 150


def test_absolute_stage_steps_remain_an_option_and_a_short_run_says_so():
    config = _pvd_config("tensorf", 150)
    config.pipeline.stage_steps = (3000, 8000)
    assert config.pipeline.schedule()[:2] == (3000, 8000)
    problems = config.pipeline.schedule_problems(150)
    assert len(problems) == 1 and "never learns the teacher's rendered colour" in problems[0]
    assert "\n" not in problems[0]
    config.pipeline.stage_steps = (10, 140)
    assert "only 10 of 150 steps" in config.pipeline.schedule_problems(150)[0]
    # distillation on images (a Gaussian student) has no stages: no stage warning, the active-learning one stays
    assert config.pipeline.schedule_problems(150, image_level=True) == []
    config.pipeline.stage_steps = None
    config.pipeline.active_learning.start_step = 500
    assert "active learning never starts" in config.pipeline.schedule_problems(150)[0]
    assert "active learning never starts" in config.pipeline.schedule_problems(150, image_level=True)[0]


def test_schedule_summary_names_every_stage():
    config = _pvd_config("nerfacto", 300)
    summary = config.schedule_summary()
    assert "0-45" in summary and "45-120" in summary and "120-300" in summary


@pytest.mark.parametrize("steps", RUN_LENGTHS)
@pytest.mark.parametrize("method", ["vq-compression", "entropy-compression", "plenoxels", "distillnerf"])
def test_our_methods_schedules_follow_the_run(method, steps, tmp_path):
    from nerfstudio.configs.method_configs import all_methods

    config = copy.deepcopy(all_methods[method])
    config.max_num_iterations = steps
    config.output_dir = tmp_path
    config.set_timestamp()  # ns-train calls this before it saves config.yml
    lengths = _scheduler_lengths(config.optimizers)
    # plenoxels: over at least its 1000 steps (a 400-step run decaying over 400 lost 2.2 dB on lego100)
    expected = max(steps, 1000) if method == "plenoxels" else steps
    assert lengths and set(lengths.values()) == {expected}, lengths


@pytest.mark.parametrize("steps", RUN_LENGTHS)
def test_plenoxels_upsampling_and_pruning_are_fractions_of_the_run(steps):
    from nerfconvert.plenoxels.model import PlenoxelsModelConfig

    prune, upsample = PlenoxelsModelConfig().schedule(steps)
    assert upsample == (round(0.1 * steps), round(0.3 * steps))
    assert prune == (round(0.1 * steps), round(0.3 * steps), round(0.6 * steps))
    # a run too short to separate the points still upsamples in order
    assert PlenoxelsModelConfig().schedule(4)[1] == (0, 1)
    absolute = PlenoxelsModelConfig(upsample_iters=(100, 300), prune_iters=(50,))
    assert absolute.schedule(steps) == ((50,), (100, 300))


def test_entropy_temperature_anneals_over_the_run():
    from nerfconvert.compress.entropy.model import gumbel_temperature

    for total in RUN_LENGTHS:
        assert gumbel_temperature(0, total, 10.0, 0.1) == pytest.approx(10.0)
        assert gumbel_temperature(total - 1, total, 10.0, 0.1) == pytest.approx(0.1, rel=1e-3)
