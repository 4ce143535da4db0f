"""Session fixtures: one tiny procedural scene, and tiny runs of each family trained
through nerfstudio's real ``ns-train`` code path (``nerfstudio.scripts.train.main``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Optional

import pytest
import torch
from processes import start_group, stop_group

from nerfconvert import compat
from nerfconvert.compat import own_event_writers

os.environ.setdefault("MPLBACKEND", "Agg")
# The suite runs nerfstudio in-process as the ns-* commands run it: with nerfconvert's patches, which
# only the entry points install (tests/test_compat.py shows each bug in a fresh, unpatched interpreter).
compat.install()

# Tiny-run settings per method: a few steps, small batches, CPU-friendly encodings.
TINY_STEPS = 6


@pytest.fixture(scope="session")
def object_scene(tmp_path_factory) -> Path:
    """A 32x32 procedural object scene in blender format (8 train, 2 val, 2 test views)."""
    from nerfconvert.scenes import generate_object_scene

    out = tmp_path_factory.mktemp("object_scene")
    return generate_object_scene(out, seed=0, resolution=32, num_train=8, num_val=2, num_test=2)


@pytest.fixture(scope="session")
def distillnerf_scenes(tmp_path_factory) -> Path:
    """3 procedural driving scenes x 4 time steps x 6 cameras at 64x36 (scene-000..scene-002)."""
    from nerfconvert.scenes.driving import generate_driving_dataset

    return generate_driving_dataset(tmp_path_factory.mktemp("driving"), num_scenes=3, num_steps=4, width=64, height=36)


def shrunk_config(method: str, data: Path, output_dir: Path, steps: int, device_type: str = "cpu"):
    """The registered config of ``method`` on ``data``: ``steps`` steps, one checkpoint at the end,
    no evaluation or viewer, 256-ray batches (the benchmarks' short run, ``benchmarks/common.py``)."""
    from common import short_run_config

    return short_run_config(method, output_dir, steps, data=data, rays=256, eval_chunk=1024, device=device_type)


def tiny_config(method: str, data: Path, output_dir: Path, steps: int = TINY_STEPS):
    """The stock config of ``method``, shrunk so that it trains in seconds on a CPU."""
    config = shrunk_config(method, data, output_dir, steps, "cuda" if torch.cuda.is_available() else "cpu")
    if hasattr(config.pipeline.model, "implementation"):
        config.pipeline.model.implementation = "torch"
    if hasattr(config.pipeline.model, "upsample_fractions"):
        # plenoxels upsamples at fractions of the run: a few-step run would jump to the finest grid
        # at once; tiny runs keep their first (32^3) grid, as a few steps of the default run did
        config.pipeline.model.grid_resolutions = config.pipeline.model.grid_resolutions[:1]
        config.pipeline.model.upsample_fractions = ()
        config.pipeline.model.prune_fractions = ()  # nor is it pruned before it has learnt anything
    return config


@pytest.fixture(scope="session")
def make_tiny_config() -> Callable:
    """``tiny_config`` for tests in sub-folders: ``from conftest import ...`` is ambiguous there,
    since tests/viewer has a conftest of its own."""
    return tiny_config


@pytest.fixture(scope="session")
def trained_run(object_scene, tmp_path_factory) -> Callable[[str], Path]:
    """``trained_run(method)`` -> config.yml of a tiny run of ``method``, trained once per session."""
    from nerfstudio.scripts import train

    cache: Dict[str, Path] = {}

    def _get(method: str) -> Path:
        if method not in cache:
            out = tmp_path_factory.mktemp(f"run_{method}")
            config = tiny_config(method, object_scene, out)
            with own_event_writers():  # later runs in this process must not append to its tfevents
                train.main(config)
            cache[method] = config.get_base_dir() / "config.yml"
            assert cache[method].exists()
        return cache[method]

    return _get


@pytest.fixture(scope="session")
def capture_scene(tmp_path_factory) -> Path:
    """A tiny capture-like 360 scene as ns-process-data writes it: OPENCV distortion, per-frame
    intrinsics and exposure, a ground and sky far past the scene box (32x24, 12 frames)."""
    from nerfconvert.scenes import generate_capture_scene

    return generate_capture_scene(tmp_path_factory.mktemp("capture") / "c360", kind="360", width=32, height=24, num_frames=12)


def capture_config(method: str, data: Path, output_dir: Path, steps: int = TINY_STEPS):
    """``method`` with its default flags on a capture through the nerfstudio-data parser (for nerfacto:
    camera optimizer and appearance embedding on), shrunk in steps and rays only."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    config = tiny_config(method, data, output_dir, steps)
    config.pipeline.datamanager.dataparser = NerfstudioDataParserConfig(data=data, downscale_factor=1)
    return config


@pytest.fixture(scope="session")
def make_capture_config() -> Callable:
    return capture_config


@pytest.fixture(scope="session")
def capture_nerfacto_run(capture_scene, tmp_path_factory) -> Path:
    """config.yml of a default-flag nerfacto run on the capture scene (a few steps, so that the
    camera optimizer has moved the poses and the appearance embedding has been trained)."""
    from nerfstudio.scripts import train

    config = capture_config("nerfacto", capture_scene, tmp_path_factory.mktemp("capture_nerfacto"), steps=8)
    with own_event_writers():
        train.main(config)
    return config.get_base_dir() / "config.yml"


@pytest.fixture
def stock_viewer_page(tmp_path) -> Callable[[Path], str]:
    """``stock_viewer_page(config_yml)`` -> the HTML that a stock ``ns-viewer`` serves for the run
    (the server is stopped afterwards); fails with the viewer's log if it exits or serves nothing.
    ``while_serving``: a call made while the viewer starts (e.g. ``ns-export`` on the same run: the
    two processes' start-up overlaps on a multi-core machine)."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    def _serve(config_path: Path, while_serving: Optional[Callable[[], object]] = None) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log_path = tmp_path / f"viewer_{port}.log"
        with open(log_path, "w") as log:
            proc = start_group(
                [str(Path(sys.executable).parent / "ns-viewer"), "--load-config", str(config_path),
                 "--viewer.websocket-port", str(port), "--viewer.websocket-host", "127.0.0.1"],
                stdout=log, stderr=subprocess.STDOUT,
            )
            try:
                if while_serving is not None:
                    while_serving()
                deadline, page = time.time() + 300, None  # a loaded shared CPU: 180 s was not always enough
                while time.time() < deadline and proc.poll() is None:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                            if response.status == 200:
                                page = response.read().decode("utf-8", "replace")
                                break
                    except OSError:
                        time.sleep(1.0)
                assert proc.poll() is None, "ns-viewer exited:\n" + log_path.read_text()[-3000:]
                assert page is not None and "<html" in page.lower(), "ns-viewer served no page"
                return page
            finally:
                stop_group(proc)

    return _serve


# ---- compressed runs (vq-compression, entropy-compression) ---------------------------------------
def tree_digests(root: Path) -> Dict[str, str]:
    """SHA-256 of every file under ``root``, tensorboard logs included (session runs train inside
    ``own_event_writers``, so no later run in this process writes to their tfevents)."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def digest_tree() -> Callable[[Path], Dict[str, str]]:
    """``tree_digests`` for tests in sub-folders."""
    return tree_digests


def vq_config(teacher: Path, data: Path, out: Path, steps: int = 2):
    """``ns-train vq-compression``'s config, shrunk for a tiny teacher on a CPU."""
    config = shrunk_config("vq-compression", data, out, steps)
    config.pipeline.teacher_ckpt = teacher
    model = config.pipeline.model
    model.codebook_size = 64
    model.kmeans_iterations = 10
    model.kmeans_batch_size = 2000
    model.sync_every = 2
    model.importance_max_rays = 1024
    model.importance_cache_dir = out / "importance_cache"
    return config


def entropy_config(teacher, data: Path, out: Path, steps: int = 2, preset: str = "high"):
    """``ns-train entropy-compression``'s config, shrunk for a tiny teacher on a CPU."""
    config = shrunk_config("entropy-compression", data, out, steps)
    config.pipeline.teacher_ckpt = teacher
    config.pipeline.model.preset = preset
    config.pipeline.model.importance_max_rays = 512
    config.pipeline.model.importance_cache_dir = None
    return config


@pytest.fixture(scope="session")
def make_vq_config() -> Callable:
    return vq_config


@pytest.fixture(scope="session")
def make_entropy_config() -> Callable:
    return entropy_config


def _compressed_runs(make_config, name, trained_run, object_scene, tmp_path_factory) -> Callable[[str], Path]:
    from nerfstudio.scripts import train

    cache: Dict[str, Path] = {}

    def _get(method: str) -> Path:
        if method not in cache:
            teacher = trained_run(method)
            before = tree_digests(teacher.parent)
            assert any("tfevents" in name for name in before)  # the log is part of what must stay untouched
            config = make_config(teacher, object_scene, tmp_path_factory.mktemp(f"{name}_{method}"))
            with own_event_writers():
                train.main(config)
            assert tree_digests(teacher.parent) == before, "the teacher run was modified"
            cache[method] = config.get_base_dir() / "config.yml"
        return cache[method]

    return _get


@pytest.fixture(scope="session")
def vq_run(trained_run, object_scene, tmp_path_factory) -> Callable[[str], Path]:
    """``vq_run(method)`` -> config.yml of a few-step vq-compression run of the tiny ``method`` run
    (its scene.ncz next to it), trained once per session."""
    return _compressed_runs(vq_config, "vq", trained_run, object_scene, tmp_path_factory)


@pytest.fixture(scope="session")
def entropy_run(trained_run, object_scene, tmp_path_factory) -> Callable[[str], Path]:
    """``entropy_run("tensorf")`` -> config.yml of a 2-step entropy-compression run of the tiny tensorf
    run (its scene.ncz next to it), trained once per session."""
    return _compressed_runs(entropy_config, "entropy", trained_run, object_scene, tmp_path_factory)


# ---- distillnerf (model side) ------------------------------------------------------------------
DISTILLNERF_TINY_STEPS = 10


def tiny_distillnerf_config(data: Path, output_dir: Path, steps: int = DISTILLNERF_TINY_STEPS):
    """``ns-train distillnerf``'s config with a tiny model, training ``steps`` steps on CPU."""
    from common import short_run_config

    config = short_run_config("distillnerf", output_dir, steps, experiment="distillnerf")
    config.pipeline.datamanager.data = data
    model = config.pipeline.model
    model.backbone_channels = (8, 16, 16, 16)
    model.depth_channels = 16
    model.num_depth_bins = 16
    model.num_depth_candidates = 4
    model.num_uniform_samples = 16
    model.num_importance_samples = 8
    model.decoder_channels = 8
    return config


@pytest.fixture(scope="session")
def distillnerf_training(distillnerf_scenes, tmp_path_factory):
    """A tiny ``distillnerf`` run trained once per session through nerfstudio's Trainer, with the
    total training loss of every step: (config.yml, [loss per step])."""
    config = tiny_distillnerf_config(distillnerf_scenes, tmp_path_factory.mktemp("distillnerf_run"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared CPU: one thread is several times faster than two contended ones
    losses = []
    try:
        config.save_config()
        trainer = config.setup(local_rank=0, world_size=1)
        with own_event_writers():  # a later run in this process must not log into this one
            trainer.setup()
            original = trainer.pipeline.get_train_loss_dict

            def recording(step: int):
                out = original(step)
                losses.append(float(sum(v.detach() for v in out[1].values())))
                return out

            trainer.pipeline.get_train_loss_dict = recording
            trainer.train()
    finally:
        torch.set_num_threads(threads)
    return config.get_base_dir() / "config.yml", losses


@pytest.fixture(scope="session")
def distillnerf_run(distillnerf_training) -> Path:
    """config.yml of the session's tiny distillnerf run."""
    return distillnerf_training[0]


@pytest.fixture(scope="session")
def distillnerf_prediction(distillnerf_run, distillnerf_scenes, tmp_path_factory) -> Path:
    """config.yml of the run that ``nerfconvert distillnerf-predict`` writes for one frame
    (scene-000, time step 1) with the session's tiny distillnerf model."""
    from nerfconvert.cli import main

    out = tmp_path_factory.mktemp("predicted")
    frame = distillnerf_scenes / "scene-000" / "1"  # <scene>/<t>
    main(["distillnerf-predict", "--model", str(distillnerf_run.parent), "--frame", str(frame),
          "--output-dir", str(out), "--timestamp", "p"])
    configs = list(out.glob("*/distillnerf-scene/p/config.yml"))
    assert len(configs) == 1
    return configs[0]


# Fixtures that train real runs (through nerfstudio's train loop) or start servers: a test that
# uses one is part of the slow lane, whatever its file says. `python -m pytest -m "not slow"`
# is the fast lane; the README's command runs both.
SLOW_FIXTURES = {
    "trained_run", "vq_run", "entropy_run", "distillnerf_training", "distillnerf_run",
    "distillnerf_prediction", "stock_viewer_page", "capture_nerfacto_run", "teacher_root",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
