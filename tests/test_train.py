"""Every family trains a few steps through nerfstudio's real ``ns-train`` code path, and the
plugin is discovered through its entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

FAMILIES = ["nerfacto", "tensorf", "vanilla-nerf", "plenoxels"]


def ns(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_entry_point_registers_plenoxels():
    from nerfstudio.plugins.registry import discover_methods

    methods, descriptions = discover_methods()
    assert "plenoxels" in methods and descriptions["plenoxels"]


def test_ns_train_help_lists_plenoxels():
    result = subprocess.run([ns("ns-train"), "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "plenoxels" in result.stdout


@pytest.mark.parametrize("method", FAMILIES)
def test_family_trains_through_ns_train(trained_run, method):
    config_path = trained_run(method)
    config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    assert config.method_name == method
    ckpts = sorted((config_path.parent / "nerfstudio_models").glob("step-*.ckpt"))
    assert ckpts, "ns-train saved no checkpoint"
    state = torch.load(ckpts[-1], map_location="cpu")
    assert state["step"] >= 4
    params = [v for k, v in state["pipeline"].items() if v.is_floating_point()]
    assert all(torch.isfinite(p).all() for p in params)
