"""VQRF (``vq-compression``) benchmark, quick mode by default: a generated 64x64 scene on the CPU.

    python benchmarks/vq_quick.py --mode quick    # the recorded settings (= python benchmarks/bench.py vq)
    python benchmarks/vq_quick.py --help          # teacher steps, fine-tuning steps, codebook sweep, --data

The code lives in ``benchmarks/vq_bench.py``; results go to benchmarks/results/.
"""

import sys

from vq_bench import main

if __name__ == "__main__":
    sys.exit(main())
