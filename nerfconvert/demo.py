"""``nerfconvert demo``: the main job, on the embedded capture-like scene, in minutes on a CPU.

1. a seeded capture-like 360 scene, written as ``ns-process-data`` writes a phone capture
   (OPENCV lens distortion, per-frame intrinsics and exposure, a ground and sky past the box);
2. a teacher trained on it with the real ``ns-train`` (nerfstudio-data parser, default flags);
3. ``nerfconvert convert``: the teacher distilled into another architecture (pvd-al, data-free),
   then compressed into one ``.ncz`` (vq- or entropy-compression, fine-tuned on the images);
4. one picture, ground truth | teacher | student | compressed on the teacher's eval views, each
   labelled with its size and PSNR, and the table of sizes, PSNR/SSIM and times.

Every step is a normal nerfstudio run that ``ns-viewer``, ``ns-eval`` and ``ns-export`` open.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from nerfconvert import NerfconvertError


def ns_command(name: str) -> List[str]:
    """Run a nerfstudio console script with this interpreter (works without an activated venv)."""
    modules = {"ns-train": "nerfstudio.scripts.train", "ns-eval": "nerfstudio.scripts.eval"}
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", f"from {modules[name]} import entrypoint; entrypoint()"]


def train_run(
    method: str,
    data: Path,
    output_dir: Path,
    timestamp: str,
    max_num_iterations: Optional[int] = None,
    dataparser: Sequence[str] = ("blender-data",),
    extra: Sequence[str] = (),
) -> Path:
    """Train ``method`` on ``data`` with stock ``ns-train``; returns the run's config.yml."""
    cmd = ns_command("ns-train") + [
        method,
        "--output-dir",
        str(output_dir),
        "--experiment-name",
        data.name,
        "--timestamp",
        timestamp,
        "--vis",
        "tensorboard",
        "--machine.device-type",
        "cuda" if torch.cuda.is_available() else "cpu",
        *extra,
    ]
    if max_num_iterations is not None:
        cmd += ["--max-num-iterations", str(max_num_iterations)]
    cmd += [*dataparser, "--data", str(data)]
    from nerfstudio.utils.rich_utils import CONSOLE

    CONSOLE.print(f"[bold]$ {' '.join(cmd)}")
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise NerfconvertError(f"ns-train {method} failed (exit code {result.returncode}); see its output above.")
    config = output_dir / data.name / method / timestamp / "config.yml"
    if not config.exists():
        raise NerfconvertError(f"ns-train finished but wrote no {config}.")
    return config


def _label(tile: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """A tile with a caption band above it (PIL's default font)."""
    from PIL import Image, ImageDraw

    h, w = tile.shape[:2]
    band = 14 * len(lines) + 4
    canvas = Image.new("RGB", (w, h + band), (255, 255, 255))
    canvas.paste(Image.fromarray(tile), (0, band))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((3, 2 + 14 * i), line, fill=(0, 0, 0))
    return np.asarray(canvas)


def write_picture(path: Path, teacher: Path, columns: List[Dict], views: Sequence[int], scale: int = 3) -> Path:
    """Ground truth | one column per run, for the teacher's eval ``views``; each column captioned.

    ``columns``: dicts with ``run`` (config.yml), ``title`` and ``caption`` (one line)."""
    from PIL import Image

    from nerfconvert.convert import _load_pipeline, _rgb

    rows: List[List[np.ndarray]] = [[] for _ in views]
    with torch.no_grad():
        pipeline = _load_pipeline(teacher, "cpu")
        dataset = pipeline.datamanager.eval_dataset
        cameras = dataset.cameras
        for r, i in enumerate(views):
            rows[r].append(dataset[i]["image"][..., :3].float().numpy())
        del pipeline
        for column in columns:
            pipeline = _load_pipeline(column["run"], "cpu")
            for r, i in enumerate(views):
                rgb = _rgb(pipeline.model.get_outputs_for_camera(cameras[i : i + 1]))
                rows[r].append(rgb.clamp(0, 1).cpu().float().numpy())
            del pipeline

    def big(img: np.ndarray) -> np.ndarray:
        u8 = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        return np.asarray(Image.fromarray(u8).resize((u8.shape[1] * scale, u8.shape[0] * scale), Image.NEAREST))

    titles = [("ground truth", "the eval view")] + [(c["title"], c["caption"]) for c in columns]
    grid = []
    for r, row in enumerate(rows):
        tiles = [big(t) for t in row]
        if r == 0:  # captions over the first row only
            tiles = [_label(t, title) for t, title in zip(tiles, titles)]
        pad = [np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles]
        grid.append(np.concatenate(pad, axis=1))
    picture = np.concatenate(grid, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(picture).save(tmp)
    tmp.replace(path)
    return path


def run_demo(
    output_dir: Path,
    seed: int = 0,
    width: int = 64,
    height: int = 48,
    num_frames: int = 40,
    teacher_method: str = "tensorf-unbounded",
    teacher_steps: int = 250,
    to: str = "nerfacto",
    compress: str = "vq",
    steps: int = 120,
    compress_steps: int = 100,
    num_rays_per_batch: int = 512,
    views: int = 2,
    teacher_rays_per_batch: int = 1024,
) -> Path:
    """The whole story on the embedded scene; returns the picture's path."""
    from nerfstudio.utils.rich_utils import CONSOLE

    from nerfconvert.convert import _mb, run_convert, summary_table
    from nerfconvert.scenes import generate_capture_scene

    start = time.perf_counter()
    output_dir = Path(output_dir)
    scene = output_dir / f"capture360-seed{seed}-{width}x{height}"
    CONSOLE.rule("1. a capture-like scene (ns-process-data layout, OPENCV lens, exposure changes, background)")
    if not (scene / "transforms.json").exists():
        generate_capture_scene(scene, kind="360", seed=seed, width=width, height=height, num_frames=num_frames)
    CONSOLE.print(f"{scene}")

    CONSOLE.rule(f"2. the teacher: ns-train {teacher_method}, {teacher_steps} steps")
    stamp = time.strftime("%Y-%m-%d_%H%M%S")
    t0 = time.perf_counter()
    teacher = train_run(
        teacher_method, scene, output_dir / "runs", f"demo-{stamp}", teacher_steps,
        dataparser=("nerfstudio-data", "--downscale-factor", "1"),
        extra=("--pipeline.datamanager.train-num-rays-per-batch", str(teacher_rays_per_batch),
               "--steps-per-eval-batch", "1000000", "--steps-per-eval-image", "1000000",
               "--steps-per-eval-all-images", "1000000"),
    )
    teacher_seconds = time.perf_counter() - t0

    device = "cuda" if torch.cuda.is_available() else "cpu"

    def configure(method: str, config) -> None:
        if method == "vq-compression":
            # importance from a sample of the training rays: the full pass is most of a CPU minute here
            config.pipeline.model.importance_max_rays = 1 << 13

    CONSOLE.rule(f"3. nerfconvert convert --to {to}: the teacher in another architecture (pvd-al, data-free)")
    converted = run_convert(teacher, to=to, steps=steps, output_dir=output_dir / "runs", device=device,
                            num_rays_per_batch=num_rays_per_batch, eval_views=4, timestamp=f"demo-{stamp}")
    CONSOLE.rule(f"4. nerfconvert convert --compress {compress}: the teacher in one small file")
    compressed = run_convert(teacher, compress=compress, data=scene, compress_steps=compress_steps,
                             output_dir=output_dir / "runs", device=device, num_rays_per_batch=teacher_rays_per_batch,
                             eval_views=4, timestamp=f"demo-{stamp}", configure=configure)
    rows = {row.role: row for row in converted.rows}
    rows["compressed"] = next(row for row in compressed.rows if row.role == "compressed")
    rows["teacher"].seconds = teacher_seconds

    CONSOLE.rule("5. the picture")

    def caption(role: str) -> str:
        row = rows[role]
        psnr = f"{row.psnr_vs_gt:.1f} dB" if row.psnr_vs_gt is not None else "-"
        return f"{_mb(row.size_bytes)}, {psnr}"

    columns = [
        {"run": teacher, "title": f"teacher ({rows['teacher'].method})", "caption": caption("teacher")},
        {"run": converted.student, "title": f"converted ({rows['student'].method})", "caption": caption("student")},
        {"run": compressed.compressed, "title": f"compressed ({rows['compressed'].method})", "caption": caption("compressed")},
    ]
    picture = write_picture(output_dir / "demo_result.png", teacher, columns, converted.eval_views[:views])
    table_rows = [rows["teacher"], rows["student"], rows["compressed"]]
    CONSOLE.print(summary_table(table_rows, title="nerfconvert demo: size, fidelity to the teacher, accuracy, time"))
    total = time.perf_counter() - start
    _write_summary(output_dir / "demo_summary.json", table_rows, converted.eval_views, total)
    CONSOLE.print(f"Picture (ground truth | teacher | converted | compressed; size, PSNR against ground truth): {picture}")
    for row in table_rows:
        CONSOLE.print(f"  ns-viewer --load-config {row.run}")
    CONSOLE.print(f"Total: {total:.0f} s")
    return picture


def _write_summary(path: Path, rows, views: Sequence[int], seconds: float) -> None:
    import json
    import os

    payload = {"rows": [row.to_json() for row in rows], "eval_views": list(views), "seconds": seconds}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
