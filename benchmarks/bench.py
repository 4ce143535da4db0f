"""``python benchmarks/bench.py <name> --mode <mode>``: the benchmarks, each writing a markdown
table, a JSON file and a PNG into benchmarks/results/. Add a benchmark with one name and one
runner in ``RUNNERS`` (a module of this folder)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, get_args

import tyro

from common import RESULTS

# name -> "module:function(mode, work_dir, results_dir)", modules of benchmarks/
RUNNERS = {
    "pvd": "pvd_bench:run",
    "vq": "vq_bench:run",
    "entropy": "entropy_bench:run",
    "distillnerf": "distillnerf_bench:run",
}

Mode = Literal["smoke", "quick", "matrix", "ratio", "bd", "real", "full"]
ONLY_FOR = {"matrix": "pvd", "ratio": "entropy", "bd": "entropy"}
"""Modes that only one benchmark has."""


@dataclass
class Bench:
    """Run a benchmark and record its figures (pvd: pvd-al teacher -> student matrix,
    from-scratch students for the same CPU time, PVD-AL Table 6 ablations)."""

    name: tyro.conf.Positional[Literal["pvd", "vq", "entropy", "distillnerf"]]
    """Which benchmark."""
    mode: Mode = "quick"
    """quick: a generated scene on CPU; real / full: ../shared/data/lego (full: on a GPU); smoke: minutes;
    matrix (pvd only): hash, VM and voxel teachers x all four students at the quick scale (about 45 min on CPU);
    ratio (entropy only): the L preset at lambda 1e-3 on a 256^2-plane teacher (about 85 min on CPU);
    bd (entropy only): both presets at 3 lambdas and vq at 6 codebook sizes on a 128^2-plane teacher,
    where the two curves overlap and BD-rate / BD-PSNR are defined (about 1.5 h on one CPU core)."""
    work_dir: Optional[Path] = None
    """Scene and runs go here (default: /tmp/nerfconvert-bench-<name>-<mode>)."""
    results_dir: Path = RESULTS

    def main(self) -> None:
        owner = ONLY_FOR.get(self.mode)
        if owner is not None and owner != self.name:
            from nerfconvert import NerfconvertError

            own = [m for m in get_args(Mode) if ONLY_FOR.get(m, self.name) == self.name]
            raise NerfconvertError(f"--mode {self.mode} belongs to the {owner} benchmark only; {self.name} has {', '.join(own)}.")
        module, function = RUNNERS[self.name].split(":")
        getattr(importlib.import_module(module), function)(self.mode, self.work_dir, self.results_dir)


def main(argv: Optional[list] = None) -> None:
    import sys

    from nerfconvert import NerfconvertError

    try:
        tyro.cli(Bench, args=argv).main()
    except NerfconvertError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
