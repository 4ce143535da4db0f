"""The DistillNeRF benchmark (``python benchmarks/distillnerf_quick.py``):
the columns of the paper's Table 1 on held-out procedural driving scenes.

1. Generates seeded driving scenes (6 cameras, ``nerfconvert.scenes.driving``); the data
   manager splits them by scene, so the evaluated scenes were never trained on.
2. Trains the per-scene teachers (``nerfconvert distillnerf-teachers``: stock depth-nerfacto on
   the images and LiDAR of all time steps of a scene, as the paper's LiDAR-supervised teachers)
   and caches their dense depth; their wall time per scene is recorded.
3. Trains ``distillnerf`` twice through nerfstudio's trainer: with distillation (L_depth' on) and
   without (the paper's "no distillation" row), same steps and seed.
4. Evaluates both as ``ns-eval`` does (``get_average_eval_image_metrics``): reconstruction on
   the input cameras, novel views at the previous / next time step, depth AbsRel against the
   generator's ground truth. The teachers (upper bound) are rendered at the same input cameras.
5. Times one forward pass per 6-camera frame set, writes a PNG of input / predictions / teacher
   / ground truth for a few frames, and a markdown + JSON table.

    python benchmarks/distillnerf_quick.py --mode quick   # tiny scenes on CPU (< 20 min)
    python benchmarks/distillnerf_quick.py --mode smoke   # plumbing only, a minute or two
    python benchmarks/distillnerf_quick.py --mode full    # 228x128 scenes, longer training: for a GPU
    python benchmarks/distillnerf_quick.py --help  # every knob
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from common import RESULTS, expand_mode, hardware, now_utc, short_run_config, write_report as write_files


def train_model(root: Path, out: Path, name: str, steps: int, distill: bool, seed: int,
                train_fraction: float, scenes: Tuple[str, ...] = (), teacher: Optional[str] = None) -> Dict[str, Any]:
    """``ns-train distillnerf`` (nerfstudio's trainer, in process); returns the run and its wall time."""
    from nerfstudio.scripts import train

    config = short_run_config("distillnerf", out, steps, experiment="distillnerf", timestamp=name, fit_schedules=True)
    config.machine.seed = seed
    config.pipeline.datamanager.data = root
    config.pipeline.datamanager.dataparser.train_split_fraction = train_fraction
    config.pipeline.datamanager.dataparser.val_split_fraction = 0.0
    config.pipeline.datamanager.dataparser.scenes = tuple(scenes)
    config.pipeline.datamanager.use_dense_depth = distill
    if teacher is not None:
        config.pipeline.datamanager.teacher = teacher
    config.pipeline.model.use_dense_depth = distill  # L_depth' off = the paper's "no distillation" row
    base = config.get_base_dir()
    record = base / "bench_time.json"
    if record.exists():  # trained by an earlier invocation
        return {"config": base / "config.yml", "seconds": json.loads(record.read_text())["seconds"]}
    start = time.perf_counter()
    train.main(config)
    seconds = time.perf_counter() - start
    record.write_text(json.dumps({"seconds": seconds}))
    return {"config": base / "config.yml", "seconds": seconds}


def cpu_teacher_hook(rays: int, steps: int, small: bool):
    """``run_teachers``' config hook for the benchmarks: ``rays`` per batch, the in-process data
    manager, no local writer; ``small``: a smaller hash grid and fewer samples per ray (tiny images)."""

    def hook(config) -> None:
        from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
        from nerfstudio.data.datamanagers.parallel_datamanager import ParallelDataManagerConfig

        dm = config.pipeline.datamanager
        if isinstance(dm, ParallelDataManagerConfig):
            # nerfacto's ParallelDataManager spawns loader processes: slow to start on a small CPU
            config.pipeline.datamanager = dm = VanillaDataManagerConfig(dataparser=dm.dataparser)
        dm.train_num_rays_per_batch = dm.eval_num_rays_per_batch = rays  # depth-nerfacto's keeps its depth dataset
        config.vis = "tensorboard"
        config.logging.local_writer.enable = False
        model = config.pipeline.model
        if hasattr(model, "implementation"):
            model.implementation = "torch"
        if small and hasattr(model, "num_proposal_samples_per_ray"):
            # 64x36 images need no 2048^3 grid: 8 levels up to 512, 2^15 entries, 64+32 proposal and
            # 32 NeRF samples per ray (stock 16 / 2048 / 2^19 / 256+96 / 48) cut a CPU step several-fold.
            model.num_levels, model.max_res, model.log2_hashmap_size = 8, 512, 15
            model.num_proposal_samples_per_ray, model.num_nerf_samples_per_ray = (64, 32), 32
            model.proposal_warmup = steps  # stock 5000: the proposal-weight anneal ends within the run
            model.eval_num_rays_per_chunk = 4096

    return hook


def train_teachers(root: Path, steps: int, rays: int, only: Optional[List[str]] = None, part: str = "",
                   method: Optional[str] = None, small: bool = False) -> Dict[str, float]:
    """Per-scene teachers (``nerfconvert distillnerf-teachers``), one scene at a time so that each
    scene's wall time is known; finished scenes are skipped (and keep their recorded time).
    ``small``: a smaller hash grid and fewer samples per ray, for the quick mode's 64x36 images on a CPU."""
    from nerfconvert.distillnerf.dataparser import read_scenes
    from nerfconvert.distillnerf.teachers import DEFAULT_METHOD, run_teachers

    method = method or DEFAULT_METHOD
    hook = cpu_teacher_hook(rays, steps, small)

    times: Dict[str, float] = {}
    for earlier in sorted(root.glob("bench_teacher_times*.json")):  # parts may run side by side
        times.update(json.loads(earlier.read_text()))
    record = root / f"bench_teacher_times{part}.json"
    for scene in read_scenes(root):
        if only is not None and scene.name not in only:
            continue
        start = time.perf_counter()
        status = run_teachers(root, method, steps, scenes=(scene.name,), config_hook=hook)
        if status.get(scene.name) == "done" or scene.name not in times:
            times[scene.name] = time.perf_counter() - start
        record.write_text(json.dumps({k: v for k, v in times.items() if only is None or k in only}, indent=1))
    return times


@torch.no_grad()
def evaluate_model(config_path: Path, png_frames: int) -> Dict[str, Any]:
    """ns-eval's metrics (test scenes), per-frame inference time, and a few frames for the figure."""
    from nerfstudio.utils.eval_utils import eval_setup

    from nerfconvert.distillnerf.pipeline import eval_frames

    _, pipeline, _, _ = eval_setup(config_path, test_mode="test")
    metrics = pipeline.get_average_eval_image_metrics(get_std=True)
    model = pipeline.model
    times: List[float] = []
    samples: List[Dict[str, Any]] = []
    for cameras, batch in eval_frames(pipeline.datamanager):
        images = batch["image"].to(model.device)
        model.encode(cameras, images, batch["ego_to_world"])  # warm-up
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        scene, _ = model.encode(cameras, images, batch["ego_to_world"])  # the forward pass: 6 images -> voxels
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        render = model.render_view(scene, cameras)
        samples.append({
            "key": f"{batch['scene']}/t{int(batch['time']):03d}",
            "image": batch["image"].cpu().numpy(), "pred": render["rgb"].cpu().numpy(),
            "pred_depth": render["z_depth"].cpu().numpy(),
            "gt_depth": batch["gt_depth"].cpu().numpy() if "gt_depth" in batch else None,
            "sky": batch["sky_mask"].cpu().numpy() if "sky_mask" in batch else None,
            "teacher_depth": batch["dense_depth"].cpu().numpy() if "dense_depth" in batch else None,
        })
    metrics["forward_seconds_per_frame"] = float(np.median(times)) if times else float("nan")
    metrics["num_cameras"] = int(model.trained_num_cameras)
    metrics["num_parameters"] = int(sum(p.numel() for p in model.parameters()))
    return {"metrics": metrics, "samples": samples, "eval_scenes": pipeline.datamanager.scene_names("test")}


@torch.no_grad()
def evaluate_teacher(root: Path, samples: List[Dict[str, Any]], render_size) -> Dict[str, Any]:
    """The per-scene teachers at the same input cameras: PSNR/SSIM of their renders, AbsRel of
    their cached depth (block-averaged to the model's render resolution, same cells)."""
    from nerfstudio.utils.eval_utils import eval_setup
    from torchmetrics.functional import peak_signal_noise_ratio, structural_similarity_index_measure

    from nerfconvert.distillnerf.dataparser import read_cache_meta, read_scenes
    from nerfconvert.distillnerf.losses import block_mean_depth
    from nerfconvert.distillnerf.model import depth_abs_rel

    scenes = {s.name: s for s in read_scenes(root)}
    pipelines: Dict[str, Any] = {}
    psnrs, ssims, absrels = [], [], []
    for sample in samples:
        scene_name, step = sample["key"].split("/")
        scene = scenes[scene_name]
        if scene_name not in pipelines:
            meta = read_cache_meta(scene)
            if meta is None:  # no finished teacher for this scene
                continue
            _, pipelines[scene_name], _, _ = eval_setup(scene.root / meta["config"], test_mode="inference")
        if scene_name not in pipelines:
            continue
        pipeline = pipelines[scene_name]
        dataset = pipeline.datamanager.train_dataset
        wanted = [i for i, f in enumerate(dataset.image_filenames) if f"/{step}/" in str(f)]
        renders, gts = [], []
        for i in wanted:
            out = pipeline.model.get_outputs_for_camera(dataset.cameras[i : i + 1].to(pipeline.device))
            renders.append(out["rgb"].clamp(0, 1).cpu())
            gts.append(dataset.get_image_float32(i)[..., :3])
            if Path(str(dataset.image_filenames[i])).stem == "CAM_FRONT":
                sample["teacher_front"] = renders[-1].numpy()
        teacher, gt = torch.stack(renders), torch.stack(gts)
        psnrs.append(float(peak_signal_noise_ratio(teacher, gt, data_range=1.0)))
        ssims.append(float(structural_similarity_index_measure(teacher.permute(0, 3, 1, 2), gt.permute(0, 3, 1, 2),
                                                               data_range=1.0)))
        if sample["teacher_depth"] is not None and sample["gt_depth"] is not None:
            tz = torch.from_numpy(sample["teacher_depth"])
            small, _ = block_mean_depth(tz, torch.ones_like(tz, dtype=torch.bool), render_size)
            absrels.append(depth_abs_rel(small, torch.from_numpy(sample["gt_depth"]),
                                         torch.from_numpy(sample["sky"]) if sample["sky"] is not None else None))
    return {"teacher_scenes": sorted(pipelines), "recon_psnr": float(np.mean(psnrs)) if psnrs else float("nan"), "recon_ssim": float(np.mean(ssims)) if ssims else float("nan"),
            "recon_depth_abs_rel": float(np.nanmean(absrels)) if absrels else float("nan")}


def plot_frames(models: Dict[str, Dict[str, Any]], frames: int, path: Path) -> None:
    """Front camera of a few held-out frames: input, each model's prediction, the teacher, and the
    depths (ground truth, models, teacher)."""
    import matplotlib.pyplot as plt

    names = list(models)
    first = models[names[0]]["samples"][:frames]
    cols = ["input (= ground truth RGB)"] + [f"{n}" for n in names] + ["teacher", "GT depth"] + \
           [f"{n} depth" for n in names] + ["teacher depth"]
    fig, axes = plt.subplots(len(first), len(cols), figsize=(2.2 * len(cols), 1.5 * len(first) + 0.6), squeeze=False)
    for r, sample in enumerate(first):
        gt_depth = sample["gt_depth"][0] if sample["gt_depth"] is not None else None
        vmax = 60.0

        def depth(ax, z):
            if z is None:
                ax.set_facecolor("lightgrey")
                return
            ax.imshow(np.clip(z, 0, vmax), cmap="turbo_r", vmin=0, vmax=vmax, interpolation="nearest")

        row = [lambda ax: ax.imshow(sample["image"][0])]
        for n in names:
            row.append(lambda ax, n=n: ax.imshow(np.clip(models[n]["samples"][r]["pred"][0], 0, 1)))
        row.append(lambda ax: ax.imshow(sample["teacher_front"]) if "teacher_front" in sample else ax.set_facecolor("lightgrey"))
        row.append(lambda ax: depth(ax, gt_depth))
        for n in names:
            row.append(lambda ax, n=n: depth(ax, models[n]["samples"][r]["pred_depth"][0]))
        row.append(lambda ax: depth(ax, sample["teacher_depth"][0] if sample["teacher_depth"] is not None else None))
        for c, draw in enumerate(row):
            ax = axes[r, c]
            draw(ax)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=7)
        axes[r, 0].set_ylabel(sample["key"], fontsize=7)
    fig.suptitle("DistillNeRF on held-out scenes (front camera; depth 0-60 m, sky/far clipped)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(rows: List[Dict[str, Any]], settings: Dict[str, Any], command: str, results: Path, tag: str,
                 eval_scenes: List[str], teacher_method: str = "depth-nerfacto") -> str:
    def f(v, d=2):
        return "n/a" if v is None or v != v else f"{v:.{d}f}"

    lines = [
        f"# DistillNeRF benchmark ({tag})",
        "",
        f"Command: `{command}`",
        f"Date: {now_utc()}. Hardware: {hardware()}.",
        f"Held-out (test) scenes: {', '.join(eval_scenes)}; settings: {json.dumps(settings)}.",
        "",
        "| method | recon PSNR | recon SSIM | prev PSNR | prev SSIM | next PSNR | next SSIM | depth AbsRel | train time | per-frame forward |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {f(r.get('recon_psnr'))} | {f(r.get('recon_ssim'), 3)} | {f(r.get('prev_psnr'))} | "
            f"{f(r.get('prev_ssim'), 3)} | {f(r.get('next_psnr'))} | {f(r.get('next_ssim'), 3)} | "
            f"{f(r.get('recon_depth_abs_rel'), 3)} | {r.get('train_time', 'n/a')} | {r.get('forward', 'n/a')} |"
        )
    lines += [
        "",
        "recon: the input cameras of a frame; prev/next: the same rig one time step earlier/later (novel views).",
        "Depth AbsRel: rendered z-depth vs the generator's exact depth, at the model's render resolution (1/4),",
        f"cells fully covered by ground truth within 80 m, no sky. Teachers: per-scene {teacher_method} on all time steps",
        "(their cached dense depth block-averaged to the same cells); novel views are not defined for them.",
        "",
    ]
    return write_files(results, f"distillnerf_model_{tag}", "\n".join(lines),
                       {"rows": rows, "settings": settings, "command": command, "eval_scenes": eval_scenes})


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/nerfconvert-bench-distillnerf-quick"))
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="quick")
    parser.add_argument("--num-scenes", type=int, default=6, help="generated scenes (split by scene)")
    parser.add_argument("--train-fraction", type=float, default=0.67, help="share of scenes trained on; the rest are held out")
    parser.add_argument("--num-steps", type=int, default=4, help="time steps per scene")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=36)
    parser.add_argument("--teacher-steps", type=int, default=300)
    parser.add_argument("--teacher-rays", type=int, default=1024)
    parser.add_argument("--teacher-method", default=None,
                        help="teacher method (default: distillnerf-teachers' default, depth-nerfacto on images + LiDAR)")
    parser.add_argument("--small-teachers", action="store_true",
                        help="smaller hash grid and fewer samples per ray for the teachers (tiny images on a CPU)")
    parser.add_argument("--train-steps", type=int, default=300, help="distillnerf steps (each model)")
    parser.add_argument("--png-frames", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenes", nargs="*", default=[], help="use only these scene folders (default: all)")
    parser.add_argument("--existing-teachers-only", action="store_true",
                        help="train no teacher; evaluate against the teachers already finished (parts run side by side)")
    parser.add_argument("--mode", choices=sorted(MODES), default=None,
                        help="a recorded mode's settings (the options given with it win)")
    args = parser.parse_args(expand_mode(argv, {**MODES, "real": MODES["full"]}))
    if not torch.cuda.is_available():
        torch.set_num_threads(args.threads)
    command = "python benchmarks/distillnerf_quick.py --mode " + (args.mode or args.tag)
    from nerfconvert.distillnerf.teachers import DEFAULT_METHOD
    from nerfconvert.scenes.driving import generate_driving_dataset

    teacher_method = args.teacher_method or DEFAULT_METHOD
    root = args.work_dir / "scenes"
    if not (root / "scene-000" / "scene.json").exists():
        generate_driving_dataset(root, num_scenes=args.num_scenes, num_steps=args.num_steps, width=args.width,
                                 height=args.height, seed=args.seed)
    if args.existing_teachers_only:  # parts ran side by side: use what they finished, train none
        teacher_times = {}
        for part in sorted(root.glob("bench_teacher_times*.json")):
            teacher_times.update(json.loads(part.read_text()))
    else:
        teacher_times = train_teachers(root, args.teacher_steps, args.teacher_rays, only=args.scenes or None,
                                       method=teacher_method, small=args.small_teachers)
    settings = {k: getattr(args, k) for k in ("num_scenes", "train_fraction", "num_steps", "width", "height",
                                               "teacher_steps", "teacher_rays", "small_teachers", "train_steps",
                                               "threads", "seed", "scenes")}
    settings["teacher_method"] = teacher_method
    models: Dict[str, Dict[str, Any]] = {}
    rows: List[Dict[str, Any]] = []
    for name, distill in (("distilled", True), ("no-distillation", False)):
        run = train_model(root, args.work_dir / "runs", name, args.train_steps, distill, args.seed, args.train_fraction,
                          tuple(args.scenes), teacher=teacher_method)
        models[name] = evaluate_model(run["config"], args.png_frames)
        m = models[name]["metrics"]
        rows.append({"method": f"DistillNeRF ({name})", **{k: v for k, v in m.items()},
                     "train_time": f"{run['seconds']:.0f} s", "forward": f"{1000 * m['forward_seconds_per_frame']:.0f} ms"})
        print(json.dumps(rows[-1]), flush=True)
    eval_scenes = models["distilled"]["eval_scenes"]
    samples = models["distilled"]["samples"]
    h = -(-args.height // 4)
    w = -(-args.width // 4)
    teacher = evaluate_teacher(root, samples, (h, w))
    held_out_times = [teacher_times[s] for s in eval_scenes if s in teacher_times]
    rows.append({"method": f"per-scene teacher ({teacher_method}, upper bound)", **teacher,
                 "train_time": f"{np.mean(held_out_times):.0f} s per scene" if held_out_times else "n/a",
                 "forward": "n/a (trained per scene)"})
    plot_frames(models, args.png_frames, args.results_dir / f"distillnerf_model_{args.tag}.png")
    print(write_report(rows, settings, command, args.results_dir, args.tag, eval_scenes, teacher_method))
    return 0


MODES = {
    "smoke": ["--num-scenes", "3", "--num-steps", "3", "--teacher-steps", "20", "--small-teachers", "--train-steps", "5",
              "--png-frames", "1"],
    # what benchmarks/README.md records, sized for a 2-core CPU shared with many other jobs
    # (1 training scene, 2 held out). 80 LiDAR-supervised teacher steps (150 steps: depth AbsRel 0.038 on scene-001);
    # 500 model steps (at 100 neither model had learnt depth yet: AbsRel 0.475 distilled vs 0.469 without).
    "quick": ["--num-scenes", "4", "--num-steps", "3", "--scenes", "scene-000", "scene-001", "scene-003",
              "--train-fraction", "0.34", "--teacher-steps", "80", "--teacher-rays", "1024", "--small-teachers",
              "--train-steps", "500"],
    # nuScenes-like resolution and longer training: meant for a GPU (not run on CPU)
    "full": ["--num-scenes", "40", "--num-steps", "10", "--width", "228", "--height", "128", "--teacher-steps", "5000",
             "--teacher-rays", "4096", "--train-steps", "20000", "--train-fraction", "0.8", "--threads", "8"],
}


def run(mode: str, work_dir: Optional[Path], results_dir: Path) -> int:
    """Entry of ``python benchmarks/bench.py distillnerf`` (see ``bench.RUNNERS``)."""
    if mode == "real":
        mode = "full"
    work_dir = work_dir or Path(f"/tmp/nerfconvert-bench-distillnerf-{mode}")
    return main(MODES[mode] + ["--work-dir", str(work_dir), "--results-dir", str(results_dir), "--tag", mode])
