"""Servers the tests start (ns-viewer, nerfconvert view) run in a session of their own and are
stopped with everything they spawned: a tensorf run's ParallelDataManager workers would
otherwise outlive a terminated viewer and hold about 1 GB each until the machine restarts.
Also the small helpers every test of a command line shares: the venv's tools, a .ply's size, and a
training run killed with SIGKILL in the middle (``train_until_killed``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def bin_(name: str) -> str:
    """A console script of this venv (ns-train, nerfconvert, ...), whatever PATH says."""
    return str(Path(sys.executable).parent / name)


def read_ply_vertex_count(path: Path) -> int:
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b"element vertex"):
                return int(line.split()[-1])
            if line.strip() == b"end_header":
                break
    return 0


def train_until_killed(config, kill_step: int, during_save: bool = False, timeout: float = 900) -> None:
    """``config`` (saved to its config.yml first) trained by nerfstudio's ``train.main`` in a child
    process (``sigkill_train.py``) that SIGKILLs itself right after the checkpoint of ``kill_step`` is
    on disk, or with ``during_save`` halfway through writing it. nerfstudio saves from step 1 on."""
    config.save_config()
    result = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "sigkill_train.py"), str(config.get_base_dir() / "config.yml"),
         str(kill_step), "during" if during_save else "after"],
        capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == -signal.SIGKILL, result.stdout[-2000:] + result.stderr[-3000:]


def start_group(command, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(command, start_new_session=True, **kwargs)


def stop_group(proc: subprocess.Popen, timeout: float = 20) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; make sure no worker of its group survives it
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def ns_export_pointcloud(config_path: Path, output_dir: Path, num_points: int = 2000, *extra: str) -> Path:
    """Stock ``ns-export pointcloud`` (the installed command) on a run; returns the non-empty .ply."""
    result = subprocess.run(
        [bin_("ns-export"), "pointcloud", "--load-config", str(config_path), "--output-dir", str(output_dir),
         "--normal-method", "open3d", "--num-points", str(num_points), "--remove-outliers", "False", *extra],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    ply = Path(output_dir) / "point_cloud.ply"
    assert ply.exists() and read_ply_vertex_count(ply) > 0
    return ply
