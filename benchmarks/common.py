"""What every benchmark shares: its command line (``benchmark_parser``: ``--work-dir``,
``--results-dir``, ``--tag``), the short run config, ns-eval's scores and PSNR, the hardware line,
and the report writer (``write_report``: ``<results-dir>/<stem>.md``, ``.json`` and ``.png``,
without this machine's paths). The benchmarks are scripts of this folder (``python
benchmarks/<name>.py``, one per benchmark), not part of the installed package; the tests import
this module too (``tests/conftest.py``: the tiny runs)."""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import re
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

os.environ.setdefault("MPLBACKEND", "Agg")  # benchmarks write PNGs, also where there is no display

import torch

REPO = Path(__file__).resolve().parents[1]
"""The checkout the benchmarks run from."""
RESULTS = REPO / "benchmarks" / "results"
DATA = REPO.parent / "shared" / "data"
"""The scenes next to the checkout (``lego``, ``lego100``)."""
LEGO = DATA / "lego"
"""The real scene of the ``real`` / ``full`` modes (next to the checkout)."""
TEACHERS = REPO.parent / "shared" / "teachers"
"""Trained teachers next to the checkout: ``<scene>/<method>/<timestamp>/config.yml``."""
TMP = Path(tempfile.gettempdir())


def work_dir_for(name: str) -> Path:
    """A benchmark's default work directory (scenes, runs, caches): ``<tmp>/nerfconvert-bench-<name>``."""
    return TMP / f"nerfconvert-bench-{name}"


def benchmark_parser(script: str, doc: Optional[str] = None, *, tag: Optional[str] = None, work_dir: bool = True,
                     results_dir: bool = True) -> argparse.ArgumentParser:
    """The command line every benchmark starts from: ``--work-dir`` (default ``work_dir_for(<name>)``),
    ``--results-dir`` (default benchmarks/results/) and, with ``tag``, ``--tag`` (the report's file
    stem, default ``tag``). ``script``: the benchmark's ``__file__`` (or its name; a ``_bench`` suffix
    is left out of the work directory's name)."""
    script = Path(script).stem
    name = script[: -len("_bench")] if script.endswith("_bench") else script
    parser = argparse.ArgumentParser(prog=f"python benchmarks/{script}.py", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if work_dir:
        parser.add_argument("--work-dir", type=Path, default=work_dir_for(name),
                            help="scenes, runs and caches (default: <tmp>/nerfconvert-bench-%s)" % name)
    if results_dir:
        parser.add_argument("--results-dir", type=Path, default=RESULTS,
                            help="where the report goes (default: benchmarks/results/)")
    if tag is not None:
        parser.add_argument("--tag", default=tag, help="the report's file stem: <results-dir>/<tag>.{md,json,png} (default: %(default)s)")
    return parser


def teacher_config(method: str, scene: str = "lego100") -> Path:
    """The newest trained ``method`` teacher of ``scene`` under ``TEACHERS`` (its ``config.yml``), so
    that no script names a run's timestamp. Exits with a message where there is none."""
    found = sorted((TEACHERS / scene / method).glob("*/config.yml"))
    if not found:
        raise SystemExit(f"error: no {method} teacher of {scene} under {shown(TEACHERS)}; pass --teacher <run>/config.yml")
    return found[-1]


def _prefixes() -> List[tuple]:
    pairs = [(sys.prefix, "<venv>"), (str(REPO) + "/", ""), (str(REPO), "."), (str(TMP), "<tmp>"), (str(Path.home()), "~")]
    if REPO.parent != Path(REPO.anchor):
        pairs.insert(3, (str(REPO.parent), ".."))
    return pairs


_TIMESTAMP = re.compile(r"(?<=[/-])(\d{4}-\d{2}-\d{2}_\d{6}|\d{8}-\d{6})\b")


def shown(text: Any) -> str:
    """``text`` (a path, a command line, a report) as a committed result may carry it: without this
    machine's absolute paths (the checkout becomes ``.``, the folder around it ``..``, the virtual
    environment ``<venv>``, the temporary folder ``<tmp>``, home ``~``) and without run timestamps
    in paths (``<timestamp>``)."""
    out = str(text)
    for prefix, name in _prefixes():
        if prefix and prefix != "/":
            end = "" if prefix.endswith("/") else r"(?=/|\b|$)"
            out = re.sub(r"(?<![\w.~<>/-])" + re.escape(prefix) + end, name, out)
    return _TIMESTAMP.sub("<timestamp>", out)


def command_line(argv: Optional[Sequence[str]] = None, script: Optional[str] = None) -> str:
    """The command that ran, as a report shows it: ``python benchmarks/<script> <args>``, paths shown."""
    script = Path(script or sys.argv[0]).name
    args = list(sys.argv[1:] if argv is None else argv)
    return shown(" ".join(["python", f"benchmarks/{script}", *(shlex.quote(str(a)) for a in args)]))


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], right: Optional[Sequence[bool]] = None) -> str:
    """A markdown table; ``right``: which columns are right-aligned (default: those whose cells are all numbers)."""
    rows = [[c for c in row] for row in rows]
    if right is None:
        right = [bool(rows) and all(isinstance(row[i], (int, float)) for row in rows) for i in range(len(columns))]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def quiet_config(config, device: Optional[str] = None) -> None:
    """No evaluation during training, tensorboard only (no local writer), full precision."""
    config.vis = "tensorboard"
    config.machine.device_type = device or device_type()
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**9
    config.logging.local_writer.enable = False
    config.mixed_precision = False


def short_run_config(method: Union[str, Any], output_dir: Path, steps: Optional[int], *, data: Optional[Path] = None,
                     rays: Optional[int] = None, experiment: Optional[str] = None, timestamp: str = "run",
                     eval_chunk: Optional[int] = None, device: Optional[str] = None, save: bool = True,
                     fit_schedules: bool = False):
    """The registered config of ``method`` (a name, or a config to copy), shrunk for a short run:
    ``steps`` steps (None: the method's own), one checkpoint at the end (``save``), no evaluation
    while training, ``rays`` per batch, ``eval_chunk`` rays per render chunk, a blender-format scene
    at ``data``; ``fit_schedules``: every learning-rate schedule ends with the run (our methods do
    that themselves; a stock method keeps its own unless asked)."""
    from nerfstudio.configs.method_configs import all_methods

    from nerfconvert.schedules import fit_schedulers

    config = copy.deepcopy(all_methods[method] if isinstance(method, str) else method)
    config.output_dir = Path(output_dir)
    if experiment is not None:
        config.experiment_name = experiment
    config.timestamp = timestamp
    quiet_config(config, device)
    if steps is not None:
        config.max_num_iterations = steps
    config.steps_per_save = config.max_num_iterations if save else 10**9
    if data is not None:
        from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

        config.pipeline.datamanager.dataparser = BlenderDataParserConfig(data=Path(data))
    dm = config.pipeline.datamanager
    if rays is not None and hasattr(dm, "train_num_rays_per_batch"):
        dm.train_num_rays_per_batch = rays
        dm.eval_num_rays_per_batch = rays
    if eval_chunk is not None:
        config.pipeline.model.eval_num_rays_per_chunk = eval_chunk
    if fit_schedules:
        fit_schedulers(config.optimizers, config.max_num_iterations)
    return config


@torch.no_grad()
def evaluate(config_path: Path, every: int = 1) -> Dict[str, float]:
    """Mean test PSNR/SSIM as ns-eval computes them, over every ``every``-th test view."""
    from nerfstudio.data.utils.dataloaders import FixedIndicesEvalDataloader
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(config_path, test_mode="test")
    if every == 1:
        metrics = pipeline.get_average_eval_image_metrics()
    else:
        dataset = pipeline.datamanager.eval_dataset
        loader = FixedIndicesEvalDataloader(dataset, tuple(range(0, len(dataset), every)), device=pipeline.device)
        metrics = pipeline.get_average_image_metrics(loader, "eval")
    views = len(range(0, len(pipeline.datamanager.eval_dataset), max(every, 1)))
    return {"psnr": float(metrics["psnr"]), "ssim": float(metrics["ssim"]), "views": views}


def psnr(image: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1]."""
    mse = torch.mean((image.float() - reference.float()) ** 2).clamp_min(1e-12)
    return float(-10.0 * torch.log10(mse))


def hardware() -> str:
    """CPU model, cores, torch version and GPU: the line every report carries."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores visible, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}, {gpu}"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (the CPU is shared: reports record them)."""
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def write_report(results_dir: Path, stem: str, markdown: str, data: Dict[str, Any], *, figure: Any = None) -> str:
    """A benchmark's report: ``<stem>.md``, ``<stem>.json`` and, with ``figure`` (a matplotlib
    figure, closed here), ``<stem>.png`` in ``results_dir``. The JSON gets the date and hardware
    unless it has them; the markdown gets a hardware line unless it has one; neither keeps this
    machine's paths (``shown``). Returns the markdown as written."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    data = {"date": now_utc(), "hardware": hardware(), **data}
    if "Hardware:" not in markdown and str(data["hardware"]) not in markdown:
        markdown = markdown.rstrip("\n") + f"\n\nHardware: {data['hardware']}."
    markdown = shown(markdown if markdown.endswith("\n") else markdown + "\n")
    (results_dir / f"{stem}.md").write_text(markdown)
    (results_dir / f"{stem}.json").write_text(shown(json.dumps(data, indent=1, default=str)) + "\n")
    if figure is not None:
        write_figure(results_dir, stem, figure)
    return markdown


def write_figure(results_dir: Path, stem: str, figure: Any) -> Path:
    """``<stem>.png`` in ``results_dir`` from a matplotlib figure (closed here)."""
    import matplotlib.pyplot as plt

    path = Path(results_dir) / f"{stem}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def expand_mode(argv: Optional[List[str]], modes: Dict[str, List[str]], tag_modes: bool = True) -> List[str]:
    """``--mode NAME`` on a benchmark's command line -> that mode's recorded arguments, followed by
    the rest of the line (which wins where both set an option); ``tag_modes``: results of a mode
    other than quick are tagged with its name."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(argv):
        if arg == "--mode" or arg.startswith("--mode="):
            name = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            if name not in modes:
                raise SystemExit(f"error: --mode {name!r}: choose one of {', '.join(modes)}")
            rest = argv[:i] + argv[i + (1 if "=" in arg else 2):]
            tag = ["--tag", name] if tag_modes and name != "quick" and "--tag" not in rest else []
            return list(modes[name]) + tag + rest
    return argv
