"""NeRF -> Gaussians on a generated scene, against three baselines at equal CPU time.

A tensorf and a nerfacto teacher are trained on a generated object scene (64x64, white background).
Each becomes a splatfacto run four ways, every way given the same wall-clock budget on this CPU
(placement included):

- **distilled**: ``ns-train pvd-al ... splatfacto`` (Gaussians placed from the teacher, then distilled
  on its pseudo views, data-free);
- **init only**: the teacher-placed Gaussians, not trained (what NeRFtoGSandBack exports before
  fine-tuning);
- **init + images**: the same placement, then stock splatfacto trained on the scene's images;
- **random + images**: stock splatfacto from the images with its random initialisation (blender data
  has no point cloud).

The image baselines get the schedule refits our student gets (``SplatView.fit_to_run``, every SH
degree from the start, pruning at 0.005), so the comparison is about initialisation and data, not
about schedules. Scored like ns-eval on the test views against the real images, and against the
teacher; Gaussian count and ``ns-export gaussian-splat`` PLY size are reported. Writes
``results/splat_quick.{md,json,png}`` (``splat_quick_<teachers>.*`` for other teachers).

    python benchmarks/splat_quick.py --budget 120
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from common import benchmark_parser, command_line, evaluate, now_utc, psnr, short_run_config, write_report

TEACHER_STEPS = {"tensorf": 400, "nerfacto": 1000}
DEFAULT_BUDGET = 120.0
TRAIN_VIEWS = 30
WAYS = ("distilled", "init only", "init + images", "random + images")


def train_for(config, seconds: Optional[float], clock_start: Optional[float] = None) -> Dict[str, float]:
    """ns-train's code path (nerfstudio.scripts.train.main, one process) stopped after ``seconds`` of wall
    clock counted from ``clock_start`` (default: now), or at --max-num-iterations."""
    from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

    from nerfconvert.compat import own_event_writers

    start = clock_start if clock_start is not None else time.perf_counter()
    config.set_timestamp()
    config.save_config()
    with own_event_writers():
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup()
        steps = {"n": 0}

        def stop(step: int) -> None:
            steps["n"] = step
            if seconds is not None and time.perf_counter() - start > seconds:
                trainer.stop_training = True

        trainer.callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], stop))
        trainer.train()
    return {"seconds": time.perf_counter() - start, "steps": steps["n"] + 1, "config": config.get_base_dir() / "config.yml"}


def teacher_run(method: str, scene: Path, out: Path, steps: Optional[int] = None) -> Path:
    """The teacher's run (trained here once, then reused): ``steps`` (default TEACHER_STEPS) of 1024 rays."""
    steps = steps or TEACHER_STEPS[method]
    folder = out / (f"teacher-{method}" if steps == TEACHER_STEPS[method] else f"teacher-{method}-{steps}")
    found = sorted(folder.rglob("config.yml"))
    if found:
        return found[-1]
    config = short_run_config(method, folder, steps, data=scene, rays=1024,
                              eval_chunk=4096, device="cpu", fit_schedules=True)
    if method == "nerfacto":
        from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
        from pvd_bench import LIGHT_NERFACTO, apply_overrides

        # stock nerfacto is sized for unbounded captures: on this 64 px object scene it scored 10 dB after
        # 200 CPU steps. The lighter one of pvd_bench (the scene's near/far, no contraction, white
        # background, smaller tables) and exact poses (no camera optimizer) learn it in CPU minutes.
        apply_overrides(config.pipeline.model, LIGHT_NERFACTO)
        config.pipeline.model.implementation = "torch"
        config.pipeline.model.camera_optimizer = CameraOptimizerConfig(mode="off")
    train_for(config, None)
    return sorted(folder.rglob("config.yml"))[-1]


def pvd_config(teacher: Path, out: Path, steps: int, init_points: int, depth_weight: float = 0.0):
    from nerfconvert.distill.method import make_pvd_config

    config = make_pvd_config(teacher, "splatfacto", out, max_num_iterations=steps, num_rays=1024, device_type="cpu")
    config.pipeline.init_points = init_points
    config.pipeline.depth_weight = depth_weight
    config.check_inputs()
    return config


def placed_run(teacher: Path, out: Path, init_points: int) -> Dict:
    """The teacher-placed Gaussians written as a splatfacto run, untrained."""
    from nerfconvert.distill.export import student_run_config, write_student_run
    from nerfconvert.views.registry import read_run_config

    start = time.perf_counter()
    config = pvd_config(teacher, out, 1, init_points)
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    run = student_run_config(config, read_run_config(teacher)[1], "splatfacto")
    run.set_timestamp()
    path = write_student_run(run, pipeline.student.state_dict(), 0, teacher_dir=teacher.parent)
    return {"seconds": time.perf_counter() - start, "steps": 0, "config": path}


def image_config(scene: Path, out: Path, steps: int, load_dir: Optional[Path]):
    from nerfconvert.views.splat import SplatView

    config = short_run_config("splatfacto", out, steps, data=scene, device="cpu", fit_schedules=True)
    model = config.pipeline.model
    SplatView.fit_to_run(model, steps)
    model.sh_degree_interval = 1
    model.cull_alpha_thresh = 0.005
    model.background_color = "white"  # the generated scene's background
    config.load_dir = load_dir
    return config


def score(run: Path, teacher: Path, every: int) -> Dict[str, float]:
    import torch
    from nerfstudio.utils.eval_utils import eval_setup

    from nerfconvert.views.registry import view_for

    scores = evaluate(run, every=every)
    _, t_pipe, _, _ = eval_setup(teacher, test_mode="test")
    _, s_pipe, _, _ = eval_setup(run, test_mode="test")
    s_view = view_for(s_pipe.model)
    s_view.set_render_background(torch.ones(3))
    cameras = t_pipe.datamanager.eval_dataset.cameras
    values, image = [], None
    with torch.no_grad():
        for i in range(0, cameras.shape[0], every):
            cam = cameras[i : i + 1]
            t_rgb = t_pipe.model.get_outputs_for_camera(cam)["rgb"]
            s_rgb = s_view.render_camera(cam)["rgb"]
            values.append(psnr(s_rgb, t_rgb))
            image = image if image is not None else s_rgb
    out = run.parent / "export"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-m", "nerfstudio.scripts.exporter", "gaussian-splat", "--load-config", str(run),
                    "--output-dir", str(out)], check=True, capture_output=True, env=env)
    return {"psnr_vs_gt": scores["psnr"], "ssim": scores["ssim"], "psnr_vs_teacher": sum(values) / len(values),
            "gaussians": s_view.num_gaussians, "ply_mb": (out / "splat.ply").stat().st_size / 1e6, "image": image}


def plot(rows: List[Dict], teachers: Dict[str, Dict]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(teachers), figsize=(5.2 * len(teachers), 3.6), squeeze=False)
    for ax, (name, t) in zip(axes[0], teachers.items()):
        mine = [r for r in rows if r["teacher"] == name]
        ax.bar(range(len(mine)), [r["psnr_vs_gt"] for r in mine], color=["C2", "C7", "C0", "C1"][: len(mine)])
        ax.axhline(t["psnr"], color="k", ls="--", lw=1, label=f"{name} teacher {t['psnr']:.2f} dB")
        ax.axhline(t["psnr"] - 1.0, color="k", ls=":", lw=1, label="teacher - 1 dB")
        ax.set_xticks(range(len(mine)))
        ax.set_xticklabels([f"{r['way']}\n{r['seconds']:.0f} s, {r['gaussians']} G" for r in mine], fontsize=7)
        ax.set_ylabel("test PSNR vs ground truth (dB)")
        lo = min(r["psnr_vs_gt"] for r in mine) - 2
        ax.set_ylim(max(0, lo), max(t["psnr"], max(r["psnr_vs_gt"] for r in mine)) + 1.5)
        ax.set_title(f"{name} teacher -> splatfacto, equal wall-clock budget", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def main(argv: Optional[List[str]] = None) -> None:
    parser = benchmark_parser(__file__, __doc__)
    parser.add_argument("--tag", default=None, help="the report's file stem (default: splat_quick, with the teachers "
                        "and any setting that differs from the defaults appended)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="wall-clock seconds per way (placement included)")
    parser.add_argument("--teachers", nargs="+", default=["tensorf", "nerfacto"])
    parser.add_argument("--teacher-steps", type=int, nargs="+", default=None,
                        help="training steps of each teacher, in --teachers order (default: tensorf 400, nerfacto 1000)")
    parser.add_argument("--init-points", type=int, default=10000)
    parser.add_argument("--depth-weight", type=float, default=0.0, help="pvd-al's --pipeline.depth-weight (teacher depth loss)")
    parser.add_argument("--ways", nargs="+", default=list(WAYS), choices=WAYS, help="which ways to run (default: all)")
    parser.add_argument("--every", type=int, default=2)
    parser.add_argument("--train-views", type=int, default=TRAIN_VIEWS,
                        help="training views of the generated scene (a teacher trained on few views overfits)")
    args = parser.parse_args(argv)

    import nerfstudio.configs.method_configs  # noqa: F401 (our shims)

    from nerfconvert.scenes import generate_object_scene

    root = args.work_dir if args.train_views == TRAIN_VIEWS else args.work_dir / f"views{args.train_views}"
    scene = root / "scene"
    if not (scene / "transforms_train.json").exists():
        generate_object_scene(scene, seed=0, resolution=64, num_train=args.train_views, num_val=4, num_test=8)
    # schedules are sized to a little more than the budget reaches on this CPU (120 s: 600 distilled, 960
    # image steps; measured 350-400 and 420-600+), and the clock stops the run
    steps = {"distilled": int(round(args.budget * 5)), "images": int(round(args.budget * 8))}
    rows, teachers = [], {}
    teacher_steps = dict(zip(args.teachers, args.teacher_steps or [TEACHER_STEPS[n] for n in args.teachers]))
    for name in args.teachers:
        teacher = teacher_run(name, scene, root, teacher_steps[name])
        teachers[name] = evaluate(teacher, every=args.every)
        print(f"{name} teacher: {teachers[name]['psnr']:.2f} dB", flush=True)
        base = root / (name if teacher_steps[name] == TEACHER_STEPS[name] else f"{name}-{teacher_steps[name]}")
        if args.budget != DEFAULT_BUDGET:
            base = base.with_name(f"{base.name}-{args.budget:g}s")
        runs: Dict[str, Dict] = {}
        start = time.perf_counter()
        distilled = base / ("distilled" if not args.depth_weight else f"distilled-depth{args.depth_weight:g}")
        if "distilled" in args.ways:
            runs["distilled"] = train_for(pvd_config(teacher, distilled, steps["distilled"], args.init_points, args.depth_weight),
                                          args.budget, clock_start=start)
            runs["distilled"]["config"] = sorted(distilled.rglob("splatfacto/*/config.yml"))[-1]
        if "init only" in args.ways or "init + images" in args.ways:
            runs["init only"] = placed = placed_run(teacher, base / "placed", args.init_points)
        if "init + images" in args.ways:
            left = max(1.0, args.budget - placed["seconds"])
            fine = train_for(image_config(scene, base / "init-images", steps["images"], placed["config"].parent / "nerfstudio_models"), left)
            runs["init + images"] = {**fine, "seconds": fine["seconds"] + placed["seconds"]}
        if "random + images" in args.ways:
            runs["random + images"] = train_for(image_config(scene, base / "random-images", steps["images"], None), args.budget)
        for way in [w for w in WAYS if w in runs]:
            r = runs[way]
            row = {"teacher": name, "way": way, "seconds": r["seconds"], "steps": r["steps"], **score(r["config"], teacher, args.every)}
            rows.append(row)
            print(f"{name} / {way}: {row['psnr_vs_gt']:.2f} dB vs GT, {row['psnr_vs_teacher']:.2f} dB vs teacher, "
                  f"{row['gaussians']} Gaussians, {row['seconds']:.0f} s", flush=True)

    lines = [f"# NeRF -> Gaussians on a generated scene, equal wall clock ({now_utc()})", "",
             f"Scene: generated object, 64x64, {args.train_views} training views, 8 test views.",
             f"Command: `{command_line(argv, __file__)}`", ""]
    for name, t in teachers.items():
        lines += [f"**{name} teacher** ({teacher_steps[name]} steps): {t['psnr']:.2f} dB on {t['views']} test views.", "",
                  "| way | wall s | steps | Gaussians | PLY MB | PSNR vs GT | SSIM | PSNR vs teacher | vs teacher (dB) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if r["teacher"] == name:
                lines.append(f"| {r['way']} | {r['seconds']:.0f} | {r['steps']} | {r['gaussians']} | {r['ply_mb']:.2f} | "
                             f"{r['psnr_vs_gt']:.2f} | {r['ssim']:.3f} | {r['psnr_vs_teacher']:.2f} | "
                             f"{r['psnr_vs_gt'] - t['psnr']:+.2f} |")
        lines.append("")
    stem = "splat_quick" if args.teachers == ["tensorf", "nerfacto"] else "splat_quick_" + "_".join(args.teachers)
    if args.teacher_steps:
        stem += "_" + "_".join(str(teacher_steps[n]) for n in args.teachers)
    if args.budget != DEFAULT_BUDGET:
        stem += f"_{args.budget:g}s"
    if args.depth_weight:
        stem += f"_depth{args.depth_weight:g}"
    if args.train_views != TRAIN_VIEWS:
        stem += f"_views{args.train_views}"
    stem = args.tag or stem
    data = {"budget_s": args.budget, "teachers": {k: dict(v) for k, v in teachers.items()},
            "rows": [{k: (str(v) if isinstance(v, Path) else v) for k, v in r.items() if k != "image"} for r in rows]}
    print(write_report(args.results_dir, stem, "\n".join(lines), data, figure=plot(rows, teachers)))


if __name__ == "__main__":
    main()
