"""A trained NeRF becomes Gaussians: pvd-al with the splatfacto student, data-free, on the CPU.

The teacher is a run of any family (default: the newest lego100 tensorf teacher under
../shared/teachers). For each step budget the student is distilled on the teacher's pseudo views and
written as a stock splatfacto run; 0 steps is the placement from the teacher alone. Each student is
scored like ns-eval against the real test images (every ``--every``-th view) and against the teacher
on the same views, and exported with stock ``ns-export gaussian-splat``. Writes a table
(``results/nerf_to_splat.md`` / ``.json``) and side-by-side renders (``results/nerf_to_splat.png``).

    python benchmarks/nerf_to_splat.py --steps 0 300 --every 20
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from common import benchmark_parser, command_line, evaluate, now_utc, psnr, shown, teacher_config, write_report


def distil(teacher: Path, steps: int, out: Path, init_points: int, patch: int) -> Path:
    import torch
    from nerfstudio.scripts import train

    from nerfconvert.compat import own_event_writers
    from nerfconvert.distill.method import make_pvd_config
    from nerfconvert.distill.export import student_run_config, write_student_run
    from nerfconvert.views.registry import read_run_config

    config = make_pvd_config(teacher, "splatfacto", out, max_num_iterations=max(steps, 1), device_type="cpu")
    config.pipeline.init_points = init_points
    config.pipeline.image_patch = patch
    config.check_inputs()
    if steps > 0:
        with own_event_writers():
            train.main(config)
        runs = sorted(out.rglob("splatfacto/*/config.yml"), key=lambda p: p.stat().st_mtime)
        return runs[-1]
    # placement only: the student as pvd-al builds it, written without a training step
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    run = student_run_config(config, read_run_config(teacher)[1], "splatfacto")
    run.set_timestamp()
    return write_student_run(run, pipeline.student.state_dict(), 0, teacher_dir=teacher.parent,
                             extra_files={"dataparser_transforms.json": teacher.parent / "dataparser_transforms.json"})


def vs_teacher(student: Path, teacher: Path, every: int, picture: Optional[Path]) -> Dict[str, float]:
    """PSNR of the student against the teacher's renders of the same test views; one side-by-side image."""
    import torch
    from nerfstudio.utils.eval_utils import eval_setup

    from nerfconvert.views.registry import view_for

    _, t_pipe, _, _ = eval_setup(teacher, test_mode="test")
    _, s_pipe, _, _ = eval_setup(student, test_mode="test")
    s_view = view_for(s_pipe.model)
    bg = view_for(t_pipe.model).background_color()
    if bg is not None:
        s_view.set_render_background(bg)
    cameras = t_pipe.datamanager.eval_dataset.cameras
    values, first = [], None
    with torch.no_grad():
        for i in range(0, cameras.shape[0], every):
            cam = cameras[i : i + 1].to(t_pipe.device)
            t_rgb = t_pipe.model.get_outputs_for_camera(cam)["rgb"]
            s_rgb = s_view.render_camera(cam)["rgb"]
            values.append(psnr(s_rgb, t_rgb))
            if first is None:
                gt = t_pipe.datamanager.eval_dataset[i]["image"][..., :3]
                first = (gt, t_rgb, s_rgb)
    return {"psnr_vs_teacher": sum(values) / len(values), "images": first}


def ply_bytes(student: Path, out: Path) -> int:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-m", "nerfstudio.scripts.exporter", "gaussian-splat", "--load-config", str(student),
                    "--output-dir", str(out)], check=True, capture_output=True, env=env)
    return (out / "splat.ply").stat().st_size


def plot(rows: List[Dict]):
    import matplotlib.pyplot as plt

    panels = [("ground truth", rows[0]["images"][0]), ("teacher", rows[0]["images"][1])]
    panels += [(f"splatfacto, {r['steps']} steps\n{r['psnr_vs_gt']:.2f} dB", r["images"][2]) for r in rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image.clamp(0, 1).cpu().numpy())
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def main(argv: Optional[List[str]] = None) -> None:
    parser = benchmark_parser(__file__, __doc__, tag="nerf_to_splat")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="a trained run's config.yml (default: the newest lego100 tensorf under ../shared/teachers)")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 300])
    parser.add_argument("--every", type=int, default=20, help="score every n-th test view")
    parser.add_argument("--init-points", type=int, default=20000)
    parser.add_argument("--patch", type=int, default=64)
    args = parser.parse_args(argv)
    args.teacher = args.teacher or teacher_config("tensorf")

    teacher_scores = evaluate(args.teacher, every=args.every)
    rows = []
    for steps in args.steps:
        start = time.perf_counter()
        student = distil(args.teacher, steps, args.work_dir / f"steps-{steps}", args.init_points, args.patch)
        seconds = time.perf_counter() - start
        scores = evaluate(student, every=args.every)
        close = vs_teacher(student, args.teacher, args.every, None)
        from nerfconvert.views.registry import load_run

        _, view = load_run(student, device="cpu")
        row = {"steps": steps, "seconds": seconds, "gaussians": view.num_gaussians, "psnr_vs_gt": scores["psnr"],
               "ssim": scores["ssim"], "psnr_vs_teacher": close["psnr_vs_teacher"],
               "ply_bytes": ply_bytes(student, args.work_dir / f"export-{steps}"), "images": close["images"]}
        rows.append(row)
        print(f"{steps} steps: {row['psnr_vs_gt']:.2f} dB vs GT, {row['psnr_vs_teacher']:.2f} dB vs teacher, "
              f"{row['gaussians']} Gaussians, {seconds:.0f} s", flush=True)

    lines = [
        f"# A NeRF becomes Gaussians (pvd-al, splatfacto student), {now_utc()}",
        "",
        f"Teacher: `{shown(args.teacher)}` ({teacher_scores['psnr']:.2f} dB on every {args.every}th test view, "
        f"{teacher_scores['views']} views).",
        f"Command: `{command_line(argv, __file__)}`",
        "",
        "| steps | Gaussians | PSNR vs GT (dB) | SSIM | PSNR vs teacher (dB) | PLY (MB) | time (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['steps']} | {r['gaussians']} | {r['psnr_vs_gt']:.2f} | {r['ssim']:.3f} | "
                     f"{r['psnr_vs_teacher']:.2f} | {r['ply_bytes'] / 1e6:.2f} | {r['seconds']:.0f} |")
    data = {"teacher": str(args.teacher), "teacher_psnr": teacher_scores["psnr"], "every": args.every,
            "command": command_line(argv, __file__), "rows": [{k: v for k, v in r.items() if k != "images"} for r in rows]}
    print(write_report(args.results_dir, args.tag, "\n".join(lines), data, figure=plot(rows)))


if __name__ == "__main__":
    main()
