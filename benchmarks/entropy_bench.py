"""The ECTensoRF benchmark (``python benchmarks/entropy_bench.py``): a
rate-distortion sweep over lambda for both presets, vq-compression's codebook sweep on the same
teacher, BD-rate / BD-PSNR of entropy against vq, and the Fig. 5 ablations (no importance
weights; plain factorised prior instead of the masked one).

Generates the 64x64 procedural object scene (seed 0), trains a stock ``tensorf`` teacher through
nerfstudio's trainer, compresses it with ``ns-train entropy-compression`` / ``vq-compression``
(same code path as the commands), and scores teacher and compressed runs on the same test views,
each reloaded from disk with ``eval_setup``.

    python benchmarks/entropy_bench.py --mode quick   # generated 64x64 scene, CPU
    python benchmarks/entropy_bench.py --mode smoke   # minutes: checks the plumbing
    python benchmarks/entropy_bench.py --mode ratio   # the acceptance point on 256^2 planes (about 85 min on CPU)
    python benchmarks/entropy_bench.py --mode bd      # where the entropy and vq curves overlap (about 1.5 h on one core)
    python benchmarks/entropy_bench.py --mode real    # ../shared/data/lego, longer teacher and runs
    python benchmarks/entropy_bench.py --mode full    # the paper's settings (30k steps, all lambdas): a GPU
    python benchmarks/entropy_bench.py --help         # every knob

Size before = the teacher's weights zipped (deflate), measured as the vq benchmark does; size
after = the .ncz file. Rate: the bits the entropy model estimates for the coded latents against
the real CompressAI bitstream. Writes benchmarks/results/entropy_<tag>.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from common import LEGO as LEGO_DIR
from common import benchmark_parser, command_line, evaluate, expand_mode, now_utc, short_run_config, shown, write_report
from nerfconvert.sizes import zipped_checkpoint_bytes
from vq_bench import run_vq
from vq_bench import train_teacher as train_stock

PAPER_LAMBDAS = [2e-2, 1e-2, 5e-3, 1e-3, 5e-4, 2e-4, 1e-4]
TARGET_RATIO = 15.0
MAX_DROP_DB = 0.3
TARGET_LAMBDA = 1e-3
MIN_PSNR_OVERLAP_DB = 0.1  # BD-rate needs the curves to share at least this PSNR range
MIN_RATE_OVERLAP = 1.1  # BD-PSNR: ... and at least this rate ratio (10%)


def train_teacher(data: Path, out: Path, steps: int, rays: int, resolution: Optional[int]) -> Path:
    """A stock tensorf run. ``resolution`` fixes the plane size (init = final, no upsampling);
    None keeps tensorf's schedule (128 -> 300 over steps 2000..7000)."""
    def fix_resolution(config) -> None:
        if resolution is not None:
            config.pipeline.model.init_resolution = resolution
            config.pipeline.model.final_resolution = resolution

    return train_stock("tensorf", data, out, steps, rays, timestamp=f"tensorf_{steps}_{resolution or 'stock'}",
                       adjust=fix_resolution)


def run_entropy(teacher: Path, data: Path, out: Path, name: str, steps: int, rays: int, preset: str, lmbda: float,
                masked: bool = True, use_importance: bool = True, importance_max_rays: Optional[int] = None) -> Dict:
    from nerfstudio.scripts import train

    config = short_run_config("entropy-compression", out, steps, data=data, experiment="entropy", timestamp=name,
                              fit_schedules=True)
    config.pipeline.teacher_ckpt = teacher
    config.pipeline.datamanager.train_num_rays_per_batch = rays
    model = config.pipeline.model
    model.preset, model.lmbda, model.masked, model.use_importance = preset, lmbda, masked, use_importance
    model.importance_max_rays = importance_max_rays
    model.importance_cache_dir = out / "importance_cache"
    start = time.perf_counter()
    train.main(config)
    seconds = time.perf_counter() - start
    run = config.get_base_dir()
    report = json.loads((run / "entropy_report.json").read_text())
    return {"config": run / "config.yml", "seconds": seconds, "bytes": (run / "scene.ncz").stat().st_size, "report": report}


def decoder_bytes(latent_channels: int, hidden_channels: int, plane_channels: int) -> int:
    """fp16 bytes of the plane decoder's weights and biases (two 3x3 transposed convolutions)."""
    from nerfconvert.compress.entropy.coder import PlaneDecoder

    decoder = PlaneDecoder(latent_channels, hidden_channels, plane_channels)
    return 2 * sum(p.numel() for p in decoder.parameters())


def _curve(rows: List[Dict], curve: str) -> List[Dict]:
    return sorted((r for r in rows if r["curve"] == curve), key=lambda r: r["after_mb"])


def merged_rows(results: Path, tags: List[str], teacher_cfg: Path) -> Tuple[List[Dict], Dict[str, str]]:
    """The rows of earlier parts of a sweep (``entropy_<tag>.json``), checked to share the teacher,
    and the command of each part. ``TAG:CURVE`` takes only that curve's rows (e.g. ``part:vq``)."""
    rows: List[Dict] = []
    commands: Dict[str, str] = {}
    for spec in tags:
        tag, _, curve = spec.partition(":")
        path = results / f"entropy_{tag}.json"
        if not path.is_file():
            raise SystemExit(f"--merge {tag}: {path} does not exist; run that part first with --tag {tag} "
                             f"--results-dir {results}.")
        part = json.loads(path.read_text())
        if shown(part["teacher"]["config"]) != shown(Path(teacher_cfg).resolve()):  # reports keep shown paths
            raise SystemExit(f"--merge {tag}: that part used the teacher {part['teacher']['config']}, not {teacher_cfg}; "
                             "parts of one sweep need the same --teacher.")
        taken = [r for r in part["rows"] if not curve or r["curve"] == curve]
        for r in taken:  # parts written before rows carried their steps: the part's settings say them
            r.setdefault("steps", part["settings"].get("vq_steps" if r["curve"] == "vq" else "steps"))
        if not taken:
            raise SystemExit(f"--merge {spec}: {path} has no rows of the curve {curve!r} "
                             f"(it has {sorted({r['curve'] for r in part['rows']})}).")
        rows.extend(taken)
        commands[spec] = part["command"] + (f" (its {curve} rows)" if curve else "")
    return rows, commands


def bd_summary(rows: List[Dict]) -> Dict[str, Dict[str, Optional[float]]]:
    from nerfconvert.compress.entropy.bjontegaard import bd_psnr, bd_rate

    out = {}
    vq = _curve(rows, "vq")
    for curve in ("entropy-L", "entropy-H"):
        pts = _curve(rows, curve)
        entry: Dict[str, Optional[float]] = {"bd_rate_percent": None, "bd_psnr_db": None}
        if len(pts) >= 2 and len(vq) >= 2:
            args = ([r["after_mb"] for r in vq], [r["psnr_after"] for r in vq],
                    [r["after_mb"] for r in pts], [r["psnr_after"] for r in pts])
            # the intervals the two integrals average over: a BD figure over a sliver says little
            for key, a, b in (("rate_overlap_mb", args[0], args[2]), ("psnr_overlap_db", args[1], args[3])):
                lo, hi = max(min(a), min(b)), min(max(a), max(b))
                entry[key] = [lo, hi] if hi > lo else None
            for key, fn in (("bd_psnr_db", bd_psnr), ("bd_rate_percent", bd_rate)):
                try:
                    entry[key] = fn(*args)
                except ValueError:  # the curves do not overlap on that axis
                    entry[key] = None
            # a polynomial fit averaged over a sliver is noise: keep the figure in the JSON, not in the verdict
            rate, psnr = entry.get("rate_overlap_mb"), entry.get("psnr_overlap_db")
            if entry["bd_psnr_db"] is not None and rate and rate[1] / rate[0] < MIN_RATE_OVERLAP:
                entry["bd_psnr_db_narrow"], entry["bd_psnr_db"] = entry["bd_psnr_db"], None
            if entry["bd_rate_percent"] is not None and psnr and psnr[1] - psnr[0] < MIN_PSNR_OVERLAP_DB:
                entry["bd_rate_percent_narrow"], entry["bd_rate_percent"] = entry["bd_rate_percent"], None
        out[curve] = entry
    return out


def plot(rows: List[Dict], teacher: Dict):
    """The rate-distortion figure: every curve, the decoders' fixed cost, the teacher."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    styles = {"entropy-L": "o-", "entropy-H": "s-", "vq": "^--",
              "entropy-L no importance": "x", "entropy-L factorised prior": "+"}
    for curve, style in styles.items():
        pts = _curve(rows, curve)
        if not pts:
            continue
        (line,) = ax.plot([r["after_mb"] for r in pts], [r["psnr_after"] for r in pts], style, label=curve, ms=7)
        if curve in ("entropy-L", "entropy-H") and pts[0].get("decoder_mb"):  # the fixed cost in every file
            ax.axvline(pts[0]["decoder_mb"], ls=":", lw=1, color=line.get_color(), label=f"{curve}: decoder alone")
        labels: Dict[tuple, List[str]] = {}  # one label per point: K=4096 and 16384 can give the same file
        for r in pts:
            labels.setdefault((r["after_mb"], r["psnr_after"]), []).append(
                f"{r['codebook_size']}" if curve == "vq" else f"{r['lmbda']:g}")
        for xy, names in labels.items():
            text = ("K=" if curve == "vq" else "") + ", ".join(names)
            ax.annotate(text, xy, fontsize=6, textcoords="offset points", xytext=(3, 3))
    ax.axhline(teacher["psnr"], ls=":", lw=1, color="k", label=f"tensorf teacher ({teacher['mb']:.1f} MB zipped)")
    ax.set_xscale("log")
    ax.set_xlabel("size (MB, .ncz)")
    ax.set_ylabel("test PSNR (dB)")
    ax.set_title("Rate-distortion: entropy-compression vs vq-compression")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _bd_text(entry: Dict, key: str, fmt: str, axis: str, over: Optional[str], sliver: Optional[str]) -> str:
    """One BD figure as the report words it: the value and its interval, or why it is n/a."""
    if entry.get(key) is not None:
        return f"{fmt.format(entry[key])} (over {over})"
    if entry.get(f"{key}_narrow") is not None:
        return f"n/a (the curves share only {sliver}; the fit there gives {fmt.format(entry[key + '_narrow'])})"
    return f"n/a (no {axis} overlap)"


def entropy_report(rows: List[Dict], teacher: Dict, command: str, results: Path, settings: Dict, tag: str) -> str:
    def fmt(r):
        knob = f"K={r['codebook_size']}" if r["curve"] == "vq" else f"{r['lmbda']:g}"
        rate = "-" if r.get("bitstream_bytes") is None else (
            f"{r['estimated_bitstream_bytes'] / 1e3:.1f} / {r['bitstream_bytes'] / 1e3:.1f} ({100 * r['rate_mismatch']:+.2f}%)")
        decode = "-" if r.get("decode_seconds") is None else f"{r['decode_seconds']:.2f}"
        coded = "-" if r.get("coded_fraction") is None else f"{100 * r['coded_fraction']:.0f}%"
        return (f"| {r['curve']} | {knob} | {r.get('steps') or '-'} | {r['after_mb']:.3f} | {r['ratio']:.1f}x | {r['psnr_after']:.2f} | "
                f"{r['psnr_after'] - teacher['psnr']:+.2f} | {r['ssim_after']:.4f} | {rate} | {coded} | {decode} | {r['seconds']:.0f} |")

    bd = bd_summary(rows)
    lines = [
        f"# entropy-compression (ECTensoRF), {tag} mode",
        "",
        f"Command: `{command}`",
        "",
        f"Date: {now_utc()}. The CPU was shared with other jobs.",
        "",
        *(["Merged from parts run in parallel on the same teacher: " + "; ".join(f"`{c}`" for c in settings["merged"].values()),
           ""] if settings.get("merged") else []),
        f"Scene: {settings.get('scene')} (test split, every {settings.get('eval_every')}-th view: {teacher.get('views')} views). "
        f"Settings{' of the merging invocation (the parts ran with their own, above)' if settings.get('merged') else ''}: "
        f"{json.dumps({k: v for k, v in settings.items() if k != 'merged'})}.",
        "",
        f"Teacher (stock tensorf): PSNR {teacher['psnr']:.2f} dB, SSIM {teacher['ssim']:.4f}, "
        f"size before {teacher['mb']:.3f} MB (weights zipped, as the vq benchmark measures; full checkpoint zipped "
        f"{teacher['ckpt_zip_mb']:.3f} MB), planes {teacher.get('plane_shape')}.",
        "",
        "| curve | lambda / K | steps | size (MB, .ncz) | ratio | PSNR | dPSNR | SSIM | latent rate kB: estimated / real bitstream (mismatch) | coded locations | decode (s) | time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[fmt(r) for r in sorted(rows, key=lambda r: (r["curve"], r["after_mb"]))],
        "",
        f"![rate-distortion](entropy_{tag}.png)",
        "",
        "## BD metrics against vq-compression (anchor: the vq curve; Bjontegaard, cubic fit in log-rate)",
        "",
    ]
    for curve, entry in bd.items():
        if all(entry.get(k) is None for k in ("bd_rate_percent", "bd_psnr_db", "bd_rate_percent_narrow", "bd_psnr_db_narrow")):
            lines.append(f"- {curve}: n/a (fewer than two points on a curve, or the curves do not overlap).")
            continue
        psnr, rate = entry.get("psnr_overlap_db"), entry.get("rate_overlap_mb")
        br = _bd_text(entry, "bd_rate_percent", "{:+.1f}%", "PSNR", psnr and f"PSNR {psnr[0]:.2f}-{psnr[1]:.2f} dB",
                      psnr and f"{psnr[1] - psnr[0]:.3f} dB of PSNR, under {MIN_PSNR_OVERLAP_DB} dB")
        bp = _bd_text(entry, "bd_psnr_db", "{:+.3f} dB", "rate", rate and f"{rate[0]:.3f}-{rate[1]:.3f} MB",
                      rate and f"{rate[0]:.3f}-{rate[1]:.3f} MB, under {100 * (MIN_RATE_OVERLAP - 1):.0f}% apart")
        lines.append(f"- {curve}: BD-rate {br}, BD-PSNR {bp} (paper, Synthetic-NeRF: -28.8% / +0.279 dB).")
    lines += ["", "## Acceptance", ""]
    target = [r for r in rows if r["curve"] == "entropy-L" and abs(r["lmbda"] - TARGET_LAMBDA) < 1e-12]
    if target:
        r = target[0]
        drop = teacher["psnr"] - r["psnr_after"]
        ok = r["ratio"] >= TARGET_RATIO and drop <= MAX_DROP_DB
        lines.append(f"- L preset at lambda=1e-3: ratio {r['ratio']:.1f}x (target >= {TARGET_RATIO:.0f}x), PSNR drop "
                     f"{drop:+.2f} dB (target <= {MAX_DROP_DB} dB): **{'PASS' if ok else 'FAIL'}**.")
        decoder_mb = r.get("decoder_mb")
        if decoder_mb and teacher["mb"] < TARGET_RATIO * decoder_mb:
            lines.append(f"  Out of reach for this teacher: the L decoder alone is {decoder_mb:.2f} MB (fp16) and the teacher "
                         f"{teacher['mb']:.2f} MB, under {TARGET_RATIO:.0f}x the decoder; `--mode ratio` uses 256^2 planes.")
    mism = [abs(r["rate_mismatch"]) for r in rows if r.get("rate_mismatch") is not None]
    if mism:
        lines.append(f"- estimated vs real latent bitstream: largest mismatch {100 * max(mism):.2f}% over {len(mism)} runs "
                     f"(target <= 2%): **{'PASS' if max(mism) <= 0.02 else 'FAIL'}**.")
    lines.append("")
    return write_report(results, f"entropy_{tag}", "\n".join(lines),
                        {"rows": rows, "teacher": teacher, "bd": bd, "command": command, "settings": settings},
                        figure=plot(rows, teacher))


def build_parser() -> argparse.ArgumentParser:
    parser = benchmark_parser(__file__, __doc__, tag="quick")
    parser.add_argument("--data", type=Path, default=None, help="a blender-format scene (default: the generated 64x64 one)")
    parser.add_argument("--teacher", type=Path, default=None, help="an existing tensorf run's config.yml (default: train one)")
    parser.add_argument("--teacher-steps", type=int, default=300)
    parser.add_argument("--teacher-rays", type=int, default=1024)
    parser.add_argument("--teacher-resolution", type=int, default=None,
                        help="plane resolution of the teacher (init = final); default: tensorf's 128 -> 300 schedule")
    parser.add_argument("--steps", type=int, default=100, help="entropy-compression steps per run (paper: 30000)")
    parser.add_argument("--rays", type=int, default=1024, help="rays per step (entropy and vq runs)")
    parser.add_argument("--lambdas", type=float, nargs="*", default=PAPER_LAMBDAS, help="lambdas of the L preset (and of H unless --high-lambdas); none: skip")
    parser.add_argument("--presets", nargs="+", default=["low", "high"], choices=["low", "high"])
    parser.add_argument("--high-lambdas", type=float, nargs="*", default=None, help="lambdas of the H preset (default: --lambdas)")
    parser.add_argument("--ablation-lambdas", type=float, nargs="*", default=[TARGET_LAMBDA],
                        help="lambdas of the Fig. 5 ablations (L preset); none: skip them")
    parser.add_argument("--vq-sizes", type=int, nargs="*", default=[256, 1024, 4096, 16384], help="vq codebook sizes; none: skip vq")
    parser.add_argument("--vq-steps", type=int, default=100)
    parser.add_argument("--importance-max-rays", type=int, default=16384)
    parser.add_argument("--eval-every", type=int, default=1, help="score every N-th test view")
    parser.add_argument("--mode", choices=sorted(MODES), default=None,
                        help="a recorded mode's settings (the options given with it win)")
    parser.add_argument("--merge", nargs="*", default=[], metavar="TAG",
                        help="first take the rows of entropy_<TAG>.json in --results-dir (parts of one sweep run as parallel "
                             "processes on the same --teacher); the report then covers them all")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(expand_mode(argv, MODES))

    from nerfconvert.scenes import generate_object_scene, is_generated_scene

    args.work_dir.mkdir(parents=True, exist_ok=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        data = args.work_dir / "scene64"
        if not (data.exists() and is_generated_scene(data)):
            generate_object_scene(data, seed=0, resolution=64)
    command = command_line(argv, __file__)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("work_dir", "results_dir")}
    settings["scene"] = str(data)

    # the parts are checked before any teacher is trained or scored
    if args.merge and args.teacher is None:
        raise SystemExit("--merge needs --teacher: the parts of one sweep share the teacher they were run on.")
    merged, commands = merged_rows(args.results_dir, args.merge, args.teacher) if args.merge else ([], {})
    if commands:
        settings["merged"] = commands
    teacher_cfg = args.teacher or train_teacher(data, args.work_dir / "teacher", args.teacher_steps, args.teacher_rays,
                                                args.teacher_resolution)
    t_eval = evaluate(teacher_cfg, args.eval_every)
    from nerfconvert.views import load_run

    pipeline, _ = load_run(teacher_cfg, device="cpu")
    plane_shape = list(pipeline.model.field.color_encoding.plane_coef.shape)
    del pipeline
    teacher = {"config": str(teacher_cfg), "psnr": t_eval["psnr"], "ssim": t_eval["ssim"], "views": t_eval["views"],
               "mb": zipped_checkpoint_bytes(teacher_cfg) / 1e6,
               "ckpt_zip_mb": zipped_checkpoint_bytes(teacher_cfg, weights_only=False) / 1e6, "plane_shape": plane_shape}
    rows: List[Dict] = merged

    def record(row: Dict) -> None:
        rows.append(row)
        print(json.dumps(row, default=str), flush=True)
        entropy_report(rows, teacher, command, args.results_dir, settings, args.tag)  # an interrupted run keeps its figures

    def entropy_row(curve: str, preset: str, lmbda: float, masked: bool = True, use_importance: bool = True) -> None:
        name = f"{preset}_{lmbda:g}" + ("" if masked else "_factorised") + ("" if use_importance else "_noimp")
        out = run_entropy(teacher_cfg, data, args.work_dir, name, args.steps, args.rays, preset, lmbda, masked, use_importance,
                          args.importance_max_rays)
        after = evaluate(out["config"], args.eval_every)
        rep = out["report"]
        record({
            "curve": curve, "preset": preset, "lmbda": lmbda, "steps": args.steps, "after_mb": out["bytes"] / 1e6,
            "ratio": teacher["mb"] * 1e6 / out["bytes"], "psnr_after": after["psnr"], "ssim_after": after["ssim"],
            "seconds": out["seconds"], "bitstream_bytes": rep["bitstream_bytes"],
            "estimated_bitstream_bytes": rep["estimated_bitstream_bytes"], "rate_mismatch": rep["rate_mismatch"],
            "last_training_rate_bytes": rep.get("last_training_rate_bits", float("nan")) / 8.0,
            "coded_fraction": rep["coded_fraction"], "decode_seconds": rep["decode_seconds"],
            "decoder_mb": decoder_bytes(rep["latent_channels"], rep["hidden_channels"], rep["plane_channels"]) / 1e6,
        })

    # the acceptance point first, then the vq anchor, the ablations, and the rest of the sweep
    order = []
    if "low" in args.presets and TARGET_LAMBDA in args.lambdas:
        order.append(("low", TARGET_LAMBDA))
    for preset in args.presets:
        lambdas = args.lambdas if preset == "low" or args.high_lambdas is None else args.high_lambdas
        order += [(preset, lm) for lm in lambdas if (preset, lm) not in order]
    # most informative first (a run stopped for time keeps what it has): the acceptance point, a
    # second L point, the vq anchor, the ablations, then the rest of the sweep
    curve_of = {"low": "entropy-L", "high": "entropy-H"}
    for preset, lm in order[:2]:
        entropy_row(curve_of[preset], preset, lm)
    from nerfstudio.configs.method_configs import all_methods

    # run_vq copies the registered config: set the rays per step there (this process only)
    all_methods["vq-compression"].pipeline.datamanager.train_num_rays_per_batch = args.rays
    for k in args.vq_sizes:
        out = run_vq(teacher_cfg, data, args.work_dir, f"k{k}", args.vq_steps, k, None, args.importance_max_rays)
        after = evaluate(out["config"], args.eval_every)
        record({"curve": "vq", "codebook_size": k, "lmbda": None, "steps": args.vq_steps, "after_mb": out["bytes"] / 1e6,
                "ratio": teacher["mb"] * 1e6 / out["bytes"], "psnr_after": after["psnr"], "ssim_after": after["ssim"],
                "seconds": out["seconds"]})
    for lm in args.ablation_lambdas:
        entropy_row("entropy-L no importance", "low", lm, use_importance=False)
        entropy_row("entropy-L factorised prior", "low", lm, masked=False)
    for preset, lm in order[2:]:
        entropy_row(curve_of[preset], preset, lm)
    print(entropy_report(rows, teacher, command, args.results_dir, settings, args.tag))
    return 0


LEGO = str(LEGO_DIR)
MODES = {
    "smoke": ["--teacher-steps", "30", "--teacher-resolution", "32", "--steps", "3", "--rays", "256", "--lambdas", "1e-3", "1e-2",
              "--presets", "high", "--ablation-lambdas", "--vq-sizes", "16", "64", "--vq-steps", "3",
              "--importance-max-rays", "2048", "--eval-every", "10"],
    # what benchmarks/README.md records, sized for a 2-core CPU. quick: the rate-distortion sweep, vq
    # curve, BD numbers and ablations on 64^2 planes (about 5 min per run); ratio: the acceptance
    # point (L, lambda = 1e-3) on 256^2 planes, where the fixed 1.55 MB of the L decoder leaves room
    # for 15x (64^2 planes are 3.1 MB in all)
    "quick": ["--teacher-steps", "300", "--teacher-resolution", "64", "--steps", "1000", "--rays", "256",
              "--lambdas", "1e-2", "1e-3", "1e-4", "--high-lambdas", "1e-2", "1e-3", "1e-4", "--vq-sizes", "256", "1024", "4096",
              "--vq-steps", "100", "--eval-every", "4"],
    "ratio": ["--teacher-steps", "300", "--teacher-resolution", "256", "--steps", "1000", "--rays", "256",
              "--lambdas", "1e-3", "--presets", "low", "--ablation-lambdas", "--vq-sizes", "--eval-every", "4"],
    # bd: where the entropy and vq curves overlap, so BD-rate / BD-PSNR are defined. 128^2 planes: vq
    # codes ~3k vectors a plane (64^2: ~800, flat in K), and an L step costs 0.5 s on one core (256^2: 4.3 s);
    # K = 16 and 64 extend vq's curve (nearly flat from 256 up) down to the PSNR the entropy runs reach
    "bd": ["--teacher-steps", "1000", "--teacher-resolution", "128", "--steps", "1000", "--rays", "256",
           "--lambdas", "1e-2", "1e-3", "1e-4", "--high-lambdas", "1e-2", "1e-3", "1e-4", "--ablation-lambdas",
           "--vq-sizes", "16", "64", "256", "1024", "4096", "16384", "--vq-steps", "1000", "--eval-every", "4"],
    "real": ["--data", LEGO, "--teacher-steps", "7500", "--teacher-rays", "4096", "--steps", "3000", "--rays", "4096",
             "--lambdas", "1e-2", "1e-3", "1e-4", "--vq-sizes", "256", "1024", "4096", "16384", "--vq-steps", "1000",
             "--importance-max-rays", "1000000", "--eval-every", "8"],
    "full": ["--data", LEGO, "--teacher-steps", "30000", "--teacher-rays", "4096", "--steps", "30000", "--rays", "4096",
             "--vq-sizes", "256", "1024", "4096", "16384", "--vq-steps", "10000", "--importance-max-rays", "10000000"],
}


if __name__ == "__main__":
    raise SystemExit(main())
