"""pvd-al benchmark: teacher -> student matrix, students from scratch for the same CPU time,
and the ablations of PVD-AL Table 6. See nerfconvert/distill/benchmark.py.

    python benchmarks/pvd_quick.py                  # quick: generated 40x40 scene (100 train views), CPU
    python benchmarks/pvd_quick.py --mode real      # ../shared/data/lego
    nerfconvert bench pvd --mode quick              # the same through the CLI

Writes benchmarks/results/pvd_<mode>.{md,json,png}.
"""

from nerfconvert.distill.benchmark import main

if __name__ == "__main__":
    main()
