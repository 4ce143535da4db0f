"""DistillNeRF data benchmark: teacher depth vs ground truth on procedural driving scenes, next to
the raw sparse LiDAR. Generates the scenes, trains one teacher per scene
(``nerfconvert distillnerf-teachers``), then scores the cached depth.

    nice -n 10 python benchmarks/distillnerf_data.py --num-scenes 2 --num-steps 3 --width 64 --height 36 --steps 200

Code in ``benchmarks/distillnerf_data_bench.py``; results in benchmarks/results/distillnerf_data.{json,md,png}.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from common import RESULTS
from distillnerf_data_bench import run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-scenes", type=int, default=2)
    parser.add_argument("--num-steps", type=int, default=3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=36)
    parser.add_argument("--steps", type=int, default=200, help="teacher training steps per scene")
    parser.add_argument("--method", default=None, help="teacher method (default: distillnerf-teachers' depth-nerfacto)")
    parser.add_argument("--small", action="store_true", help="smaller hash grid, fewer samples per ray (tiny images on a CPU)")
    parser.add_argument("--depth-loss-mult", type=float, default=None, help="LiDAR depth-loss weight (depth-nerfacto)")
    parser.add_argument("--rays", type=int, default=1024, help="teacher rays per batch")
    parser.add_argument("--tag", default="", help="results go to distillnerf_data<tag>.{json,md,png}")
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/distillnerf_data_bench"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--lidar-only", action="store_true", help="score the raw LiDAR of generated scenes only (no teachers)")
    args = parser.parse_args()
    if args.lidar_only:
        from distillnerf_data_bench import lidar_only
        from nerfconvert.scenes.driving import generate_driving_dataset

        data = args.work_dir / "scenes_lidar"
        if not data.exists():
            generate_driving_dataset(data, args.num_scenes, args.num_steps, args.width, args.height)
        result = lidar_only(data)
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "distillnerf_data_lidar.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return 0
    result = run(args.work_dir, args.num_scenes, args.num_steps, args.width, args.height, args.steps, args.method,
                 small=args.small, depth_loss_mult=args.depth_loss_mult, rays=args.rays)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"distillnerf_data{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.copy(args.work_dir / "depth_scene-000.png", args.results / f"distillnerf_data{args.tag}.png")
    lines = ["| scene | teacher AbsRel | teacher δ<1.25 | teacher coverage | LiDAR AbsRel | LiDAR δ<1.25 | LiDAR coverage |",
             "|---|---|---|---|---|---|---|"]
    for name, r in list(result["scenes"].items()) + [("all", result["all"])]:
        t, lid = r["teacher"], r["lidar"]
        lines.append(f"| {name} | {t['abs_rel']:.3f} | {t['delta_1.25']:.3f} | {t['coverage']:.1%} | "
                     f"{lid['abs_rel']:.3f} | {lid['delta_1.25']:.3f} | {lid['coverage']:.1%} |")
    (args.results / f"distillnerf_data{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
