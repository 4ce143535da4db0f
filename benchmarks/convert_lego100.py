"""The conversion table on lego100: the shared tensorf teacher distilled into each family against
the clock, beside the same family trained from scratch on the 100 training images.

    python benchmarks/convert_lego100.py --student tensorf --way distilled   # one row, cached
    python benchmarks/convert_lego100.py --student tensorf --way scratch
    python benchmarks/convert_lego100.py --report                             # the table from the cache

Ways (``--way``):
- ``distilled``: ``ns-train pvd-al --teacher-ckpt <teacher> <student>`` (data-free) with its defaults;
- ``distilled-no-al``: the same with PVD-AL's three active-learning levels off;
- ``scratch``: stock ``ns-train <student>`` on the 100 training images, on the same clock;
- ``scratch-ceiling``: the same, four times as long (the family's ceiling on this budget).

Each run trains alone for ``--minutes`` of wall clock (evaluation and snapshots are off the clock),
writes the student as a stock run at each clock point, scores the points on every
``--curve-every``-th test view and the last point on all 200 test views (ns-eval's PSNR / SSIM). A
finished run is cached in the work dir (``<work>/rows/<student>-<way>.json``) and reused; the report
assembles every cached row into ``benchmarks/results/convert_lego100.{md,json,png}``. The teacher is
read from ``../shared/teachers/lego100/tensorf``, run from the project root (its paths are relative).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import math
import os
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from common import REPO, RESULTS, device_type, evaluate, hardware, now_utc, short_run_config, write_report

TEACHER = Path("../shared/teachers/lego100/tensorf/2026-11-21_002655/config.yml")
DATA = Path("../shared/data/lego100")
STUDENTS = ("tensorf", "nerfacto", "plenoxels", "splatfacto", "vanilla-nerf")
WAYS = ("distilled", "distilled-no-al", "scratch", "scratch-ceiling")
POINTS = (1.0, 2.0, 5.0, 10.0, 15.0)
"""Clock points (minutes of a 15-minute run)."""

# Steps per run, so that schedules (stages, learning-rate decay, upsampling) end near the clock's
# end: measured step times on 2 CPU cores at the rays below (benchmarks/README.md). A run whose
# clock runs out first stops there; one that finishes early ends its curve early.
STEPS_CPU: Dict[str, Dict[str, int]] = {
    "tensorf": {"distilled": 1400, "scratch": 3750},
    "plenoxels": {"distilled": 1500, "scratch": 1500},  # distilled on images: 100 steps a minute, measured
    "nerfacto": {"distilled": 300, "scratch": 300},
    "vanilla-nerf": {"distilled": 150, "scratch": 150},
    "splatfacto": {"distilled": 1500, "scratch": 1500},
}
RAYS = {"tensorf": 1024, "plenoxels": 4096, "nerfacto": 4096, "vanilla-nerf": 1024, "splatfacto": None}
"""Rays per step, as the shared teacher was trained (tensorf: 1024) or the stock method's."""


def log(msg: str) -> None:
    print(f"[convert_lego100 {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- a trainer that keeps its own clock ------------------------------------------------------


def clocked(base, budget_s: float, points_s: List[float], snapshot):
    """A trainer class that sums the wall time of its training steps only, calls ``snapshot(trainer,
    minutes)`` as the sum passes each clock point, and stops at ``budget_s``."""

    class Clocked(base):
        def train_iteration(self, step):
            t0 = time.perf_counter()
            if not hasattr(self, "_first_step_at"):
                self._first_step_at = t0  # setup (teacher load, placement, grid fill) ends here
            out = super().train_iteration(step)
            self._clock = getattr(self, "_clock", 0.0) + time.perf_counter() - t0
            self._steps_done = step + 1
            pending = getattr(self, "_pending", None)
            if pending is None:
                pending = self._pending = list(points_s)
            while pending and self._clock >= pending[0]:
                snapshot(self, pending.pop(0) / 60.0)
            if self._clock >= budget_s:
                self.stop_training = True
            return out

        def _after_train(self):
            pending = getattr(self, "_pending", None) or []
            if pending:  # the schedule ended before the clock: the last state stands for the rest
                snapshot(self, getattr(self, "_clock", 0.0) / 60.0)
                self._pending = []
            return super()._after_train()

    Clocked.__name__ = f"Clocked{base.__name__}"
    return Clocked


def write_stock_run(config, pipeline_state: Dict[str, torch.Tensor], step: int, output_dir: Path, experiment: str,
                    timestamp: str) -> Path:
    """A run directory (config.yml + one checkpoint) that stock ns-eval opens:
    ``output_dir/experiment/<method>/timestamp``."""
    import yaml

    run = copy.deepcopy(config)
    run.output_dir, run.experiment_name, run.timestamp = output_dir, experiment, timestamp
    base = run.get_base_dir()
    ckpt = base / "nerfstudio_models"
    ckpt.mkdir(parents=True, exist_ok=True)
    (base / "config.yml").write_text(yaml.dump(run), "utf8")
    tmp = ckpt / f".step-{step:09d}.tmp"
    torch.save({"step": step, "pipeline": {k: v.detach().cpu() for k, v in pipeline_state.items()},
                "optimizers": {}, "schedulers": {}, "scalers": {}}, tmp)
    os.replace(tmp, ckpt / f"step-{step:09d}.ckpt")
    return base / "config.yml"


# ---- configs ----------------------------------------------------------------------------------


def distilled_config(student: str, out: Path, steps: int, device: str, active_learning: bool):
    from nerfconvert.distill.method import make_pvd_config

    rays = RAYS[student] or 4096
    config = make_pvd_config(TEACHER, student, out, max_num_iterations=steps, num_rays=rays, device_type=device)
    config.steps_per_save = 10**9
    if not active_learning:
        al = config.pipeline.active_learning
        al.hard_poses = al.hard_rays = al.hard_points = False
    return config


def scratch_config(student: str, out: Path, steps: int, device: str):
    config = short_run_config(student, out, steps, data=DATA, rays=RAYS[student], device=device, save=False)
    if hasattr(config.pipeline.model, "implementation"):
        config.pipeline.model.implementation = "tcnn" if device == "cuda" else "torch"
    if hasattr(config.pipeline.model, "random_scale"):
        # splatfacto on a synthetic scene (no SfM points): its defaults draw 50k random Gaussians in a
        # 10-unit cube (lego's box is 3 units a side, so ~3% land in it) on a random background; on
        # lego100 that scored 14.9 -> 12.6 dB over 15 min. This is the setting a user of blender data
        # picks (the scene box's cube, the data's white background); on 2026-12-07 it still scored only
        # 10.0-13.6 dB over 10 min (every 8th view): the cause is not found, and no scratch row is kept.
        config.pipeline.model.random_scale = 3.0
        config.pipeline.model.background_color = "white"
    return config


# ---- one row --------------------------------------------------------------------------------


def run_row(student: str, way: str, work: Path, minutes: float, curve_every: int, device: str,
            steps: Optional[int], changes: Optional[Dict[str, str]] = None, label: Optional[str] = None,
            rerun: bool = False, lock: Optional[Path] = None) -> Dict:
    """``changes``: dotted config fields (from the trainer config down) -> YAML values, for a variant
    of a way; such a row is ``label``led and kept out of the table's main rows."""
    from nerfstudio.scripts import train

    from nerfconvert.distill.export import student_run_config

    scale = 4.0 if way == "scratch-ceiling" else 1.0
    budget = minutes * 60.0 * scale
    points = [p * 60.0 * scale for p in POINTS if p <= minutes]
    kind = "distilled" if way.startswith("distilled") else "scratch"
    n = int((steps or STEPS_CPU[student][kind]) * scale)
    out = work / "runs" / (f"{student}-{way}" + (f"-{label}" if label else ""))
    if kind == "distilled":
        config = distilled_config(student, out, n, device, active_learning=(way == "distilled"))
    else:
        config = scratch_config(student, out, n, device)
    config.timestamp = "train"
    for key, value in (changes or {}).items():
        import yaml

        target = config
        *path, last = key.split(".")
        for part in path:
            target = getattr(target, part)
        if not hasattr(target, last):
            raise SystemExit(f"error: --set {key}: no such config field")
        setattr(target, last, yaml.safe_load(value))
    config.experiment_name = way
    snapshots: List[Dict] = []
    original = config._target
    setup = {}

    def snapshot(trainer, at_minutes: float) -> None:
        pipeline = trainer.pipeline
        if kind == "distilled":
            pipeline.student_view.finish_student()
            run = student_run_config(trainer.config, trainer.config.teacher_config(), trainer.config.student)
            state = {f"_model.{k}": v for k, v in pipeline.student.state_dict().items()}
        else:
            run, state = copy.copy(trainer.config), pipeline.state_dict()
            run._target = original  # the saved run names the stock trainer, not this benchmark's clock
        path = write_stock_run(run, state, trainer._steps_done, out / "points", way, f"t{at_minutes:06.2f}")
        snapshots.append({"minutes": round(at_minutes, 3), "step": trainer._steps_done, "config": path})
        setup.setdefault("s", trainer._first_step_at - t_start)
        log(f"{student} {way}: {at_minutes:.2f} min, step {trainer._steps_done}")

    done = out / "snapshots.json"  # training finished: a rerun of the row only scores it again
    if rerun and out.exists():
        shutil.rmtree(out)  # --rerun: train again
    if done.exists():
        snapshots = [{**snap, "config": Path(snap["config"])} for snap in json.loads(done.read_text())]
        log(f"{student} {way}: training done before, scoring its {len(snapshots)} snapshots")
        train_wall = None
    else:
        config._target = clocked(original, budget, points, snapshot)
        log(f"{student} {way}: {n} steps at most, {budget / 60:.1f} min of training on {device}")
        if lock is not None:
            lock.write_text(f"{student} {way} training\n")
        t0 = t_start = time.perf_counter()
        try:
            train.main(config)
        finally:
            config._target = original
            if lock is not None:
                lock.unlink(missing_ok=True)
        train_wall = time.perf_counter() - t0
        done.write_text(json.dumps(snapshots, default=str))
    rows = []
    for i, snap in enumerate(snapshots):
        last = i == len(snapshots) - 1
        scores = evaluate(snap["config"], every=curve_every)
        rows.append({"minutes": snap["minutes"], "step": snap["step"], "views": scores["views"],
                     "psnr": scores["psnr"], "ssim": scores["ssim"]})
        log(f"{student} {way} @ {snap['minutes']:.2f} min: {scores['psnr']:.2f} dB ({scores['views']} views)")
        if last:
            full = evaluate(snap["config"], every=1)
            rows.append({"minutes": snap["minutes"], "step": snap["step"], "views": full["views"],
                         "psnr": full["psnr"], "ssim": full["ssim"]})
            log(f"{student} {way} @ {snap['minutes']:.2f} min: {full['psnr']:.2f} dB (all {full['views']} views)")
    sets = "".join(f" --set {k}={v}" for k, v in (changes or {}).items()) + (f" --label {label}" if label else "")
    return {"student": student, "way": way, "label": label, "changes": changes or {}, "device": device, "steps_planned": n, "train_wall_s": train_wall,
            "setup_s": setup.get("s"),
            "points": rows, "date": now_utc(), "hardware": hardware(),
            "command": f"python benchmarks/convert_lego100.py --student {student} --way {way}"
                       + (f" --minutes {minutes:g}" if minutes != 15 else "") + (f" --steps {steps}" if steps else "")
                       + (f" --device {device}" if device != "cpu" else "") + sets}


# ---- the report ------------------------------------------------------------------------------


def reach_minutes(points: List[Dict], target: float) -> Optional[float]:
    """First clock time (linear between points) at which a curve reaches ``target`` dB."""
    prev = None
    for p in points:
        if p["psnr"] >= target:
            if prev is None or p["psnr"] == prev["psnr"]:
                return p["minutes"]
            f = (target - prev["psnr"]) / (p["psnr"] - prev["psnr"])
            return prev["minutes"] + f * (p["minutes"] - prev["minutes"])
        prev = p
    return None


def teacher_score(rows_dir: Path) -> Dict:
    cache = rows_dir / "_teacher.json"
    if cache.exists():
        return json.loads(cache.read_text())
    log("scoring the teacher on all test views")
    scores = evaluate(TEACHER, every=1)
    cache.write_text(json.dumps(scores))
    return scores


def report(rows_dir: Path, results: Path, curve_every: int) -> str:
    teacher = teacher_score(rows_dir)
    cached = [json.loads(p.read_text()) for p in sorted(rows_dir.glob("*.json")) if not p.name.startswith("_")]
    if not cached:
        raise SystemExit(f"no cached rows in {rows_dir}: run a row first (--student S --way W)")
    rows, curves = [], {}

    def key(c):
        return (c["student"], c["way"] + (f" [{c['label']}]" if c.get("label") else ""))

    for c in cached:
        curves[key(c)] = [p for p in c["points"] if p["views"] != 200 or len(c["points"]) == 1]
        if c.get("label"):
            continue  # variants: in the markdown table and "variants", not in the rows of the named ways
        for p in c["points"]:
            rows.append({"student": c["student"], "way": c["way"], "minutes": p["minutes"], "views": p["views"],
                         "psnr": p["psnr"], "ssim": p["ssim"]})
    t_psnr = teacher["psnr"]
    views: Dict[int, List[str]] = {}  # curve views -> students (slow renderers are scored on fewer views)
    for c in cached:
        for n in sorted({p["views"] for p in curves[key(c)] if p["views"] != 200}):
            if c["student"] not in views.setdefault(n, []):
                views[n].append(c["student"])
    curve_views = "; ".join(f"{n} test views for {', '.join(sorted(v))}" for n, v in sorted(views.items(), reverse=True))
    lines = [
        "# The conversion table on lego100",
        "",
        f"Teacher: the shared lego100 tensorf run (stock, 5000 steps), **{t_psnr:.2f} dB** / SSIM "
        f"{teacher['ssim']:.3f} on all 200 test views. Minutes are wall clock of training alone on the "
        f"machine below; evaluation is off the clock. Curve points: every n-th test view ({curve_views}); "
        "**final**: the last point on all 200 views.",
        "",
        "| student | way | 1 min | 2 min | 5 min | 10 min | 15 min | final (200) | vs teacher |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ended = False
    for c in cached:
        pts = curves[key(c)]
        final = [p for p in c["points"] if p["views"] == 200]
        cells = []
        scale = 4.0 if c["way"] == "scratch-ceiling" else 1.0
        for m in POINTS:
            hit = [p for p in pts if abs(p["minutes"] - m * scale) < 0.05 * scale]
            if not hit and pts and pts[-1]["minutes"] < m * scale:  # the run ended first: its last state stands
                cells.append(f"{pts[-1]['psnr']:.2f}*")
                ended = True
            else:
                cells.append(f"{hit[0]['psnr']:.2f}" if hit else "")
        f = final[-1] if final else None
        name = c["way"] + (f" [{c['label']}]" if c.get("label") else "")
        lines.append(f"| {c['student']} | {name}{' (x4 clock)' if scale > 1 else ''} | " + " | ".join(cells)
                     + (f" | {f['psnr']:.2f} | {f['psnr'] - t_psnr:+.2f} |" if f else " | | |"))
    if ended:
        lines += ["", "\\* the run's schedule ended before this clock point: its last state, at the minute "
                  "of its last curve point, stands for the rest."]
    lines += ["", "Time for the distilled student to reach the from-scratch run's last PSNR "
              "(curve points, same views):", "", "| student | scratch (at its end) | distilled reaches it at | "
              "speed-up |", "|---|---:|---:|---:|"]
    for s in STUDENTS:
        sc, di = curves.get((s, "scratch")), curves.get((s, "distilled"))
        if not sc or not di:
            continue
        target = sc[-1]["psnr"]
        t = reach_minutes(di, target)
        at = f"{target:.2f} ({sc[-1]['minutes']:.1f} min)"
        if t is None:
            best = di[-1]
            lines.append(f"| {s} | {at} | not within its {best['minutes']:.1f} min ({best['psnr']:.2f}) | slow-down |")
        else:
            ratio = sc[-1]["minutes"] / max(t, 1e-6)
            lines.append(f"| {s} | {at} | {t:.2f} min | {ratio:.1f}x {'faster' if ratio >= 1 else 'slower'} |")
    lines += ["", f"Commands: {'; '.join(sorted({c['command'] for c in cached}))}; then "
              "`python benchmarks/convert_lego100.py --report`.", "",
              "Runs: " + "; ".join(f"{c['student']} {c['way']}{' [' + c['label'] + ']' if c.get('label') else ''}: "
                                   f"{c['date']}, {c['steps_planned']} steps planned"
                                   + (f", setup {c['setup_s']:.0f} s before the clock starts (teacher load, "
                                      "placement or grid fill)" if c.get("setup_s") else "")
                                   for c in cached), "", f"Hardware: {cached[-1]['hardware']}"]
    markdown = "\n".join(lines)
    data = {"teacher_psnr": t_psnr, "rows": rows, "teacher_ssim": teacher["ssim"],
            "runs": [{k: v for k, v in c.items() if k != "points"} for c in cached],
            "variants": [{**{k: c[k] for k in ("student", "way", "label", "changes")}, "points": c["points"]}
                         for c in cached if c.get("label")]}
    write_report(results, "convert_lego100", markdown, data)
    plot(curves, t_psnr, results / "convert_lego100.png")
    return markdown


def plot(curves: Dict, teacher_psnr: float, path: Path) -> None:
    import matplotlib.pyplot as plt

    students = sorted({s for s, _ in curves}, key=STUDENTS.index)
    fig, axes = plt.subplots(1, len(students), figsize=(4.2 * len(students), 3.6), squeeze=False)
    style = {"distilled": "-o", "distilled-no-al": "--o", "scratch": "-s", "scratch-ceiling": ":s"}
    for ax, s in zip(axes[0], students):
        for (student, way), pts in curves.items():
            if student == s:
                ax.plot([p["minutes"] for p in pts], [p["psnr"] for p in pts], style.get(way, "-^"), label=way, ms=4)
        ax.axhline(teacher_psnr, color="k", lw=0.8, ls="--", label=f"teacher {teacher_psnr:.2f}")
        ax.axhline(teacher_psnr - 0.5, color="0.6", lw=0.6, ls=":")
        ax.set_title(f"tensorf -> {s}")
        ax.set_xlabel("training wall clock (min)")
        ax.set_ylabel("test PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", choices=STUDENTS)
    parser.add_argument("--way", choices=WAYS, action="append", help="repeat for several (default: all four)")
    parser.add_argument("--minutes", type=float, default=15.0, help="clock of a row (scratch-ceiling: 4x)")
    parser.add_argument("--steps", type=int, default=None, help="steps the schedules are sized for (default: measured table)")
    parser.add_argument("--curve-every", type=int, default=8, help="curve points use every n-th test view")
    parser.add_argument("--device", default=device_type(), choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/nerfconvert-convert-lego100"))
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--rows-dir", type=Path, default=RESULTS / "convert_lego100_rows",
                        help="finished rows, one JSON each (committed, so a new machine keeps them)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a variant: a dotted trainer-config field, e.g. pipeline.stage_fractions=[0.05,0.15]")
    parser.add_argument("--label", default=None, help="name of the variant (needed with --set)")
    parser.add_argument("--rerun", action="store_true", help="train a cached row again")
    parser.add_argument("--lock", type=Path, default=None,
                        help="a file that exists while a row trains (others sharing the machine wait for it)")
    parser.add_argument("--report", action="store_true", help="assemble the cached rows (after any runs asked for)")
    args = parser.parse_args()
    if args.set and not args.label:
        raise SystemExit("error: --set makes a variant: name it with --label")
    torch.set_num_threads(args.threads)
    os.chdir(REPO)  # the shared teacher's paths are relative to the project root
    if not TEACHER.exists():
        raise SystemExit(f"error: the shared teacher is missing ({TEACHER}); this benchmark needs ../shared next to the checkout")
    args.rows_dir.mkdir(parents=True, exist_ok=True)
    if args.student:
        for way in args.way or WAYS:
            cache = args.rows_dir / (f"{args.student}-{way}" + (f"-{args.label}" if args.label else "") + ".json")
            if cache.exists() and not args.rerun:
                log(f"{args.student} {way}: cached ({cache})")
                continue
            row = run_row(args.student, way, args.work_dir, args.minutes, args.curve_every, args.device, args.steps,
                          dict(kv.split("=", 1) for kv in args.set), args.label, rerun=args.rerun, lock=args.lock)
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps(row, indent=1, default=str))
            os.replace(tmp, cache)
    if args.report or not args.student:
        print(report(args.rows_dir, args.results_dir, args.curve_every))


if __name__ == "__main__":
    main()
