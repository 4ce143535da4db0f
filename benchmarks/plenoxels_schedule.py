"""Why a 400-step plenoxels run on lego lost 1.6 dB when its schedules began to follow the run:
the same short run with each part of the old fixed schedule put back, over several seeds.

    python benchmarks/plenoxels_schedule.py                 # lego100, 400 steps, 2 seeds
    python benchmarks/plenoxels_schedule.py --seeds 1 2 3

Variants (all ``ns-train plenoxels --max-num-iterations 400`` on ../shared/data/lego100):
- ``follows-run``: the schedule before this benchmark (upsampling, pruning and the learning-rate
  decay all end with the run);
- ``lr-over-1000``: the same, with the learning rates decaying over the method's 1000 steps;
- ``old-fixed``: the old absolute schedule (upsample after 100 and 300, prune after 100, 300 and
  600, learning rates decaying over 1000 steps);
- ``default``: today's ``ns-train plenoxels`` defaults.
Scored like ns-eval on every 4th test view (50). Each run is cached in the work dir.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from common import DATA as SHARED_DATA
from common import benchmark_parser, command_line, evaluate, now_utc, short_run_config, write_report

DATA = SHARED_DATA / "lego100"
VARIANTS = {
    "follows-run": {"min_schedule_steps": 0},
    "lr-over-1000": {"min_schedule_steps": 1000},
    "old-fixed": {"min_schedule_steps": 1000, "upsample_iters": (100, 300), "prune_iters": (100, 300, 600)},
    "default": {},
}


def run(variant: str, seed: int, steps: int, work: Path) -> dict:
    from nerfstudio.scripts import train

    cache = work / f"{variant}-s{seed}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    config = short_run_config("plenoxels", work / "runs", steps, data=DATA, experiment=variant, timestamp=f"s{seed}")
    config.machine.seed = seed
    for key, value in VARIANTS[variant].items():
        target = config if hasattr(config, key) and not hasattr(config.pipeline.model, key) else config.pipeline.model
        setattr(target, key, value)
    t0 = time.perf_counter()
    train.main(config)
    wall = time.perf_counter() - t0
    scores = evaluate(config.get_base_dir() / "config.yml", every=4)
    out = {"variant": variant, "seed": seed, "steps": steps, "train_wall_s": wall, **scores}
    cache.write_text(json.dumps(out))
    print(f"[plenoxels_schedule] {variant} seed {seed}: {scores['psnr']:.2f} dB ({wall:.0f} s)", flush=True)
    return out


def main(argv=None) -> None:
    parser = benchmark_parser(__file__, __doc__, tag="plenoxels_schedule")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results = [run(v, s, args.steps, args.work_dir) for s in args.seeds for v in args.variants]
    lines = ["# plenoxels: a short run's schedule", "",
             f"`ns-train plenoxels --max-num-iterations {args.steps}` on lego100, scored on every 4th test view "
             f"(50), seeds {', '.join(map(str, args.seeds))}. {now_utc()}.", "",
             "| variant | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | train s |",
             "|---|" + "---:|" * (len(args.seeds) + 2)]
    for v in args.variants:
        rows = [r for r in results if r["variant"] == v]
        mean = statistics.mean(r["psnr"] for r in rows)
        lines.append(f"| {v} | " + " | ".join(f"{r['psnr']:.2f}" for r in rows) + f" | {mean:.2f} | "
                     f"{statistics.mean(r['train_wall_s'] for r in rows):.0f} |")
    cmd = command_line(argv, __file__)
    lines += ["", f"Command: `{cmd}`"]
    print(write_report(args.results_dir, args.tag, "\n".join(lines), {"runs": results, "command": cmd}))


if __name__ == "__main__":
    main()
