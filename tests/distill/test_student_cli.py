"""The pvd-al student is chosen the nerfstudio way: a tyro subcommand of ``ns-train pvd-al`` with
its own options (``--student <name>`` picks one with its defaults). Parsed in-process through
ns-train's own CLI type; no training."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import tyro
import yaml

from nerfconvert.distill.students import STUDENTS

STEPS = 100


def _ns_train(args):
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    return tyro.cli(AnnotatedBaseConfigUnion, args=list(args))


def _help(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        _ns_train(list(args) + ["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> Path:
    """config.yml of a (bounded) tensorf run with a checkpoint file: all that pvd-al's checks read."""
    from nerfstudio.configs.method_configs import all_methods

    config = copy.deepcopy(all_methods["tensorf"])
    config.output_dir = tmp_path_factory.mktemp("teacher")
    config.experiment_name, config.timestamp = "scene", "run"
    config.save_config()
    config.get_checkpoint_dir().mkdir(parents=True)
    (config.get_checkpoint_dir() / "step-000000010.ckpt").write_bytes(b"")
    return config.get_base_dir() / "config.yml"


def _scheduler_lengths(optimizers) -> dict:
    return {name: g["scheduler"].max_steps for name, g in optimizers.items() if g.get("scheduler") is not None}


def test_help_lists_the_students(capsys):
    text = _help(["pvd-al"], capsys)
    for student in STUDENTS:
        assert student in text
    assert "{" + ",".join(STUDENTS) + "}" in text.replace(" ", "")


@pytest.mark.parametrize(
    "student, own, foreign",
    [
        ("nerfacto", ["--model.num-proposal-iterations", "--optimizers.proposal-networks.optimizer.lr"], "--optimizers.density"),
        ("tensorf", ["--model.num-den-components", "--optimizers.encodings.optimizer.lr"], "--optimizers.proposal-networks"),
        ("vanilla-nerf", ["--model.num-coarse-samples", "--optimizers.temporal-distortion.optimizer.lr"], "--optimizers.encodings"),
        ("plenoxels", ["--optimizers.density.optimizer.lr", "--optimizers.sh.optimizer.lr"], "--optimizers.fields"),
    ],
)
def test_a_students_help_lists_its_own_options(student, own, foreign, capsys):
    text = _help(["pvd-al", student], capsys)
    for option in own:
        assert option in text, f"{student}: {option} not in its help"
    assert foreign not in text


CHOICES = [(None, [])] + [(s, [s]) for s in STUDENTS] + [(s, ["--student", s]) for s in STUDENTS]


@pytest.mark.parametrize("student, named", CHOICES, ids=[" ".join(n) or "default" for _, n in CHOICES])
def test_schedules_follow_max_num_iterations_for_every_student(student, named, teacher_ckpt, tmp_path):
    """Default student (nothing named), each subcommand, each --student: schedules end with the run."""
    head = ["pvd-al", "--teacher-ckpt", str(teacher_ckpt), "--max-num-iterations", str(STEPS), "--output-dir", str(tmp_path)]
    config = _ns_train(head + named)
    config.set_timestamp()  # what ns-train's main does before it saves config.yml and trains
    expected = student or "tensorf"
    assert config.student == expected
    from nerfconvert.distill.students import student_model_config

    assert type(config.pipeline.model) is type(student_model_config(expected))
    lengths = _scheduler_lengths(config.optimizers)
    assert lengths and set(lengths.values()) == {STEPS}, lengths
    assert config.pipeline.total_steps == STEPS
    config.save_config()
    saved = yaml.load((config.get_base_dir() / "config.yml").read_text(), Loader=yaml.Loader)
    assert set(_scheduler_lengths(saved.optimizers).values()) == {STEPS}


def test_a_students_own_options_reach_the_run(teacher_ckpt, tmp_path):
    config = _ns_train(["pvd-al", "--teacher-ckpt", str(teacher_ckpt), "--output-dir", str(tmp_path),
                        "nerfacto", "--model.num-levels", "8", "--optimizers.fields.optimizer.lr", "0.005"])
    config.set_timestamp()
    assert config.student == "nerfacto" and config.pipeline.model.num_levels == 8
    assert config.optimizers["fields"]["optimizer"].lr == 0.005


def test_student_flag_and_a_customised_subcommand_that_disagree_fail_in_one_line(teacher_ckpt, tmp_path):
    config = _ns_train(["pvd-al", "--teacher-ckpt", str(teacher_ckpt), "--output-dir", str(tmp_path),
                        "--student", "plenoxels", "nerfacto", "--model.num-levels", "8"])
    with pytest.raises(SystemExit) as exit_info:
        config.set_timestamp()
    message = str(exit_info.value)
    assert message.startswith("error: ") and "disagree" in message and "\n" not in message
