"""Speed and memory of splatfacto's rasterization on the CPU (nerfconvert's pure-torch rasterizer,
``nerfconvert/splat/raster.py``), on an object-like scene built the way splatfacto initialises one:
N points near a unit sphere, scales from the mean distance to the 3 nearest neighbours, random
rotations, opacities 0.1-0.9, SH degree 3, seen from distance 3 with a 50 degree field of view.

Per N and image size, in a fresh process each: seconds per rendered frame (RGB + expected depth,
no gradients: ns-eval, ns-render, the viewer) and per training step (RGB, forward and backward with
absgrad: ns-train), and the peak resident memory each needs above the loaded scene.

    python benchmarks/splat_cpu.py --gaussians 10000 100000 --sizes 100 256

Writes benchmarks/results/<tag>.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

from common import benchmark_parser, command_line, write_report


def scene(n: int, seed: int = 0):
    import numpy as np
    import torch
    from sklearn.neighbors import NearestNeighbors

    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n, 3, generator=g)
    means = dirs / dirs.norm(dim=-1, keepdim=True) * (1 + 0.05 * torch.randn(n, 1, generator=g))
    distances, _ = NearestNeighbors(n_neighbors=4).fit(means.numpy()).kneighbors(means.numpy())
    scales = torch.from_numpy(np.asarray(distances[:, 1:].mean(-1), dtype=np.float32))[:, None].repeat(1, 3)
    quats = torch.randn(n, 4, generator=g)
    opacities = 0.1 + 0.8 * torch.rand(n, generator=g)
    colors = 0.3 * torch.randn(n, 16, 3, generator=g)
    return means, quats, scales, opacities, colors


def camera(size: int):
    import torch

    viewmat = torch.eye(4)
    viewmat[2, 3] = 3.0  # the camera 3 units from the centre, looking at it
    f = 0.5 * size / math.tan(math.radians(25))
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]])
    return viewmat[None], K[None]


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(n: int, size: int, repeats: int) -> dict:
    """Seconds: the fastest of ``repeats`` renders and training steps after a warm-up of each.
    ``repeats`` 0: one of each, for the memory pass."""
    import torch

    from nerfconvert.splat.raster import rasterization

    means, quats, scales, opacities, colors = scene(n)
    viewmats, Ks = camera(size)
    before_mb = _rss_mb()
    args = (means, quats, scales, opacities, colors, viewmats, Ks, size, size)
    render, train = [], []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.no_grad():
            _, alpha, meta = rasterization(*args, sh_degree=3, packed=False, render_mode="RGB+ED")
        render.append(time.perf_counter() - start)
    render_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before_mb
    coverage = float(alpha.mean())
    params = [t.requires_grad_() for t in (means, quats, scales, opacities, colors)]
    for _ in range(repeats + 1):
        start = time.perf_counter()
        image, _, meta = rasterization(*args, sh_degree=3, packed=False, render_mode="RGB", absgrad=True)
        meta["means2d"].retain_grad()
        image.square().mean().backward()
        train.append(time.perf_counter() - start)
        for p in params:
            p.grad = None
    return {
        "gaussians": n, "size": size, "render_s": min(render[1:] or render), "train_step_s": min(train[1:] or train),
        "visible": int((meta["radii"] > 0).sum()), "tile_intersections": int(meta["isect_ids"].numel()),
        "alpha_mean": round(coverage, 3), "threads": torch.get_num_threads(),
        "render_peak_mb": render_peak_mb,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before_mb,
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = benchmark_parser(__file__, __doc__, tag="splat_cpu", work_dir=False)
    parser.add_argument("--gaussians", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 256], help="square image sides in pixels")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (the fastest is reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--one", type=int, nargs=2, metavar=("N", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.one[0], args.one[1], args.repeats)))
        return 0

    rows = []
    for size in args.sizes:
        for n in args.gaussians:
            command = [sys.executable, __file__, "--one", str(n), str(size)]
            if args.threads:
                command += ["--threads", str(args.threads)]
            timed = subprocess.run(command + ["--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
            # memory in a pass of its own: with glibc's mmap threshold fixed low, freed tensors go back
            # to the system and the resident size follows the live tensors (it would slow the timing)
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
            memory = subprocess.run(command + ["--repeats", "0"], capture_output=True, text=True, check=True, env=env)
            r = json.loads(timed.stdout.strip().splitlines()[-1])
            m = json.loads(memory.stdout.strip().splitlines()[-1])
            r.update(render_peak_mb=m["render_peak_mb"], train_peak_mb=m["peak_mb"])
            del r["peak_mb"]
            rows.append(r)
            print(f"{n} Gaussians, {size}x{size}: render {r['render_s']:.3f} s (+{r['render_peak_mb']:.0f} MB), "
                  f"train step {r['train_step_s']:.3f} s (+{r['train_peak_mb']:.0f} MB)", flush=True)
    lines = [
        f"CPU rasterization ({rows[0]['threads'] if rows else '?'} torch thread(s) while measuring)", "",
        f"Command: `{command_line(argv, __file__)}`", "",
        "| Gaussians | image | tile hits | render s/frame | train s/step | render peak MB | train peak MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['gaussians']} | {r['size']}x{r['size']} | {r['tile_intersections']} | {r['render_s']:.3f} | "
                     f"{r['train_step_s']:.3f} | {r['render_peak_mb']:.0f} | {r['train_peak_mb']:.0f} |")
    lines += ["", "Peak MB: the process's peak resident memory above its size before the first render "
              "(scene and libraries loaded), measured in a separate pass."]
    print(write_report(args.results_dir, args.tag, "\n".join(lines), {"command": command_line(argv, __file__), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
