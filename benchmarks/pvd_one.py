"""One hash -> VM distillation at the quick benchmark's scale, on its cached teacher, with changes
to the pvd-al pipeline config; prints test PSNR, PSNR against the teacher and CPU time.

    python benchmarks/pvd_quick.py --mode quick --teachers-only            # trains / caches the teacher
    python benchmarks/pvd_one.py std                                        # the defaults
    python benchmarks/pvd_one.py raw '{"loss.standardise_projected_features": false}'
"""

import argparse
import json
from pathlib import Path

import torch

import pvd_bench as B


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="run name (the student run goes to <work-dir>/one/bench/tensorf/<name>)")
    parser.add_argument("changes", nargs="?", default="{}", help="JSON: dotted PVDPipelineConfig fields -> values")
    parser.add_argument("--steps", type=int, default=B.MODES["quick"].distill_steps)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/nerfconvert-bench-pvd-quick"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    scale = B.MODES["quick"]
    tag = f"{scale.resolution}px-{scale.num_train}x{scale.num_test}"
    teacher = args.work_dir / f"outputs-{tag}" / "bench" / "nerfacto" / f"teacher-nerfacto-{scale.teacher_steps['nerfacto']}x{scale.teacher_rays}" / "config.yml"
    if not teacher.exists():
        raise SystemExit(f"no cached teacher at {teacher}: run `python benchmarks/pvd_quick.py --mode quick --teachers-only` first")
    out = args.work_dir / "one"
    timing = B.run_training(B.pvd_config(teacher, "tensorf", out, args.steps, scale, args.name, **json.loads(args.changes)))
    result = {"name": args.name, "changes": json.loads(args.changes), "cpu_s": timing["cpu_s"],
              **B.score(B.student_run(out, "tensorf", args.name), teacher)}
    print("RESULT", json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
