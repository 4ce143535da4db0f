"""vq-compression of a default-flag nerfacto run (hash grids) on the capture-like 360 scene.

Rows: the teacher; vq-compression with its defaults (lattice step 0.7 RMS, importance rays capped
by default); a coarser lattice; and the same defaults with the importance pass over every
training pixel (what the default cap costs). Sizes against the teacher's zipped weights; PSNR
against the ground truth of the teacher's eval views and against the teacher's own renders.

    python benchmarks/hash_vq.py --teacher <nerfacto run>/config.yml --data <scene>
    python benchmarks/hash_vq.py            # generates the scene and trains the teacher first

Writes ``results/<tag>.{md,json,png}``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from common import benchmark_parser, command_line, device_type, hardware, shown, write_figure, write_report


def plot(rows: List[Dict], title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for row in rows:
        if not row["size_bytes"]:
            continue
        ax.scatter(row["size_bytes"] / 1e6, row["psnr_vs_gt"], s=40)
        ax.annotate(row["run"], (row["size_bytes"] / 1e6, row["psnr_vs_gt"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xticks([2, 3, 5, 10, 20, 50, 100])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("size (MB, log)")
    ax.set_ylabel("PSNR vs ground truth (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def main(argv: Optional[List[str]] = None) -> int:
    parser = benchmark_parser(__file__, __doc__, tag="hash_vq")
    parser.add_argument("--teacher", type=Path, default=None, help="config.yml of a nerfacto run (default: train one)")
    parser.add_argument("--data", type=Path, default=None, help="the teacher's scene (default: generate it)")
    parser.add_argument("--teacher-steps", type=int, default=150)
    parser.add_argument("--steps", type=int, default=60, help="vq-compression fine-tuning steps")
    parser.add_argument("--rays", type=int, default=1024)
    parser.add_argument("--coarse-step", type=float, default=1.0, help="lattice step of the coarser row")
    parser.add_argument("--skip-full-pass", action="store_true", help="leave out the every-pixel importance row")
    parser.add_argument("--replot", action="store_true")
    args = parser.parse_args(argv)
    if args.replot:
        recorded = json.loads((args.results_dir / f"{args.tag}.json").read_text())
        write_figure(args.results_dir, args.tag, plot(recorded["rows"], recorded["settings"]["scene"]))
        return 0

    from nerfconvert.convert import run_convert
    from nerfconvert.demo import train_run
    from nerfconvert.scenes import generate_capture_scene

    command = command_line(argv, __file__)
    started = time.strftime("%Y-%m-%d %H:%M")
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    device = device_type()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    scene = args.data
    teacher_seconds = None
    if scene is None:
        scene = work / "capture360-64x48"
        if not (scene / "transforms.json").exists():
            generate_capture_scene(scene, kind="360", seed=0, width=64, height=48, num_frames=40)
    teacher = args.teacher
    if teacher is None:
        t0 = time.perf_counter()
        teacher = train_run("nerfacto", scene, work / "runs", f"teacher-{stamp}", args.teacher_steps,
                            dataparser=("nerfstudio-data", "--downscale-factor", "1"),
                            extra=("--pipeline.datamanager.train-num-rays-per-batch", str(args.rays),
                                   "--steps-per-eval-batch", "1000000", "--steps-per-eval-image", "1000000",
                                   "--steps-per-eval-all-images", "1000000"))
        teacher_seconds = time.perf_counter() - t0

    variants = [("vq-compression, defaults", {}),
                (f"lattice step {args.coarse_step:g} RMS", {"lattice_step": args.coarse_step})]
    if not args.skip_full_pass:
        variants.append(("defaults, importance over every pixel", {"importance_max_rays": 0}))

    rows: List[Dict] = []
    teacher_row = None
    for i, (label, settings) in enumerate(variants):
        def configure(method, config, settings=settings):
            for key, value in settings.items():
                setattr(config.pipeline.model, key, value)

        result = run_convert(teacher, compress="vq", data=scene, compress_steps=args.steps, output_dir=work / "runs",
                             device=device, num_rays_per_batch=args.rays, eval_views=10**6,
                             timestamp=f"vq{i}-{stamp}", configure=configure)
        if teacher_row is None:
            t = result.rows[0]
            teacher_row = {"run": "nerfacto teacher (default flags)", "size_bytes": t.size_bytes,
                           "size_kind": t.size_kind, "psnr_vs_gt": t.psnr_vs_gt, "psnr_vs_teacher": None,
                           "ssim_vs_teacher": None, "seconds": teacher_seconds, "importance_rays": None,
                           "importance_seconds": None}
            rows.append(teacher_row)
        row = result.rows[-1]
        report = json.loads((Path(row.run).parent / "vq_report.json").read_text())
        rows.append({"run": label, "size_bytes": row.size_bytes, "size_kind": row.size_kind, "psnr_vs_gt": row.psnr_vs_gt,
                     "psnr_vs_teacher": row.psnr_vs_teacher, "ssim_vs_teacher": row.ssim_vs_teacher,
                     "seconds": row.seconds, "importance_rays": report.get("importance_rays"),
                     "training_rays": report.get("training_rays"),
                     "importance_seconds": report.get("importance_seconds"), "settings": settings, "config": str(row.run)})
    for row in rows:
        row["ratio"] = teacher_row["size_bytes"] / row["size_bytes"] if row["size_bytes"] else None
        row["delta_psnr"] = row["psnr_vs_gt"] - teacher_row["psnr_vs_gt"] if row["psnr_vs_gt"] is not None else None

    settings = {"command": command, "started": started, "finished": time.strftime("%Y-%m-%d %H:%M"),
                "hardware": hardware(), "scene": f"capture-like 360 ({scene.name})", "teacher": shown(teacher),
                "steps": args.steps, "rays_per_step": args.rays}
    lines = [f"# {args.tag}", "", f"`{command}`  ", f"{started} - {settings['finished']}, {settings['hardware']}.  ",
             f"Scene: {settings['scene']}; vq-compression {args.steps} fine-tuning steps at {args.rays} rays; scored on "
             "the teacher's eval views.", "",
             "| run | size | smaller | PSNR vs GT | vs teacher's PSNR | PSNR vs teacher | SSIM vs teacher | importance rays | importance time | time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        first = row is teacher_row
        lines.append(
            f"| {row['run']} | {row['size_bytes'] / 1e6:.2f} MB ({row['size_kind']}) | "
            f"{'-' if first else format(row['ratio'], '.1f') + 'x'} | {row['psnr_vs_gt']:.2f} | "
            f"{'-' if first else format(row['delta_psnr'], '+.2f') + ' dB'} | "
            f"{'-' if row['psnr_vs_teacher'] is None else format(row['psnr_vs_teacher'], '.2f')} | "
            f"{'-' if row['ssim_vs_teacher'] is None else format(row['ssim_vs_teacher'], '.4f')} | "
            f"{'-' if row['importance_rays'] is None else format(row['importance_rays'], ',') + ' of ' + format(row['training_rays'], ',')} | "
            f"{'-' if row['importance_seconds'] is None else format(row['importance_seconds'], '.0f') + ' s'} | "
            f"{'-' if row['seconds'] is None else format(row['seconds'], '.0f') + ' s'} |")
    print(write_report(args.results_dir, args.tag, "\n".join(lines), {"settings": settings, "rows": rows},
                       figure=plot(rows, f"{settings['scene']}: nerfacto -> vq-compression, {device.upper()}")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
