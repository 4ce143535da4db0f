"""DistillNeRF model benchmark, quick mode by default: held-out procedural driving scenes on the CPU.

    python benchmarks/distillnerf_quick.py --mode quick   # = python benchmarks/bench.py distillnerf
    python benchmarks/distillnerf_quick.py --help     # scenes, teacher steps, training steps, threads

The code lives in ``benchmarks/distillnerf_bench.py``; results go to
benchmarks/results/distillnerf_model_<tag>.{md,json,png}.
"""

import sys

from distillnerf_bench import main

if __name__ == "__main__":
    sys.exit(main())
