"""``plenoxels`` through nerfstudio's real code paths: registry, tyro CLI, trainer, eval loading."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow


def test_method_is_registered():
    from nerfstudio.configs.method_configs import all_descriptions, all_methods

    assert "plenoxels" in all_methods
    config = all_methods["plenoxels"]
    assert config.method_name == "plenoxels"
    assert type(config.pipeline.model).__name__ == "PlenoxelsModelConfig"
    assert set(config.optimizers) >= {"density", "sh"}
    assert "voxel" in all_descriptions["plenoxels"].lower()


def test_ns_train_help_lists_the_model_options(capsys, monkeypatch):
    """ns-train's own command line, parsed in-process (the installed ns-train: tests/test_train.py)."""
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_info:
        tyro.cli(AnnotatedBaseConfigUnion, args=["plenoxels", "--help"])
    assert exit_info.value.code == 0
    stdout = capsys.readouterr().out
    for option in (
        "--pipeline.model.grid-resolutions",
        "--pipeline.model.upsample-iters",
        "--pipeline.model.prune-alpha-threshold",
        "--pipeline.model.density-activation",
        "--pipeline.model.sh-degree",
        "--optimizers.density.optimizer.lr",
        "blender-data",
        "nerfstudio-data",
    ):
        assert option in stdout, option


def test_tiny_run_through_the_trainer_loads_back(trained_run):
    from nerfstudio.utils.eval_utils import eval_setup

    config_path = trained_run("plenoxels")
    _, pipeline, checkpoint, _ = eval_setup(config_path, test_mode="test")
    assert checkpoint.exists()
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    outputs = pipeline.model.get_outputs_for_camera(camera)
    h, w = int(camera.height), int(camera.width)
    assert outputs["rgb"].shape == (h, w, 3) and outputs["depth"].shape == (h, w, 1)
    assert torch.isfinite(outputs["rgb"]).all()


def test_upsample_and_prune_inside_the_trainer_then_reload(object_scene, tmp_path, make_tiny_config):
    """A run whose grid grows twice and is pruned, checkpointed at the final resolution, and
    loaded by ns-eval's loader into a model that is built at the first resolution."""
    tiny_config = make_tiny_config
    from nerfstudio.scripts import train
    from nerfstudio.utils.eval_utils import eval_setup

    config = tiny_config("plenoxels", object_scene, tmp_path, steps=8)
    model_config = config.pipeline.model
    model_config.grid_resolutions = (16, 24, 32)
    model_config.upsample_iters = (2, 5)
    model_config.prune_iters = (4,)
    model_config.prune_alpha_threshold = 0.05  # aggressive: something must be pruned after 4 steps
    train.main(config)

    _, pipeline, _, step = eval_setup(config.get_base_dir() / "config.yml", test_mode="test")
    field = pipeline.model.field
    assert step == 8 - 1 or step == 8
    assert field.resolution == 32
    assert field.num_occupied < 32**3
    assert field.stored_bytes() < field.dense_bytes()
    metrics = pipeline.get_average_eval_image_metrics()
    assert {"psnr", "ssim", "stored_mb"} <= set(metrics)
    assert "lpips" not in metrics


def test_resume_after_an_upsample(object_scene, tmp_path, make_tiny_config):
    """ns-train --load-dir: the optimizer is built at the first resolution, the checkpoint holds
    the grown grid and its Adam moments; training must continue from there."""
    tiny_config = make_tiny_config
    from nerfstudio.scripts import train

    def config_for(steps: int):
        config = tiny_config("plenoxels", object_scene, tmp_path, steps=steps)
        config.pipeline.model.grid_resolutions = (16, 24, 32)
        config.pipeline.model.upsample_iters = (2, 6)
        config.pipeline.model.prune_iters = ()
        return config

    first = config_for(4)
    first.timestamp = "first"
    train.main(first)

    resumed = config_for(4)
    resumed.timestamp = "resumed"
    resumed.load_dir = first.get_checkpoint_dir()
    train.main(resumed)  # steps 5..8, upsampling again at step 6

    state = torch.load(sorted(resumed.get_checkpoint_dir().glob("*.ckpt"))[-1], map_location="cpu")
    assert state["step"] >= 7
    assert state["pipeline"]["_model.field.density_grid"].shape[-1] == 32
    assert state["optimizers"]["density"]["state"][0]["exp_avg"].shape[-1] == 32
