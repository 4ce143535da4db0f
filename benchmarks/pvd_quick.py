"""pvd-al benchmark: teacher -> student matrix, students from scratch for the same CPU time,
and the ablations of PVD-AL Table 6. See benchmarks/pvd_bench.py.

    python benchmarks/pvd_quick.py                  # quick: generated 40x40 scene (100 train views), CPU
    python benchmarks/pvd_quick.py --mode real      # ../shared/data/lego
    python benchmarks/bench.py pvd --mode quick     # the same through the launcher

Writes benchmarks/results/pvd_<mode>.{md,json,png}.
"""

from pvd_bench import main

if __name__ == "__main__":
    main()
