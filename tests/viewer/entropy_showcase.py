"""The entropy-compression run of the README's viewer screenshots: a stock tensorf teacher on the
seeded 64 px object scene, compressed with entropy-compression for long enough that its planes
hold the scene (the browser tests' 20-step run renders a grey fog). Prints the run and file:

    python tests/viewer/entropy_showcase.py /tmp/showcase
    python tests/viewer/screenshot.py <printed run>/config.yml assets/viewer/entropy_compression.png
    python tests/viewer/screenshot.py <printed run>/scene.ncz assets/viewer/nerfconvert_view_entropy.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from common import short_run_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--teacher-steps", type=int, default=400)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()

    from nerfstudio.scripts import train

    from nerfconvert.scenes import generate_object_scene

    scene = generate_object_scene(args.work_dir / "scene64", seed=0, resolution=64, num_train=40, num_val=4, num_test=4)
    teacher = short_run_config("tensorf", args.work_dir / "runs", args.teacher_steps, data=scene, rays=1024,
                               timestamp="teacher", fit_schedules=True)
    teacher.pipeline.model.init_resolution = 64
    teacher.pipeline.model.final_resolution = 64
    teacher.pipeline.model.upsampling_iters = (10**9,)  # no upsampling (stock TensoRF needs one entry)
    train.main(teacher)
    compressed = short_run_config("entropy-compression", args.work_dir / "runs", args.steps, data=scene, rays=1024,
                                  timestamp="entropy")
    compressed.pipeline.teacher_ckpt = teacher.get_base_dir() / "config.yml"
    train.main(compressed)
    print(f"run: {compressed.get_base_dir()}")


if __name__ == "__main__":
    main()
