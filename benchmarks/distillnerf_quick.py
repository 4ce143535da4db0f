"""DistillNeRF model benchmark, quick mode by default: held-out procedural driving scenes on the CPU.

    python benchmarks/distillnerf_quick.py            # = nerfconvert bench distillnerf
    python benchmarks/distillnerf_quick.py --help     # scenes, teacher steps, training steps, threads

The code lives in ``nerfconvert/distillnerf/benchmark.py``; results go to
benchmarks/results/distillnerf_model_<tag>.{md,json,png}.
"""

import sys

from nerfconvert.distillnerf.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
