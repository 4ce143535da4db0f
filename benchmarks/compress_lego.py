"""Compression of a trained TensoRF scene against the field: vq-compression and entropy-compression
rate-distortion curves on one teacher, scored by stock ``ns-eval`` on every test view, their
Bjontegaard deltas, and one R-D plot with other papers' published figures as reference marks.

    python benchmarks/compress_lego.py --data ../shared/data/lego100 --steps 600

The teacher (``--teacher``) defaults to the newest tensorf run of lego100 under ../shared/teachers.

Every point is its own ``ns-train`` run (``vq-compression`` at several lattice steps,
``entropy-compression`` at several lambdas), run ``--jobs`` at a time with one torch thread each,
then ``ns-eval`` on the run (the decoded ``.ncz`` is what it loads). Each point's result is cached
in ``<work-dir>/<point>/result.json``: rerunning the command skips finished points, so the curves
can be measured in parts (``--only vq`` / ``--only entropy``) and extended. Writes
``results/<tag>.{md,json,png}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional

from common import benchmark_parser, command_line, hardware, now_utc, shown, teacher_config, write_report

# Other papers' figures on NeRF-Synthetic (8-scene average at 800x800): reference marks, not our runs.
# (name, size MB low, size MB high, PSNR dB, source)
ANCHORS = [
    ("VQ-TensoRF", 3.6, 3.6, 32.86, "ECTensoRF paper, Table 1"),
    ("ECTensoRF-L", 3.4, 3.4, 32.93, "ECTensoRF paper, Table 1"),
    ("ECTensoRF-H", 1.6, 1.6, 32.31, "ECTensoRF paper, Table 1"),
    ("CNC", 0.4, 0.7, 33.2, "CVPR'24, as secondary sources report it"),
    ("TensoRF + JPEG planes", 0.57, 0.57, 32.5, "as secondary sources report it"),
    ("HAC++ (Gaussians)", 0.79, 0.79, 32.8, "as secondary sources report it"),
]


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _run(command: List[str], log: Path, env: Dict[str, str]) -> float:
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed (exit {result.returncode}); see {log}")
    return time.perf_counter() - start


def _eval(config: Path, out: Path, log: Path, env: Dict[str, str], every: int = 1) -> Dict[str, float]:
    """Every test view: stock ``ns-eval``. Every ``every``-th: the same metrics in a worker process
    (``common.evaluate``, what ns-eval computes, on the subset)."""
    if every == 1:
        seconds = _run([_bin("ns-eval"), "--load-config", str(config), "--output-path", str(out)], log, env)
        results = json.loads(out.read_text())["results"]
    else:
        seconds = _run([sys.executable, __file__, "--score", str(config), "--every", str(every), "--out", str(out)], log, env)
        results = json.loads(out.read_text())
    return {"psnr": float(results["psnr"]), "ssim": float(results["ssim"]), "eval_seconds": seconds, "eval_every": every}


def _env(threads: int) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_point(point: Dict, args) -> Dict:
    """Train one compressed run, score it with ns-eval; cached in <work-dir>/<name>/result.json."""
    work = args.work_dir / point["name"]
    cached = work / "result.json"
    if cached.exists():
        return json.loads(cached.read_text())
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    env = _env(args.threads)
    command = [
        _bin("ns-train"), point["method"], "--machine.device-type", args.device, "--teacher-ckpt", str(args.teacher),
        "--data", str(args.data), "--max-num-iterations", str(args.steps), "--output-dir", str(work / "out"),
        "--timestamp", "run", "--vis", "tensorboard", "--logging.local-writer.enable", "False",
        "--steps-per-eval-batch", "1000000", "--steps-per-eval-image", "1000000", "--steps-per-eval-all-images", "1000000",
        "--pipeline.datamanager.train-num-rays-per-batch", str(args.rays),
        "--pipeline.model.importance-max-rays", str(args.importance_max_rays), *point["flags"],
    ]
    train_seconds = _run(command, log, env)
    configs = sorted((work / "out").glob("*/*/run/config.yml"))
    if not configs:
        raise RuntimeError(f"no run under {work / 'out'}; see {log}")
    config = configs[0]
    ncz = config.parent / "scene.ncz"
    scores = _eval(config, work / "eval.json", log, env, args.eval_every)
    report = {}
    for name in ("vq_report.json", "entropy_report.json"):
        if (config.parent / name).exists():
            report = json.loads((config.parent / name).read_text())
    result = {**point, "config": str(config), "size_bytes": ncz.stat().st_size, **scores,
              "train_seconds": train_seconds, "steps": args.steps, "rays": args.rays,
              "report": {k: v for k, v in report.items() if isinstance(v, (int, float, str))}}
    cached.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{point['name']}: {result['size_bytes'] / 1e6:.3f} MB, {result['psnr']:.2f} dB "
          f"({train_seconds:.0f} s training)", flush=True)
    return result


def rescore_all_views(result: Dict, args) -> Dict:
    """A point scored on a subset, scored again by ns-eval on every test view (``psnr_all``)."""
    if result.get("eval_every", 1) == 1 or "psnr_all" in result:
        return result
    work = args.work_dir / result["name"]
    scores = _eval(Path(result["config"]), work / "eval_all.json", work / "log.txt", _env(args.threads * args.jobs))
    result.update(psnr_all=scores["psnr"], ssim_all=scores["ssim"])
    (work / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def teacher_point(args, every: int = 1) -> Dict:
    work = args.work_dir / ("teacher" if every == 1 else f"teacher_every{every}")
    cached = work / "result.json"
    if cached.exists():
        return json.loads(cached.read_text())
    work.mkdir(parents=True, exist_ok=True)
    scores = _eval(args.teacher, work / "eval.json", work / "log.txt", _env(args.threads * args.jobs), every)
    from nerfconvert.sizes import zipped_checkpoint_bytes

    result = {"name": "teacher", **scores, "size_bytes": zipped_checkpoint_bytes(args.teacher)}
    cached.write_text(json.dumps(result, indent=1) + "\n")
    return result


def points(args) -> List[Dict]:
    out = []
    if args.only in (None, "vq"):
        for step in args.lattice_steps:
            out.append({"name": f"vq_lattice{step:g}", "method": "vq-compression", "curve": "vq-compression (lattice)",
                        "setting": f"lattice step {step:g} RMS", "flags": ["--pipeline.model.lattice-step", str(step)]})
        for k in args.codebook_sizes:
            out.append({"name": f"vq_codebook{k}", "method": "vq-compression", "curve": "vq-compression (codebook)",
                        "setting": f"K = {k}", "flags": ["--pipeline.model.quantizer", "codebook",
                                                         "--pipeline.model.codebook-size", str(k)]})
    if args.only in (None, "entropy"):
        for lmbda in args.lambdas:
            out.append({"name": f"entropy_{args.preset}_{lmbda:g}", "method": "entropy-compression",
                        "curve": f"entropy-compression ({args.preset})", "setting": f"λ = {lmbda:g}",
                        "flags": ["--pipeline.model.preset", args.preset, "--pipeline.model.lmbda", str(lmbda),
                                  *args.entropy_flags]})
    return out


def bd_table(rows: List[Dict], teacher_psnr: float) -> List[Dict]:
    from nerfconvert.compress.entropy.bjontegaard import bd_psnr, bd_rate

    curves: Dict[str, List[Dict]] = {}
    for row in rows:
        curves.setdefault(row["curve"], []).append(row)
    out = []
    names = sorted(curves)
    for anchor in names:
        for test in names:
            if anchor == test or "entropy" not in test or "entropy" in anchor:
                continue
            a, t = curves[anchor], curves[test]
            entry = {"anchor": anchor, "test": test}
            lo = max(min(r["psnr"] for r in a), min(r["psnr"] for r in t))
            hi = min(max(r["psnr"] for r in a), max(r["psnr"] for r in t))
            entry["common_psnr"] = [lo, hi]
            curves_args = ([r["size_bytes"] for r in a], [r["psnr"] for r in a], [r["size_bytes"] for r in t],
                           [r["psnr"] for r in t])
            try:
                # PCHIP (piecewise, monotone) first; the single-polynomial fit of VCEG-M33 beside it
                for key, interpolation in (("", "pchip"), ("_cubic", "cubic")):
                    entry["bd_rate_percent" + key] = bd_rate(*curves_args, interpolation=interpolation)
                    entry["bd_psnr_db" + key] = bd_psnr(*curves_args, interpolation=interpolation)
            except ValueError as err:
                entry["error"] = str(err)
            out.append(entry)
    return out


def plot(rows: List[Dict], teacher: Dict, title: str, scored_on: str):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, (ax, ref) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    curves: Dict[str, List[Dict]] = {}
    for row in rows:
        curves.setdefault(row["curve"], []).append(row)
    for (name, members), marker in zip(sorted(curves.items()), "osD^v"):
        members = sorted(members, key=lambda r: r["size_bytes"])
        ax.plot([r["size_bytes"] / 1e6 for r in members], [r["psnr"] for r in members], marker=marker, label=name)
    ax.axhline(teacher["psnr"], color="k", lw=1, label=f"teacher {teacher['psnr']:.2f} dB")
    ax.axhspan(teacher["psnr"] - 0.3, teacher["psnr"] + 0.5, color="g", alpha=0.08, label="within 0.3 dB of the teacher")
    ax.axvline(1.0, color="r", ls=":", lw=1, label="1 MB")
    ax.set_xscale("log")
    ax.set_xlabel("file size (MB, log)")
    ax.set_ylabel(f"PSNR on {scored_on} (dB)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    for row in rows:
        if row["size_bytes"] / 1e6 < 1.0 and row["psnr"] >= teacher["psnr"] - 0.3:
            ax.annotate(f"{row['size_bytes'] / 1e6:.2f} MB", (row["size_bytes"] / 1e6, row["psnr"]), fontsize=7,
                        xytext=(4, -10), textcoords="offset points")
    # the reference marks: other papers, other scenes and resolutions; on their own axes
    ours_lo = min(r["size_bytes"] for r in rows) / 1e6 if rows else 0.3
    for name, lo, hi, psnr, source in ANCHORS:
        mid = (lo * hi) ** 0.5
        ref.errorbar([mid], [psnr], xerr=[[mid - lo], [hi - mid]], fmt="x", color="gray", capsize=3)
        ref.annotate(name, (mid, psnr), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ref.set_xscale("log")
    ref.set_xlim(min(0.3, ours_lo), 6)
    ref.set_xlabel("file size (MB, log)")
    ref.set_ylabel("PSNR (dB)")
    ref.set_title("other papers' figures (reference marks):\nNeRF-Synthetic, 8 scenes at 800x800, not this scene",
                  fontsize=8)
    ref.grid(alpha=0.3)
    for a in (ax, ref):
        a.xaxis.set_major_formatter(ScalarFormatter())
        a.xaxis.set_minor_formatter(NullFormatter())
        a.set_xticks([0.3, 0.5, 1, 2, 3, 5])
    fig.tight_layout()
    return fig


def score(argv: List[str]) -> int:
    """Worker: ``--score CONFIG --every N --out JSON``: ns-eval's metrics on every N-th test view."""
    parser = benchmark_parser(__file__, score.__doc__, work_dir=False, results_dir=False)
    parser.add_argument("--score", type=Path, required=True)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from common import evaluate

    args.out.write_text(json.dumps(evaluate(args.score, every=args.every)) + "\n")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--score" in argv:
        return score(argv)
    parser = benchmark_parser(__file__, __doc__, tag="compress_lego100")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="config.yml of a trained tensorf run (default: the newest lego100 tensorf under ../shared/teachers)")
    parser.add_argument("--data", type=Path, required=True, help="the teacher's scene")
    parser.add_argument("--steps", type=int, default=600, help="fine-tuning steps of every point")
    parser.add_argument("--rays", type=int, default=1024, help="rays per fine-tuning step")
    parser.add_argument("--importance-max-rays", type=int, default=65536)
    parser.add_argument("--lattice-steps", type=float, nargs="*", default=[0.5, 0.7, 1.0, 1.4])
    parser.add_argument("--codebook-sizes", type=int, nargs="*", default=[])
    parser.add_argument("--lambdas", type=float, nargs="*", default=[3e-4, 1e-3, 4e-3])
    parser.add_argument("--preset", default="high", choices=["low", "high"])
    parser.add_argument("--entropy-flags", nargs="*", default=[], help="extra ns-train flags of the entropy points")
    parser.add_argument("--only", choices=["vq", "entropy"], default=None, help="run only these points (the report uses every cached one)")
    parser.add_argument("--jobs", type=int, default=2, help="points trained at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per point")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-every", type=int, default=4,
                        help="score the curves on every n-th test view; points under 1 MB within 0.3 dB are "
                             "scored again on every view by ns-eval")
    args = parser.parse_args(argv)
    args.teacher, args.data = (args.teacher or teacher_config("tensorf")).resolve(), args.data.resolve()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    started = now_utc()

    teacher_all = teacher_point(args)
    teacher = teacher_point(args, args.eval_every) if args.eval_every != 1 else teacher_all
    print(f"teacher: {teacher_all['psnr']:.2f} dB on every test view, {teacher['psnr']:.2f} on every "
          f"{args.eval_every}th", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(lambda p: run_point(p, args), points(args)))
    rows = [json.loads(p.read_text()) for p in sorted(args.work_dir.glob("*/result.json"))
            if not p.parent.name.startswith("teacher")]
    rows = [r for r in rows if r.get("eval_every", 1) == args.eval_every and r.get("steps") == args.steps]
    rows.sort(key=lambda r: (r["curve"], r["size_bytes"]))
    # every view costs minutes a point on a CPU: the smallest point of each curve under 1 MB within 0.3 dB
    headline = []
    for curve in sorted({r["curve"] for r in rows}):
        fits = [r for r in rows if r["curve"] == curve and r["size_bytes"] < 1e6 and r["psnr"] >= teacher["psnr"] - 0.3]
        headline += sorted(fits, key=lambda r: r["size_bytes"])[:1]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(lambda r: rescore_all_views(r, args), headline))

    bds = bd_table(rows, teacher["psnr"])
    sub = f"every {args.eval_every}th test view" if args.eval_every != 1 else "every test view"
    lines = [f"Teacher `{shown(args.teacher)}`: {teacher_all['psnr']:.2f} dB / SSIM {teacher_all['ssim']:.4f} on every test view "
             f"(ns-eval), {teacher['psnr']:.2f} dB on {sub} ({teacher_all['size_bytes'] / 1e6:.2f} MB of zipped weights). "
             f"Every point: {args.steps} fine-tuning steps of {args.rays} rays, scored on {sub}; the points under 1 MB within "
             f"0.3 dB there are scored again by stock `ns-eval` on every test view (last columns; the smallest such point of each curve). Report written "
             f"{now_utc()} from the points cached in the work directory (each measured when first run); {hardware()}; "
             f"{args.jobs} point(s) at a time, {args.threads} thread(s) each.", "",
             "| method | setting | size (MB) | ratio | PSNR | dPSNR | SSIM | training (s) | PSNR, every view | dPSNR, every view |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        full = (f"{row['psnr_all']:.2f} | {row['psnr_all'] - teacher_all['psnr']:+.2f}" if "psnr_all" in row else "- | -")
        lines.append(f"| {row['curve']} | {row['setting']} | {row['size_bytes'] / 1e6:.3f} | "
                     f"{teacher_all['size_bytes'] / row['size_bytes']:.1f}x | {row['psnr']:.2f} | {row['psnr'] - teacher['psnr']:+.2f} | "
                     f"{row['ssim']:.4f} | {row['train_seconds']:.0f} | {full} |")
    best = [r for r in rows if r["size_bytes"] < 1e6 and r.get("psnr_all", -1) >= teacher_all["psnr"] - 0.3]
    lines += ["", "Under 1 MB within 0.3 dB of the teacher on every test view: " + (", ".join(
        f"{r['curve']} {r['setting']} ({r['size_bytes'] / 1e6:.3f} MB, {r['psnr_all'] - teacher_all['psnr']:+.2f} dB)"
        for r in best) if best else "none"), ""]
    for entry in bds:
        if "error" in entry:
            lines.append(f"- BD of {entry['test']} against {entry['anchor']}: n/a ({entry['error']})")
        else:
            lines.append(f"- BD-rate of {entry['test']} against {entry['anchor']}: **{entry['bd_rate_percent']:+.1f}%**, "
                         f"BD-PSNR {entry['bd_psnr_db']:+.2f} dB (PCHIP); one cubic per curve (VCEG-M33): "
                         f"{entry['bd_rate_percent_cubic']:+.1f}% / {entry['bd_psnr_db_cubic']:+.2f} dB; common PSNR range "
                         f"{entry['common_psnr'][0]:.2f}-{entry['common_psnr'][1]:.2f} dB")
    lines += ["", f"Command: `{command_line(argv, __file__)}`"]
    figure = plot(rows, teacher, f"{args.teacher.parent.parent.parent.name}: compression of the tensorf teacher, {args.steps} steps a point", sub)
    print(write_report(args.results_dir, args.tag, "\n".join(lines),
                       {"teacher": teacher_all, "teacher_subset": teacher, "rows": rows, "bd": bds, "anchors": ANCHORS,
                        "started": started, "argv": argv, "command": command_line(argv, __file__)}, figure=figure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
