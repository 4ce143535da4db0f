"""Where the depth AbsRel of DistillNeRF's novel views comes from: per held-out frame and target
(0 = input cameras, -1 / +1 = previous / next step), the mean and the median of the per-cell
relative depth error (the cells ``depth_abs_rel`` scores) and the share of those cells rendered
beyond 100 m. Reads the runs ``python benchmarks/distillnerf_quick.py --mode quick`` trained:

    python benchmarks/distillnerf_novel_depth.py /tmp/dn_bench/quick2/runs/distillnerf/distillnerf/{distilled,no-distillation}/config.yml
"""

import argparse
import sys
from pathlib import Path

import torch


@torch.no_grad()
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", type=Path, help="config.yml of distillnerf runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from nerfstudio.utils.eval_utils import eval_setup

    from nerfconvert.distillnerf.losses import block_mean_depth
    from nerfconvert.distillnerf.pipeline import eval_batch, eval_frames

    print("| run | scene | target | mean AbsRel | median AbsRel | cells > 100 m |")
    print("|---|---|---|---|---|---|")
    for config in args.configs:
        _, pipeline, _, _ = eval_setup(config, test_mode="test")
        for cameras, batch in eval_frames(pipeline.datamanager):
            full = eval_batch(cameras, batch)
            outputs = pipeline.model(cameras, full)
            for render, target in zip(outputs["renders"], full["targets"]):
                z = render["z_depth"].cpu()
                gt, sky = target["gt_depth"].cpu(), target["sky_mask"].cpu()
                valid = (gt > 0) & (gt <= 80.0) & ~sky  # as model.depth_abs_rel
                gt_small, cells = block_mean_depth(gt, valid, tuple(z.shape[-2:]), min_fraction=0.999)
                rel = ((z - gt_small).abs() / gt_small)[cells]
                far = (z[cells] > 100.0).float().mean()
                print(f"| {config.parent.name} | {batch['scene']} | {int(target.get('offset', 0)):+d} | {rel.mean():.3f} | "
                      f"{rel.median():.3f} | {far:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
