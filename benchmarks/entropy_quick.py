"""ECTensoRF (``entropy-compression``) benchmark, quick mode by default: a generated 64x64 scene on the CPU.

    python benchmarks/entropy_quick.py --help        # every knob; `--mode quick` runs the recorded preset

The code lives in ``benchmarks/entropy_bench.py``; results go to benchmarks/results/.
"""

import sys

from entropy_bench import main

if __name__ == "__main__":
    sys.exit(main())
