"""Multi-process training through nerfstudio's own ``--machine.num-devices``: two CPU processes
(gloo) run a few steps of ``ns-train distillnerf`` and the main process saves a checkpoint that
loads back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TINY_MODEL_FLAGS = [
    "--pipeline.model.backbone-channels", "8", "16", "16", "16",
    "--pipeline.model.depth-channels", "16",
    "--pipeline.model.num-depth-bins", "16",
    "--pipeline.model.num-depth-candidates", "4",
    "--pipeline.model.num-uniform-samples", "16",
    "--pipeline.model.num-importance-samples", "8",
    "--pipeline.model.decoder-channels", "8",
]


@pytest.mark.slow
def test_ns_train_two_cpu_processes(distillnerf_scenes, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on a shared CPU: no thread oversubscription
    cmd = [
        str(Path(sys.executable).parent / "ns-train"), "distillnerf",
        "--machine.num-devices", "2", "--machine.device-type", "cpu",
        "--max-num-iterations", "2", "--steps-per-save", "2", "--steps-per-eval-batch", "1000000",
        "--steps-per-eval-image", "1000000", "--steps-per-eval-all-images", "1000000",
        "--vis", "tensorboard", "--output-dir", str(tmp_path), "--timestamp", "ddp", "--experiment-name", "ddp",
        *TINY_MODEL_FLAGS,
        "distillnerf-data", "--data", str(distillnerf_scenes),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]
    ckpts = sorted((tmp_path / "ddp" / "distillnerf" / "ddp" / "nerfstudio_models").glob("step-*.ckpt"))
    assert ckpts, result.stdout[-3000:] + result.stderr[-3000:]
    from nerfconvert import compat

    compat.install()  # nerfstudio checkpoints hold numpy scalars (safe-load allow-list)
    state = torch.load(ckpts[-1], map_location="cpu")
    keys = list(state["pipeline"])
    assert any(k.startswith("_model.module.") for k in keys), "the checkpoint was not written by a DDP-wrapped model"

    from nerfconvert.distillnerf.predict import load_distillnerf

    model, _ = load_distillnerf(tmp_path / "ddp" / "distillnerf" / "ddp", device="cpu")
    assert int(model.trained_num_cameras) == 6
