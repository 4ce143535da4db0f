"""DistillNeRF generalization benchmark (issue 28): explicit train / held-out scene lists, a
training-set curve with and without distillation, variants (virtual cameras off, the pre-issue
defaults), per-scene and single-frame teachers and a downsample-upsample baseline scored on the
same held-out frames. Every part caches its result under ``--work-dir``, so a run goes part by part:

    python benchmarks/distillnerf_generalization.py data          # scenes (train-NNN, heldout-NNN)
    python benchmarks/distillnerf_generalization.py teachers      # per-scene teachers + virtual views (cached)
    python benchmarks/distillnerf_generalization.py baselines     # teacher recon, single-frame teacher, downsample
    python benchmarks/distillnerf_generalization.py model --train-scenes 4 --distill 1 --seed 0 [--variant NAME]
    python benchmarks/distillnerf_generalization.py models        # every row of --size that is not cached yet
    python benchmarks/distillnerf_generalization.py report        # JSON + markdown + plot in benchmarks/results/
    python benchmarks/distillnerf_generalization.py all           # all of the above, in order

``--size small`` (default; 4 training scenes, 2 held out, 4 time steps, curve 1 and 4, one seed)
fits a 2-core CPU; ``--size full`` is the issue's (16 / 4 scenes, curve 1-4-16, 3 seeds at 16).
``--scene-seed K`` generates another set of scenes (scene i of the train list is seeded
K*100000 + i, held-out scene j K*100000 + 50000 + j), so the benchmark can be rerun on scenes
nobody tuned on; each scene seed has its own work folder.

Metrics on the held-out frames (time steps with a previous and a next step): reconstruction PSNR /
SSIM on the input cameras, prev/next PSNR / SSIM on the rig one step earlier / later (novel views),
and from the novel views' depth, over render cells fully covered by ground truth within 80 m and
not sky: AbsRel mean and median, delta < 1.25, and ``far_leak``, the fraction of those cells
rendered beyond 100 m.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from common import RESULTS, hardware, now_utc, short_run_config

SIZES: Dict[str, Dict[str, Any]] = {
    "small": {"num_train": 4, "num_heldout": 2, "num_steps": 4, "curve": (1, 4), "seeds": (0,),
              "variants": ("no-virtual-cameras", "no-ray-jitter", "no-opacity-loss", "old-defaults"), "train_steps": 400},
    "full": {"num_train": 16, "num_heldout": 4, "num_steps": 5, "curve": (1, 4, 16), "seeds": (0, 1, 2),
             "variants": ("no-virtual-cameras", "old-defaults"), "train_steps": 2000},
}
WIDTH, HEIGHT = 64, 36
TEACHER_STEPS, TEACHER_RAYS = 80, 1024
VARIANTS = {
    # each: (model overrides, data manager overrides); None = the method's defaults
    "no-virtual-cameras": ({}, {"virtual_cameras": False}),
    "no-ray-jitter": ({"train_ray_jitter": False}, {}),
    "no-opacity-loss": ({"use_opacity_loss": False}, {}),
    # what distillnerf did before issue 28: rays on the lifting grid, sky depth targets at the far
    # plane (sky from the ground-truth mask), teacher opacity unused, no virtual cameras
    "old-defaults": ({"train_ray_jitter": False, "use_opacity_loss": False, "sky_at_far": True, "sky_from_teacher": False},
                     {"virtual_cameras": False}),
}


def scene_lists(size: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    return ([f"train-{i:03d}" for i in range(size["num_train"])], [f"heldout-{j:03d}" for j in range(size["num_heldout"])])


def scene_seed_of(name: str, scene_seed: int) -> int:
    kind, index = name.split("-")
    return scene_seed * 100000 + (50000 if kind == "heldout" else 0) + int(index)


def part_data(args, size) -> Path:
    from nerfconvert.scenes.driving import generate_driving_scene, is_driving_scene

    root = args.work_dir / "scenes"
    train, held = scene_lists(size)
    for name in train + held:
        if not is_driving_scene(root / name):
            generate_driving_scene(root / name, seed=scene_seed_of(name, args.scene_seed), num_steps=size["num_steps"],
                                   width=WIDTH, height=HEIGHT)
    return root


def part_teachers(args, size) -> Dict[str, float]:
    """Per-scene teachers on all steps (the paper's EmerNeRF row), with virtual views; cached."""
    from distillnerf_bench import cpu_teacher_hook

    from nerfconvert.distillnerf.dataparser import read_scenes
    from nerfconvert.distillnerf.teachers import VIRTUAL_SHIFTS, run_teachers

    root = part_data(args, size)
    train, held = scene_lists(size)
    record = args.work_dir / "teacher_times.json"
    times = json.loads(record.read_text()) if record.exists() else {}
    for scene in read_scenes(root, tuple(train + held)):
        if args.only and scene.name not in args.only:
            continue
        start = time.perf_counter()
        # virtual views only where the model trains (held-out scenes only score the teacher)
        shifts = VIRTUAL_SHIFTS if scene.name in train else ()
        status = run_teachers(root, max_num_iterations=TEACHER_STEPS, scenes=(scene.name,), virtual_shifts=shifts,
                              config_hook=cpu_teacher_hook(TEACHER_RAYS, TEACHER_STEPS, True))
        if status.get(scene.name) == "done" or scene.name not in times:
            times[scene.name] = time.perf_counter() - start
            record.write_text(json.dumps(times, indent=1))
    return times


def eval_steps(num_steps: int) -> List[int]:
    """The held-out frames: every step with a previous and a next one."""
    return list(range(1, num_steps - 1))


def _psnr_ssim(pred: torch.Tensor, gt: torch.Tensor) -> Tuple[float, float]:
    """[N, H, W, 3] renders against ground truth: PSNR over the whole rig (as the model's metrics), SSIM."""
    from torchmetrics.functional import peak_signal_noise_ratio, structural_similarity_index_measure

    p, g = pred.clamp(0, 1).permute(0, 3, 1, 2).float(), gt.permute(0, 3, 1, 2).float()
    return float(peak_signal_noise_ratio(p, g, data_range=1.0)), float(structural_similarity_index_measure(p, g, data_range=1.0))


def _load_images(frames) -> torch.Tensor:
    from PIL import Image

    return torch.from_numpy(np.stack([np.asarray(Image.open(f.image).convert("RGB"), np.float32) / 255.0 for f in frames]))


def part_baselines(args, size) -> Dict[str, Any]:
    """Teacher reconstruction, the single-frame teacher's novel views and the downsample-upsample
    reconstruction, all on the held-out frames; cached in baselines.json (single-frame teachers
    per frame in single_frame/)."""
    import torch.nn.functional as F

    from distillnerf_bench import cpu_teacher_hook

    from nerfconvert.compat import own_event_writers
    from nerfconvert.distillnerf.dataparser import read_cache_meta, read_scenes
    from nerfconvert.distillnerf.teachers import DEFAULT_METHOD, render_teacher, teacher_config, write_lidar_transforms
    from nerfconvert.views.registry import load_pipeline

    root = args.work_dir / "scenes"
    _, held = scene_lists(size)
    out_path = args.work_dir / "baselines.json"
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    per_frame = result.setdefault("frames", {})
    for scene in read_scenes(root, tuple(held)):
        meta = read_cache_meta(scene)
        teacher = load_pipeline(scene.root / meta["config"], device="cpu") if meta else None
        for t in eval_steps(scene.num_steps):
            key = f"{scene.name}/t{t:03d}"
            entry = per_frame.setdefault(key, {})
            frames = scene.steps[t].frames
            gt = _load_images(frames)
            if "downsample_psnr" not in entry:
                small = F.adaptive_avg_pool2d(gt.permute(0, 3, 1, 2), (math.ceil(HEIGHT / 4), math.ceil(WIDTH / 4)))
                up = F.interpolate(small, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
                entry["downsample_psnr"], entry["downsample_ssim"] = _psnr_ssim(up, gt)
            if teacher is not None and "teacher_psnr" not in entry:
                pred = torch.from_numpy(np.stack([render_teacher(teacher, f)["rgb"] for f in frames]))
                entry["teacher_psnr"], entry["teacher_ssim"] = _psnr_ssim(pred, gt)
            single_done = sum("single_frame_prev_psnr" in e for k, e in per_frame.items() if k.startswith(scene.name + "/"))
            if "single_frame_prev_psnr" not in entry and not args.skip_single_frame and single_done < args.single_frame_per_scene:
                # a teacher trained on this step's cameras alone, scored one step earlier / later
                step_dir = scene.root / f"t{t:03d}"
                config = teacher_config(DEFAULT_METHOD, step_dir, TEACHER_STEPS, "cpu")
                config.pipeline.datamanager.dataparser.data = write_lidar_transforms(step_dir)
                config.output_dir = args.work_dir / "single_frame"
                config.experiment_name = f"{scene.name}-t{t:03d}"
                cpu_teacher_hook(TEACHER_RAYS, TEACHER_STEPS, True)(config)
                start = time.perf_counter()
                from nerfstudio.scripts import train

                with own_event_writers():
                    train.main(config)
                entry["single_frame_seconds"] = time.perf_counter() - start
                single = load_pipeline(config.get_base_dir() / "config.yml", device="cpu")
                for name, dt in (("prev", -1), ("next", 1)):
                    target = scene.steps[t + dt].frames
                    pred = torch.from_numpy(np.stack([render_teacher(single, f)["rgb"] for f in target]))
                    entry[f"single_frame_{name}_psnr"], entry[f"single_frame_{name}_ssim"] = _psnr_ssim(pred, _load_images(target))
            out_path.write_text(json.dumps(result, indent=1))
    return result


def model_name(train_scenes: int, distill: bool, variant: Optional[str], seed: int) -> str:
    return f"n{train_scenes}-{'distill' if distill else 'nodistill'}-{variant or 'default'}-s{seed}"


def train_model(args, size, train_scenes: int, distill: bool, variant: Optional[str], seed: int) -> Path:
    from nerfstudio.scripts import train as ns_train

    train, held = scene_lists(size)
    name = model_name(train_scenes, distill, variant, seed)
    config = short_run_config("distillnerf", args.work_dir / "runs", args.train_steps or size["train_steps"],
                              experiment="distillnerf", timestamp=name, fit_schedules=True)
    config.machine.seed = seed
    dm = config.pipeline.datamanager
    dm.data = args.work_dir / "scenes"
    dm.dataparser.train_scenes = tuple(train[:train_scenes])
    dm.dataparser.eval_scenes = tuple(held)
    dm.seed = seed
    dm.use_dense_depth = distill
    config.pipeline.model.use_dense_depth = distill  # L_depth' off = the paper's "no distillation" row
    if variant is not None:
        model_over, dm_over = VARIANTS[variant]
        for key, value in model_over.items():
            setattr(config.pipeline.model, key, value)
        for key, value in dm_over.items():
            setattr(dm, key, value)
    base = config.get_base_dir()
    if not (base / "bench_time.json").exists():
        start = time.perf_counter()
        ns_train.main(config)
        (base / "bench_time.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))
    return base


@torch.no_grad()
def evaluate_run(config_path: Path) -> Dict[str, Any]:
    """Held-out metrics of one trained model (see the module docstring), and its forward time."""
    from nerfstudio.utils.eval_utils import eval_setup

    from nerfconvert.distillnerf.losses import block_mean_depth
    from nerfconvert.distillnerf.pipeline import OFFSET_NAMES, eval_batch, eval_frames

    _, pipeline, _, _ = eval_setup(config_path, test_mode="test")
    model = pipeline.model
    sums: Dict[str, List[float]] = {}
    z_all, gt_all, acc_all, times = [], [], [], []
    grid_acc: Dict[str, List[float]] = {"on": [], "off": []}
    frames = []
    for cameras, batch in eval_frames(pipeline.datamanager):
        full = eval_batch(cameras, batch)
        start = time.perf_counter()
        outputs = model(cameras, full)  # the forward pass and the rendering of every target
        times.append(time.perf_counter() - start)
        frames.append(f"{batch['scene']}/t{int(batch['time']):03d}")
        # cause 1 of issue 28: the input cameras rendered on the lifting grid and half a cell off it
        scene, _ = model.encode(cameras, batch["image"], batch["ego_to_world"])
        ds = model.config.render_downsample
        for key, shift in (("on", (0, 0)), ("off", (ds // 2, ds // 2))):
            grid_acc[key].append(float(model.render_view(scene, cameras, shift)["accumulation"].mean()))
        for render, target in zip(outputs["renders"], full["targets"]):
            name = OFFSET_NAMES[int(target.get("offset", 0))]
            for key, value in model.render_metrics(render, target).items():
                sums.setdefault(f"{name}_{key}", []).append(value)
            if name == "recon":
                continue
            z = render["z_depth"].cpu()
            gt, sky = target["gt_depth"].cpu(), target["sky_mask"].cpu()
            valid = (gt > 0) & (gt <= 80.0) & ~sky  # as model.depth_abs_rel
            gt_small, cells = block_mean_depth(gt, valid, tuple(z.shape[-2:]), min_fraction=0.999)
            z_all.append(z[cells])
            gt_all.append(gt_small[cells])
            acc_all.append(render["accumulation"].cpu()[cells])
    z, gt, acc = torch.cat(z_all), torch.cat(gt_all), torch.cat(acc_all)
    leak = z > 100.0
    rel = (z - gt).abs() / gt
    ratio = torch.maximum(z / gt, gt / z.clamp_min(1e-6))
    metrics = {k: float(np.mean(v)) for k, v in sums.items()}
    metrics.update(novel_abs_rel_mean=float(rel.mean()), abs_rel_median=float(rel.median()),
                   delta_1_25=float((ratio < 1.25).float().mean()), far_leak=float(leak.float().mean()),
                   # cause 2: how many far-leak cells are let-through light (accumulation < 0.5), not a far surface
                   far_leak_transmittance_share=float((acc[leak] < 0.5).float().mean()) if bool(leak.any()) else 0.0,
                   novel_accumulation_mean=float(acc.mean()),
                   recon_accumulation_on_grid=float(np.mean(grid_acc["on"])),
                   recon_accumulation_off_grid=float(np.mean(grid_acc["off"])),
                   novel_cells=int(z.numel()), forward_render_seconds=float(np.median(times)), frames=frames)
    return metrics


def part_model(args, size, train_scenes: int, distill: bool, variant: Optional[str], seed: int) -> Dict[str, Any]:
    if not torch.cuda.is_available():
        torch.set_num_threads(args.threads)
    base = train_model(args, size, train_scenes, distill, variant, seed)
    result_path = base / "heldout_metrics.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    metrics = evaluate_run(base / "config.yml")
    row = {"train_scenes": train_scenes, "distill": distill, "variant": variant, "seed": seed,
           "recon_psnr": metrics["recon_psnr"], "prev_psnr": metrics["prev_psnr"], "next_psnr": metrics["next_psnr"],
           "abs_rel_median": metrics["abs_rel_median"], "far_leak": metrics["far_leak"],
           "train_seconds": json.loads((base / "bench_time.json").read_text())["seconds"], "metrics": metrics}
    result_path.write_text(json.dumps(row, indent=1))
    print(json.dumps({k: v for k, v in row.items() if k != "metrics"}), flush=True)
    return row


def planned_rows(size) -> List[Tuple[int, bool, Optional[str], int]]:
    rows = [(n, d, None, 0) for n in size["curve"] for d in (True, False)]
    largest = size["curve"][-1]
    rows += [(largest, d, None, s) for s in size["seeds"][1:] for d in (True, False)]
    for variant in size["variants"]:
        rows += [(largest, True, variant, 0)]
        if variant == "old-defaults":
            rows += [(largest, False, variant, 0)]
    return rows


def _mean_std(values: List[float]) -> str:
    if not values:
        return "n/a"
    return f"{np.mean(values):.2f}" + (f" ± {np.std(values, ddof=1):.2f}" if len(values) > 1 else "")


def part_report(args, size) -> str:
    rows = []
    for n, d, v, s in planned_rows(size):
        path = args.work_dir / "runs" / "distillnerf" / "distillnerf" / model_name(n, d, v, s) / "heldout_metrics.json"
        if path.exists():
            rows.append(json.loads(path.read_text()))
    base = json.loads((args.work_dir / "baselines.json").read_text()) if (args.work_dir / "baselines.json").exists() else {"frames": {}}
    frames = base["frames"].values()

    def mean(key):
        vals = [f[key] for f in frames if key in f]
        return float(np.mean(vals)) if vals else None

    single = [f[k] for f in frames for k in ("single_frame_prev_psnr", "single_frame_next_psnr") if k in f]
    train, held = scene_lists(size)
    data = {
        "command": f"python benchmarks/distillnerf_generalization.py all --size {args.size} --scene-seed {args.scene_seed}",
        "date": now_utc(), "hardware": hardware(), "size": args.size, "scene_seed": args.scene_seed,
        "train_scene_list": train, "heldout_scene_list": held, "heldout_frames": sorted(base["frames"]),
        "settings": {"width": WIDTH, "height": HEIGHT, "num_steps": size["num_steps"], "teacher_steps": TEACHER_STEPS,
                     "train_steps": args.train_steps or size["train_steps"], "threads": args.threads},
        "rows": [{k: r[k] for k in ("train_scenes", "distill", "variant", "seed", "recon_psnr", "prev_psnr", "next_psnr",
                                    "abs_rel_median", "far_leak")} | {
                     "recon_ssim": r["metrics"].get("recon_ssim"), "prev_ssim": r["metrics"].get("prev_ssim"),
                     "next_ssim": r["metrics"].get("next_ssim"), "abs_rel_mean": r["metrics"]["novel_abs_rel_mean"],
                     "delta_1_25": r["metrics"]["delta_1_25"], "forward_render_seconds": r["metrics"]["forward_render_seconds"],
                     "train_seconds": r["train_seconds"],
                     "far_leak_transmittance_share": r["metrics"]["far_leak_transmittance_share"],
                     "recon_accumulation_on_grid": r["metrics"]["recon_accumulation_on_grid"],
                     "recon_accumulation_off_grid": r["metrics"]["recon_accumulation_off_grid"]} for r in rows],
        "teacher_recon_psnr": mean("teacher_psnr"),
        "single_frame_novel_psnr": float(np.mean(single)) if single else None,
        "single_frame_frames": sorted(k for k, f in base["frames"].items() if "single_frame_prev_psnr" in f),
        "downsample_recon_psnr": mean("downsample_psnr"),
    }
    # one file per scene seed; "size" inside says which size wrote it (the full size replaces the small one)
    stem = "distillnerf_generalization"
    if args.scene_seed:
        stem += f"_sceneseed{args.scene_seed}"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{stem}.json").write_text(json.dumps(data, indent=1) + "\n")

    def f(v, d=2):
        return "n/a" if v is None else f"{v:.{d}f}"

    lines = [f"# DistillNeRF generalization ({args.size}, scene seed {args.scene_seed})", "",
             f"Command: `{data['command']}` (parts: see the script's docstring). Date: {data['date']}. Hardware: {data['hardware']}.",
             f"Train scenes: {', '.join(train)} (the curve uses the first N); held-out: {', '.join(held)}; "
             f"frames: {', '.join(data['heldout_frames'])}. Settings: {json.dumps(data['settings'])}.", "",
             "| train scenes | distill | variant | seed | recon PSNR | prev PSNR | next PSNR | AbsRel median | AbsRel mean | δ<1.25 | far leak | leak acc<0.5 | acc on/off grid | train s | forward+render s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        lines.append(f"| {r['train_scenes']} | {r['distill']} | {r['variant'] or '-'} | {r['seed']} | {f(r['recon_psnr'])} | "
                     f"{f(r['prev_psnr'])} | {f(r['next_psnr'])} | {f(r['abs_rel_median'], 3)} | {f(r['abs_rel_mean'], 3)} | "
                     f"{f(r['delta_1_25'], 3)} | {100 * r['far_leak']:.1f}% | {100 * r['far_leak_transmittance_share']:.0f}% | "
                     f"{r['recon_accumulation_on_grid']:.2f}/{r['recon_accumulation_off_grid']:.2f} | {r['train_seconds']:.0f} | {r['forward_render_seconds']:.3f} |")
    lines += ["", f"Per-scene teacher (all steps) recon PSNR on the same frames: {f(data['teacher_recon_psnr'])}; "
              f"single-frame teacher at prev/next: {f(data['single_frame_novel_psnr'])} "
              f"(frames {', '.join(data['single_frame_frames']) or 'none'}); downsample-upsample (1/4) recon: "
              f"{f(data['downsample_recon_psnr'])}.", "",
              "Novel-view depth: cells of the prev/next renders fully covered by ground truth within 80 m and not sky; "
              "far leak = share of them rendered beyond 100 m; leak acc<0.5 = share of the far-leak cells whose "
              "accumulation is below 0.5 (light let through, not a far surface); acc on/off grid = mean accumulation "
              "of the input cameras rendered on the lifting grid / half a cell off it."]
    largest = size["curve"][-1]
    for d in (True, False):
        sel = [r for r in data["rows"] if r["train_scenes"] == largest and r["distill"] == d and r["variant"] is None]
        lines.append(f"- {largest} scenes, distill={d}: novel PSNR {_mean_std([(r['prev_psnr'] + r['next_psnr']) / 2 for r in sel])} "
                     f"over {len(sel)} seed(s)")
    md = "\n".join(lines) + "\n"
    (args.results_dir / f"{stem}.md").write_text(md)
    _plot(data, args.results_dir / f"{stem}.png")
    return md


def _plot(data, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for d, style in ((True, "o-"), (False, "s--")):
        sel = sorted((r for r in data["rows"] if r["distill"] == d and r["variant"] is None and r["seed"] == 0),
                     key=lambda r: r["train_scenes"])
        if not sel:
            continue
        xs = [r["train_scenes"] for r in sel]
        label = "distill" if d else "no distill"
        axes[0].plot(xs, [r["recon_psnr"] for r in sel], style, label=label)
        axes[1].plot(xs, [(r["prev_psnr"] + r["next_psnr"]) / 2 for r in sel], style, label=label)
        axes[2].plot(xs, [100 * r["far_leak"] for r in sel], style, label=label)
    for ax, key, title in ((axes[0], "teacher_recon_psnr", "held-out recon PSNR"),
                           (axes[1], "single_frame_novel_psnr", "held-out prev/next PSNR"), (axes[2], None, "far leak (%)")):
        if key and data.get(key) is not None:
            ax.axhline(data[key], color="grey", ls=":", label=key.replace("_", " "))
        if key == "teacher_recon_psnr" and data.get("downsample_recon_psnr") is not None:
            ax.axhline(data["downsample_recon_psnr"], color="black", ls="-.", label="downsample recon")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training scenes")
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("data", "teachers", "baselines", "model", "models", "report", "all"))
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--scene-seed", type=int, default=0, help="another set of generated scenes")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="cache folder (default /tmp/nerfconvert-bench-distillnerf-gen-<size>-s<scene seed>)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--only", nargs="*", default=[], help="teachers: only these scenes")
    parser.add_argument("--train-scenes", type=int, default=None, help="model: the first N training scenes")
    parser.add_argument("--distill", type=int, choices=(0, 1), default=1)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-steps", type=int, default=None, help="override the size's model steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-single-frame", action="store_true", help="baselines: no single-frame teachers")
    parser.add_argument("--single-frame-per-scene", type=int, default=99,
                        help="baselines: single-frame teachers on at most this many frames per held-out scene")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    args.work_dir = args.work_dir or Path(f"/tmp/nerfconvert-bench-distillnerf-gen-{args.size}-s{args.scene_seed}")
    if not torch.cuda.is_available():
        torch.set_num_threads(args.threads)
    if args.part in ("data", "all"):
        part_data(args, size)
    if args.part in ("teachers", "all"):
        print(json.dumps(part_teachers(args, size)))
    if args.part in ("baselines", "all"):
        part_baselines(args, size)
    if args.part == "model":
        part_model(args, size, args.train_scenes or size["num_train"], bool(args.distill), args.variant, args.seed)
    if args.part in ("models", "all"):
        for n, d, v, s in planned_rows(size):
            part_model(args, size, n, d, v, s)
    if args.part in ("report", "all"):
        print(part_report(args, size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
