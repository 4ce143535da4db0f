"""The voxel grid itself: SH colour, trilinear lookups, upsampling, pruning, stored size."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nerfconvert.plenoxels.field import PlenoxelsField, eval_sh_colour, num_sh_coeffs

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def make_field(resolution=9, seed=0, **kwargs) -> PlenoxelsField:
    torch.manual_seed(seed)
    field = PlenoxelsField(AABB, resolution=resolution, **kwargs)
    with torch.no_grad():
        field.density_grid.normal_(0.0, 2.0)
        field.sh_grid.normal_(0.0, 0.5)
    return field


def vertex_positions(field: PlenoxelsField, idx_zyx: torch.Tensor) -> torch.Tensor:
    """World position of vertex [z, y, x] (align_corners=True convention)."""
    xyz = idx_zyx.flip(-1).float()
    return AABB[0] + xyz / (field.resolution - 1) * (AABB[1] - AABB[0])


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---- SH (PVD Eq. 2) ------------------------------------------------------------------------
def test_sh_colour_matches_hand_computed_values():
    # Degree 2 along +z: only Y_0^0, Y_1^0 (index 2) and Y_2^0 (index 6) are non-zero.
    #   Y_0^0 = 0.28209479, Y_1^0(z=1) = 0.48860251, Y_2^0(z=1) = 0.94617470 - 0.31539157 = 0.63078313
    assert num_sh_coeffs(2) == 9
    sh = torch.zeros(27)
    sh[0], sh[2], sh[6] = 1.0, 2.0, -1.0  # red
    sh[9 + 0] = -3.0  # green: constant term only
    sh[18 + 3] = 5.0  # blue: Y_1^1 = 0.4886 x, zero along +z
    rgb = eval_sh_colour(sh[None], torch.tensor([[0.0, 0.0, 1.0]]), sh_degree=2)[0]
    expected = [
        sigmoid(0.28209479 * 1.0 + 0.48860251 * 2.0 - 0.63078313 * 1.0),
        sigmoid(0.28209479 * -3.0),
        sigmoid(0.0),
    ]
    assert torch.allclose(rgb, torch.tensor(expected), atol=1e-6)

    # Along +x the blue Y_1^1 term switches on, and Y_2^0 = -0.31539157, Y_2^2 = 0.54627422.
    sh = torch.zeros(27)
    sh[18 + 3], sh[18 + 6], sh[18 + 8] = 1.0, 1.0, 1.0
    rgb = eval_sh_colour(sh[None], torch.tensor([[1.0, 0.0, 0.0]]), sh_degree=2)[0]
    assert rgb[2].item() == pytest.approx(sigmoid(0.48860251 - 0.31539157 + 0.54627422), abs=1e-6)


def test_sh_degree_zero_is_view_independent():
    sh = torch.tensor([[0.7, -0.2, 1.5]])
    dirs = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    rgb = eval_sh_colour(sh.expand(5, 3), dirs, sh_degree=0)
    assert torch.allclose(rgb, torch.sigmoid(0.28209479 * sh).expand(5, 3), atol=1e-6)


# ---- trilinear interpolation -------------------------------------------------------------
def test_features_exact_at_vertices():
    field = make_field(resolution=7)
    idx = torch.stack(torch.meshgrid(*[torch.arange(7)] * 3, indexing="ij"), dim=-1).reshape(-1, 3)
    feats = field.features(vertex_positions(field, idx))
    grid = torch.cat([field.density_grid, field.sh_grid], dim=1)[0]  # [C, z, y, x]
    expected = grid[:, idx[:, 0], idx[:, 1], idx[:, 2]].t()
    assert feats.shape == (7**3, 28)
    assert torch.allclose(feats, expected, atol=1e-5)


def test_features_at_cell_centre_average_eight_corners():
    field = make_field(resolution=5)
    corner = torch.tensor([1, 2, 0])  # z, y, x
    centre = vertex_positions(field, corner.float() + 0.5)
    grid = torch.cat([field.density_grid, field.sh_grid], dim=1)[0]
    block = grid[:, 1:3, 2:4, 0:2].reshape(28, -1).mean(dim=1)
    assert torch.allclose(field.features(centre[None])[0], block, atol=1e-5)


def test_points_outside_the_box_are_empty():
    field = make_field()
    feats = field.features(torch.tensor([[1.5, 0.0, 0.0], [0.0, 0.0, -1.01]]))
    assert torch.all(feats[:, 0] == field.empty_raw_density)
    assert torch.all(feats[:, 1:] == 0)
    assert torch.all(field.activate(feats[:, :1]) < 1e-30)


# ---- upsampling ----------------------------------------------------------------------------
def test_upsampling_to_2r_minus_1_preserves_the_field_exactly():
    # New vertices sit on old vertices and midpoints; trilinear is exact on sub-cells.
    field = make_field(resolution=9)
    points = torch.rand(2000, 3) * 2 - 1
    before = field.features(points)
    field.upsample(17)
    assert field.resolution == 17 and field.density_grid.shape == (1, 1, 17, 17, 17)
    assert torch.allclose(field.features(points), before, atol=1e-4)


def test_upsampling_smooth_field_agrees_closely():
    field = PlenoxelsField(AABB, resolution=32)
    with torch.no_grad():
        idx = torch.stack(torch.meshgrid(*[torch.arange(32)] * 3, indexing="ij"), dim=-1).reshape(-1, 3)
        p = vertex_positions(field, idx)
        smooth = torch.sin(2 * p[:, 0]) * torch.cos(3 * p[:, 1]) + p[:, 2] ** 2
        field.density_grid.copy_(smooth.view(1, 1, 32, 32, 32) * 4)
        field.sh_grid.copy_(smooth.view(1, 1, 32, 32, 32).expand(1, 27, 32, 32, 32))
    points = torch.rand(3000, 3) * 2 - 1
    before = field.features(points)
    field.upsample(64)
    after = field.features(points)
    assert (after - before).abs().max() < 0.05
    assert (after - before).abs().mean() < 0.005


def test_upsampling_keeps_pruned_region_empty():
    field = sphere_field(resolution=17)
    field.prune(alpha_threshold=1e-3)
    occupied_before = field.num_occupied / 17**3
    field.upsample(33)
    assert field.occupancy.shape == (33, 33, 33)
    assert abs(field.num_occupied / 33**3 - occupied_before) < 0.1
    empty = ~field.occupancy
    assert torch.all(field.density_grid[0, 0][empty] == field.empty_raw_density)
    assert torch.all(field.sh_grid[0][:, empty] == 0)


# ---- pruning and stored size -----------------------------------------------------------------
def sphere_field(resolution=17, radius=0.4) -> PlenoxelsField:
    """Dense ball of radius ``radius`` at the centre, nearly empty elsewhere."""
    field = make_field(resolution=resolution)
    idx = torch.stack(torch.meshgrid(*[torch.arange(resolution)] * 3, indexing="ij"), dim=-1)
    r = vertex_positions(field, idx.reshape(-1, 3)).norm(dim=-1).view(resolution, resolution, resolution)
    with torch.no_grad():
        field.density_grid[0, 0] = torch.where(r < radius, torch.tensor(5.0), torch.tensor(-12.0))
    return field


def test_pruning_removes_empty_voxels_and_shrinks_stored_size():
    field = sphere_field()
    dense = field.stored_bytes()
    assert field.num_occupied == 17**3
    points = torch.rand(4000, 3) * 0.24 - 0.12  # cells whose corners are in the ball or its shell
    before = field.features(points)

    pruned = field.prune(alpha_threshold=1e-3, dilation=1)

    assert pruned > 0.5 * 17**3  # the ball is a small part of the box
    assert field.num_occupied + pruned == 17**3
    assert field.stored_bytes() < 0.5 * dense
    # stored size is what the packed representation really takes
    sparse = field.to_sparse()
    assert field.stored_bytes() == sparse["mask"].nbytes + sparse["values"].nbytes
    assert sparse["values"].shape == (field.num_occupied, 28) and sparse["values"].dtype == np.float32
    # the ball itself is untouched
    assert torch.allclose(field.features(points), before)
    # far corners are skipped and empty
    corner = torch.tensor([[0.95, 0.95, 0.95], [-0.9, 0.9, -0.9]])
    assert not field.active_mask(corner).any()
    assert torch.all(field.raw_density(corner) == field.empty_raw_density)


def test_skipping_is_exact():
    field = sphere_field()
    field.prune(alpha_threshold=1e-3)
    points = torch.rand(5000, 3) * 2 - 1
    active = field.active_mask(points)
    assert 0 < int(active.sum()) < 5000
    # equal up to float rounding (an interpolated constant is not always bit-identical)
    assert torch.allclose(field.raw_density(points), field.features(points)[:, :1], rtol=1e-6, atol=1e-5)


def test_sparse_round_trip():
    field = sphere_field()
    field.prune(alpha_threshold=1e-3)
    sparse = field.to_sparse()
    other = PlenoxelsField(AABB, resolution=5)
    other.load_sparse(sparse["mask"], sparse["values"], resolution=17)
    points = torch.rand(1000, 3) * 2 - 1
    assert torch.equal(other.occupancy, field.occupancy)
    assert torch.allclose(other.features(points), field.features(points))


def test_prune_keeps_a_shell_around_surfaces():
    field = sphere_field(resolution=17, radius=0.4)
    field.prune(alpha_threshold=1e-3, dilation=1)
    # a vertex just outside the ball (one voxel = 0.125) is kept, two voxels out is pruned
    near = vertex_positions(field, torch.tensor([8, 8, 8 + 4]))  # x = 0.5
    far = vertex_positions(field, torch.tensor([8, 8, 8 + 6]))  # x = 0.75
    assert field.active_mask(near[None]).item()
    assert not field.active_mask(far[None]).item()


# ---- regularisers -------------------------------------------------------------------------------
def test_total_variation_is_zero_for_constant_grids_and_sampled_on_large_ones():
    field = PlenoxelsField(AABB, resolution=9)
    tv_density, tv_sh = field.tv_losses(num_voxels=10**6)
    assert tv_density.item() == 0 and tv_sh.item() == 0
    field = make_field(resolution=40)
    dense_density, dense_sh = field.tv_losses(num_voxels=10**6)  # all cells
    sampled_density, sampled_sh = field.tv_losses(num_voxels=4096)  # random subset
    # density std 2 -> E[(a - b)^2] = 8; sh std 0.5 -> 0.5
    assert dense_density.item() == pytest.approx(8.0, rel=0.05)
    assert sampled_density.item() == pytest.approx(dense_density.item(), rel=0.1)
    assert sampled_sh.item() == pytest.approx(dense_sh.item(), rel=0.1)
    sampled_sh.backward()
    assert field.sh_grid.grad is not None and field.sh_grid.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    field = sphere_field()
    field.prune(alpha_threshold=1e-3)
    points = torch.rand(1000, 3) * 2 - 1
    cpu = field.features(points)
    field = field.cuda()
    assert torch.allclose(field.features(points.cuda()).cpu(), cpu, atol=1e-5)
    assert torch.equal(field.raw_density(points.cuda()).cpu(), field.cpu().raw_density(points))
