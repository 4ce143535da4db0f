"""The VQRF benchmark (``python benchmarks/vq_bench.py``): the columns of the
paper's Table 1 / Table 3, and a codebook-size sweep (Table 2) as a rate-distortion plot.

Generates the 64x64 procedural object scene (seed 0), trains a ``plenoxels`` and a stock
``tensorf`` teacher through nerfstudio's trainer, compresses each with ``ns-train
vq-compression`` (same code path), and evaluates teacher and compressed run on every test view
as ``ns-eval`` does (both reloaded from disk with ``eval_setup``).

    python benchmarks/vq_bench.py --mode quick     # generated 64x64 scene, CPU
    python benchmarks/vq_bench.py --mode smoke     # seconds: tiny teachers, checks the plumbing
    python benchmarks/vq_bench.py --mode real      # ../shared/data/lego, longer teachers
    python benchmarks/vq_bench.py --help           # every knob

Size before = the teacher's weights (the checkpoint's pipeline state, without the optimizers'
Adam moments) zipped with deflate, as the paper measures; size after =
the .ncz file. Time = wall time of the vq-compression run (importance, codebooks, fine-tuning,
packing). Writes benchmarks/results/vq_<tag>.{md,json,png} (the PNG: the codebook sweep).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from common import LEGO, benchmark_parser, command_line, evaluate, expand_mode, now_utc, short_run_config, write_report
from nerfconvert.sizes import zipped_checkpoint_bytes

TARGETS = {"plenoxels": 50.0, "tensorf": 15.0}  # compression ratio at <= 0.3 dB PSNR drop
MAX_DROP_DB = 0.3


def train_teacher(method: str, data: Path, out: Path, steps: Optional[int], rays: Optional[int] = None,
                  timestamp: str = "run", adjust: Optional[Callable] = None) -> Path:
    """A stock ``method`` run on ``data`` (reused when an earlier invocation finished it);
    ``adjust(config)`` changes the stock config first."""
    from nerfstudio.scripts import train

    config = short_run_config(method, out, steps, data=data, rays=rays, experiment="teacher", timestamp=timestamp)
    if adjust is not None:
        adjust(config)
    path = config.get_base_dir() / "config.yml"
    if path.exists() and any((config.get_base_dir() / "nerfstudio_models").glob("*.ckpt")):
        return path  # trained by an earlier invocation
    train.main(config)
    return path


def run_vq(teacher: Path, data: Path, out: Path, name: str, steps: int, codebook_size: int,
           keep_quantile: Optional[float] = None, importance_max_rays: Optional[int] = None) -> Dict:
    from nerfstudio.scripts import train

    config = short_run_config("vq-compression", out, steps, data=data, experiment="vq", timestamp=name, fit_schedules=True)
    config.pipeline.teacher_ckpt = teacher
    config.pipeline.model.codebook_size = codebook_size
    config.pipeline.model.keep_quantile = keep_quantile
    config.pipeline.model.importance_max_rays = importance_max_rays
    config.pipeline.model.importance_cache_dir = out / "importance_cache"
    start = time.perf_counter()
    train.main(config)
    seconds = time.perf_counter() - start
    run = config.get_base_dir()
    report = json.loads((run / "vq_report.json").read_text())
    return {"config": run / "config.yml", "seconds": seconds, "bytes": (run / "scene.ncz").stat().st_size, "report": report}


def plot_sweep(rows: List[Dict]):
    """The rate-distortion figure of the codebook sweep."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for method in sorted({r["method"] for r in rows}):
        pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["codebook_size"])
        ax.plot([r["after_mb"] for r in pts], [r["psnr_after"] for r in pts], "o-", label=f"VQ-{method}")
        for r in pts:
            ax.annotate(str(r["codebook_size"]), (r["after_mb"], r["psnr_after"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
        ax.axhline(pts[0]["psnr_before"], ls="--", lw=0.8, color=ax.lines[-1].get_color(), label=f"{method} teacher")
    ax.set_xscale("log")
    ax.set_xlabel("size (MB, .ncz)")
    ax.set_ylabel("test PSNR (dB)")
    ax.set_title("Codebook size sweep (labels: K)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def vq_report(rows: List[Dict], sweep: List[Dict], command: str, results: Path, settings: Dict, tag: str = "quick") -> str:
    def fmt(r):
        return (f"| {r['method']} | {r['codebook_size']} | {r['before_mb']:.3f} | {r['after_mb']:.3f} | {r['ratio']:.1f}x | "
                f"{r['psnr_before']:.2f} | {r['psnr_after']:.2f} | {r['psnr_after'] - r['psnr_before']:+.2f} | "
                f"{r['ssim_before']:.4f} | {r['ssim_after']:.4f} | {r['seconds']:.0f} | {r['max_pixel_diff']:.2e} |")

    header = ["| teacher | K | size before (MB, zipped weights) | size after (MB, .ncz) | ratio | PSNR before | PSNR after | dPSNR | "
              "SSIM before | SSIM after | time (s) | max px diff vs unpacked |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines = [
        f"# vq-compression (VQRF), {tag} mode",
        "",
        f"Command: `{command}`",
        "",
        f"Date: {now_utc()}.",
        "",
        f"Scene: {settings.get('scene')} (test split). Settings: {json.dumps(settings)}.",
        "",
        "## Default settings (Table 1 / Table 3 columns)",
        "",
        *header,
        *[fmt(r) for r in rows],
        "",
        "## Codebook-size sweep (Table 2)",
        "",
        *header,
        *[fmt(r) for r in sweep],
        "",
        f"![rate-distortion](vq_{tag}.png)",
        "",
        "## Acceptance",
        "",
    ]
    for method, target in TARGETS.items():
        cands = [r for r in rows + sweep if r["method"] == method]
        if not cands:
            continue
        ok = [r for r in cands if r["psnr_before"] - r["psnr_after"] <= MAX_DROP_DB]
        best = max(ok, key=lambda r: r["ratio"]) if ok else None
        if best is None:
            lines.append(f"- {method}: no setting stays within {MAX_DROP_DB} dB: **FAIL** (target >= {target:.0f}x).")
        else:
            verdict = "PASS" if best["ratio"] >= target else "FAIL"
            lines.append(f"- {method}: best ratio within {MAX_DROP_DB} dB is {best['ratio']:.1f}x (K={best['codebook_size']}, "
                         f"{best['psnr_after'] - best['psnr_before']:+.2f} dB); target >= {target:.0f}x: **{verdict}**.")
    lines.append("")
    return write_report(results, f"vq_{tag}", "\n".join(lines), {"rows": rows, "sweep": sweep, "command": command, "settings": settings},
                        figure=plot_sweep(sweep) if sweep else None)


def main(argv=None) -> int:
    parser = benchmark_parser(__file__, __doc__, tag="quick")
    parser.add_argument("--methods", nargs="+", default=["plenoxels", "tensorf"])
    parser.add_argument("--data", type=Path, default=None, help="a blender-format scene (default: the generated 64x64 one)")
    parser.add_argument("--plenoxels-steps", type=int, default=None, help="teacher steps (default: the method's)")
    parser.add_argument("--tensorf-steps", type=int, default=1000, help="teacher steps (stock default 30000 is hours on CPU)")
    parser.add_argument("--teacher-rays", type=int, default=None, help="teacher rays per batch (default: the method's)")
    parser.add_argument("--vq-steps", type=int, default=300, help="joint fine-tuning steps")
    parser.add_argument("--codebook-size", type=int, default=4096)
    parser.add_argument("--importance-max-rays", type=int, default=None,
                        help="training rays for the importance pass (default: every pixel of every training view)")
    parser.add_argument("--keep-quantile", type=float, default=None, help="beta_k (default: the family's, 0.6 / 0.7)")
    parser.add_argument("--sweep", type=int, nargs="*", default=[16, 64, 256, 1024, 4096],
                        help="codebook sizes for the RD plot (on the first method)")
    parser.add_argument("--sweep-methods", nargs="*", default=None, help="methods swept (default: all --methods)")
    parser.add_argument("--eval-every", type=int, default=1, help="score every N-th test view (default: all)")
    parser.add_argument("--teacher", action="append", default=[], metavar="METHOD=CONFIG",
                        help="use an already trained teacher run for METHOD instead of training one (repeatable)")
    parser.add_argument("--mode", choices=sorted(MODES), default=None,
                        help="a recorded mode's settings (the options given with it win)")
    args = parser.parse_args(expand_mode(argv, MODES))

    from nerfconvert.scenes import generate_object_scene, is_generated_scene

    args.work_dir.mkdir(parents=True, exist_ok=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        data = args.work_dir / "scene64"
        if not (data.exists() and is_generated_scene(data)):
            generate_object_scene(data, seed=0, resolution=64)

    rows, sweep = [], []
    steps = {"plenoxels": args.plenoxels_steps, "tensorf": args.tensorf_steps}
    settings = {"teacher_steps": steps, "teacher_rays": args.teacher_rays, "vq_steps": args.vq_steps,
                "default_K": args.codebook_size, "keep_quantile": args.keep_quantile,
                "importance_max_rays": args.importance_max_rays, "scene": str(data), "eval_every": args.eval_every}
    command = command_line(argv, __file__)

    def report() -> str:
        return vq_report(rows, sweep, command, args.results_dir, settings, args.tag)

    given = {}
    for item in args.teacher:
        method, sep, path = item.partition("=")
        if not sep or not Path(path).exists():
            parser.error(f"--teacher takes METHOD=CONFIG with an existing config.yml, got {item!r}")
        given[method] = Path(path)
    if given:
        settings["given_teachers"] = {k: str(v) for k, v in given.items()}

    for method in args.methods:
        if method in given:
            teacher = given[method]  # only read: vq-compression never writes into the teacher's run
        else:
            teacher = train_teacher(method, data, args.work_dir / method, steps.get(method), args.teacher_rays)
        before = evaluate(teacher, args.eval_every)
        before_bytes = zipped_checkpoint_bytes(teacher)
        ckpt_zip_bytes = zipped_checkpoint_bytes(teacher, weights_only=False)
        sizes = [args.codebook_size]
        if method in (args.sweep_methods if args.sweep_methods is not None else args.methods):
            sizes += [k for k in args.sweep if k != args.codebook_size]
        for k in sizes:
            name = f"k{k}" if args.keep_quantile is None else f"k{k}_bk{args.keep_quantile}"
            vq = run_vq(teacher, data, args.work_dir / method, name, args.vq_steps, k, args.keep_quantile,
                        args.importance_max_rays)
            after = evaluate(vq["config"], args.eval_every)
            row = {
                "method": method, "codebook_size": k, "before_mb": before_bytes / 1e6, "after_mb": vq["bytes"] / 1e6,
                "ratio": before_bytes / vq["bytes"], "psnr_before": before["psnr"], "psnr_after": after["psnr"],
                "ssim_before": before["ssim"], "ssim_after": after["ssim"], "seconds": vq["seconds"],
                "max_pixel_diff": vq["report"].get("max_pixel_diff_vs_unpacked", float("nan")),
                "ckpt_zip_mb": ckpt_zip_bytes / 1e6,
            }
            (rows if k == args.codebook_size else sweep).append(row)
            if k == args.codebook_size and len(sizes) > 1:
                sweep.append(dict(row))
            print(json.dumps(row), flush=True)
            report()  # after every run, so an interrupted benchmark still leaves its figures
    print(report())
    return 0


MODES = {
    "smoke": ["--plenoxels-steps", "60", "--tensorf-steps", "60", "--vq-steps", "5", "--codebook-size", "256", "--sweep", "16", "64"],
    # what benchmarks/README.md records, sized for a shared 2-core CPU
    "quick": ["--plenoxels-steps", "350", "--tensorf-steps", "120", "--teacher-rays", "1024", "--vq-steps", "100",
              "--importance-max-rays", "16384", "--sweep", "64", "256"],
    "real": ["--data", str(LEGO), "--plenoxels-steps", "3000", "--tensorf-steps", "3000",
             "--vq-steps", "1000", "--sweep", "64", "256", "1024"],
    "full": ["--data", str(LEGO), "--plenoxels-steps", "10000", "--tensorf-steps", "30000",
             "--vq-steps", "10000", "--sweep", "16", "64", "256", "1024", "16384"],
}


if __name__ == "__main__":
    raise SystemExit(main())
