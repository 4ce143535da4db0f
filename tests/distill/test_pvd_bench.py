"""The pvd benchmark's report (tables, acceptance lines, PNG); its launcher: tests/test_benchmarks.py."""

from __future__ import annotations

import math

from pvd_bench import MODES, conversion_grid, write_results


def _result(psnr, **extra):
    return {"psnr": psnr, "ssim": 0.9, "steps": 10, "cpu_s": 5.0, "wall_s": 6.0, "total_wall_s": 7.0,
            "stage_step_s": {"1": {"wall": 0.1, "cpu": 0.1, "steps": 2}, "3": {"wall": 0.3, "cpu": 0.3, "steps": 8}}, **extra}


def test_report_tables_and_acceptance(tmp_path):
    results = {
        "mode": "quick", "command": "python benchmarks/pvd_bench.py --mode quick", "date": "today", "hardware": "cpu",
        "total_wall_s": 60.0,
        "teachers": {"nerfacto": _result(25.0)},
        "matrix": {"nerfacto-to-tensorf": _result(24.5, teacher="nerfacto", student="tensorf", psnr_vs_teacher=30.0)},
        "scratch": {"tensorf": _result(22.0, budget_cpu_s=5.0)},
        "ablations": {"w/all": _result(24.5, psnr_vs_teacher=30.0), "w/o L_v": _result(23.0, psnr_vs_teacher=28.0)},
    }
    write_results(results, MODES["quick"], tmp_path)
    md = (tmp_path / "pvd_quick.md").read_text()
    assert "| nerfacto -> tensorf (hash -> VM) | 24.50 |" in md
    assert "gap 0.50 dB (within 1.0 dB)" in md
    assert "24.50 vs 22.00 dB (distilled better)" in md
    assert "| w/o L_v | 23.00 |" in md and "-1.50" in md
    assert (tmp_path / "pvd_quick.png").stat().st_size > 1000
    assert (tmp_path / "pvd_quick.json").exists()


def test_matrix_mode_reports_the_conversion_grid(tmp_path):
    pairs = {("nerfacto", "tensorf"): 24.5, ("tensorf", "plenoxels"): 23.0, ("tensorf", "nerfacto"): 22.0}
    results = {
        "mode": "matrix", "command": "python benchmarks/pvd_bench.py --mode matrix", "date": "today", "hardware": "cpu",
        "total_wall_s": 60.0,
        "teachers": {"nerfacto": _result(25.0), "tensorf": _result(24.0)},
        "matrix": {f"{t}-to-{s}": _result(v, teacher=t, student=s, psnr_vs_teacher=30.0) for (t, s), v in pairs.items()},
        "scratch": {s: _result(21.0, budget_cpu_s=5.0) for s in ("tensorf", "plenoxels", "nerfacto")},
        "ablations": {},
    }
    results["matrix"]["nerfacto-to-tensorf (w/o L_v)"] = _result(30.0, teacher="nerfacto", student="tensorf", label="w/o L_v", psnr_vs_teacher=30.0)
    # each row is compared with its own equal-CPU twin; a student's latest twin is the fallback
    results["scratch_for"] = {"tensorf-to-plenoxels": _result(20.0, budget_cpu_s=5.0)}
    teachers, students, grid = conversion_grid(results)
    assert teachers == ["nerfacto", "tensorf"] and students == ["nerfacto", "tensorf", "plenoxels"]
    assert grid[0, 1] == 24.5 and grid[1, 2] == 23.0 and grid[1, 0] == 22.0  # the variant row is not in the grid
    assert math.isnan(grid[0, 0]) and math.isnan(grid[0, 2])
    write_results(results, MODES["matrix"], tmp_path)
    md = (tmp_path / "pvd_matrix.md").read_text()
    assert "| tensorf -> plenoxels (VM -> voxel) | 23.00 |" in md
    assert [line.split("|")[-2].strip() for line in md.splitlines() if line.startswith("| tensorf -> plenoxels")] == ["+3.00"]
    assert [line.split("|")[-2].strip() for line in md.splitlines() if line.startswith("| tensorf -> nerfacto")] == ["+1.00"]
    assert (tmp_path / "pvd_matrix.png").stat().st_size > 1000

