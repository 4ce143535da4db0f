"""Data benchmark: how well per-scene teacher depth matches ground truth on procedural driving
scenes, next to the raw sparse LiDAR (what distillation adds: dense coverage).

Metrics on pixels with ground-truth geometry (not sky): AbsRel = mean |d - d_gt| / d_gt and
delta<1.25 = share of pixels with max(d/d_gt, d_gt/d) < 1.25; coverage = share of those pixels
that have a value (LiDAR: a return; teacher: every pixel).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from common import hardware


def depth_metrics(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> Dict[str, float]:
    m = valid & (gt > 0) & (pred > 0)
    if not m.any():
        return {"abs_rel": float("nan"), "delta_1.25": float("nan"), "pixels": 0}
    ratio = pred[m] / gt[m]
    return {
        "abs_rel": float(np.mean(np.abs(pred[m] - gt[m]) / gt[m])),
        "delta_1.25": float(np.mean(np.maximum(ratio, 1.0 / ratio) < 1.25)),
        "pixels": int(m.sum()),
    }


def evaluate(root: Path, teacher: str = "nerfacto") -> Dict:
    """Per-scene and overall teacher/LiDAR depth metrics of every scene under ``root``."""
    from nerfconvert.distillnerf.data import DistillNerfDataManagerConfig

    dm = DistillNerfDataManagerConfig(data=root, teacher=teacher).setup(device="cpu")
    rows: Dict[str, Dict[str, List[np.ndarray]]] = {}
    for split in ("train", "val", "test"):
        for scene in dm.scenes[split]:
            if scene.name in rows:
                continue
            acc: Dict[str, List[np.ndarray]] = {"gt": [], "teacher": [], "lidar": []}
            for t in range(scene.num_steps):
                _, batch = dm.get_frame(scene.name, t)
                if "dense_depth" not in batch:
                    raise RuntimeError(f"{scene.name} has no teacher cache; run the teachers first")
                acc["gt"].append(batch["gt_depth"].numpy())
                acc["teacher"].append(batch["dense_depth"].numpy())
                acc["lidar"].append(batch["lidar_depth"].numpy())
            rows[scene.name] = acc
    result: Dict = {"scenes": {}}
    pooled = {k: [] for k in ("gt", "teacher", "lidar")}
    for name, acc in sorted(rows.items()):
        gt, teacher_d, lidar = (np.concatenate(acc[k]) for k in ("gt", "teacher", "lidar"))
        for k, v in (("gt", gt), ("teacher", teacher_d), ("lidar", lidar)):
            pooled[k].append(v)
        result["scenes"][name] = summarise(gt, teacher_d, lidar)
    result["all"] = summarise(*(np.concatenate(pooled[k]) for k in ("gt", "teacher", "lidar")))
    return result


def lidar_only(root: Path) -> Dict:
    """LiDAR depth vs ground truth without teachers (what raw sparse supervision offers)."""
    from nerfconvert.distillnerf.data import DistillNerfDataManagerConfig

    dm = DistillNerfDataManagerConfig(data=root, use_dense_depth=False).setup(device="cpu")
    gt, lidar = [], []
    names = sorted({s.name for split in dm.scenes.values() for s in split})
    for name in names:
        for _, batch in [dm.get_frame(name, t) for t in range(dm.dataparser.splits()["train"][0].num_steps)]:
            gt.append(batch["gt_depth"].numpy())
            lidar.append(batch["lidar_depth"].numpy())
    gt_all, lidar_all = np.concatenate(gt), np.concatenate(lidar)
    geometry = gt_all > 0
    return {
        "scenes": names,
        "lidar": {**depth_metrics(lidar_all, gt_all, geometry), "coverage": float(np.mean(lidar_all[geometry] > 0))},
        "sky_fraction": float(np.mean(~geometry)),
    }


def summarise(gt: np.ndarray, teacher: np.ndarray, lidar: np.ndarray) -> Dict:
    geometry = gt > 0
    return {
        "teacher": {**depth_metrics(teacher, gt, geometry), "coverage": float(np.mean(teacher[geometry] > 0))},
        "lidar": {**depth_metrics(lidar, gt, geometry), "coverage": float(np.mean(lidar[geometry] > 0))},
        # Within the LiDAR's range only (what the model's inner voxels cover).
        "teacher_within_50m": depth_metrics(teacher, gt, geometry & (gt <= 50.0)),
    }


def save_figure(root: Path, scene: str, path: Path) -> None:
    """Front camera of step 0: RGB | GT depth | teacher depth | LiDAR (log depth, same scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    step = root / scene / "t000"
    rgb = np.asarray(Image.open(step / "images" / "CAM_FRONT.png"))
    gt = np.load(step / "depth" / "CAM_FRONT.npy")
    teacher = np.load(root / scene / "teacher_cache" / "t000" / "CAM_FRONT_depth.npy")
    lidar = np.load(step / "lidar" / "CAM_FRONT.npy")
    fig, axes = plt.subplots(1, 4, figsize=(16, 3))
    axes[0].imshow(rgb)
    for ax, image, title in zip(axes[1:], (gt, teacher, lidar), ("ground truth", "teacher", "LiDAR")):
        ax.imshow(np.where(image > 0, np.log(np.clip(image, 1.0, 200.0)), np.nan), vmin=0.0, vmax=np.log(200.0), cmap="turbo")
        ax.set_title(f"{title} depth (log m)")
    for ax in axes:
        ax.axis("off")
    axes[0].set_title("RGB (CAM_FRONT, t=0)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(output: Path, num_scenes: int, num_steps: int, width: int, height: int, steps: int, method: Optional[str] = None,
        small: bool = False, depth_loss_mult: Optional[float] = None, rays: int = 1024) -> Dict:
    from distillnerf_bench import cpu_teacher_hook
    from nerfconvert.distillnerf.teachers import DEFAULT_METHOD, DEPTH_LOSS_MULT, run_teachers
    from nerfconvert.scenes.driving import generate_driving_dataset

    method = method or DEFAULT_METHOD
    depth_loss_mult = DEPTH_LOSS_MULT if depth_loss_mult is None else depth_loss_mult
    data = output / "scenes"
    if not data.exists():
        generate_driving_dataset(data, num_scenes=num_scenes, num_steps=num_steps, width=width, height=height)
    hook = cpu_teacher_hook(rays, steps, small)

    def cpu_friendly(config) -> None:
        hook(config)
        if not small:
            _cpu_friendly(config)

    start = time.time()
    run_teachers(data, method=method, max_num_iterations=steps, config_hook=cpu_friendly, depth_loss_mult=depth_loss_mult)
    seconds = time.time() - start
    result = evaluate(data, teacher=method)
    result["settings"] = {
        "num_scenes": num_scenes, "num_steps": num_steps, "width": width, "height": height,
        "teacher": method, "teacher_steps": steps, "teacher_rays": rays, "small_teacher": small,
        "depth_loss_mult": depth_loss_mult if "depth" in method else None, "teacher_seconds_total": round(seconds, 1),
        "machine": platform.platform(), "hardware": hardware(),
    }
    (output / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    save_figure(data, "scene-000", output / "depth_scene-000.png")
    return result


def _cpu_friendly(config) -> None:
    """The hash-grid size of the recorded non-``small`` runs (shared 2-core CPU); ray batch and
    in-process data manager come from ``cpu_teacher_hook``."""
    config.pipeline.model.eval_num_rays_per_chunk = 4096
    # 2^16 hash entries per level instead of 2^19: Adam over the full tables dominated a CPU step.
    config.pipeline.model.log2_hashmap_size = 16
