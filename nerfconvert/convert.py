"""``nerfconvert convert``: convert a trained run into another architecture and/or compress it, in
one command.

    nerfconvert convert --teacher outputs/lego/nerfacto/<ts>/config.yml --to tensorf --steps 300
    nerfconvert convert --teacher <run>/config.yml --compress vq --data data/lego
    nerfconvert convert --teacher <nerfacto run>/config.yml --compress entropy --data data/lego   # -> tensorf first

The chain is the plugin's own methods, run through nerfstudio's trainer exactly as ``ns-train``
runs them (``nerfstudio.scripts.train.main``): ``pvd-al`` (teacher -> ``--to`` student), then
``vq-compression`` or ``entropy-compression`` of the student (or of the teacher when ``--to`` is
omitted). Every intermediate is a normal nerfstudio run under ``--output-dir``; the teacher's run is
only read. At the end one table compares the runs: size, PSNR/SSIM against the teacher's renders
of its eval views, PSNR against the ground truth, and wall time; the same goes to
``<output-dir>/convert_summary.json``.

Python::

    from nerfconvert.convert import run_convert

    result = run_convert("outputs/lego/nerfacto/<ts>/config.yml", to="tensorf", compress="vq",
                         data="data/lego", steps=300, compress_steps=100, device="cpu")
    result.student, result.compressed, result.ncz      # config.yml paths and the .ncz
    for row in result.rows: print(row.role, row.method, row.size_bytes, row.psnr_vs_teacher)

Everything is checked before anything trains (``plan_convert``); bad input raises
``NerfconvertError`` with a one-line message (the command prints it as ``error: ...``, exit 2).
"""

from __future__ import annotations

import copy
import datetime
import gc
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union

from nerfconvert import NerfconvertError
from nerfconvert.compat import own_event_writers

CompressName = Literal["vq", "entropy"]
COMPRESS_METHODS: Dict[str, str] = {"vq": "vq-compression", "entropy": "entropy-compression"}
SUMMARY_NAME = "convert_summary.json"


def to_choices() -> Tuple[str, ...]:
    """The architectures ``--to`` offers: the pvd-al students of the view registry (registry order)."""
    from nerfconvert.views.registry import student_views

    return tuple(student_views())


Configure = Callable[[str, Any], None]
"""``configure(method_name, trainer_config)``: a hook that adjusts a stage's config before it runs."""


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclass
class ConvertRow:
    """One run in the closing table."""

    role: str
    """"teacher", "student" or "compressed"."""
    method: str
    """The run's nerfstudio method (e.g. nerfacto, tensorf, vq-compression)."""
    run: Path
    """The run's config.yml."""
    size_bytes: Optional[int]
    """teacher / student: the checkpoint's model weights zipped (deflate), as the benchmarks measure
    them (``nerfconvert.sizes.zipped_checkpoint_bytes``); compressed: the .ncz file."""
    size_kind: str
    """"zipped weights" or ".ncz"."""
    psnr_vs_teacher: Optional[float] = None
    """Mean PSNR (dB) of this run's renders against the teacher's, on the teacher's eval views (None for the
    teacher; inf where the renders are identical, written as null in the JSON summary)."""
    ssim_vs_teacher: Optional[float] = None
    psnr_vs_gt: Optional[float] = None
    """Mean PSNR (dB) against the ground-truth eval images (None when they cannot be read)."""
    seconds: Optional[float] = None
    """Wall time of the stage that made the run (None for the teacher)."""
    ncz: Optional[Path] = None
    """compressed: the .ncz file."""

    def to_json(self) -> Dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
            elif isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        return out


@dataclass
class ConvertResult:
    """What ``run_convert`` made. Paths are config.yml files of nerfstudio runs unless noted."""

    teacher: Path
    student: Optional[Path]
    """The student written by pvd-al (None without ``to``)."""
    pvd_run: Optional[Path]
    """pvd-al's own run (distillation checkpoints, tensorboard log), None without ``to``."""
    compressed: Optional[Path]
    """The vq-/entropy-compression run (None without ``compress``)."""
    ncz: Optional[Path]
    """The compressed file (``<compressed run>/scene.ncz``)."""
    rows: List[ConvertRow]
    """The closing table: teacher, then student, then compressed (those that exist)."""
    summary: Path
    """``<output-dir>/convert_summary.json``."""
    eval_views: List[int] = field(default_factory=list)
    """Indices of the teacher's eval views that were compared."""

    @property
    def runs(self) -> Dict[str, Path]:
        """role -> config.yml of every run, the pvd-al run included."""
        out = {"teacher": self.teacher}
        for role, path in (("pvd-al", self.pvd_run), ("student", self.student), ("compressed", self.compressed)):
            if path is not None:
                out[role] = path
        return out


# ---------------------------------------------------------------------------------------------
# the plan: every check and every stage's config, before anything trains
# ---------------------------------------------------------------------------------------------
@dataclass
class Stage:
    method: str
    """pvd-al, vq-compression or entropy-compression."""
    config: Any
    """The TrainerConfig given to ``nerfstudio.scripts.train.main``."""
    source: Path
    """config.yml of the run it reads (the teacher, or the student of the previous stage)."""
    output: Path
    """config.yml of the run it is expected to produce (pvd-al: the student's run)."""
    header: str
    """The stage's progress line, without its [i/n] prefix."""


@dataclass
class ConvertPlan:
    teacher: Path
    teacher_method: str
    teacher_model: str
    to: Optional[str]
    compress: Optional[str]
    output_dir: Path
    timestamp: str
    device: str
    eval_views: int
    stages: List[Stage]

    @property
    def pvd(self) -> Optional[Stage]:
        return next((s for s in self.stages if s.method == "pvd-al"), None)

    @property
    def compression(self) -> Optional[Stage]:
        return next((s for s in self.stages if s.method != "pvd-al"), None)


def _model_name(config) -> str:
    target = config.pipeline.model._target
    return getattr(target, "__name__", str(target))


def _vq_students() -> List[str]:
    """The students whose models vq-compression quantises (their views register vq tables)."""
    from nerfconvert.compress.tables import VQ_TABLES
    from nerfconvert.views.registry import companion_class

    return [name for name, view in _students().items()
            if companion_class(view.student_model_config()._target, VQ_TABLES) is not None]


def _students():
    from nerfconvert.views.registry import student_views

    return student_views()


def _has_vq_tables(config) -> bool:
    """Whether vq-compression quantises the run's model: its view registers vq tables."""
    from nerfconvert.compress.tables import VQ_TABLES
    from nerfconvert.views.registry import companion_class

    return companion_class(config.pipeline.model._target, VQ_TABLES) is not None


def _method(config) -> str:
    """The run's method: its own name, or the stock method its model's view is registered with."""
    from nerfconvert.views.registry import registration_for

    registration = registration_for(config.pipeline.model._target)
    return config.method_name or (registration.method if registration else _model_name(config))


def _describe(config) -> str:
    """The run's method and family in words, e.g. "vanilla-nerf (MLP)"."""
    from nerfconvert.views.registry import registration_for

    registration = registration_for(config.pipeline.model._target)
    return f"{_method(config)} ({registration.what})" if registration else _method(config)


def _is_inside(path: Path, directory: Path) -> bool:
    path, directory = path.resolve(), directory.resolve()
    return path == directory or directory in path.parents


def _read_teacher(teacher: Path):
    """config.yml path, config, model class name of a run that can be a teacher; one-line errors."""
    from nerfconvert.views.registry import latest_checkpoint, read_run_config, view_class_for

    teacher = Path(teacher)
    if not teacher.exists():
        raise NerfconvertError(
            f"--teacher {teacher} does not exist. Pass the config.yml of a trained nerfstudio run, "
            "e.g. outputs/<scene>/nerfacto/<timestamp>/config.yml."
        )
    path, config = read_run_config(teacher)
    view_class_for(config.pipeline.model._target)  # an architecture pvd-al and the views know
    latest_checkpoint(config)  # a checkpoint to read
    data = getattr(config.pipeline.datamanager.dataparser, "data", None)
    if data is not None and not Path(data).exists():
        raise NerfconvertError(
            f"The teacher's data directory {data} does not exist (paths in {path} are relative to the directory "
            "ns-train was started from): run from there. Its cameras are needed for pseudo views and evaluation."
        )
    return path, config, _model_name(config)


def _train_image_count(dataparser_config) -> Optional[int]:
    try:
        outputs = copy.deepcopy(dataparser_config).setup().get_dataparser_outputs(split="train")
        return len(outputs.image_filenames)
    except Exception:  # the trainer reports what is wrong with the data in its own words
        return None


def _free_timestamp(stage_dirs: Callable[[str], List[Path]], timestamp: Optional[str]) -> str:
    if timestamp is not None:
        taken = [d for d in stage_dirs(timestamp) if d.exists()]
        if taken:
            raise NerfconvertError(f"{taken[0]} already exists; pick another --timestamp (or leave it out).")
        return timestamp
    base = datetime.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    candidate, i = base, 0
    while any(d.exists() for d in stage_dirs(candidate)):
        i += 1
        candidate = f"{base}-{i}"
    return candidate


def plan_convert(
    teacher: Union[str, Path],
    to: Optional[str] = None,
    compress: Optional[str] = None,
    data: Optional[Union[str, Path]] = None,
    steps: Optional[int] = None,
    compress_steps: Optional[int] = None,
    output_dir: Union[str, Path] = "outputs",
    device: Optional[str] = None,
    num_rays_per_batch: Optional[int] = None,
    eval_views: int = 4,
    timestamp: Optional[str] = None,
    configure: Optional[Configure] = None,
) -> ConvertPlan:
    """Check every input and build every stage's TrainerConfig; nothing is trained or written.
    Arguments as ``run_convert``."""
    from nerfconvert import compat

    compat.install()
    # ---- cheap checks first -------------------------------------------------------------------
    from nerfconvert.compress.tables import feature_plane_students, has_feature_planes

    students = _students()
    if to is None and compress is None:
        raise NerfconvertError(
            "Nothing to do: pass --to {" + ",".join(students) + "} to convert, --compress {vq,entropy} to "
            "compress, or both."
        )
    if to is not None and to not in students:
        raise NerfconvertError(f"--to {to!r} is not an architecture family. Pick one of: {', '.join(students)}.")
    if compress is not None and compress not in COMPRESS_METHODS:
        raise NerfconvertError(f"--compress {compress!r} is not a compression method. Pick vq or entropy.")
    plane_students = feature_plane_students()
    if compress == "entropy" and to is not None and to not in plane_students:
        raise NerfconvertError(
            f"--compress entropy codes feature planes, and --to {to} gives a model without them: use --to "
            f"{' or '.join(plane_students)} (or leave --to out to convert first), or --compress vq."
        )
    if compress == "vq" and to is not None and to not in _vq_students():
        raise NerfconvertError(
            f"--compress vq quantises grids, and --to {to} gives a model without them ({students[to].family} family): "
            f"use --to {', '.join(_vq_students())}, or leave --compress out."
        )
    if compress is not None and data is None:
        raise NerfconvertError(
            f"--compress {compress} fine-tunes on the scene's training images: pass the teacher's scene with --data."
        )
    if data is not None and not Path(data).exists():
        raise NerfconvertError(
            f"--data {data} does not exist. Pass the directory of the teacher's scene (relative paths start at {Path.cwd()})."
        )
    for name, value in (("--steps", steps), ("--compress-steps", compress_steps), ("--num-rays-per-batch", num_rays_per_batch)):
        if value is not None and value < 1:
            raise NerfconvertError(f"{name} must be at least 1 (got {value}).")
    if eval_views < 0:
        raise NerfconvertError(f"--eval-views must be 0 or more (got {eval_views}).")
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise NerfconvertError(f"--device {device!r}: pick cpu or cuda.")
    if device == "cuda" and not torch.cuda.is_available():
        raise NerfconvertError("--device cuda, but torch sees no CUDA device here: use --device cpu.")

    # ---- the teacher ----------------------------------------------------------------------------
    teacher_path, teacher_config, teacher_model = _read_teacher(Path(teacher))
    teacher_class = teacher_config.pipeline.model._target
    teacher_method = _method(teacher_config)
    teacher_dir = teacher_path.parent
    output_dir = Path(output_dir)
    if _is_inside(output_dir, teacher_dir):
        raise NerfconvertError(
            f"--output-dir {output_dir} is inside the teacher's run directory {teacher_dir}, which is only read: "
            "pick another --output-dir."
        )
    converts_for_planes = compress == "entropy" and not has_feature_planes(teacher_class)
    if converts_for_planes and to is None:
        to = plane_students[0]  # entropy-compression codes feature planes: convert to a family with them first
    if compress == "vq" and to is None and not _has_vq_tables(teacher_config):
        raise NerfconvertError(
            f"--compress vq quantises grids, and the teacher is a {_describe(teacher_config)} run: "
            f"add --to {_vq_students()[0]} (or {', '.join(_vq_students()[1:])}) to convert it first."
        )
    if compress is not None:
        from nerfconvert.data import check_data_dir

        parser = copy.deepcopy(teacher_config.pipeline.datamanager.dataparser)
        parser.data = Path(data)
        check_data_dir(parser)  # e.g. a blender teacher and a --data without transforms_train.json
        teacher_data = getattr(teacher_config.pipeline.datamanager.dataparser, "data", None)
        if teacher_data is not None and Path(teacher_data).resolve() != Path(data).resolve():
            ours, theirs = _train_image_count(parser), _train_image_count(teacher_config.pipeline.datamanager.dataparser)
            if ours is not None and theirs is not None and ours != theirs:
                raise NerfconvertError(
                    f"--data {data} has {ours} training images but the teacher was trained on {theirs} "
                    f"({teacher_data}): pass the teacher's scene with --data."
                )

    experiment = teacher_config.experiment_name or "convert"

    def stage_dirs(ts: str) -> List[Path]:
        dirs = []
        if to is not None:
            dirs += [output_dir / experiment / "pvd-al" / ts, output_dir / experiment / to / ts]
        if compress is not None:
            dirs.append(output_dir / experiment / COMPRESS_METHODS[compress] / ts)
        return dirs

    timestamp = _free_timestamp(stage_dirs, timestamp)
    common = dict(output_dir=output_dir, experiment=experiment, timestamp=timestamp, device=device,
                  num_rays_per_batch=num_rays_per_batch, configure=configure)

    stages: List[Stage] = []
    source, source_role = teacher_path, "teacher"
    if to is not None:
        pvd = _pvd_stage(teacher_path, to, steps, **common)
        pvd.header = f"pvd-al: {teacher_method} -> {to}, {pvd.config.max_num_iterations} steps"
        if converts_for_planes and to in plane_students:
            pvd.header += f" (entropy-compression takes {' or '.join(plane_students)} runs)"
        stages.append(pvd)
        source, source_role = pvd.output, f"{to} student"
    if compress is not None:
        stage = _compression_stage(COMPRESS_METHODS[compress], source, teacher_config, Path(data), compress_steps,
                                   **common)
        stage.header = (f"{stage.method}: the {source_role if source_role != 'teacher' else teacher_method + ' teacher'}, "
                        f"{stage.config.max_num_iterations} steps")
        stages.append(stage)
    return ConvertPlan(teacher=teacher_path, teacher_method=teacher_method, teacher_model=teacher_model, to=to,
                       compress=compress, output_dir=output_dir, timestamp=timestamp, device=device,
                       eval_views=eval_views, stages=stages)


def _set_rays(config, num_rays_per_batch: Optional[int]) -> None:
    dm = config.pipeline.datamanager
    if num_rays_per_batch is not None:
        for name in ("train_num_rays_per_batch", "eval_num_rays_per_batch"):
            if hasattr(dm, name):
                setattr(dm, name, int(num_rays_per_batch))


def _common(config, output_dir: Path, experiment: str, timestamp: str, device: str) -> None:
    config.output_dir = Path(output_dir)
    config.experiment_name = experiment
    config.timestamp = timestamp
    config.vis = "tensorboard"
    config.machine.device_type = device
    config.load_dir = config.load_checkpoint = config.load_config = None


def _pvd_stage(teacher: Path, to: str, steps: Optional[int], output_dir: Path, experiment: str, timestamp: str,
               device: str, num_rays_per_batch: Optional[int], configure: Optional[Configure]) -> Stage:
    from nerfstudio.configs.method_configs import all_methods

    from nerfconvert.distill.students import student_config

    config = copy.deepcopy(all_methods["pvd-al"])
    config.teacher_ckpt = Path(teacher)
    _common(config, output_dir, experiment, timestamp, device)
    if steps is not None:
        config.max_num_iterations = int(steps)
    # the student subcommand's config, as `ns-train pvd-al ... <to>` builds it, from the registry as it stands
    config.student_config = student_config(to, config.max_num_iterations)
    config.check_inputs()  # the student's model config and optimizers follow --student; schedules fit the run
    _set_rays(config, num_rays_per_batch)
    if configure is not None:
        configure("pvd-al", config)
    config.steps_per_save = min(config.steps_per_save, config.max_num_iterations)
    config.check_inputs()  # again: the hook may have changed the run's length
    student = Path(output_dir) / experiment / to / timestamp / "config.yml"
    return Stage("pvd-al", config, Path(teacher), student, "")


def _compression_stage(method: str, source: Path, teacher_config, data: Path, steps: Optional[int], output_dir: Path,
                       experiment: str, timestamp: str, device: str, num_rays_per_batch: Optional[int],
                       configure: Optional[Configure]) -> Stage:
    from nerfstudio.configs.method_configs import all_methods

    config = copy.deepcopy(all_methods[method])
    config.teacher_ckpt = Path(source)
    config.pipeline.teacher_ckpt = Path(source)
    # the teacher's own dataparser, on --data: the same world frame (orientation, centring, scale)
    teacher_dm = teacher_config.pipeline.datamanager
    dataparser = copy.deepcopy(teacher_dm.dataparser)
    dataparser.data = Path(data).resolve()
    config.pipeline.datamanager.dataparser = dataparser
    config.pipeline.datamanager.data = None
    if hasattr(config.pipeline.datamanager, "camera_res_scale_factor") and hasattr(teacher_dm, "camera_res_scale_factor"):
        config.pipeline.datamanager.camera_res_scale_factor = teacher_dm.camera_res_scale_factor
    _common(config, output_dir, experiment, timestamp, device)
    if steps is not None:
        config.max_num_iterations = int(steps)
    _set_rays(config, num_rays_per_batch)
    if configure is not None:
        configure(method, config)
    config.steps_per_save = min(config.steps_per_save, config.max_num_iterations)
    config.fit_to_run_length()
    return Stage(method, config, Path(source), config.get_base_dir() / "config.yml", "")


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
def _train(config) -> None:
    from nerfstudio.scripts import train

    with own_event_writers():
        try:
            train.main(config)
        except SystemExit as exc:  # our methods exit with "error: <one line>" from inside ns-train
            if isinstance(exc.code, str) and exc.code.startswith("error: "):
                raise NerfconvertError(exc.code[len("error: "):]) from None
            raise
    gc.collect()


def _student_config(stage: Stage) -> Path:
    """The student run pvd-al wrote: the planned directory, or the one with a suffix that
    ``write_student_run`` picks if another process took it meanwhile."""
    if stage.output.exists():
        return stage.output
    config = stage.config
    candidates = sorted(stage.output.parent.parent.glob(f"{config.timestamp}-*/config.yml"), key=lambda p: p.stat().st_mtime)
    if candidates:
        return candidates[-1]
    raise NerfconvertError(f"pvd-al finished but wrote no student run at {stage.output.parent}; see its output above.")


def _zipped_weights(config_path: Path) -> Optional[int]:
    from nerfconvert.sizes import zipped_checkpoint_bytes

    try:
        return zipped_checkpoint_bytes(config_path)
    except (IndexError, OSError):  # a run whose checkpoint is not next to its config.yml
        return None


def _rgb(outputs: Dict[str, Any]):
    return outputs["rgb"] if "rgb" in outputs else outputs["rgb_fine"]  # vanilla-nerf: coarse / fine


def _load_pipeline(config_path: Path, device: str):
    """A run's pipeline for rendering: a teacher or student, or a compressed run (whose checkpoint holds
    the .ncz; loading decodes it)."""
    from nerfconvert.views.registry import load_pipeline

    return load_pipeline(config_path, device=device, test_mode="inference")


def _view_indices(n: int, k: int) -> List[int]:
    if k <= 0 or n <= 0:
        return []
    if k >= n:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / (k - 1))) for i in range(k)}) if k > 1 else [0]


def compare_to_teacher(teacher: Path, runs: List[Path], eval_views: int = 4, device: str = "cpu"
                       ) -> Tuple[List[int], Dict[str, Dict[str, Optional[float]]]]:
    """Render the teacher's eval cameras (``eval_views`` of them, evenly spread) with the teacher
    and with each run; PSNR / SSIM (torchmetrics, as nerfstudio computes them) against the
    teacher's renders and PSNR against the ground-truth images. Returns (indices, {str(run): metrics})
    with the teacher under its own path (``psnr_vs_gt`` only)."""
    import torch
    from torchmetrics.functional import structural_similarity_index_measure
    from torchmetrics.image import PeakSignalNoiseRatio

    psnr = PeakSignalNoiseRatio(data_range=1.0)

    def chw(img):
        return torch.moveaxis(img, -1, 0)[None, ...]

    def score(a, b):
        return float(psnr(chw(a), chw(b))), float(structural_similarity_index_measure(chw(a), chw(b), data_range=1.0))

    results: Dict[str, Dict[str, Optional[float]]] = {}
    with torch.no_grad():
        pipeline = _load_pipeline(teacher, device)
        dataset = pipeline.datamanager.eval_dataset
        cameras = dataset.cameras
        indices = _view_indices(len(cameras), eval_views)
        if not indices:
            return [], {}
        targets, truths = [], []
        for i in indices:
            camera = cameras[i : i + 1].to(pipeline.device)
            targets.append(_rgb(pipeline.model.get_outputs_for_camera(camera)).clamp(0, 1).cpu().float())
            truth = None
            try:
                image = dataset[i]["image"].float()
                if image.shape[-1] == 4:  # RGBA without a background in the dataparser: the model's own
                    renderer = getattr(pipeline.model, "renderer_rgb", None)
                    if renderer is not None and hasattr(renderer, "blend_background"):
                        image = renderer.blend_background(image.to(pipeline.device)).cpu()
                    else:
                        image = image[..., :3] * image[..., 3:] + (1.0 - image[..., 3:])
                if image.shape == targets[-1].shape:
                    truth = image.clamp(0, 1)
            except Exception:  # no ground truth here (e.g. images not on this machine)
                truth = None
            truths.append(truth)

        def gt_psnr(renders) -> Optional[float]:
            values = [score(r, t)[0] for r, t in zip(renders, truths) if t is not None]
            return sum(values) / len(values) if values else None

        results[str(teacher)] = {"psnr_vs_teacher": None, "ssim_vs_teacher": None, "psnr_vs_gt": gt_psnr(targets)}
        del pipeline
        gc.collect()
        for run in runs:
            pipeline = _load_pipeline(run, device)
            renders = [_rgb(pipeline.model.get_outputs_for_camera(cameras[i : i + 1].to(pipeline.device))).clamp(0, 1).cpu().float()
                       for i in indices]
            pairs = [score(r, t) for r, t in zip(renders, targets)]
            results[str(run)] = {
                "psnr_vs_teacher": sum(p for p, _ in pairs) / len(pairs),
                "ssim_vs_teacher": sum(s for _, s in pairs) / len(pairs),
                "psnr_vs_gt": gt_psnr(renders),
            }
            del pipeline
            gc.collect()
    return indices, results


def _mb(n: Optional[int]) -> str:
    if n is None:
        return "n/a"
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _num(x: Optional[float], fmt: str) -> str:
    if x is None or math.isnan(x):
        return "-"
    return "inf" if math.isinf(x) else format(x, fmt)


def _shown(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def summary_table(rows: List[ConvertRow], title: str = "nerfconvert convert"):
    """The closing table (a rich Table): one row per run."""
    from rich.table import Table

    table = Table(title=title, caption="size: the checkpoint's model weights zipped (deflate); compressed: the .ncz file. "
                  "PSNR / SSIM vs teacher: renders of the teacher's eval views against the teacher's own.")
    for name, justify in (("run", "left"), ("method", "left"), ("config.yml", "left"), ("size", "right"),
                          ("vs teacher", "right"), ("PSNR vs teacher", "right"), ("SSIM vs teacher", "right"),
                          ("PSNR vs GT", "right"), ("time", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    base = rows[0].size_bytes if rows else None
    for row in rows:
        ratio = "-"
        if row.role != "teacher" and base and row.size_bytes:
            ratio = f"{base / row.size_bytes:.1f}x smaller" if row.size_bytes <= base else f"{row.size_bytes / base:.1f}x larger"
        table.add_row(row.role, row.method, _shown(row.run), _mb(row.size_bytes), ratio,
                      "reference" if row.role == "teacher" else _num(row.psnr_vs_teacher, ".2f"),
                      "reference" if row.role == "teacher" else _num(row.ssim_vs_teacher, ".4f"),
                      _num(row.psnr_vs_gt, ".2f"),
                      "-" if row.seconds is None else f"{row.seconds:.1f} s")
    return table


def _write_json_atomic(path: Path, payload: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def execute_plan(plan: ConvertPlan) -> ConvertResult:
    """Run the stages of ``plan`` in order, then compare the runs and write the summary."""
    from nerfstudio.utils.rich_utils import CONSOLE

    n = len(plan.stages)
    seconds: Dict[str, float] = {}
    student: Optional[Path] = None
    pvd_run: Optional[Path] = None
    compressed: Optional[Path] = None
    for i, stage in enumerate(plan.stages, start=1):
        if stage.method != "pvd-al" and student is not None and stage.source != student:
            stage.config.teacher_ckpt = stage.config.pipeline.teacher_ckpt = student  # pvd-al chose another directory
        CONSOLE.rule(f"[bold][{i}/{n}] {stage.header}", align="left")
        start = time.perf_counter()
        _train(stage.config)
        elapsed = time.perf_counter() - start
        if stage.method == "pvd-al":
            pvd_run = stage.config.get_base_dir() / "config.yml"
            student = _student_config(stage)
            seconds["student"] = elapsed
        else:
            compressed = stage.config.get_base_dir() / "config.yml"
            if not compressed.exists():
                raise NerfconvertError(f"{stage.method} finished but wrote no run at {compressed.parent}; see its output above.")
            seconds["compressed"] = elapsed
        CONSOLE.print(f"[bold][{i}/{n}] done in {elapsed:.1f} s[/bold]")

    ncz = None
    if compressed is not None:
        ncz = compressed.parent / getattr(plan.compression.config.pipeline.model, "ncz_name", "scene.ncz")
        if not ncz.exists():
            raise NerfconvertError(f"{plan.compression.method} finished but wrote no {ncz}; see its output above.")

    runs: List[Tuple[str, Path]] = [("teacher", plan.teacher)]
    if student is not None:
        runs.append(("student", student))
    if compressed is not None:
        runs.append(("compressed", compressed))
    indices: List[int] = []
    metrics: Dict[str, Dict[str, Optional[float]]] = {}
    if plan.eval_views > 0:
        CONSOLE.print(f"Comparing the runs on up to {plan.eval_views} of the teacher's eval views ...")
        indices, metrics = compare_to_teacher(plan.teacher, [p for _, p in runs[1:]], plan.eval_views, plan.device)

    rows: List[ConvertRow] = []
    for role, path in runs:
        from nerfconvert.views.registry import read_run_config

        method = read_run_config(path)[1].method_name
        if role == "compressed":
            size, kind, ncz_path = ncz.stat().st_size, ".ncz", ncz
        else:
            size, kind, ncz_path = _zipped_weights(path), "zipped weights", None
        m = metrics.get(str(path), {})
        rows.append(ConvertRow(role=role, method=method, run=path, size_bytes=size, size_kind=kind,
                               psnr_vs_teacher=m.get("psnr_vs_teacher"), ssim_vs_teacher=m.get("ssim_vs_teacher"),
                               psnr_vs_gt=m.get("psnr_vs_gt"), seconds=seconds.get(role), ncz=ncz_path))

    summary = plan.output_dir / SUMMARY_NAME
    _write_json_atomic(summary, {
        "teacher": str(plan.teacher),
        "to": plan.to,
        "compress": plan.compress,
        "timestamp": plan.timestamp,
        "device": plan.device,
        "runs": {role: str(path) for role, path in runs[:1] + ([("pvd-al", pvd_run)] if pvd_run else []) + runs[1:]},
        "ncz": str(ncz) if ncz else None,
        "eval_views": indices,
        "steps": {stage.method: stage.config.max_num_iterations for stage in plan.stages},
        "rows": [row.to_json() for row in rows],
    })
    CONSOLE.print(summary_table(rows, title=f"nerfconvert convert ({len(indices)} eval views of the teacher)"))
    CONSOLE.print(f"Summary: {summary}")
    final = compressed or student
    if final is not None:
        CONSOLE.print(f"Open the result:  ns-viewer --load-config {final}")
    return ConvertResult(teacher=plan.teacher, student=student, pvd_run=pvd_run, compressed=compressed, ncz=ncz,
                         rows=rows, summary=summary, eval_views=indices)


def run_convert(
    teacher: Union[str, Path],
    to: Optional[str] = None,
    compress: Optional[str] = None,
    data: Optional[Union[str, Path]] = None,
    steps: Optional[int] = None,
    compress_steps: Optional[int] = None,
    output_dir: Union[str, Path] = "outputs",
    device: Optional[str] = None,
    num_rays_per_batch: Optional[int] = None,
    eval_views: int = 4,
    timestamp: Optional[str] = None,
    configure: Optional[Configure] = None,
) -> ConvertResult:
    """Convert ``teacher`` to ``to`` with pvd-al, then compress the result (or the teacher) with
    ``compress``; every run goes under ``output_dir``, the teacher's run is only read.

    Args:
        teacher: config.yml (or run directory) of a trained run whose model has a view
            (``nerfconvert.views.registry.teacher_methods()``).
        to: the student's method, one of ``to_choices()`` (the registry's students). None: no conversion,
            except that ``compress="entropy"`` converts a teacher without feature planes first.
        compress: "vq" (vq-compression) or "entropy" (entropy-compression: feature planes only), or None.
        data: the teacher's scene directory; required with ``compress`` (compression fine-tunes
            on its training images). Parsed with the teacher's own dataparser settings.
        steps: pvd-al steps (default: the method's, 20000). Stages and schedules follow it.
        compress_steps: compression fine-tuning steps (default: the method's).
        output_dir: root of the new runs (``<output_dir>/<experiment>/<method>/<timestamp>``) and of
            ``convert_summary.json``. Must not be inside the teacher's run directory.
        device: "cpu" or "cuda" (default: cuda when available).
        num_rays_per_batch: rays per step of every stage (default: each method's).
        eval_views: how many of the teacher's eval views the closing comparison renders (0: none).
        timestamp: the runs' timestamp (default: now; must be free when given).
        configure: ``configure(method, trainer_config)`` adjusts a stage's config before it runs
            (method: "pvd-al", "vq-compression" or "entropy-compression"), e.g. codebook size.

    Returns:
        ConvertResult: the config.yml of every run, the .ncz, the table rows, the summary path.

    Raises:
        NerfconvertError: bad input (one line), found before anything trains; or a stage that fails.
    """
    plan = plan_convert(teacher, to=to, compress=compress, data=data, steps=steps, compress_steps=compress_steps,
                        output_dir=output_dir, device=device, num_rays_per_batch=num_rays_per_batch,
                        eval_views=eval_views, timestamp=timestamp, configure=configure)
    return execute_plan(plan)


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------
@dataclass
class Convert:
    """Convert a trained run into another architecture (pvd-al) and/or compress it (vq, entropy),
    in one command. Every step is a normal nerfstudio run under --output-dir; the teacher is only
    read. Ends with a table: size, PSNR/SSIM against the teacher, PSNR against ground truth, time."""

    teacher: Path
    """config.yml of the trained run to start from (a run of any method the view registry knows;
    ``nerfconvert convert --help`` lists them)."""
    to: Optional[str] = None
    """Convert to this architecture with pvd-al (one of the registry's students)."""
    compress: Optional[CompressName] = None
    """Then compress with vq-compression or entropy-compression (entropy: feature planes only; a
    teacher without them and no --to is converted first)."""
    data: Optional[Path] = None
    """The teacher's scene directory; required with --compress (it fine-tunes on the training images)."""
    steps: Optional[int] = None
    """pvd-al steps (default: pvd-al's 20000; stages and schedules follow it)."""
    compress_steps: Optional[int] = None
    """Compression fine-tuning steps (default: the method's own)."""
    output_dir: Path = Path("outputs")
    """Root of the new runs and of convert_summary.json."""
    device: Optional[Literal["cpu", "cuda"]] = None
    """Default: cuda when available."""
    num_rays_per_batch: Optional[int] = None
    """Rays per step of every stage (default: each method's 4096)."""
    eval_views: int = 4
    """How many of the teacher's eval views the closing table renders (0: skip)."""
    timestamp: Optional[str] = None
    """Timestamp of the new runs (default: now)."""

    def main(self) -> ConvertResult:
        return run_convert(self.teacher, to=self.to, compress=self.compress, data=self.data, steps=self.steps,
                           compress_steps=self.compress_steps, output_dir=self.output_dir, device=self.device,
                           num_rays_per_batch=self.num_rays_per_batch, eval_views=self.eval_views,
                           timestamp=self.timestamp)


def convert_command() -> type:
    """``Convert`` for the command line, with ``--to``'s choices and ``--teacher``'s methods read from
    the view registry as it stands (a family registered at run time is listed too)."""
    import dataclasses

    import tyro
    from typing_extensions import Annotated

    from nerfconvert.views.registry import teacher_methods

    teacher_help = (f"config.yml of the trained run to start from: a run of {', '.join(teacher_methods())}, "
                    "or of any method whose model is one of theirs.")
    fields = [
        ("teacher", Annotated[Path, tyro.conf.arg(help=teacher_help)], dataclasses.field()),
        ("to", Optional[Literal[to_choices()]], dataclasses.field(default=None)),  # type: ignore[valid-type]
    ]
    return dataclasses.make_dataclass("Convert", fields, bases=(Convert,), namespace={"__doc__": Convert.__doc__})
