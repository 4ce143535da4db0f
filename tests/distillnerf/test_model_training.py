"""``ns-train distillnerf`` through nerfstudio's Trainer on the tiny generated set: the loss
goes down, the run evaluates like ns-eval (reconstruction + previous/next novel views), and an
interrupted run resumes from its checkpoint."""

from __future__ import annotations

import copy

import torch


def test_training_loss_decreases(distillnerf_training):
    config_path, losses = distillnerf_training
    assert config_path.exists() and len(losses) == 10
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses


def test_ns_eval_reports_reconstruction_and_novel_views(distillnerf_run):
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(distillnerf_run, test_mode="test")
    metrics = pipeline.get_average_eval_image_metrics(get_std=True)
    for key in ("recon_psnr", "recon_ssim", "prev_psnr", "prev_ssim", "next_psnr", "next_ssim", "recon_depth_abs_rel"):
        assert key in metrics and metrics[key] == metrics[key], key  # present, not NaN
    assert metrics["num_frames"] >= 1 and "recon_psnr_std" in metrics


def test_interrupted_run_resumes(distillnerf_run, tmp_path):
    """Resuming from the run's checkpoint (``--load-dir``) continues at the next step with the saved weights."""
    import yaml

    config = yaml.load(distillnerf_run.read_text(), Loader=yaml.Loader)
    saved = sorted((distillnerf_run.parent / "nerfstudio_models").glob("step-*.ckpt"))[-1]
    saved_step = torch.load(saved, map_location="cpu")["step"]
    config = copy.deepcopy(config)
    config.load_dir = distillnerf_run.parent / "nerfstudio_models"
    config.output_dir = tmp_path
    config.max_num_iterations = 2
    config.steps_per_save = 1000
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    assert trainer._start_step == saved_step + 1
    state = torch.load(saved, map_location="cpu")["pipeline"]
    name = next(k for k in state if k.endswith("lifter.coarse_head.weight"))
    assert torch.equal(trainer.pipeline.state_dict()[name].cpu(), state[name])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    resumed = sorted((config.get_base_dir() / "nerfstudio_models").glob("step-*.ckpt"))
    assert resumed and resumed[-1].name == f"step-{saved_step + 2:09d}.ckpt"
