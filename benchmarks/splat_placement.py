"""How long ``nerfconvert convert --to splatfacto`` is silent, and how long placing the Gaussians takes,
with a default-flag nerfacto teacher on the capture-like 360 scene on this CPU.

Before the placement pass was bounded, the teacher rendered every pixel of 8 pseudo cameras (259,200
rays for a 240x135 capture, at a few hundred rays/s) and the command printed nothing for 20+ minutes.
Now it times the teacher on a first chunk, renders as many random pixels as fit in
``--pipeline.init-seconds`` (60 s), prints one line saying so, and shows progress bars.

1. ``generate_capture_scene(kind="360")`` at ``--width`` x ``--height`` (cached in ``--work-dir``).
2. The teacher: stock nerfacto with its default flags (camera optimizer, appearance embedding, scene
   contraction, proposal sampler) through the nerfstudio-data parser, a SHORT run of
   ``--teacher-steps`` (300) steps: only its speed matters here, not its quality. Cached in ``--work-dir``.
3. ``nerfconvert convert --teacher <it>/config.yml --to splatfacto --steps <--steps> --device cpu`` as a
   subprocess; every output line is timestamped. Recorded: seconds until the first output line about
   the placement, seconds the placement took (from that line to "Gaussians placed"), the longest
   silence, the total.

    python benchmarks/splat_placement.py       # teacher: tens of minutes on 2 cores the first time; convert ~3-5 min
    python benchmarks/splat_placement.py --width 32 --height 24 --frames 10 --teacher-steps 20 --steps 2 \\
        --tag smoke --results-dir "$(mktemp -d)"   # smoke run (~5 min), results kept out of the checkout

Writes benchmarks/results/<--tag>.{md,json} (splat_placement by default).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import hardware, now_utc, short_run_config, write_report  # noqa: E402

PLACEMENT_LINE = re.compile(r"placing Gaussians: teacher at ([\d,]+) rays/s, ([\d,]+) of ([\d,]+) rays")


def teacher_run(scene: Path, runs: Path, steps: int, rays: int, device: str) -> Tuple[Path, Optional[float]]:
    """(config.yml, training seconds or None when cached) of the default-flag nerfacto teacher."""
    from nerfstudio.scripts import train

    from nerfconvert.compat import own_event_writers

    config = short_run_config("nerfacto", runs, steps, rays=rays, experiment=scene.name,
                              timestamp=f"teacher-{steps}", device=device)
    # the stock nerfacto dataparser (nerfstudio-data) on the generated capture, full resolution
    config.pipeline.datamanager.dataparser.data = scene
    config.pipeline.datamanager.dataparser.downscale_factor = 1
    path = config.get_base_dir() / "config.yml"
    if path.exists() and list((path.parent / "nerfstudio_models").glob("*.ckpt")):
        return path, None
    shutil.rmtree(path.parent, ignore_errors=True)  # an interrupted run is retrained
    start = time.perf_counter()
    with own_event_writers():
        train.main(config)
    return path, time.perf_counter() - start


def run_timestamped(cmd: List[str], log: Path) -> Tuple[List[Tuple[float, str]], float, int]:
    """Run ``cmd``; (seconds since launch, line) of every output line (stdout and stderr), the total
    seconds and the exit code. Lines are echoed with their timestamp and written to ``log``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    lines: List[Tuple[float, str]] = []
    start = time.perf_counter()
    with open(log, "w") as out, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                                 bufsize=1, env=env) as proc:
        for raw in proc.stdout:
            t = time.perf_counter() - start
            line = raw.rstrip("\n")
            lines.append((t, line))
            stamped = f"[{t:8.1f} s] {line}"
            print(stamped, flush=True)
            out.write(stamped + "\n")
        code = proc.wait()
    return lines, time.perf_counter() - start, code


def anonymise(line: str, work_dir: Path) -> str:
    """An output line without this machine's paths (results are committed)."""
    return line.replace(str(work_dir), "<work-dir>").replace(str(HERE.parent), "<repo>").replace(sys.prefix, "<venv>")


def placement_timings(lines: List[Tuple[float, str]], total: float) -> Dict:
    """The placement's marks in the timestamped output."""
    first = next(((t, line) for t, line in lines if "placing Gaussians" in line), None)
    placed = next(((t, line) for t, line in lines if "Gaussians placed" in line), None)
    match = PLACEMENT_LINE.search(first[1]) if first else None
    # the longest stretch without output, and the line that ended it
    gaps = [(b[0] - a[0], b[1]) for a, b in zip([(0.0, "(launch)")] + lines, lines + [(total, "(exit)")])]
    silence, after = max(gaps) if gaps else (total, "(exit)")
    return {
        "first_placement_output_s": first[0] if first else None,
        "placement_line": first[1].strip() if first else None,
        "placement_s": (placed[0] - first[0]) if first and placed else None,
        "placed_output_s": placed[0] if placed else None,
        "teacher_rays_per_s": int(match.group(1).replace(",", "")) if match else None,
        "rays": int(match.group(2).replace(",", "")) if match else None,
        "pixels": int(match.group(3).replace(",", "")) if match else None,
        "longest_silence_s": silence,
        "longest_silence_ended_by": after.strip(),
        "total_s": total,
    }


def _s(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1f} s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "nerfconvert-bench-splat-placement",
                        help="scene, cached teacher and the converted runs")
    parser.add_argument("--results-dir", type=Path, default=HERE / "results")
    parser.add_argument("--tag", default="splat_placement", help="results/<tag>.{md,json}")
    parser.add_argument("--width", type=int, default=240)
    parser.add_argument("--height", type=int, default=135)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--teacher-steps", type=int, default=300, help="a short teacher run: only its speed matters")
    parser.add_argument("--rays", type=int, default=1024, help="rays per step of the teacher's training")
    parser.add_argument("--steps", type=int, default=10, help="pvd-al steps of the convert (after the placement)")
    parser.add_argument("--eval-views", type=int, default=0, help="convert's closing comparison (0: skip it)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)

    from nerfconvert.scenes import generate_capture_scene

    command = "python benchmarks/splat_placement.py " + " ".join(argv if argv is not None else sys.argv[1:])
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    started = now_utc()
    scene = work / f"capture360-{args.width}x{args.height}-{args.frames}"
    if not (scene / "transforms.json").exists():
        generate_capture_scene(scene, kind="360", seed=0, width=args.width, height=args.height, num_frames=args.frames)
    teacher, teacher_seconds = teacher_run(scene, work / "runs", args.teacher_steps, args.rays, args.device)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    convert = ["--teacher", str(teacher), "--to", "splatfacto", "--steps", str(args.steps), "--device", args.device,
               "--eval-views", str(args.eval_views), "--output-dir", str(work / "convert"), "--timestamp", stamp]
    lines, total, code = run_timestamped([sys.executable, "-m", "nerfconvert.cli", "convert", *convert],
                                         work / f"convert-{stamp}.log")
    if code != 0:
        print(f"error: nerfconvert convert exited with {code}; see {work / f'convert-{stamp}.log'}", file=sys.stderr)
        return 1
    timings = placement_timings(lines, total)

    settings = {
        "command": command, "started": started, "scene": f"capture-like 360, {args.width}x{args.height}, {args.frames} frames",
        "teacher": f"nerfacto, default flags, {args.teacher_steps} steps ({args.rays} rays/step)",
        "teacher_training_s": teacher_seconds, "convert": "nerfconvert convert " + " ".join(
            ["--teacher", "<teacher>/config.yml", *convert[2:8], "--eval-views", str(args.eval_views)]),
        "device": args.device, "load_average_at_end": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    keep = [f"`[{t:7.1f} s]` {line.strip()}" for t, line in lines
            if any(k in line for k in ("placing Gaussians", "Gaussians placed", "pvd-al:", "done in"))]
    md = "\n".join([
        f"# {args.tag}", "",
        f"`{command}`  ",
        f"{started}, {hardware()}, load average at the end {settings['load_average_at_end']}.  ",
        f"Scene: {settings['scene']}. Teacher: {settings['teacher']}, a short run (only its speed matters"
        + (", cached from an earlier run" if teacher_seconds is None else f", trained in {teacher_seconds:.0f} s") + ").  ",
        f"Timed: `{settings['convert']}` as a subprocess, every output line timestamped.", "",
        "| first placement line | placement (line -> Gaussians placed) | longest silence | total |",
        "|---:|---:|---:|---:|",
        f"| {_s(timings['first_placement_output_s'])} | {_s(timings['placement_s'])} | "
        f"{_s(timings['longest_silence_s'])} | {_s(timings['total_s'])} |", "",
        f"The placement line: `{timings['placement_line']}`  ",
        f"The longest silence ended with: `{timings['longest_silence_ended_by'][:100]}`", "",
        "Output lines about the placement and the stages:", "",
        *[f"- {k}" for k in keep],
    ])
    print(write_report(args.results_dir, args.tag, md,
                       {"settings": settings, "timings": timings,
                        "lines": [[round(t, 2), anonymise(line, args.work_dir)] for t, line in lines[-400:]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
