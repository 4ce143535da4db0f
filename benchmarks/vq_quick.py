"""VQRF (``vq-compression``) benchmark, quick mode by default: a generated 64x64 scene on the CPU.

    python benchmarks/vq_quick.py                 # = nerfconvert bench vq
    python benchmarks/vq_quick.py --help          # teacher steps, fine-tuning steps, codebook sweep, --data

The code lives in ``nerfconvert/compress/vq/benchmark.py``; results go to benchmarks/results/.
"""

import sys

from nerfconvert.compress.vq.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
