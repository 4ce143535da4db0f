"""What the plane-reconstruction start of entropy-compression gives before any rendering step: the
latents, an int8 H decoder and the masked entropy model fitted to a tensorf teacher's planes alone
(weighted plane term + 1e-3 x rate, as ``plane_fit_iterations`` does), then the decoded planes put
into the teacher and its renders compared with the teacher's own on a few test views. Run once with
the paper's weights (Eq. 5) and masks started from the importance, once with the default floor and
every location coded: the settings behind ``importance_floor`` and ``mask_from_importance``.

    python benchmarks/entropy_plane_fit.py --teacher ../shared/teachers/lego100/tensorf/2026-11-21_002655/config.yml \\
        --iterations 300 --floor 0.0 --mask-from-importance
    python benchmarks/entropy_plane_fit.py --teacher ../shared/teachers/lego100/tensorf/2026-11-21_002655/config.yml \\
        --iterations 300 --floor 0.2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import hardware, now_utc, psnr  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--floor", type=float, default=0.2, help="least plane weight (0: the paper's Eq. 5)")
    parser.add_argument("--mask-from-importance", action="store_true", help="latents of zero-importance blocks start uncoded")
    parser.add_argument("--every", type=int, default=50, help="score every n-th test view")
    args = parser.parse_args()

    import torch

    from nerfconvert.compress.entropy.coder import (
        MaskedEntropyModel, PlaneDecoder, importance_weights, join_planes, latent_size, split_planes, unimportant_blocks,
    )
    from nerfconvert.compress.tables import accumulate_importance, vq_tables_for
    from nerfconvert.compress.teacher import training_ray_bundles
    from nerfconvert.views.registry import load_pipeline, view_for

    started = now_utc()
    pipeline = load_pipeline(args.teacher, device="cpu", test_mode="test")
    model, view = pipeline.model, view_for(pipeline.model)
    dataset = pipeline.datamanager.eval_dataset
    views = list(range(0, len(dataset), args.every))

    def render():
        model.eval()
        with torch.no_grad():
            return [model.get_outputs_for_camera(dataset.cameras[i : i + 1])["rgb"] for i in views]

    base = render()
    importance = accumulate_importance(vq_tables_for(model), training_ray_bundles(pipeline.datamanager, "cpu", 4096, 65536, 0))
    density, color = (p.detach().clone() for p in view.planes())
    target = join_planes(density, color)
    n, channels, h, w = target.shape
    imp = torch.stack([importance[f"density_plane{k}"].view(h, w) for k in range(3)])
    weights = args.floor + (1 - args.floor) * importance_weights(imp)[:, None]
    side = latent_size(h)
    latents = torch.zeros(n, 192, side, side, requires_grad=True)
    decoder = PlaneDecoder(192, 96, channels, bits=8)
    initial = ~unimportant_blocks(imp, (side, side)) if args.mask_from_importance else None
    entropy = MaskedEntropyModel(192, (n, side, side), initial_mask=initial)
    optimizer = torch.optim.Adam([
        {"params": [latents, entropy.mask_logits], "lr": 0.02},
        {"params": list(decoder.parameters()) + [p for k, p in entropy.bottleneck.named_parameters() if k != "quantiles"],
         "lr": 1e-3},
    ])
    t0 = time.time()
    for i in range(args.iterations):
        tau = 10 * (0.1 / 10) ** (i / max(args.iterations - 1, 1))
        z_hat, bits = entropy(latents, tau, 0.25)
        loss = ((target - decoder(z_hat, (h, w))) * weights).pow(2).mean() + 1e-3 * bits / target.numel()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.time() - t0
    with torch.no_grad():
        planes = decoder(entropy.quantized(latents).values, (h, w))
    view.set_planes(*split_planes(planes, density.shape[1]))
    score = sum(psnr(a, b) for a, b in zip(render(), base)) / len(views)
    print(f"{started} - {now_utc()}; {hardware()}")
    print(f"{args.iterations} plane-fit iterations ({seconds:.0f} s), floor {args.floor:g}, masks from importance "
          f"{args.mask_from_importance}: {score:.2f} dB against the teacher's renders on {len(views)} test views")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
