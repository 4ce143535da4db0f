"""The capture path on the capture-like 360 scene: a default-flag nerfacto teacher, converted and
compressed the way a nerfstudio user with a phone capture would do it on a CPU.

    python benchmarks/capture_360.py                      # ~30-45 min on 2 CPU cores
    python benchmarks/capture_360.py --teacher-steps 20 --pvd-steps 20 --compress-steps 5   # smoke run

1. ``generate_capture_scene(kind="360")``: OPENCV lens distortion, per-frame intrinsics and exposure,
   a textured ground and sky far past the scene box, ``transforms.json`` as ns-process-data writes it.
2. The teacher: stock ``ns-train nerfacto`` with its default flags (camera optimizer, appearance
   embedding, scene contraction, proposal sampler) through the nerfstudio-data parser; only the
   number of steps and rays per step are set.
3. ``run_convert(teacher, to="tensorf", compress="entropy")``: pvd-al to a tensorf student (the
   contracted box carries over: an unbounded TensoRF), then entropy-compression of the student.
4. ``run_convert(teacher, compress="vq")``: vq-compression of the nerfacto teacher itself.

Every run is scored on the teacher's eval views (all of them) against ground truth and against the
teacher's renders. Writes benchmarks/results/capture_360.{md,json,png}.
"""

from __future__ import annotations

import json
import sys
import time

from common import benchmark_parser, command_line, device_type, hardware, load_average, write_figure, write_report


def plot(rows, title: str):
    """PSNR against ground truth over size (log), one marker per run."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(6, 4))
    for row, marker in zip(rows, "osD^"):
        if row["size_bytes"] and row["psnr_vs_gt"] is not None:
            ax.scatter(row["size_bytes"] / 1e6, row["psnr_vs_gt"], marker=marker, s=60, label=row["run"])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    sizes = [row["size_bytes"] / 1e6 for row in rows if row["size_bytes"]]
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200) if min(sizes) / 1.5 <= t <= max(sizes) * 1.5]
    ax.set_xticks(ticks)
    ax.set_xlabel("size (MB; runs: zipped weights, compressed: .ncz)")
    ax.set_ylabel("PSNR vs ground truth (dB)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    parser = benchmark_parser(__file__, __doc__, tag="capture_360")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--teacher-steps", type=int, default=200)
    parser.add_argument("--pvd-steps", type=int, default=400)
    parser.add_argument("--compress-steps", type=int, default=100)
    parser.add_argument("--importance-rays", type=int, default=1 << 14, help="vq: training rays of the importance pass")
    parser.add_argument("--rays", type=int, default=1024, help="rays per step, every stage")
    parser.add_argument("--codebook-size", type=int, default=4096)
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from the recorded JSON")
    args = parser.parse_args(argv)
    if args.replot:
        recorded = json.loads((args.results_dir / f"{args.tag}.json").read_text())
        write_figure(args.results_dir, args.tag, plot(recorded["rows"], f"{recorded['settings']['scene']}, CPU"))
        return 0

    from nerfconvert.convert import run_convert
    from nerfconvert.demo import train_run
    from nerfconvert.scenes import generate_capture_scene

    command = command_line(argv, __file__)
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M")
    timings = {}
    scene = work / f"capture360-{args.width}x{args.height}"
    if not (scene / "transforms.json").exists():
        generate_capture_scene(scene, kind="360", seed=0, width=args.width, height=args.height, num_frames=args.frames)

    t0 = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    teacher = train_run(
        "nerfacto", scene, work / "runs", f"teacher-{stamp}", args.teacher_steps,
        dataparser=("nerfstudio-data", "--downscale-factor", "1"),
        extra=("--pipeline.datamanager.train-num-rays-per-batch", str(args.rays),
               "--steps-per-eval-batch", "1000000", "--steps-per-eval-image", "1000000",
               "--steps-per-eval-all-images", "1000000"),
    )
    timings["teacher"] = time.perf_counter() - t0
    device = device_type()

    def configure(method, config):
        if method == "vq-compression":
            config.pipeline.model.codebook_size = args.codebook_size
            config.pipeline.model.importance_max_rays = args.importance_rays

    chain = run_convert(teacher, to="tensorf", compress="entropy", data=scene, steps=args.pvd_steps,
                        compress_steps=args.compress_steps, output_dir=work / "runs", device=device,
                        num_rays_per_batch=args.rays, eval_views=10**6, timestamp=f"chain-{stamp}")
    vq = run_convert(teacher, compress="vq", data=scene, compress_steps=args.compress_steps, output_dir=work / "runs",
                     device=device, num_rays_per_batch=args.rays, eval_views=10**6, timestamp=f"vq-{stamp}",
                     configure=configure)

    rows = []
    for label, row in [("nerfacto teacher (default flags)", chain.rows[0]),
                       ("pvd-al -> tensorf (unbounded)", chain.rows[1]),
                       ("tensorf -> entropy-compression", chain.rows[2]),
                       ("nerfacto -> vq-compression", vq.rows[1])]:
        rows.append({"run": label, "method": row.method, "size_bytes": row.size_bytes, "size_kind": row.size_kind,
                     "psnr_vs_gt": row.psnr_vs_gt, "psnr_vs_teacher": row.psnr_vs_teacher,
                     "ssim_vs_teacher": row.ssim_vs_teacher, "seconds": row.seconds if row.seconds else timings["teacher"],
                     "config": str(row.run)})
    teacher_size, teacher_psnr = rows[0]["size_bytes"], rows[0]["psnr_vs_gt"]
    for row in rows:
        row["ratio"] = teacher_size / row["size_bytes"] if row["size_bytes"] else None
        row["delta_psnr"] = (row["psnr_vs_gt"] - teacher_psnr) if row["psnr_vs_gt"] is not None else None

    settings = {
        "command": command, "started": started, "finished": time.strftime("%Y-%m-%d %H:%M"),
        "hardware": hardware(), "load_average_at_end": load_average(), "scene": f"capture-like 360, {args.width}x{args.height}, {args.frames} frames",
        "teacher_steps": args.teacher_steps, "pvd_steps": args.pvd_steps, "compress_steps": args.compress_steps,
        "rays_per_step": args.rays, "codebook_size": args.codebook_size, "importance_rays": args.importance_rays,
        "eval_views": chain.eval_views,
    }
    lines = [f"# {args.tag}", "", f"`{command}`  ", f"{settings['started']} - {settings['finished']}, {settings['hardware']}, "
             f"load average at the end {settings['load_average_at_end']}.  ",
             f"Scene: {settings['scene']}; teacher {args.teacher_steps} steps, pvd-al {args.pvd_steps} steps, compression "
             f"{args.compress_steps} steps, {args.rays} rays per step; scored on the teacher's {len(chain.eval_views)} eval views.",
             "", "| run | size | smaller than the teacher | PSNR vs GT | vs teacher's PSNR | PSNR vs teacher | SSIM vs teacher | time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        size = f"{row['size_bytes'] / 1e6:.2f} MB ({row['size_kind']})" if row["size_bytes"] else "n/a"
        ratio = f"{row['ratio']:.1f}x" if row["ratio"] and row is not rows[0] else "-"
        delta = f"{row['delta_psnr']:+.2f} dB" if row["delta_psnr"] is not None and row is not rows[0] else "-"
        vs_t = f"{row['psnr_vs_teacher']:.2f}" if row["psnr_vs_teacher"] is not None else "-"
        ssim = f"{row['ssim_vs_teacher']:.4f}" if row["ssim_vs_teacher"] is not None else "-"
        gt = f"{row['psnr_vs_gt']:.2f}" if row["psnr_vs_gt"] is not None else "-"
        lines.append(f"| {row['run']} | {size} | {ratio} | {gt} | {delta} | {vs_t} | {ssim} | {row['seconds']:.0f} s |")
    print(write_report(args.results_dir, args.tag, "\n".join(lines), {"settings": settings, "rows": rows},
                       figure=plot(rows, f"capture-like 360 scene, {args.width}x{args.height}, {device.upper()}")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
