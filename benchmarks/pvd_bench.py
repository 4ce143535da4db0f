"""pvd-al benchmark: teacher -> student conversions on a generated scene, against the same
students trained from scratch on the real images for the same time, and the ablations of
PVD-AL Table 6.

    python benchmarks/pvd_bench.py                  # quick: 40x40 generated scene (100 views), CPU
    python benchmarks/pvd_bench.py --mode matrix    # hash, VM and voxel teachers x all four students (about 45 min on CPU)
    python benchmarks/pvd_bench.py --mode real      # ../shared/data/lego (hours on CPU)
    python benchmarks/pvd_bench.py --mode quick --teachers-only          # trains / caches the quick teacher
    python benchmarks/pvd_bench.py --one std                              # one hash -> VM distillation on it
    python benchmarks/pvd_bench.py --one raw --changes '{"loss.standardise_projected_features": false}'

Everything runs through nerfstudio's real trainer (``nerfstudio.scripts.train.main``):

1. teachers of the chosen families are trained on the scene's training images;
2. each teacher is distilled into each student (data-free: pseudo cameras, teacher targets);
3. each student is also trained from scratch on the real images for the same CPU time as its
   distillation took (process CPU time, so that other jobs on a shared machine do not skew it;
   wall time is reported too);
4. the hash -> VM conversion is repeated with each component switched off (Table 6).

Students are scored like ``ns-eval`` (PSNR / SSIM, LPIPS when its weights are available)
against the ground-truth test views, and by PSNR against their teacher's renders.
Writes benchmarks/results/pvd_<mode>.md, .json and .png. ``--one NAME``: a single hash -> VM
distillation at the quick scale on its cached teacher, with ``--changes`` to the pvd-al pipeline
config; prints test PSNR, PSNR against the teacher and CPU time (nothing is written to the results).
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from common import LEGO, RESULTS, benchmark_parser, hardware, short_run_config, work_dir_for, write_report
FAMILY = {"nerfacto": "hash", "tensorf": "VM", "vanilla-nerf": "MLP", "plenoxels": "voxel"}


@dataclass
class Scale:
    """How big a benchmark run is."""

    resolution: int = 64
    num_train: int = 40
    num_test: int = 6
    teacher_steps: Dict[str, int] = field(default_factory=lambda: {"nerfacto": 1500, "tensorf": 1500, "vanilla-nerf": 1500, "plenoxels": 800})
    teacher_rays: int = 1024
    distill_steps: int = 600
    distill_rays: int = 1024
    scratch_rays: Optional[int] = None
    """Rays per step of the from-scratch runs (None: ``teacher_rays``)."""
    teacher_cache_batches: int = 1
    """PVDPipelineConfig.teacher_cache_batches: batches the teacher labels at once."""
    teacher_reuse: int = 1
    """PVDPipelineConfig.teacher_reuse: steps each teacher-labelled ray is used in."""
    stage_fractions: Tuple[float, float] = (0.15, 0.4)
    """Stage 2 and 3 start at these fractions of the steps (PVD: 3k and 8k of 20k)."""
    ablation_steps: int = 300
    teachers: Tuple[str, ...] = ("nerfacto",)
    students: Tuple[str, ...] = ("nerfacto", "tensorf", "vanilla-nerf", "plenoxels")
    ablations: bool = True
    data: Optional[Path] = None
    ablation_names: Optional[Tuple[str, ...]] = None
    """Which Table 6 variants to run (None: all ten)."""
    model_overrides: Dict[str, Dict] = field(default_factory=dict)
    """Per method: model-config fields changed for teachers, from-scratch runs and students."""
    matrix_variants: Tuple[Tuple[str, str, Dict], ...] = ()
    """Extra matrix rows (student, label, PVDPipelineConfig changes), full length, against the same
    from-scratch twin (e.g. an ablation that helps at the short budget, run at full length)."""


LIGHT_NERFACTO = {
    "num_proposal_samples_per_ray": (32, 16), "num_nerf_samples_per_ray": 16, "num_levels": 8,
    "log2_hashmap_size": 14, "max_res": 128, "hidden_dim": 32, "hidden_dim_color": 32,
    # the generated object scenes: cameras at radius 4 around an object inside the unit box, white background
    "near_plane": 2.0, "far_plane": 6.0, "disable_scene_contraction": True, "background_color": "white",
    "proposal_initial_sampler": "uniform",
}
"""A lighter nerfacto for CPU runs on small generated object scenes (fewer samples per ray, smaller
tables and MLPs, the scene's near/far bounds and no contraction: the defaults are for unbounded captures;
uniform initial samples: the piecewise sampler spends them in disparity, for unbounded scenes; finest
grid 128 cells over the 3-unit box: a 40 px view of it has ~0.07 units per pixel)."""

CORE_ABLATIONS = ("w/all", "w/o L_v", "w/o sigma clamp", "w/o block-wise", "w/o poses^AL", "w/o rays^AL", "w/o points^AL")

MODES = {
    # sized for two shared CPU cores: one hash teacher, the VM and voxel students, core ablations
    # 100 training views like the Blender scenes (with 24, every model overfits and scores ~20 dB on test views);
    # distillation: many cheap steps (256 rays, the teacher labels 8 batches at once, each ray used twice)
    "quick": Scale(resolution=40, num_train=100, num_test=4, teacher_steps={"nerfacto": 1500, "tensorf": 1500, "vanilla-nerf": 1500, "plenoxels": 1500},
                   teacher_rays=1024, distill_steps=320, distill_rays=256, scratch_rays=256, teacher_cache_batches=8, teacher_reuse=2,
                   ablation_steps=120, students=("tensorf", "plenoxels", "nerfacto", "vanilla-nerf"),
                   ablation_names=CORE_ABLATIONS + ("w/o teacher cache",), model_overrides={"nerfacto": LIGHT_NERFACTO}),
    # the teacher -> student matrix at the quick scale (no ablations; about 45 min on one CPU core).
    # The MLP is a student here, not a teacher: vanilla-nerf trains at about 17 s per 1024-ray step on
    # this CPU (1500 steps: 7 h); the real and full modes have all four teachers.
    "matrix": Scale(resolution=40, num_train=100, num_test=4, teacher_steps={"nerfacto": 1500, "tensorf": 1500, "vanilla-nerf": 1500, "plenoxels": 1500},
                    teacher_rays=1024, distill_steps=320, distill_rays=256, scratch_rays=256, teacher_cache_batches=8, teacher_reuse=2,
                    teachers=("nerfacto", "tensorf", "plenoxels"), students=("tensorf", "plenoxels", "nerfacto", "vanilla-nerf"),
                    ablations=False, model_overrides={"nerfacto": LIGHT_NERFACTO}),
    "smoke": Scale(resolution=32, num_train=8, num_test=2, teacher_steps={k: 30 for k in FAMILY}, distill_steps=12,
                   ablation_steps=8, teacher_rays=256, distill_rays=256, students=("tensorf", "plenoxels"),
                   model_overrides={"nerfacto": LIGHT_NERFACTO}),
    "real": Scale(data=LEGO, teacher_steps={k: 30000 for k in FAMILY},
                  teacher_rays=4096, distill_steps=20000, distill_rays=4096, ablation_steps=20000,
                  teachers=("nerfacto", "tensorf", "vanilla-nerf", "plenoxels")),
    "full": Scale(data=LEGO, teacher_steps={k: 30000 for k in FAMILY},
                  teacher_rays=4096, distill_steps=20000, distill_rays=4096, ablation_steps=20000,
                  teachers=("nerfacto", "tensorf", "vanilla-nerf", "plenoxels")),
}


# ---- trainers that measure themselves -----------------------------------------------------------


def _timed(base):
    """A trainer class that records per-step CPU and wall time (and the PVD stage), and stops
    once ``cpu_budget_s`` of process CPU time has gone into training steps."""

    class Timed(base):
        cpu_budget_s: Optional[float] = None
        log: List[Tuple[int, float, float]] = []

        def train_iteration(self, step):
            c0, w0 = time.process_time(), time.perf_counter()
            out = super().train_iteration(step)
            stage = self.pipeline.stage(step) if hasattr(self.pipeline, "stage") else 0
            type(self).log.append((stage, time.process_time() - c0, time.perf_counter() - w0))
            budget = type(self).cpu_budget_s
            if budget is not None and sum(x[1] for x in type(self).log) >= budget:
                self.stop_training = True
            return out

    Timed.__name__ = f"Timed{base.__name__}"
    return Timed


def run_training(config, cpu_budget_s: Optional[float] = None) -> Dict:
    from nerfstudio.scripts import train

    original = config._target
    trainer_cls = _timed(original)
    trainer_cls.cpu_budget_s = cpu_budget_s
    trainer_cls.log = []
    config._target = trainer_cls
    w0 = time.perf_counter()
    try:
        train.main(config)
    finally:
        config._target = original
        config.save_config()  # the saved config names the stock trainer, so the run reopens anywhere
    log = trainer_cls.log
    return {
        "steps": len(log),
        "cpu_s": sum(x[1] for x in log),
        "wall_s": sum(x[2] for x in log),
        "total_wall_s": time.perf_counter() - w0,
        "stage_step_s": {
            str(s): {"wall": sum(x[2] for x in log if x[0] == s) / max(1, sum(1 for x in log if x[0] == s)),
                     "cpu": sum(x[1] for x in log if x[0] == s) / max(1, sum(1 for x in log if x[0] == s)),
                     "steps": sum(1 for x in log if x[0] == s)}
            for s in sorted({x[0] for x in log})
        },
    }


# ---- configs ------------------------------------------------------------------------------------


def apply_overrides(model_config, overrides: Dict) -> None:
    for key, value in overrides.items():
        setattr(model_config, key, value)


def method_config(method: str, data: Path, out: Path, steps: int, rays: int, name: str, overrides: Optional[Dict] = None):
    config = short_run_config(method, out, steps, data=data, rays=rays, experiment="bench", timestamp=name, save=False,
                              fit_schedules=True)
    config.logging.local_writer.enable = True  # the stock config's local writer, as these runs always had
    if hasattr(config.pipeline.model, "implementation"):
        config.pipeline.model.implementation = "torch" if not torch.cuda.is_available() else "tcnn"
    if method in ("nerfacto", "tensorf") and hasattr(config.pipeline.model, "camera_optimizer"):
        from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig

        config.pipeline.model.camera_optimizer = CameraOptimizerConfig(mode="off")  # exact synthetic poses
    config.pipeline.model.eval_num_rays_per_chunk = 4096
    apply_overrides(config.pipeline.model, overrides or {})
    return config


def pvd_config(teacher: Path, student: str, out: Path, steps: int, scale: Scale, name: str, **changes):
    from nerfconvert.distill.method import make_pvd_config

    s2, s3 = int(scale.stage_fractions[0] * steps), int(scale.stage_fractions[1] * steps)
    config = make_pvd_config(teacher, student, out, max_num_iterations=steps, stage_steps=(s2, s3), num_rays=scale.distill_rays)
    config.experiment_name, config.timestamp = "bench", name
    config.pipeline.teacher_cache_batches = scale.teacher_cache_batches
    config.pipeline.teacher_reuse = scale.teacher_reuse
    dm = config.pipeline.datamanager
    dm.steps_per_epoch = max(10, steps // 20)
    if hasattr(config.pipeline.model, "implementation"):
        config.pipeline.model.implementation = "torch" if not torch.cuda.is_available() else "tcnn"
    config.pipeline.model.eval_num_rays_per_chunk = 4096
    apply_overrides(config.pipeline.model, scale.model_overrides.get(student, {}))
    for key, value in changes.items():
        target = config.pipeline
        *path, last = key.split(".")
        for p in path:
            target = getattr(target, p)
        setattr(target, last, value)
    return config


# ---- scoring ------------------------------------------------------------------------------------


@torch.no_grad()
def score(run_config: Path, teacher_config: Optional[Path] = None) -> Dict:
    """ns-eval's metrics on the test views, and PSNR against the teacher's renders."""
    from nerfconvert.views import load_run

    pipeline, _ = load_run(run_config, device="cpu", test_mode="test")
    metrics = pipeline.get_average_eval_image_metrics()
    out = {k: float(v) for k, v in metrics.items() if k in ("psnr", "ssim", "lpips")}
    for k in ("ssim", "lpips"):  # vanilla-nerf reports the fine network's as fine_ssim / fine_lpips
        if k not in out and f"fine_{k}" in metrics:
            out[k] = float(metrics[f"fine_{k}"])
    if teacher_config is not None:
        teacher, _ = load_run(teacher_config, device="cpu", test_mode="test")
        cams = pipeline.datamanager.eval_dataset.cameras
        values = []
        rgb = lambda outputs: outputs["rgb"] if "rgb" in outputs else outputs["rgb_fine"]  # noqa: E731 (vanilla-nerf: coarse/fine)
        for i in range(cams.shape[0]):
            cam = cams[i : i + 1]
            s = rgb(pipeline.model.get_outputs_for_camera(cam))
            t = rgb(teacher.model.get_outputs_for_camera(cam))
            values.append(float(-10 * torch.log10(torch.mean((s - t) ** 2).clamp_min(1e-10))))
        out["psnr_vs_teacher"] = sum(values) / len(values)
    return out


def student_run(out: Path, student: str, name: str) -> Path:
    return out / "bench" / student / name / "config.yml"


# ---- the benchmark ------------------------------------------------------------------------------


def run(
    mode: str = "quick",
    work_dir: Optional[Path] = None,
    results_dir: Path = RESULTS,
    reuse_teachers: bool = False,
    skip_ablations: bool = False,
    teachers_only: bool = False,
    students: Optional[Tuple[str, ...]] = None,
    skip_matrix: bool = False,
    variants_only: bool = False,
) -> Dict:
    """``reuse_teachers``: teachers already trained in ``work_dir`` are scored, not retrained.
    ``skip_ablations``: keep the ablation rows of the previous results file (marked as such)."""
    from nerfconvert.scenes import generate_object_scene

    scale = copy.deepcopy(MODES[mode])
    if students:
        scale.students = tuple(students)
    work = Path(work_dir or work_dir_for(f"pvd-{mode}"))
    work.mkdir(parents=True, exist_ok=True)
    out = work / "outputs"
    t_start = time.perf_counter()
    if scale.data is not None:
        data = scale.data
    else:
        # one folder per scene size: cached teachers (in ``out``) belong to their scene
        tag = f"{scale.resolution}px-{scale.num_train}x{scale.num_test}"
        data, out = work / f"scene-{tag}", work / f"outputs-{tag}"
        if not (data / "transforms_train.json").exists():
            generate_object_scene(data, seed=0, resolution=scale.resolution, num_train=scale.num_train, num_val=2, num_test=scale.num_test, overwrite=True)
    results: Dict = {"mode": mode, "teachers": {}, "matrix": {}, "scratch": {}, "scratch_for": {}, "ablations": {}}
    prev_path = Path(results_dir) / f"pvd_{mode}.json"

    def log(msg):
        print(f"[pvd-bench {time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    command = f"python benchmarks/pvd_bench.py --mode {mode}" + (" --reuse-teachers" if reuse_teachers else "") + (" --skip-ablations" if skip_ablations else "") + (
        f" --threads {torch.get_num_threads()}" if torch.get_num_threads() == 1 else "") + (
        f" --students {' '.join(students)}" if students else "") + (" --skip-matrix" if skip_matrix else "") + (
        " --variants-only" if variants_only else "")
    cpu_start = time.process_time()

    def save(final: bool = False) -> None:
        """Write the tables so far (a run cut short still leaves what it measured)."""
        results["total_wall_s"] = time.perf_counter() - t_start
        results["total_cpu_s"] = time.process_time() - cpu_start
        results["complete"] = final
        results["hardware"] = hardware()
        results["load_average"] = os.getloadavg()
        results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        results["command"] = command
        write_results(results, scale, results_dir)

    # 1. teachers
    teacher_cfgs = {}
    for t in scale.teachers:
        # the run's name carries its size, so a cached teacher is only reused for the same settings
        name = f"teacher-{t}-{scale.teacher_steps[t]}x{scale.teacher_rays}"
        cfg = method_config(t, data, out, scale.teacher_steps[t], scale.teacher_rays, name, scale.model_overrides.get(t))
        timing_file = cfg.get_base_dir() / "bench_timing.json"
        if reuse_teachers and (cfg.get_base_dir() / "config.yml").exists() and timing_file.exists():
            timing = {**json.loads(timing_file.read_text()), "reused": True}
        else:
            timing = run_training(cfg)
            timing_file.write_text(json.dumps(timing))
        teacher_cfgs[t] = cfg.get_base_dir() / "config.yml"
        results["teachers"][t] = {**timing, **score(teacher_cfgs[t])}
        log(f"teacher {t}: {results['teachers'][t]['psnr']:.2f} dB in {timing['wall_s']:.0f}s")
    if teachers_only:
        return results

    # 2. distillation matrix, 3. from scratch for the same CPU time
    for t in scale.teachers:
        rows = [] if variants_only else [(s, "", {}) for s in scale.students]
        rows += [v for v in scale.matrix_variants if v[0] in scale.students]
        for s, label, changes in (() if skip_matrix else rows):
            name = f"{t}-to-{s}" + (f" ({label})" if label else "")
            run_name = name.replace(" (", "-").replace(")", "").replace("/", "").replace(" ", "-")
            timing = run_training(pvd_config(teacher_cfgs[t], s, out, scale.distill_steps, scale, run_name, **changes))
            results["matrix"][name] = {"teacher": t, "student": s, "label": label, **timing, **score(student_run(out, s, run_name), teacher_cfgs[t])}
            log(f"distil {name}: {results['matrix'][name]['psnr']:.2f} dB ({results['matrix'][name]['psnr_vs_teacher']:.2f} vs teacher) in {timing['wall_s']:.0f}s")
            save()
            sk = s + (f" ({label})" if label else "")  # a variant row gets its own equal-CPU twin
            twin = results["scratch"].get(sk)
            # every row gets a twin within 10% of its own CPU budget (rows of several teachers differ)
            if twin is not None and abs(twin["budget_cpu_s"] - timing["cpu_s"]) <= 0.1 * timing["cpu_s"]:
                results["scratch_for"][name] = twin
            else:
                sname = f"scratch-{s}" + (f"-{run_name.split('-to-')[1]}" if label else "")
                cfg = method_config(s, data, out, 10**6, scale.scratch_rays or scale.teacher_rays, sname, scale.model_overrides.get(s))
                for group in cfg.optimizers.values():  # schedules sized for the teacher-length run
                    sched = group.get("scheduler")
                    if sched is not None and hasattr(sched, "max_steps"):
                        sched.max_steps = scale.teacher_steps.get(s, 1000)
                cfg.timestamp = f"{sname}-{t}"
                st = run_training(cfg, cpu_budget_s=timing["cpu_s"])
                results["scratch"][sk] = {"budget_cpu_s": timing["cpu_s"], "for": name, **st, **score(cfg.get_base_dir() / "config.yml")}
                results["scratch_for"][name] = results["scratch"][sk]
                log(f"scratch {sk}: {results['scratch'][sk]['psnr']:.2f} dB in {st['cpu_s']:.0f}s CPU")
                save()

    # 4. ablations (Table 6) on hash -> VM
    if skip_ablations:
        if prev_path.exists():
            previous = json.loads(prev_path.read_text())
            results["ablations"] = previous.get("ablations", {})
            if results["ablations"]:
                results["ablations_note"] = previous.get("ablations_note") or f"ablation rows from the earlier run of {previous.get('date')}"
    elif scale.ablations and "nerfacto" in teacher_cfgs:
        variants = {
            "w/all": {},
            "w/o L_v": {"loss.volume_weight": 0.0},
            "w/o L_sigma": {"loss.density_weight": 0.0},
            "w/o L_c": {"loss.colour_weight": 0.0},
            "w/o L_rgb": {"loss.rgb_weight": 0.0},
            "w/o sigma clamp": {"loss.density_clamp": None},
            "w/o block-wise": {"block_wise": False},
            "w/o poses^AL": {"active_learning.hard_poses": False},
            "w/o rays^AL": {"active_learning.hard_rays": False},
            "w/o points^AL": {"active_learning.hard_points": False},
            # not in Table 6: fresh teacher targets every step instead of 4 batches labelled at once, each ray used twice
            "w/o teacher cache": {"teacher_cache_batches": 1, "teacher_reuse": 1},
        }
        for label, changes in variants.items():
            if scale.ablation_names is not None and label not in scale.ablation_names:
                continue
            name = "abl-" + label.replace("/", "").replace(" ", "-").replace("^", "")
            cfg = pvd_config(teacher_cfgs["nerfacto"], "tensorf", out, scale.ablation_steps, scale, name, **changes)
            timing = run_training(cfg)
            results["ablations"][label] = {**timing, **score(student_run(out, "tensorf", name), teacher_cfgs["nerfacto"])}
            log(f"ablation {label}: {results['ablations'][label]['psnr']:.2f} dB")
            save()

    save(final=True)
    return results


def merge(paths: List[Path], mode: str, results_dir: Path) -> Dict:
    """Combine the results of benchmark parts run side by side (e.g. the matrix and the
    ablations in two processes): tables are joined, CPU times add up, wall time is the longest."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    results: Dict = {"mode": mode, "teachers": {}, "matrix": {}, "scratch": {}, "scratch_for": {}, "ablations": {}}
    for part in parts:
        for key in ("teachers", "matrix", "scratch", "scratch_for", "ablations"):
            results[key].update(part.get(key, {}))
    results["total_wall_s"] = max(p["total_wall_s"] for p in parts)
    results["total_cpu_s"] = sum(p.get("total_cpu_s", 0.0) for p in parts)
    results["complete"] = all(p.get("complete", False) for p in parts)
    results["load_average"] = parts[-1].get("load_average", ())
    results["hardware"] = parts[-1]["hardware"]
    results["date"] = max(p["date"] for p in parts)
    results["command"] = " & ".join(p["command"] for p in parts) + " (run side by side, then --merge)"
    results["parts"] = [str(p) for p in paths]
    write_results(results, MODES[mode], results_dir)
    return results


def scratch_twin(results: Dict, name: str) -> Dict:
    """The from-scratch run a matrix row is compared with (its own; results of older runs kept
    one twin per student)."""
    r = results["matrix"][name]
    return results.get("scratch_for", {}).get(name) or results["scratch"].get(r["student"] + (f" ({r['label']})" if r.get("label") else ""), {})


def equal_budget(row: Dict, twin: Dict) -> bool:
    """Whether a from-scratch twin had the row's CPU budget (within 10%): only then is the PSNR gap a comparison."""
    return bool(twin) and abs(twin.get("budget_cpu_s", float("inf")) - row["cpu_s"]) <= 0.1 * row["cpu_s"]


def conversion_grid(results: Dict):
    """(teachers, students, PSNR grid [teacher, student], NaN where not run) of the plain matrix rows
    (variant rows left out), in the order of ``FAMILY``."""
    import numpy as np

    rows = [r for r in results["matrix"].values() if not r.get("label")]
    teachers = [t for t in FAMILY if any(r["teacher"] == t for r in rows)]
    students = [s for s in FAMILY if any(r["student"] == s for r in rows)]
    grid = np.full((len(teachers), len(students)), np.nan)
    for r in rows:
        grid[teachers.index(r["teacher"]), students.index(r["student"])] = r["psnr"]
    return teachers, students, grid


def write_results(results: Dict, scale: Scale, results_dir: Path) -> None:
    import matplotlib.pyplot as plt

    mode = results["mode"]
    L = [f"# pvd-al benchmark ({mode})", "",
         f"Command: `{results['command']}`  ", f"Date: {results['date']}  ", f"Hardware: {results['hardware']}  ",
         f"Total wall time: {results['total_wall_s'] / 60:.1f} min (process CPU time {results.get('total_cpu_s', float('nan')) / 60:.1f} min; "
         f"load average at the end {', '.join(f'{x:.1f}' for x in results.get('load_average', ()))} on {os.cpu_count()} cores)"
         + ("" if results.get("complete", True) else " -- PARTIAL: the run had not finished when this was written"), "",
         f"Scene: {'generated object scene %dx%d, %d train / %d test views' % (scale.resolution, scale.resolution, scale.num_train, scale.num_test) if scale.data is None else scale.data}. "
         f"Distillation: {scale.distill_steps} steps x {scale.distill_rays} rays, stages at {scale.stage_fractions[0]:.0%} / {scale.stage_fractions[1]:.0%}; "
         f"teacher targets: {scale.teacher_cache_batches} batches labelled at once, each ray used {scale.teacher_reuse}x; "
         f"students from scratch get the same process CPU time on the real images ({scale.scratch_rays or scale.teacher_rays} rays/step).", "",
         "## Teachers", "", "| teacher | PSNR | SSIM | steps | wall s | CPU s |", "|---|---|---|---|---|---|"]
    for t, r in results["teachers"].items():
        reused = " (cached from an earlier run, not in the total)" if r.get("reused") else ""
        L.append(f"| {t} ({FAMILY[t]}) | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['steps']} | {r['wall_s']:.0f}{reused} | {r.get('cpu_s', float('nan')):.0f} |")
    L += ["", "## Teacher -> student (test views)", "",
          "| teacher -> student | PSNR | SSIM | PSNR vs teacher | distil wall s | CPU s | from scratch: PSNR | SSIM | steps | CPU s | distilled - scratch |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results["matrix"].items():
        sc = scratch_twin(results, name)
        delta = f"{r['psnr'] - sc['psnr']:+.2f}" if equal_budget(r, sc) else "n/a (unequal CPU)"
        label = f", {r['label']}" if r.get("label") else ""
        L.append(f"| {r['teacher']} -> {r['student']} ({FAMILY[r['teacher']]} -> {FAMILY[r['student']]}{label}) | {r['psnr']:.2f} | {r.get('ssim', float('nan')):.3f} | {r['psnr_vs_teacher']:.2f} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | "
                 f"{sc.get('psnr', float('nan')):.2f} | {sc.get('ssim', float('nan')):.3f} | {sc.get('steps', 0)} | {sc.get('budget_cpu_s', float('nan')):.0f} | {delta} |")
    if any("lpips" in r for r in results["matrix"].values()):
        L += ["", "LPIPS: " + ", ".join(f"{n} {r['lpips']:.3f}" for n, r in results["matrix"].items() if "lpips" in r)]
    else:
        L += ["", "LPIPS: not available offline (AlexNet weights missing)."]
    L += ["", "## Step time per stage (distillation, mean per step: process CPU s, wall s in brackets)", "",
          "| conversion | stage 1 | stage 2 | stage 3 |", "|---|---|---|---|"]
    for name, r in results["matrix"].items():
        st = r["stage_step_s"]
        cells = [f"{st[k]['cpu']:.3f} ({st[k]['wall']:.2f}; {st[k]['steps']} steps)" if k in st else "-" for k in ("1", "2", "3")]
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    if results["ablations"]:
        full = results["ablations"].get("w/all", {}).get("psnr", float("nan"))
        note = f" ({results['ablations_note']})" if results.get("ablations_note") else ""
        L += ["", f"## Ablations (PVD-AL Table 6), hash -> VM, {scale.ablation_steps} steps{note}", "",
              "| variant | PSNR | SSIM | PSNR vs teacher | delta vs w/all | CPU s | wall s |", "|---|---|---|---|---|---|---|"]
        for label, r in results["ablations"].items():
            L.append(f"| {label} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['psnr_vs_teacher']:.2f} | {r['psnr'] - full:+.2f} | {r.get('cpu_s', float('nan')):.0f} | {r['wall_s']:.0f} |")
    hash_vm = results["matrix"].get("nerfacto-to-tensorf")
    if hash_vm and "nerfacto" in results["teachers"]:
        gap = results["teachers"]["nerfacto"]["psnr"] - hash_vm["psnr"]
        sc = scratch_twin(results, "nerfacto-to-tensorf")
        L += ["", "## Acceptance", "",
              f"- VM student from the hash teacher: {hash_vm['psnr']:.2f} dB vs teacher {results['teachers']['nerfacto']['psnr']:.2f} dB: gap {gap:.2f} dB ({'within' if gap <= 1.0 else 'NOT within'} 1.0 dB).",
              (f"- Distilled VM vs VM from scratch with the same CPU time: {hash_vm['psnr']:.2f} vs {sc.get('psnr', float('nan')):.2f} dB ({'distilled better' if hash_vm['psnr'] > sc.get('psnr', float('inf')) else 'distilled NOT better'})."
               if equal_budget(hash_vm, sc) else "- Distilled VM vs VM from scratch: no equal-CPU twin in these results (run by an older version that kept one twin per student).")]
        for name, r in results["matrix"].items():
            if r.get("label") and r["student"] == "tensorf" and r["teacher"] == "nerfacto":
                sc = scratch_twin(results, name)
                better = r["psnr"] > sc.get("psnr", float("inf"))
                L.append(f"- Distilled VM {r['label']} ({r['cpu_s']:.0f} CPU s) vs VM from scratch ({sc.get('cpu_s', float('nan')):.0f} CPU s): "
                         f"{r['psnr']:.2f} vs {sc.get('psnr', float('nan')):.2f} dB ({'distilled better' if better else 'distilled NOT better'}); "
                         f"gap to the teacher {results['teachers']['nerfacto']['psnr'] - r['psnr']:.2f} dB.")

    teachers, students, grid = conversion_grid(results)
    heatmap = len(teachers) > 1
    panels = 1 + bool(results["ablations"]) + heatmap
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.5), squeeze=False)
    if heatmap:
        # the conversion matrix, with the teacher's own PSNR and the student's from-scratch PSNR as the margins
        import numpy as np

        ax = axes[0, -1]
        im = ax.imshow(grid, cmap="viridis")
        for i in range(len(teachers)):
            for j in range(len(students)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", color="w" if grid[i, j] < np.nanmean(grid) else "k")
        ax.set_yticks(range(len(teachers)), [f"{t} ({FAMILY[t]})\nteacher {results['teachers'][t]['psnr']:.1f}" for t in teachers], fontsize=8)
        ax.set_xticks(range(len(students)), [f"{s} ({FAMILY[s]})\nscratch {results['scratch'].get(s, {}).get('psnr', float('nan')):.1f}\n"
                                               f"({results['scratch'].get(s, {}).get('budget_cpu_s', float('nan')):.0f} CPU s)" for s in students], fontsize=8)
        ax.set_xlabel("student")
        ax.set_ylabel("teacher")
        ax.set_title("distilled student, test PSNR (dB)")
        fig.colorbar(im, ax=ax, shrink=0.8)
    ax = axes[0, 0]
    names = list(results["matrix"])
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [results["matrix"][n]["psnr"] for n in names], width=0.4, label="distilled (PVD-AL)")
    ax.bar([i + 0.2 for i in x], [scratch_twin(results, n)["psnr"] if equal_budget(results["matrix"][n], scratch_twin(results, n)) else float("nan") for n in names], width=0.4, label="from scratch, same CPU time")
    for t, r in results["teachers"].items():
        ax.axhline(r["psnr"], linestyle="--", color="k", linewidth=1, label=f"teacher {t}")
    ax.set_xticks(list(x), [n.replace("-to-", "\n-> ") for n in names], fontsize=8 if len(names) <= 6 else 6,
                  rotation=0 if len(names) <= 6 else 60)
    ax.set_ylabel("test PSNR (dB)")
    ax.legend(fontsize=8)
    ax.set_title("teacher -> student")
    if results["ablations"]:
        ax = axes[0, 1]
        labels = list(results["ablations"])
        ax.barh(labels, [results["ablations"][l]["psnr"] for l in labels])
        ax.set_xlim(min(results["ablations"][l]["psnr"] for l in labels) - 1, max(results["ablations"][l]["psnr"] for l in labels) + 0.5)
        ax.set_xlabel("test PSNR (dB)")
        ax.set_title("ablations, hash -> VM")
    fig.tight_layout()
    write_report(results_dir, f"pvd_{mode}", "\n".join(L), results, figure=fig)


def one(name: str, changes: Dict, steps: Optional[int], work_dir: Optional[Path]) -> Dict:
    """One hash -> VM distillation at the quick scale on the quick mode's cached teacher, with
    ``changes`` (dotted PVDPipelineConfig fields -> values); the student run goes to
    ``<work-dir>/one/bench/tensorf/<name>``."""
    scale = MODES["quick"]
    work = Path(work_dir or work_dir_for("pvd-quick"))
    tag = f"{scale.resolution}px-{scale.num_train}x{scale.num_test}"
    teacher = (work / f"outputs-{tag}" / "bench" / "nerfacto" / f"teacher-nerfacto-{scale.teacher_steps['nerfacto']}x{scale.teacher_rays}"
               / "config.yml")
    if not teacher.exists():
        raise SystemExit(f"no cached teacher at {teacher}: run `python benchmarks/pvd_bench.py --mode quick --teachers-only` first")
    out = work / "one"
    timing = run_training(pvd_config(teacher, "tensorf", out, steps or scale.distill_steps, scale, name, **changes))
    result = {"name": name, "changes": changes, "cpu_s": timing["cpu_s"], **score(student_run(out, "tensorf", name), teacher)}
    print("RESULT", json.dumps(result), flush=True)
    return result


def main(argv: Optional[List[str]] = None) -> None:
    parser = benchmark_parser(__file__, __doc__)
    parser.set_defaults(work_dir=None)  # default: <tmp>/nerfconvert-bench-pvd-<mode>
    parser.add_argument("--mode", choices=sorted(MODES), default="quick")
    parser.add_argument("--reuse-teachers", action="store_true", help="score teachers already trained in --work-dir instead of retraining")
    parser.add_argument("--skip-ablations", action="store_true", help="keep the ablation rows of the previous results file")
    parser.add_argument("--teachers-only", action="store_true", help="train (or reuse) and score the teachers, then stop")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 on a shared machine: idle OpenMP threads spin and inflate process CPU time)")
    parser.add_argument("--students", nargs="+", choices=sorted(FAMILY), default=None, help="students of the matrix (default: the mode's)")
    parser.add_argument("--skip-matrix", action="store_true", help="teachers and ablations only")
    parser.add_argument("--variants-only", action="store_true", help="of the matrix, only the mode's extra variant rows (matrix_variants)")
    parser.add_argument("--merge", nargs="+", type=Path, default=None, help="combine these results JSONs (parts run side by side) into --results-dir")
    parser.add_argument("--one", metavar="NAME", default=None,
                        help="one hash -> VM distillation on the quick mode's cached teacher (student run <work-dir>/one/bench/tensorf/NAME)")
    parser.add_argument("--changes", default="{}", help="with --one: JSON, dotted PVDPipelineConfig fields -> values")
    parser.add_argument("--steps", type=int, default=None, help="with --one: distillation steps (default: the quick mode's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        if args.threads is None:
            torch.set_num_threads(1)
        one(args.one, json.loads(args.changes), args.steps, args.work_dir)
        return
    if args.merge:
        merge(args.merge, args.mode, args.results_dir)
        return
    run(args.mode, args.work_dir, args.results_dir, args.reuse_teachers, args.skip_ablations, args.teachers_only, args.students, args.skip_matrix,
        args.variants_only)


if __name__ == "__main__":
    main()
