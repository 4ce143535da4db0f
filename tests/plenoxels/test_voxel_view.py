"""VoxelGridView: phi2(phi1(x, d)) is the plenoxels field, and renders like the model."""

from __future__ import annotations

import pytest
import torch

from nerfstudio.field_components.field_heads import FieldHeadNames

from nerfconvert.views.voxel import VoxelGridView

from test_plenoxels_model import ball_model, camera_rays  # noqa: E402 (same test folder)


@pytest.fixture
def pruned_ball():
    model = ball_model(prune_iters=())
    model.field.prune(alpha_threshold=1e-3)
    return model.eval()


def test_view_shape_and_parameters(pruned_ball):
    view = VoxelGridView(pruned_ball)
    assert view.family == "voxel" and "PlenoxelsModel" in view.model_names
    assert view.feature_dim == 1 + 27
    assert view.phi2_parameters() == []
    params = view.phi1_parameters()
    assert params[0] is pruned_ball.field.density_grid and params[1] is pruned_ball.field.sh_grid
    pruned_ball.field.upsample(16)  # new Parameters after an upsample are picked up
    assert view.phi1_parameters()[0] is pruned_ball.field.density_grid


def test_phi2_of_phi1_is_the_field(pruned_ball):
    view = VoxelGridView(pruned_ball)
    samples = view.sample(camera_rays())
    field = pruned_ball.field
    with torch.no_grad():
        density, raw = field.get_density(samples)
        rgb = field.get_outputs(samples)[FieldHeadNames.RGB]
        positions, directions = samples.frustums.get_positions(), samples.frustums.directions
        features = view.phi1(positions, directions)
        decoded = view.phi2(features, directions)
    assert features.shape == (*samples.shape, 28)
    assert torch.allclose(decoded.raw_density, raw, rtol=1e-6, atol=1e-5)
    assert torch.allclose(decoded.density, density, rtol=1e-5, atol=1e-6)
    assert torch.allclose(decoded.rgb, rgb, atol=1e-6)
    # the scene is not trivial: some samples are dense, some were skipped
    assert (decoded.density > 10).any() and (raw == field.empty_raw_density).any()


def test_render_samples_reproduces_the_model(pruned_ball):
    view = VoxelGridView(pruned_ball)
    rays = camera_rays(num=128)
    with torch.no_grad():
        model_out = pruned_ball(rays)
        view_out = view.render_samples(view.sample(rays))
        via_render_rays = view.render_rays(rays)
    assert torch.allclose(view_out["rgb"], model_out["rgb"], atol=1e-6)
    assert torch.allclose(view_out["accumulation"], model_out["accumulation"], atol=1e-6)
    assert torch.allclose(via_render_rays["rgb"], model_out["rgb"], atol=1e-6)
    assert model_out["accumulation"].max() > 0.9 and model_out["accumulation"].min() < 0.1


def test_raw_density_is_pre_activation(pruned_ball):
    view = VoxelGridView(pruned_ball)
    x = torch.zeros(1, 3)  # centre of the ball
    d = torch.tensor([[0.0, 0.0, 1.0]])
    raw = view.raw_density(x, d)
    assert raw.item() == pytest.approx(4.0, abs=1e-4)
    assert view.query(x, d).density.item() == pytest.approx(torch.exp(torch.tensor(4.0)).item(), rel=1e-4)


def test_registry_picks_the_voxel_view(pruned_ball):
    from nerfconvert.views import view_for

    assert isinstance(view_for(pruned_ball), VoxelGridView)


def test_other_models_are_refused():
    with pytest.raises(TypeError, match="PlenoxelsField"):
        VoxelGridView(torch.nn.Linear(2, 2))
