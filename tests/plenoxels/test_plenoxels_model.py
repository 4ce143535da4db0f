"""PlenoxelsModel without the trainer: rendering, losses, upsampling callbacks and checkpoints."""

from __future__ import annotations

import io

import pytest
import torch

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig

from nerfconvert.plenoxels import FusedAdamOptimizerConfig, PlenoxelsModel, PlenoxelsModelConfig

SCENE_BOX = SceneBox(aabb=torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]]))


def make_model(**overrides) -> PlenoxelsModel:
    kwargs = dict(grid_resolutions=(12, 20), upsample_iters=(2,), prune_iters=(1,), eval_num_rays_per_chunk=64)
    kwargs.update(overrides)
    torch.manual_seed(0)
    return PlenoxelsModelConfig(**kwargs).setup(scene_box=SCENE_BOX, num_train_data=4)


def ball_model(**overrides) -> PlenoxelsModel:
    """A model whose grid holds a coloured ball of radius 0.6 at the origin."""
    model = make_model(**overrides)
    field = model.field
    r = field.resolution
    idx = torch.stack(torch.meshgrid(*[torch.arange(r)] * 3, indexing="ij"), dim=-1).flip(-1).float()
    pos = field.aabb[0] + idx / (r - 1) * (field.aabb[1] - field.aabb[0])
    with torch.no_grad():
        field.density_grid[0, 0] = torch.where(pos.norm(dim=-1) < 0.6, torch.tensor(4.0), torch.tensor(-10.0))
        field.sh_grid.normal_(0.0, 1.0)
    return model


def camera_rays(num: int = 96, seed: int = 0) -> RayBundle:
    """Rays from a sphere of radius 4 towards jittered points near the origin."""
    g = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(num, 3, generator=g), dim=-1) * 4.0
    targets = (torch.rand(num, 3, generator=g) - 0.5) * 1.6
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    return RayBundle(
        origins=origins,
        directions=directions,
        pixel_area=torch.full((num, 1), 1e-4),
        camera_indices=torch.zeros(num, 1, dtype=torch.long),
    )


def optimizers_for(model: PlenoxelsModel) -> Optimizers:
    config = {
        name: {
            "optimizer": FusedAdamOptimizerConfig(lr=0.1, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=0.01, max_steps=10),
        }
        for name in ("density", "sh")
    }
    return Optimizers(config, model.get_param_groups())


def train_step(model: PlenoxelsModel, optimizers: Optimizers, step: int, callbacks) -> dict:
    model.train()
    optimizers.zero_grad_all()
    rays = camera_rays(seed=step)
    outputs = model(rays)
    batch = {"image": torch.rand(len(rays), 3)}
    losses = model.get_loss_dict(outputs, batch, model.get_metrics_dict(outputs, batch))
    sum(losses.values()).backward()
    optimizers.optimizer_step_all()
    optimizers.scheduler_step_all(step)
    for callback in callbacks:
        callback.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
    return losses


def test_outputs_have_the_names_viewer_and_export_expect():
    model = ball_model().eval()
    outputs = model(camera_rays())
    assert set(outputs) >= {"rgb", "depth", "accumulation"}
    assert outputs["rgb"].shape == (96, 3) and outputs["depth"].shape == (96, 1)
    assert torch.all(outputs["rgb"] >= 0) and torch.all(outputs["rgb"] <= 1)
    assert outputs["accumulation"].max() > 0.9  # rays through the ball are opaque


def test_rays_that_miss_render_the_white_background():
    model = ball_model().eval()
    rays = RayBundle(
        origins=torch.tensor([[0.0, 0.0, 4.0], [5.0, 5.0, 5.0]]),
        directions=torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),  # parallel to / away from the box
        pixel_area=torch.full((2, 1), 1e-4),
        camera_indices=torch.zeros(2, 1, dtype=torch.long),
    )
    outputs = model(rays)
    assert torch.allclose(outputs["rgb"], torch.ones(2, 3))
    assert torch.all(outputs["accumulation"] == 0)


def test_full_image_rendering_in_chunks():
    model = ball_model().eval()
    rays = camera_rays(num=200)
    image_bundle = rays.reshape((10, 20))
    outputs = model.get_outputs_for_camera_ray_bundle(image_bundle)
    assert outputs["rgb"].shape == (10, 20, 3) and outputs["depth"].shape == (10, 20, 1)
    assert torch.allclose(outputs["rgb"].view(-1, 3), model(camera_rays(num=200))["rgb"], atol=1e-6)


def test_losses_and_metrics():
    model = ball_model(prune_iters=())
    model.train()
    rays = camera_rays()
    outputs = model(rays)
    batch = {"image": torch.rand(96, 3)}
    metrics = model.get_metrics_dict(outputs, batch)
    losses = model.get_loss_dict(outputs, batch, metrics)
    assert set(losses) == {"rgb_loss", "tv_density", "tv_sh", "sparsity"}
    assert all(torch.isfinite(v) and v >= 0 for v in losses.values())
    assert metrics["stored_mb"].item() == pytest.approx(model.stored_bytes / 1e6)
    sum(losses.values()).backward()
    assert model.field.density_grid.grad.abs().sum() > 0
    assert model.field.sh_grid.grad.abs().sum() > 0


def test_upsample_callback_replaces_the_grids_in_the_optimizer():
    model = ball_model(grid_resolutions=(12, 20, 24), upsample_iters=(1, 3), prune_iters=(2,))
    optimizers = optimizers_for(model)
    callbacks = model.get_training_callbacks(TrainingCallbackAttributes(optimizers, None, None, None))
    for step in range(6):
        losses = train_step(model, optimizers, step, callbacks)
        assert all(torch.isfinite(v) for v in losses.values())
        groups = model.get_param_groups()
        for name in ("density", "sh"):
            assert optimizers.optimizers[name].param_groups[0]["params"][0] is groups[name][0]
    assert model.field.resolution == 24
    assert model.field.num_occupied < 24**3  # pruned at step 2, then upsampled
    # the schedule continued through the upsamples instead of restarting
    assert optimizers.optimizers["density"].param_groups[0]["lr"] < 0.1 * 0.1 ** (5 / 10) * 1.01


def test_checkpoint_round_trip_at_another_resolution(tmp_path):
    model = ball_model(prune_iters=())
    model.field.prune(alpha_threshold=1e-3)
    model.field.upsample(20)
    model.field.prune(alpha_threshold=1e-3)
    assert model.field.resolution == 20
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    fresh = make_model(prune_iters=())  # built at 12^3
    params_before = (fresh.field.density_grid, fresh.field.sh_grid)
    fresh.load_model(state)
    assert fresh.field.resolution == 20
    assert fresh.field.density_grid is params_before[0]  # same Parameters: a resumed optimizer still fits
    assert torch.equal(fresh.field.occupancy, model.field.occupancy)
    assert torch.equal(fresh.field.occupied_aabb, model.field.occupied_aabb)
    rays = camera_rays()
    assert torch.allclose(fresh.eval()(rays)["rgb"], model.eval()(rays)["rgb"])
    assert fresh.stored_bytes == model.stored_bytes < fresh.field.dense_bytes()


def test_occupied_box_tightens_the_samples():
    model = ball_model(prune_iters=()).eval()
    rays = camera_rays()
    before = model.sample(rays)
    model.field.prune(alpha_threshold=1e-3)
    after = model.sample(rays)
    assert after.shape[1] < before.shape[1]  # fewer steps cover the smaller box
    assert torch.allclose(after.deltas[:, 1:-1].max(), torch.tensor(model.step_size))
    # every sample with weight lies inside the occupied box
    box = model.field.occupied_aabb
    weights = after.get_weights(model.render_density(after)[0])[..., 0]
    positions = after.frustums.get_positions()[weights > 0]
    assert torch.all(positions >= box[0] - 1e-4) and torch.all(positions <= box[1] + 1e-4)


def test_bad_schedules_are_rejected():
    with pytest.raises(ValueError, match="one more entry"):
        make_model(grid_resolutions=(16, 32), upsample_iters=(10, 20))
    with pytest.raises(ValueError, match="increasing"):
        make_model(grid_resolutions=(16, 32, 48), upsample_iters=(20, 10))
    # relu of a negative initial density is zero: nothing would ever get a colour gradient
    with pytest.raises(ValueError, match="init_raw_density"):
        make_model(density_activation="relu", init_raw_density=-3.0)
    make_model(density_activation="relu", init_raw_density=0.5)
    make_model(density_activation="softplus")
