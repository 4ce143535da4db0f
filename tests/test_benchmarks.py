"""The benchmarks live in benchmarks/, outside the installed package: their launcher, each
script's command line (``--help``, ``--mode``), the shared short-run config, and a package
that keeps no path into a source checkout nor changes the environment when imported."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import nerfconvert

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MOVED = ["pvd_quick", "pvd_one", "vq_quick", "entropy_quick", "distillnerf_quick", "distillnerf_data", "bench"]
"""The command lines of the benchmarks that lived in the package, and the launcher of ``nerfconvert bench``."""
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if "__main__" in p.read_text())


def test_every_script_is_in_benchmarks_and_none_in_the_package():
    assert set(MOVED) <= set(SCRIPTS)
    package = Path(nerfconvert.__file__).parent
    assert not list(package.rglob("*benchmark*.py")) and not (package / "bench.py").exists()
    for path in package.rglob("*.py"):
        text = path.read_text()
        for needle in ("MPLBACKEND", "parents[", '"shared"', "shared/data"):
            assert needle not in text, f"{path.relative_to(package)}: {needle}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_benchmark_answers_help(name, monkeypatch, capsys):
    module = importlib.import_module(name)
    monkeypatch.setattr("sys.argv", [f"benchmarks/{name}.py", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    assert exit_info.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_launcher_lists_the_benchmarks_and_keeps_mode_checks(tmp_path, capsys):
    import bench

    with pytest.raises(SystemExit):
        bench.main(["--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in ("pvd", "vq", "entropy", "distillnerf"))
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["vq", "--mode", "matrix", "--results-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--mode matrix belongs to the pvd benchmark only" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_mode_expands_to_the_recorded_settings_and_the_rest_wins():
    from common import expand_mode

    modes = {"quick": ["--steps", "10"], "smoke": ["--steps", "2", "--rays", "8"]}
    assert expand_mode(["--mode", "quick", "--work-dir", "w"], modes) == ["--steps", "10", "--work-dir", "w"]
    assert expand_mode(["--mode=smoke", "--steps", "3"], modes) == ["--steps", "2", "--rays", "8", "--tag", "smoke", "--steps", "3"]
    assert expand_mode(["--steps", "3"], modes) == ["--steps", "3"]
    with pytest.raises(SystemExit):
        expand_mode(["--mode", "nope"], modes)


def test_short_run_config_is_the_tiny_run_of_the_tests(tmp_path):
    from common import short_run_config

    config = short_run_config("tensorf", tmp_path, 7, data=tmp_path / "scene", rays=64, eval_chunk=512, device="cpu")
    assert config.max_num_iterations == config.steps_per_save == 7
    assert config.pipeline.datamanager.train_num_rays_per_batch == 64 and config.pipeline.model.eval_num_rays_per_chunk == 512
    assert config.steps_per_eval_image > 7 and config.vis == "tensorboard" and not config.mixed_precision
    stock = {name: g["scheduler"].max_steps for name, g in config.optimizers.items() if g.get("scheduler")}
    assert 7 not in stock.values()  # a stock method keeps its schedule unless asked
    fitted = short_run_config("tensorf", tmp_path, 7, fit_schedules=True)
    assert {g["scheduler"].max_steps for g in fitted.optimizers.values() if g.get("scheduler")} == {7}
