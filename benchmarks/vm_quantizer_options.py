"""How to quantise TensoRF's planes, measured without fine-tuning on one trained tensorf run (the
choice behind ``VMFamily``'s default quantiser): VQ-TensoRF's codebooks at a few K against lattices
of a few steps, after the same importance pruning and keeping. Each option is packed into a real
``.ncz`` (its size is the file's) and its renders are scored against the ground truth and against the
teacher's own renders on every ``--every``-th test view.

    python benchmarks/vm_quantizer_options.py       # the newest lego100 tensorf teacher under ../shared/teachers
    python benchmarks/vm_quantizer_options.py --teacher <tensorf run>/config.yml

Writes benchmarks/results/<tag>.{md,json}.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from common import benchmark_parser, command_line, now_utc, psnr, teacher_config, write_report


def main(argv: Optional[List[str]] = None) -> int:
    parser = benchmark_parser(__file__, __doc__, tag="vm_quantizer_options", work_dir=False)
    parser.add_argument("--teacher", type=Path, default=None, help="a tensorf run's config.yml (default: the newest lego100 one)")
    parser.add_argument("--rays", type=int, default=65536, help="training rays of the importance pass")
    parser.add_argument("--codes", type=int, nargs="*", default=[4096, 256])
    parser.add_argument("--steps", type=float, nargs="*", default=[0.1, 0.2, 0.35, 0.7], help="lattice steps (x RMS)")
    parser.add_argument("--prune-quantiles", type=float, nargs="*", default=[0.001],
                        help="beta_p of the lattice options (the codebooks use the first)")
    parser.add_argument("--zero-fill", action="store_true",
                        help="also the first lattice step with pruned entries set to zero (VQ-TensoRF's pruning) "
                             "instead of the pruned entries' mean")
    parser.add_argument("--kept-step", type=float, default=0.25, help="the kept voxels' step, as a fraction of the step")
    parser.add_argument("--every", type=int, default=25, help="score every n-th test view")
    args = parser.parse_args(argv)
    args.teacher = args.teacher or teacher_config("tensorf")

    import copy

    import torch

    from nerfconvert.compress.fuzz import _quiet
    from nerfconvert.compress.tables import accumulate_importance, vq_tables_for
    from nerfconvert.compress.teacher import training_ray_bundles
    from nerfconvert.compress.vq import codec
    from nerfconvert.compress.vq.compressor import VQSettings, apply_states, build_states
    from nerfconvert.views.registry import load_pipeline

    command = command_line(argv, __file__)
    started = now_utc()
    pipeline = load_pipeline(args.teacher, device="cpu", test_mode="test")
    model = pipeline.model
    dataset = pipeline.datamanager.eval_dataset
    views = list(range(0, len(dataset), args.every))
    cameras = dataset.cameras

    def render(m) -> List[torch.Tensor]:
        m.eval()
        with torch.no_grad():
            return [m.get_outputs_for_camera(cameras[i : i + 1])["rgb"].cpu() for i in views]

    def composite(index: int) -> torch.Tensor:
        """The ground truth over the teacher's background, as nerfstudio's metrics see it."""
        raw = dataset[index]["image"].float()
        if raw.shape[-1] == 4:
            bg = torch.ones(3) if getattr(model.config, "background_color", "white") == "white" else torch.zeros(3)
            return raw[..., :3] * raw[..., 3:] + bg * (1 - raw[..., 3:])
        return raw[..., :3]

    truth = [composite(i) for i in views]
    teacher_images = render(model)
    rows: List[Dict] = [{"option": "teacher", "bytes": None,
                         "psnr_gt": sum(psnr(a, b) for a, b in zip(teacher_images, truth)) / len(views),
                         "psnr_teacher": None, "seconds": 0.0}]
    family = vq_tables_for(model)
    t0 = time.perf_counter()
    importance = accumulate_importance(family, training_ray_bundles(pipeline.datamanager, "cpu", 4096, args.rays, 0))
    print(f"importance from {args.rays} rays: {time.perf_counter() - t0:.0f} s", flush=True)
    original = {k: v.clone() for k, v in model.state_dict().items()}

    first = args.prune_quantiles[0]
    options = [("codebook", {"codebook_size": k, "prune_quantile": first}, f"codebook K = {k}, beta_p {first:g}")
               for k in args.codes]
    options += [("lattice", {"lattice_step": s, "lattice_kept_step": args.kept_step, "prune_quantile": q},
                 f"lattice step {s:g} RMS, beta_p {q:g}") for q in args.prune_quantiles for s in args.steps]
    if args.zero_fill and args.steps:
        options.append(("lattice", {"lattice_step": args.steps[0], "lattice_kept_step": args.kept_step,
                                    "prune_quantile": first, "zero_fill": True},
                        f"lattice step {args.steps[0]:g} RMS, beta_p {first:g}, pruned entries zero"))
    for quantizer, settings, label in options:
        model.load_state_dict(original)
        trial = copy.deepcopy(model)
        tables = vq_tables_for(trial, quantizer)
        t0 = time.perf_counter()
        zero_fill = settings.pop("zero_fill", False)
        with _quiet():
            states = build_states(tables, importance, VQSettings(quantizer=quantizer, **settings))
            if zero_fill:  # what pruning to zero gives: the fill vectors zeroed, the tables re-projected
                for state in states.values():
                    state.fill = torch.zeros_like(state.fill)
                apply_states(tables, states, sync_codes=True)
        data = codec.pack(tables, states, {"steps": 0, "teacher_method": "tensorf", "teacher_step": 0})
        seconds = time.perf_counter() - t0
        decoded, _ = codec.decode(codec.container.from_bytes(data))
        images = render(decoded)
        rows.append({"option": label, "bytes": len(data), "seconds": seconds,
                     "psnr_gt": sum(psnr(a, b) for a, b in zip(images, truth)) / len(views),
                     "psnr_teacher": sum(psnr(a, b) for a, b in zip(images, teacher_images)) / len(views)})
        print(f"{label}: {len(data) / 1e6:.3f} MB, {rows[-1]['psnr_gt']:.2f} dB vs GT, "
              f"{rows[-1]['psnr_teacher']:.2f} dB vs teacher ({seconds:.0f} s)", flush=True)

    lines = [f"`{command}`", "", f"{started} - {now_utc()}. Importance from {args.rays:,} training rays "
             f"(beta_k 0.7), no fine-tuning; scored on {len(views)} test views (every {args.every}th).", "",
             "| option | file (MB) | PSNR vs GT | PSNR vs teacher's renders | quantise + pack (s) |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        size = f"{row['bytes'] / 1e6:.3f}" if row["bytes"] else "-"
        vs_teacher = f"{row['psnr_teacher']:.2f}" if row["psnr_teacher"] is not None else "-"
        lines.append(f"| {row['option']} | {size} | {row['psnr_gt']:.2f} | {vs_teacher} | {row['seconds']:.0f} |")
    print(write_report(args.results_dir, args.tag, "\n".join(lines), {"command": command, "rows": rows, "views": views}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
