"""``nerfconvert demo``: the main job on the embedded procedural scene.

Today: scene -> a trained nerfstudio run (through the real ``ns-train``) -> test metrics and a
side-by-side picture. It grows into distill + compress as those methods land.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from nerfconvert import NerfconvertError


def ns_command(name: str) -> List[str]:
    """Run a nerfstudio console script with this interpreter (works without an activated venv)."""
    modules = {"ns-train": "nerfstudio.scripts.train", "ns-eval": "nerfstudio.scripts.eval"}
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", f"from {modules[name]} import entrypoint; entrypoint()"]


def train_run(
    method: str, data: Path, output_dir: Path, timestamp: str, max_num_iterations: Optional[int] = None
) -> Path:
    """Train ``method`` on ``data`` with stock ``ns-train``; returns the run's config.yml."""
    cmd = ns_command("ns-train") + [
        method,
        "--output-dir",
        str(output_dir),
        "--experiment-name",
        data.name,
        "--timestamp",
        timestamp,
        "--vis",
        "tensorboard",
        "--machine.device-type",
        "cuda" if torch.cuda.is_available() else "cpu",
    ]
    if max_num_iterations is not None:
        cmd += ["--max-num-iterations", str(max_num_iterations)]
    cmd += ["blender-data", "--data", str(data)]
    from nerfstudio.utils.rich_utils import CONSOLE

    CONSOLE.print(f"[bold]$ {' '.join(cmd)}")
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise NerfconvertError(f"ns-train {method} failed (exit code {result.returncode}); see its output above.")
    config = output_dir / data.name / method / timestamp / "config.yml"
    if not config.exists():
        raise NerfconvertError(f"ns-train finished but wrote no {config}.")
    return config


def evaluate_run(config: Path, picture: Optional[Path] = None, max_pictures: int = 4) -> Dict[str, float]:
    """Test-split metrics of a run (as ns-eval computes them), plus an optional PNG with
    ground truth | render | depth rows for the first test views."""
    import imageio.v2 as imageio

    from nerfconvert.views import load_run

    pipeline, _ = load_run(config, test_mode="test")
    model = pipeline.model
    rows, metrics_list = [], []
    with torch.no_grad():
        for camera, batch in pipeline.datamanager.fixed_indices_eval_dataloader:
            outputs = model.get_outputs_for_camera(camera=camera)
            metrics, images = model.get_image_metrics_and_images(outputs, batch)
            metrics_list.append(metrics)
            if len(rows) < max_pictures:
                depth = images.get("depth")
                row = [images["img"]]
                if depth is not None:
                    row.append(depth)
                rows.append(torch.cat(row, dim=1).cpu().numpy())
    metrics = {k: float(np.mean([m[k] for m in metrics_list])) for k in metrics_list[0]}
    if picture is not None and rows:
        picture.parent.mkdir(parents=True, exist_ok=True)
        tmp = picture.with_suffix(".tmp.png")
        imageio.imwrite(tmp, (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).astype(np.uint8))
        tmp.replace(picture)
    return metrics


def run_demo(output_dir: Path, seed: int, resolution: int, method: str, max_num_iterations: Optional[int]) -> None:
    from rich.table import Table

    from nerfconvert.scenes import generate_object_scene
    from nerfstudio.utils.rich_utils import CONSOLE

    scene = output_dir / f"procedural-seed{seed}-{resolution}px"
    if not (scene / "transforms_train.json").exists():
        CONSOLE.rule("1. scene")
        generate_object_scene(scene, seed=seed, resolution=resolution)
    CONSOLE.rule(f"2. ns-train {method}")
    config = train_run(method, scene, output_dir / "runs", "demo", max_num_iterations)
    CONSOLE.rule("3. result")
    picture = output_dir / "demo_result.png"
    metrics = evaluate_run(config, picture)
    table = Table(title=f"{method} on the procedural scene (seed {seed}, {resolution}x{resolution}), test views")
    for key in ("psnr", "ssim", "lpips"):
        if key in metrics:
            table.add_column(key.upper())
    table.add_row(*[f"{metrics[k]:.3f}" for k in ("psnr", "ssim", "lpips") if k in metrics])
    CONSOLE.print(table)
    CONSOLE.print(f"Ground truth | render | depth:  {picture}")
    CONSOLE.print(f"Open it in the viewer:          ns-viewer --load-config {config}")
