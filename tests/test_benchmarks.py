"""The benchmarks live in benchmarks/, outside the installed package: one script per benchmark,
each on the shared harness of ``benchmarks/common.py`` (command line, report writer), each
answering ``--help`` and ``--mode``; the shared short-run config; reports and scripts without this
machine's paths; and a package that keeps no path into a source checkout nor changes the
environment when imported."""

from __future__ import annotations

import ast
import importlib
import json
import re
import sys
from pathlib import Path

import pytest

import nerfconvert

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
MOVED = ["pvd_bench", "vq_bench", "entropy_bench", "distillnerf_quick", "distillnerf_data"]
"""The entry points of the benchmarks that lived in the package (each benchmark has one)."""
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if "__main__" in p.read_text())
"""The entry points: the scripts one runs (the other modules of the folder hold shared code)."""
IN_FLIGHT = {
    "convert_lego100": "its own argparse command line (being reworked alongside this harness)",
    "splat_placement": "its own argparse command line (being reworked alongside this harness)",
    "distillnerf_data": "its own argparse command line and report files (distillnerf, in flight)",
    "distillnerf_generalization": "its own argparse command line and report (distillnerf, in flight)",
    "distillnerf_novel_depth": "its own argparse command line, prints only (distillnerf, in flight)",
    "distillnerf_quick": "distillnerf_bench.py defines its own write_report (distillnerf, in flight)",
}
"""Entry points not yet on the harness: strict xfails, so a script that moves onto it fails here
until it is taken off this list."""


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


def _imports_from(tree: ast.AST, module: str) -> set:
    return {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == module
            for a in node.names}


def harness_problems(name: str) -> list:
    """What keeps a benchmark's code (its entry point and the modules of benchmarks/ it imports)
    off the shared harness: a command line not built by ``common.benchmark_parser``, a report
    writer or figure saver of its own, a report writer not imported from ``common``, or an
    entry point that only forwards to another one."""
    tree = ast.parse((BENCHMARKS / f"{name}.py").read_text())
    problems = []
    local = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
             and (BENCHMARKS / f"{node.module}.py").exists() and node.module != "common"}
    trees = {name: tree, **{m: ast.parse((BENCHMARKS / f"{m}.py").read_text()) for m in local}}
    if "benchmark_parser" not in set().union(*(_imports_from(t, "common") for t in trees.values())):
        problems.append("its command line is not common.benchmark_parser")
    if "write_report" not in set().union(*(_imports_from(t, "common") for t in trees.values())):
        problems.append("no report through common.write_report")
    for module, t in trees.items():
        for node in ast.walk(t):
            if isinstance(node, ast.FunctionDef) and node.name == "write_report":
                problems.append(f"{module}.py defines its own write_report")
            called = node.func.attr if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
            if called == "savefig":
                problems.append(f"{module}.py saves a figure itself (common.write_report / write_figure do)")
            if called == "ArgumentParser":
                problems.append(f"{module}.py builds an argparse parser itself")
    for module in local:
        if module in SCRIPTS and "main" in _imports_from(tree, module):
            problems.append(f"forwards to the entry point {module}.py: two entry points for one benchmark")
    return problems


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=IN_FLIGHT[n]))
                                  if n in IN_FLIGHT else n for n in SCRIPTS])
def test_each_benchmark_is_one_script_on_the_shared_harness(name):
    assert harness_problems(name) == []


def test_the_harness_check_finds_a_script_off_the_harness(tmp_path, monkeypatch):
    (tmp_path / "common.py").write_text("")
    (tmp_path / "mine_bench.py").write_text(
        "import argparse\nfrom common import short_run_config\n"
        "def write_report(fig):\n    fig.savefig('x.png')\n"
        "def main():\n    argparse.ArgumentParser()\n")
    (tmp_path / "mine_quick.py").write_text("from mine_bench import main\nif __name__ == '__main__':\n    main()\n")
    (tmp_path / "other.py").write_text("from mine_quick import main\nif __name__ == '__main__':\n    main()\n")
    monkeypatch.setattr(sys.modules[__name__], "BENCHMARKS", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "SCRIPTS", ["mine_quick", "other"])
    problems = harness_problems("mine_quick")
    assert "its command line is not common.benchmark_parser" in problems
    assert "no report through common.write_report" in problems
    assert {"mine_bench.py defines its own write_report", "mine_bench.py builds an argparse parser itself"} <= set(problems)
    assert "forwards to the entry point mine_quick.py: two entry points for one benchmark" in harness_problems("other")


def _machine_paths():
    """Patterns of this machine's paths and of run timestamps in paths."""
    from common import REPO, TMP

    prefixes = {str(REPO.parent), str(TMP), str(Path.home()), sys.prefix, "/tmp", "/root", "/home"} - {"/"}
    pattern = "|".join(rf"(?<![\w.<>~-]){re.escape(p)}(?=/|\b)" for p in sorted(prefixes, key=len, reverse=True))
    return re.compile(pattern + r"|\d{4}-\d{2}-\d{2}_\d{6}/|\d{8}-\d{6}/")


COMMITTED = sorted(p for p in BENCHMARKS.rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".json")
                   and "__pycache__" not in p.parts)
PATHS_IN_FLIGHT = {"convert_lego100.py", "distillnerf_bench.py", "distillnerf_generalization.py", "distillnerf_novel_depth.py"}
"""Scripts still naming a timestamped teacher or a /tmp folder, being edited alongside this check: strict xfails."""


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="in flight: " + p.name))
                                  if p.name in PATHS_IN_FLIGHT else p for p in COMMITTED],
                         ids=[str(p.relative_to(BENCHMARKS)) for p in COMMITTED])
def test_no_script_or_result_names_a_path_of_this_machine(path):
    """Reports are committed and scripts run anywhere: ``<tmp>``, ``..`` and ``<timestamp>`` stand
    for the paths (``common.shown``); a teacher is found by ``common.teacher_config``."""
    found = sorted({m.group(0) for m in _machine_paths().finditer(path.read_text())})
    assert not found, found


def test_reports_are_written_without_this_machines_paths(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    import common

    work = common.TMP / "nerfconvert-bench-x" / "runs" / "teacher-20261202-023229" / "config.yml"
    teacher = common.REPO.parent / "shared" / "teachers" / "lego100" / "tensorf" / "2026-11-21_002655" / "config.yml"
    markdown = f"Teacher `{teacher}`, run `{work}`, script `{common.REPO / 'benchmarks' / 'x.py'}`"
    fig, _ = plt.subplots()
    text = common.write_report(tmp_path, "x", markdown, {"config": str(work), "venv": sys.prefix}, figure=fig)
    assert "`../shared/teachers/lego100/tensorf/<timestamp>/config.yml`" in text
    assert "`<tmp>/nerfconvert-bench-x/runs/teacher-<timestamp>/config.yml`" in text and "`benchmarks/x.py`" in text
    assert text == (tmp_path / "x.md").read_text() and f"Hardware: {common.hardware()}." in text
    data = json.loads((tmp_path / "x.json").read_text())
    assert data["venv"] == "<venv>" and data["config"].startswith("<tmp>/") and data["hardware"] == common.hardware()
    assert (tmp_path / "x.png").stat().st_size > 1000
    for path in (tmp_path / "x.md", tmp_path / "x.json"):
        assert not _machine_paths().search(path.read_text().replace(str(tmp_path), "")), path
    assert common.command_line(["--work-dir", str(work.parent)], "x.py") == \
        "python benchmarks/x.py --work-dir <tmp>/nerfconvert-bench-x/runs/teacher-<timestamp>"


def test_the_newest_teacher_is_found_without_naming_its_timestamp(tmp_path, monkeypatch):
    import common

    monkeypatch.setattr(common, "TEACHERS", tmp_path)
    with pytest.raises(SystemExit, match="no tensorf teacher of lego100"):
        common.teacher_config("tensorf")
    for stamp in ("2026-11-21_002655", "2026-12-01_101010"):
        (tmp_path / "lego100" / "tensorf" / stamp).mkdir(parents=True)
        (tmp_path / "lego100" / "tensorf" / stamp / "config.yml").write_text("")
    assert common.teacher_config("tensorf") == tmp_path / "lego100" / "tensorf" / "2026-12-01_101010" / "config.yml"


def test_every_script_takes_the_shared_options():
    from common import RESULTS, benchmark_parser, work_dir_for

    args = benchmark_parser("benchmarks/vq_bench.py", tag="quick").parse_args([])
    assert args.work_dir == work_dir_for("vq") and args.results_dir == RESULTS and args.tag == "quick"
    assert not hasattr(benchmark_parser("x.py", work_dir=False).parse_args([]), "work_dir")


def test_a_mode_of_another_benchmark_is_refused(capsys):
    import pvd_bench
    import vq_bench

    with pytest.raises(SystemExit) as exit_info:
        vq_bench.main(["--mode", "matrix"])
    assert exit_info.value.code != 0
    assert "choose one of smoke, quick, real, full" in str(exit_info.value.code) + capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        pvd_bench.main(["--mode", "ratio"])
    assert exit_info.value.code == 2 and "invalid choice: 'ratio'" in capsys.readouterr().err


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
