"""ECTensoRF (``entropy-compression``) benchmark, quick mode by default: a generated 64x64 scene on the CPU.

    python benchmarks/entropy_quick.py --help        # every knob; `nerfconvert bench entropy` runs the recorded preset

The code lives in ``nerfconvert/compress/entropy/benchmark.py``; results go to benchmarks/results/.
"""

import sys

from nerfconvert.compress.entropy.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
