"""How to quantise a nerfacto hash table: a VQRF codebook against a lattice, measured without
fine-tuning on one trained nerfacto run (the choice behind ``HashFamily``'s "lattice" tables).

For the field's hash table, after the same importance pruning (beta_p 0.001): an importance-weighted
codebook of K codes over the live 2-D entries (VQRF Eq. 8-9; entropy of its indices, i.e. the
least any entropy coder can store them in), against uniform lattices of a few steps (per-level
empirical entropy of the integer codes, and the bytes the container's best coder really takes).
Each option's render is compared with the teacher's on its eval views.

    python benchmarks/hash_vq_options.py --teacher <nerfacto run>/config.yml

Writes benchmarks/results/<tag>.{md,json}.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from common import benchmark_parser, command_line, hardware, shown, write_report


def _entropy_bytes(values) -> float:
    import numpy as np

    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum()) * values.size / 8


def main(argv: Optional[List[str]] = None) -> int:
    parser = benchmark_parser(__file__, __doc__, tag="hash_vq_options", work_dir=False)
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--rays", type=int, default=8192, help="training rays of the importance pass")
    parser.add_argument("--codes", type=int, nargs="*", default=[4096, 1024])
    parser.add_argument("--steps", type=float, nargs="*", default=[0.5, 0.7, 1.4], help="lattice steps (x RMS)")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from nerfconvert.compress import container
    from nerfconvert.compress.teacher import training_ray_bundles
    from nerfconvert.compress.vq.codebook import cumulative_mass_masks, fit_codebook
    from nerfconvert.compress.tables import accumulate_importance
    from nerfconvert.compress.tables import vq_tables_for
    from nerfconvert.views.registry import load_pipeline

    command = command_line(argv, __file__)
    started = time.strftime("%Y-%m-%d %H:%M")
    pipeline = load_pipeline(args.teacher, device="cpu", test_mode="val")
    model = pipeline.model
    dataset = pipeline.datamanager.eval_dataset
    cameras = dataset.cameras

    def render() -> List[torch.Tensor]:
        model.eval()
        with torch.no_grad():
            return [model.get_outputs_for_camera(cameras[i : i + 1])["rgb"] for i in range(len(cameras))]

    def psnr(a, b) -> float:
        return float(-10 * torch.log10(((a - b) ** 2).mean()))

    base = render()
    family = vq_tables_for(model)
    importance = accumulate_importance(family, training_ray_bundles(pipeline.datamanager, "cpu", 4096, args.rays, 0))["hash"]
    table = next(t for t in family.tables() if t.name == "hash")
    param = dict(model.named_parameters())[table.param_name]
    original = param.data.clone()
    alive, _ = cumulative_mass_masks(importance, 0.001, 0.0)
    live = original[alive]
    rms = float(live.pow(2).mean().sqrt())
    levels = model.field.num_levels if hasattr(model.field, "num_levels") else 16
    level_of = torch.arange(original.shape[0]) // (original.shape[0] // levels)

    rows: List[Dict] = []

    def score(label: str, stored_bytes: float, bound_bytes: float, seconds: float) -> None:
        psnr_vs_teacher = sum(psnr(a, b) for a, b in zip(render(), base)) / len(base)
        rows.append({"option": label, "bytes": stored_bytes, "entropy_bound_bytes": bound_bytes,
                     "psnr_vs_teacher": psnr_vs_teacher, "seconds": seconds})
        print(f"{label}: {stored_bytes / 1e6:.2f} MB (entropy bound {bound_bytes / 1e6:.2f} MB), "
              f"{psnr_vs_teacher:.2f} dB vs teacher, {seconds:.0f} s", flush=True)

    for k in args.codes:
        t0 = time.perf_counter()
        fit = fit_codebook(live, importance[alive], k, 100, 10000, 0.8, 10, torch.Generator().manual_seed(0))
        seconds = time.perf_counter() - t0
        param.data.zero_()
        param.data[alive] = fit.codebook[fit.assignment]
        indices = fit.assignment.numpy().astype(np.uint16)
        stored = len(container.best_encoding(indices.tobytes())[1]) + k * 2 * 2
        score(f"codebook K={k} (12-bit indices, fp16 codes)" if k == 4096 else f"codebook K={k}",
              stored, _entropy_bytes(indices) + k * 2 * 2, seconds)
    for step in args.steps:
        t0 = time.perf_counter()
        absolute = step * rms
        codes = torch.round(original / absolute)
        param.data.copy_(codes * absolute)
        param.data[~alive] = 0
        bound = stored = 0.0
        for level in range(levels):
            mask = alive & (level_of == level)
            level_codes = codes[mask].t().contiguous().numpy().astype(np.int8)
            bound += _entropy_bytes(level_codes) if level_codes.size else 0
            stored += len(container.best_encoding(level_codes.tobytes())[1]) if level_codes.size else 0
        score(f"lattice step {step:g} RMS", stored, bound, time.perf_counter() - t0)
    param.data.copy_(original)

    settings = {"command": command, "started": started, "finished": time.strftime("%Y-%m-%d %H:%M"),
                "hardware": hardware(), "teacher": shown(args.teacher), "importance_rays": args.rays,
                "live_entries": int(alive.sum()), "entries": int(alive.numel()), "rms": rms}
    lines = [f"# {args.tag}", "", f"`{command}`  ", f"{started} - {settings['finished']}, {settings['hardware']}.  ",
             f"The field's hash table: {settings['live_entries']:,} live of {settings['entries']:,} 2-D entries after "
             "pruning; no fine-tuning.", "",
             "| option | stored (container's best coder) | entropy bound | PSNR vs teacher | time |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['option']} | {row['bytes'] / 1e6:.2f} MB | {row['entropy_bound_bytes'] / 1e6:.2f} MB | "
                     f"{row['psnr_vs_teacher']:.2f} dB | {row['seconds']:.0f} s |")
    print(write_report(args.results_dir, args.tag, "\n".join(lines), {"settings": settings, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
