"""DistillNeRF model pieces on synthetic tensors shaped like the data manager's batches."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from model_helpers import ring_cameras, synthetic_frame  # noqa: E402

from nerfconvert import NerfconvertError
from nerfconvert.distillnerf.fusion import SparseVoxels, SubmanifoldConv3d, grid_index, linear_key
from nerfconvert.distillnerf.lifting import occupancy_weights
from nerfconvert.distillnerf.param_space import contract, contract_depth, uncontract, uncontract_depth

INNER = (50.0, 50.0, 6.4)


def test_parameterized_space_eq3():
    p = torch.tensor([[10.0, -20.0, 3.2], [25.0, 50.0, 0.0], [500.0, 0.0, 0.0], [0.0, 0.0, 1e6]])
    c = contract(p, INNER, 0.8)
    # inner region: linear, real scale; boundary of the inner box maps to alpha
    assert torch.allclose(c[0], torch.tensor([0.16, -0.32, 0.4]))
    assert torch.isclose(c[1, 1], torch.tensor(0.8))
    # outside: in (alpha, 1), tending to 1 at infinity
    assert 0.8 < float(c[2, 0]) < 1.0 and float(c[3, 2]) > 0.999
    assert torch.allclose(uncontract(c[:3], INNER, 0.8), p[:3], rtol=1e-4, atol=1e-3)
    t = torch.tensor([0.5, 10.0, 50.0, 200.0, 900.0])
    assert torch.allclose(uncontract_depth(contract_depth(t, 50.0, 0.8), 50.0, 0.8), t, rtol=1e-4)


def test_occupancy_weights_eq1_and_expected_depth():
    density = torch.zeros(1, 4, 1, 1)
    density[0, 2] = 50.0  # an opaque surface in bin 2
    weights, beyond = occupancy_weights(density)
    assert torch.allclose(weights[0, :, 0, 0], torch.tensor([0.0, 0.0, 1.0, 0.0]), atol=1e-6)
    assert float(beyond) < 1e-6
    empty, beyond = occupancy_weights(torch.zeros(1, 4, 1, 1))
    assert float(empty.sum()) == 0.0 and float(beyond) == 1.0


def test_submanifold_conv_matches_dense_conv_on_occupied_voxels():
    torch.manual_seed(0)
    res = (6, 5, 4)
    idx = torch.unique(torch.randint(0, 4, (40, 3)), dim=0)
    keys, order = torch.sort(linear_key(idx, res))
    idx = idx[order]
    feats = torch.randn(len(keys), 3)
    conv = SubmanifoldConv3d(3, 2)
    sparse = conv(keys, idx, feats, res)
    dense_in = torch.zeros(1, 3, *res)
    dense_in[0, :, idx[:, 0], idx[:, 1], idx[:, 2]] = feats.T
    weight = conv.linear.weight.view(2, 3, 3, 3, 3)  # [out, (dx, dy, dz), in] -> conv3d layout
    weight = weight.view(2, 27, 3).permute(0, 2, 1).reshape(2, 3, 3, 3, 3)
    dense = torch.nn.functional.conv3d(dense_in, weight, conv.linear.bias, padding=1)
    assert torch.allclose(sparse, dense[0, :, idx[:, 0], idx[:, 1], idx[:, 2]].T, atol=1e-5)


def test_query_reads_fine_first_then_coarse():
    fine_res, coarse_res = (8, 8, 8), (2, 2, 2)
    point = torch.tensor([[1.0, 1.0, 0.5]])
    fine_key = linear_key(grid_index(contract(point, INNER, 0.8), fine_res), fine_res)
    scene = SparseVoxels(
        fine_keys=fine_key, fine_density=torch.tensor([7.0]), fine_features=torch.ones(1, 2),
        coarse_keys=torch.arange(8), coarse_density=torch.full((8,), 0.5), coarse_features=torch.zeros(8, 2), ego_to_world=torch.eye(4),
        fine_resolution=fine_res, coarse_resolution=coarse_res, inner_range=INNER, alpha=0.8,
    )
    density, feats = scene.query(torch.tensor([[1.0, 1.0, 0.5], [-30.0, -30.0, -3.0]]))
    assert density[:, 0].tolist() == [7.0, 0.5]
    assert feats.shape == (2, 4) and feats[1, :2].abs().sum() == 0


@pytest.fixture(scope="module")
def model():
    from nerfstudio.data.scene_box import SceneBox

    from nerfconvert.distillnerf.model import DistillNerfModelConfig

    torch.manual_seed(0)
    config = DistillNerfModelConfig(backbone_channels=(8, 16, 16, 16), depth_channels=16, num_depth_bins=16,
                                    num_depth_candidates=4, fine_resolution=(64, 64, 32), coarse_resolution=(16, 16, 8), decoder_channels=8,
                                    num_uniform_samples=16, num_importance_samples=8)
    return config.setup(scene_box=SceneBox(torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=1, metadata={})


def test_forward_backward_reaches_every_stage(model):
    cameras, batch = synthetic_frame()
    outputs = model(cameras, batch)
    render = outputs["renders"][0]
    assert render["rgb"].shape == (6, 36, 64, 3)
    assert render["z_depth"].shape == (6, 9, 16) and outputs["raw_depth"].shape == (6, 9, 16)
    losses = model.get_loss_dict(outputs, batch)
    assert set(losses) == {"rgb", "rgb_lowres", "depth", "dense_depth", "density_entropy"}
    model.zero_grad()
    sum(losses.values()).backward()
    for name, module in [("backbone", model.encoder.backbone), ("lifting", model.lifter.fine_head),
                         ("coarse depth", model.lifter.coarse_head), ("fine voxels", model.fusion.fine_convs),
                         ("coarse voxels", model.fusion.coarse_convs), ("decoder", model.decoder)]:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and any(float(g.abs().sum()) > 0 for g in grads), f"no gradient reaches the {name}"


def test_loss_terms_are_switchable(model):
    cameras, batch = synthetic_frame()
    model.config.use_dense_depth = False
    model.config.use_density_entropy = False
    try:
        with torch.no_grad():
            losses = model.get_loss_dict(model(cameras, batch), batch)
    finally:
        model.config.use_dense_depth = True
        model.config.use_density_entropy = True
    assert "dense_depth" not in losses and "density_entropy" not in losses and "depth" in losses


def test_clear_errors_for_bad_frames(model):
    cameras, batch = synthetic_frame(num=5)
    with pytest.raises(NerfconvertError, match="5 cameras but this model was trained with 6"):
        model(cameras, batch)
    far = ring_cameras(6, ego=(0.0, 0.0, 20.0))  # 20 m above the ego: outside +-6.4 m
    _, batch = synthetic_frame()
    with pytest.raises(NerfconvertError, match="outside the parameterized space's inner region"):
        model(far, batch)


def test_training_rays_leave_the_lifting_grid(model):
    """Issue 28: training rays on the stride-4 lifting grid leave the voxels between them untrained.
    With jitter, training renders move the grid by whole pixels inside a cell, and the targets move with it."""
    from nerfconvert.distillnerf.lifting import pixel_rays
    from nerfconvert.distillnerf.model import shift_target

    cameras, batch = synthetic_frame()
    _, base, _ = pixel_rays(cameras, 9, 16)
    _, moved, _ = pixel_rays(cameras, 9, 16, (1, -2))
    # the same rays as a grid whose centres sit 1 pixel lower and 2 to the left, straight from nerfstudio
    ys = (torch.arange(9) + 0.5) * 4.0 + 1.0
    xs = (torch.arange(16) + 0.5) * 4.0 - 2.0
    coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)
    expected = cameras.generate_rays(camera_indices=2, coords=coords, keep_shape=True).directions
    assert torch.allclose(moved[2], expected, atol=1e-6) and not torch.allclose(moved, base)
    shifted = shift_target({"image": batch["image"], "lidar_depth": batch["lidar_depth"]}, torch.tensor([1, -2]))
    assert torch.equal(shifted["image"][:, 5, 7], batch["image"][:, 6, 5])
    assert torch.equal(shifted["lidar_depth"][:, -1, 0], batch["lidar_depth"][:, -1, 0])  # border repeats
    model.train()
    torch.manual_seed(1)
    with torch.no_grad():
        shifts = {tuple(model(cameras, batch)["renders"][0]["shift"].tolist()) for _ in range(4)}
    assert len(shifts) > 1 and all(-2 <= v < 2 for s in shifts for v in s)
    model.eval()
    with torch.no_grad():
        assert model(cameras, batch)["renders"][0]["shift"].tolist() == [0, 0]  # evaluation stays on the grid
    model.train()


def test_sky_gets_opacity_not_a_far_depth_target(model):
    """Issue 28: sky depth targets at the far plane make a leak the cheap fit. By default the sky has no
    depth target; the teacher's opacity (0 on its sky) trains the accumulation."""
    from nerfconvert.distillnerf.losses import depth_target

    cameras, batch = synthetic_frame()
    opacity = (~batch["sky_mask"]).float()
    batch["dense_opacity"] = batch["targets"][0]["dense_opacity"] = opacity
    model.eval()  # rays on the grid: the term can be recomputed by hand
    try:
        outputs = model(cameras, batch)
        losses = model.get_loss_dict(outputs, batch)
    finally:
        model.train()
    acc = outputs["renders"][0]["accumulation"].clamp(1e-4, 1 - 1e-4)
    goal = torch.nn.functional.adaptive_avg_pool2d(opacity[:, None], (9, 16))[:, 0]
    bce = -(goal * acc.log() + (1 - goal) * (1 - acc).log()).mean()
    assert torch.allclose(losses["opacity"], model.config.loss_coefficients["opacity"] * bce, atol=1e-5)
    # the teacher's sky: opacity < 0.5 or deeper than teacher_sky_depth; no dense depth target there
    sky = model._sky(batch)
    assert torch.equal(sky, batch["sky_mask"])
    _, valid = depth_target(batch["dense_depth"], sky, 1000.0, model.config.sky_at_far)
    assert not bool(valid[sky].any()) and bool(valid[~sky].any())
    _, valid_far = depth_target(batch["dense_depth"], sky, 1000.0, True)  # the pre-issue behaviour
    assert bool(valid_far[sky].all())
    model.config.use_opacity_loss = False
    try:
        assert "opacity" not in model.get_loss_dict(model(cameras, batch), batch)
    finally:
        model.config.use_opacity_loss = True


def test_virtual_targets_weigh_virtual_coefficient(model):
    """A virtual-camera target adds to the same terms, scaled by loss_coefficients["virtual"]."""
    cameras, batch = synthetic_frame()
    model.eval()  # no jitter: the two renders of the same cameras are identical
    try:
        with torch.no_grad():
            plain = model.get_loss_dict(model(cameras, batch), batch)
            doubled = dict(batch, targets=[batch["targets"][0], dict(batch["targets"][0], virtual=True)])
            both = model.get_loss_dict(model(cameras, doubled), doubled)
    finally:
        model.train()
    w = model.config.loss_coefficients["virtual"]
    for key in ("rgb", "rgb_lowres", "density_entropy"):  # terms of the rendered targets only
        assert torch.allclose(both[key], plain[key] * (1 + w), rtol=1e-4), key
