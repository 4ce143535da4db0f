"""The pvd benchmark's report (tables, acceptance lines, PNG) and its CLI entry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nerfconvert.distill.benchmark import MODES, write_results


def _result(psnr, **extra):
    return {"psnr": psnr, "ssim": 0.9, "steps": 10, "cpu_s": 5.0, "wall_s": 6.0, "total_wall_s": 7.0,
            "stage_step_s": {"1": {"wall": 0.1, "cpu": 0.1, "steps": 2}, "3": {"wall": 0.3, "cpu": 0.3, "steps": 8}}, **extra}


def test_report_tables_and_acceptance(tmp_path):
    results = {
        "mode": "quick", "command": "python benchmarks/pvd_quick.py --mode quick", "date": "today", "hardware": "cpu",
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


def test_cli_lists_the_benchmark():
    result = subprocess.run([str(Path(sys.executable).parent / "nerfconvert"), "bench", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--mode" in result.stdout
    choices = result.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
    assert "pvd" in choices
