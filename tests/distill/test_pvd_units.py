"""Unit tests of PVD-AL's parts: losses (clamp, projection, density spaces), pseudo-camera
distribution, and the active-learning pools (hard poses paired with their own pose)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.scene_box import SceneBox

from nerfconvert.distill.active import HardPosePool, HardRayPool, PoseErrorTracker
from nerfconvert.distill.cameras import PseudoCameraDistribution, look_at
from nerfconvert.distill.datamanager import PseudoCameraDataManagerConfig
from nerfconvert.distill.losses import (
    FeatureProjection,
    clamp_density,
    density_loss,
    inverse_activation,
    masked_mse,
    select_hard_points,
    volume_loss,
)
from nerfconvert.distill.students import STUDENTS


# ---- losses ---------------------------------------------------------------------------------


def test_density_clamp_values_and_gradient():
    raw = torch.tensor([-10.0, -2.0, 0.5, 7.0, 50.0], requires_grad=True)
    assert torch.equal(clamp_density(raw, (-2.0, 7.0)), torch.tensor([-2.0, -2.0, 0.5, 7.0, 7.0]))
    target = torch.tensor([-50.0, 0.0, 0.0, 0.0, 100.0])
    density_loss(raw, target, (-2.0, 7.0)).backward()
    # Eq. 8: both sides clamped, so no gradient where the student is beyond [a, b] and the
    # teacher is beyond it on the same side
    assert raw.grad[0] == 0 and raw.grad[4] == 0
    assert raw.grad[2] != 0
    # a student below a is pulled up where the teacher is above a (straight-through student clamp)
    low = torch.tensor([-3.0, -3.0], requires_grad=True)
    density_loss(low, torch.tensor([4.0, -9.0]), (-2.0, 7.0)).backward()
    assert low.grad[0] < 0 and low.grad[1] == 0
    # without the clamp (ablation) every point pulls
    raw2 = raw.detach().clone().requires_grad_(True)
    density_loss(raw2, target, None).backward()
    assert (raw2.grad != 0).all()


def test_masked_mse_uses_only_selected_points():
    a, b = torch.zeros(2, 3, 1), torch.ones(2, 3, 1)
    b[0, 0] = 10.0
    mask = torch.tensor([[False, True, True], [True, True, True]])
    assert masked_mse(a, b, mask).item() == pytest.approx(1.0)
    assert masked_mse(a, b, None).item() == pytest.approx((100 + 5) / 6)


def test_projection_only_when_sizes_differ_and_it_learns():
    assert FeatureProjection(8, 8).linear is None
    proj = FeatureProjection(4, 6)
    assert isinstance(proj.linear, nn.Linear) and proj.linear.in_features == 4 and proj.linear.out_features == 6
    torch.manual_seed(0)
    student = torch.randn(256, 4)
    teacher = student @ torch.randn(4, 6)  # a linear relation the projection can learn
    opt = torch.optim.Adam(proj.parameters(), lr=0.05)
    first = volume_loss(student, teacher, proj).item()
    for _ in range(300):
        opt.zero_grad()
        loss = volume_loss(student, teacher, proj)
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 * first


def test_projected_pairs_compare_standardised_teacher_features_fixed_after_the_first_batch():
    torch.manual_seed(0)
    proj = FeatureProjection(4, 3)
    first = torch.randn(500, 3) * torch.tensor([20.0, 1.0, 0.1]) + torch.tensor([-5.0, 3.0, 0.0])
    target = proj.target(first)
    assert torch.allclose(target.mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(target.std(0), torch.ones(3), atol=1e-3)
    # later batches use the first batch's statistics (a fixed target scale), and so does a resumed run
    later = torch.randn(50, 3)
    expected = (later - first.mean(0)) / first.std(0)
    assert torch.allclose(proj.target(later), expected, atol=1e-5)
    resumed = FeatureProjection(4, 3)
    resumed.load_state_dict(proj.state_dict())
    assert torch.allclose(resumed.target(later), expected, atol=1e-5)
    # equal sizes: no projection, and PVD's direct comparison of the raw features
    direct = FeatureProjection(3, 3)
    assert torch.equal(direct.target(first), first)
    # the ablation switch: raw teacher features even for a projected pair
    assert torch.equal(FeatureProjection(4, 3, standardise=False).target(first), first)


@pytest.mark.parametrize("name,scale", [("exp", 0.01), ("exp", 1.0), ("softplus", 1.0), ("relu", 1.0)])
def test_inverse_activations_round_trip(name, scale):
    raw = torch.linspace(-1.5, 6.0, 50) if name != "relu" else torch.linspace(0.01, 6.0, 50)
    act = {"exp": torch.exp, "softplus": nn.functional.softplus, "relu": torch.relu}[name]
    density = scale * act(raw)
    assert torch.allclose(inverse_activation(name, scale)(density), raw, atol=1e-4)


def test_hard_points_are_union_of_teacher_and_student_tops():
    w_t = torch.zeros(2, 5, 1)
    w_s = torch.zeros(2, 5, 1)
    w_t[0, 1], w_t[1, 4], w_t[0, 0] = 0.9, 0.8, 0.1
    w_s[1, 2], w_s[0, 3], w_s[1, 0] = 0.7, 0.6, 0.05
    mask = select_hard_points(w_t, w_s, fraction=0.2)  # top 2 of 10 by each
    expected = torch.zeros(2, 5, dtype=torch.bool)
    expected[0, 1] = expected[1, 4] = expected[1, 2] = expected[0, 3] = True
    assert torch.equal(mask, expected)


# ---- pseudo cameras --------------------------------------------------------------------------


def _ring_cameras(center, radius, elevations_deg, n_az=8, size=(20, 30)):
    up = torch.tensor([0.0, 0.0, 1.0])
    positions = []
    for el in elevations_deg:
        for k in range(n_az):
            az = 2 * math.pi * k / n_az
            e = math.radians(el)
            positions.append([radius * math.cos(e) * math.cos(az), radius * math.cos(e) * math.sin(az), radius * math.sin(e)])
    positions = torch.tensor(positions) + center
    c2w = look_at(positions, center, up)
    h, w = size
    return Cameras(camera_to_worlds=c2w, fx=25.0, fy=25.0, cx=w / 2, cy=h / 2, width=w, height=h)


def test_orbit_distribution_matches_training_cameras():
    center = torch.tensor([0.2, -0.1, 0.3])
    cams = _ring_cameras(center, 4.0, [10, 30, 50])
    dist = PseudoCameraDistribution.fit(cams)
    assert dist.kind == "orbit"
    assert torch.allclose(dist.center, center, atol=1e-3)
    assert dist.radius_range[0] == pytest.approx(4.0, abs=1e-3) and dist.radius_range[1] == pytest.approx(4.0, abs=1e-3)
    assert math.degrees(dist.elevation_range[0]) == pytest.approx(10, abs=0.5)
    assert math.degrees(dist.elevation_range[1]) == pytest.approx(50, abs=0.5)

    gen = torch.Generator().manual_seed(0)
    c2w = dist.sample_poses(500, gen)
    offsets = c2w[:, :, 3] - center
    assert torch.allclose(offsets.norm(dim=-1), torch.full((500,), 4.0), atol=1e-3)
    elevation = torch.rad2deg(torch.asin(offsets[:, 2] / offsets.norm(dim=-1)))
    assert elevation.min() >= 9.5 and elevation.max() <= 50.5
    assert elevation.max() - elevation.min() > 30  # spreads over the range
    # every pseudo camera looks at the centre
    forward = -c2w[:, :, 2]
    assert torch.allclose((forward * -offsets / 4.0).sum(-1), torch.ones(500), atol=1e-4)
    # rotations are orthonormal
    rot = c2w[:, :, :3]
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3).expand(500, 3, 3), atol=1e-5)

    cameras = dist.make_cameras(c2w[:3], gen)
    assert int(cameras.width[0]) == 30 and int(cameras.height[0]) == 20 and float(cameras.fx[0]) == 25.0


def test_forward_facing_distribution_box_and_jitter():
    gen = torch.Generator().manual_seed(0)
    n = 12
    positions = torch.rand(n, 3, generator=gen) * torch.tensor([1.0, 0.5, 0.1])
    rot = torch.eye(3).expand(n, 3, 3)  # all look down -z
    cams = Cameras(camera_to_worlds=torch.cat([rot, positions[:, :, None]], -1), fx=20.0, fy=20.0, cx=10.0, cy=10.0, width=20, height=20)
    dist = PseudoCameraDistribution.fit(cams, box_margin=0.1, rotation_jitter_deg=5.0)
    assert dist.kind == "forward"
    c2w = dist.sample_poses(400, gen)
    lo, hi = positions.min(0).values, positions.max(0).values
    margin = (hi - lo) * 0.1 + 1e-6
    assert ((c2w[:, :, 3] >= lo - margin) & (c2w[:, :, 3] <= hi + margin)).all()
    forward = -c2w[:, :, 2]
    angle = torch.rad2deg(torch.acos((forward * torch.tensor([0.0, 0.0, -1.0])).sum(-1).clamp(-1, 1)))
    assert angle.max() <= 5.0 + 1e-3 and angle.max() > 1.0  # jittered, within the bound


# ---- active learning pools ------------------------------------------------------------------------


def test_pose_errors_pair_with_their_own_pose_when_shuffled():
    gen = torch.Generator().manual_seed(0)
    num_poses = 20
    tracker = PoseErrorTracker(num_poses)
    per_pose = torch.rand(num_poses, generator=gen) * 0.1
    per_pose[[3, 11]] = torch.tensor([5.0, 4.0])  # the two hard poses
    # many rays per pose, in shuffled order, plus pooled rays (pose -1) with huge errors
    pose = torch.arange(num_poses).repeat_interleave(7)
    errors = per_pose[pose] + 0.01 * torch.rand(pose.shape[0], generator=gen)
    perm = torch.randperm(pose.shape[0], generator=gen)
    tracker.add(torch.cat([pose[perm], torch.tensor([-1, -1])]), torch.cat([errors[perm], torch.tensor([99.0, 99.0])]))
    assert set(tracker.hardest(0.1).tolist()) == {3, 11}


def _tiny_datamanager(**overrides):
    cams = _ring_cameras(torch.zeros(3), 3.0, [20, 40], size=(8, 8))
    settings = dict(train_num_rays_per_batch=64, poses_per_epoch=10, steps_per_epoch=2, hard_pose_fraction=0.2)
    settings.update(overrides)
    config = PseudoCameraDataManagerConfig(**settings)
    return config.setup(device="cpu", teacher_cameras=cams, scene_box=SceneBox(torch.tensor([[-1.0] * 3, [1.0] * 3])))


def test_datamanager_pools_the_hardest_poses_and_redraws_them():
    dm = _tiny_datamanager()
    bundle, batch = dm.next_train(0)
    assert bundle.origins.shape == (64, 3) and batch["pose_index"].shape == (64,)
    # each ray starts at the centre of the pose it says it came from
    assert torch.allclose(bundle.origins, dm.epoch_c2w[batch["pose_index"], :, 3], atol=1e-5)
    epoch_c2w = dm.epoch_c2w.clone()
    errors = torch.full((10,), 0.01)
    errors[[2, 7]] = 1.0
    pose = torch.arange(10).repeat(5)
    perm = torch.randperm(50)
    dm.record_pose_errors(pose[perm], errors[pose[perm]])
    dm.next_train(2)  # a new epoch: rank, pool, redraw
    assert len(dm.pose_pool) == 2
    pooled = {tuple(c.flatten().round(decimals=4).tolist()) for c in dm.pose_pool.c2w}
    assert pooled == {tuple(epoch_c2w[i].flatten().round(decimals=4).tolist()) for i in (2, 7)}
    # 20% of the new epoch are jittered copies of pooled poses: close to one of them, not equal
    redrawn = dm.epoch_c2w[-2:, :, 3]
    dists = torch.cdist(redrawn, dm.pose_pool.c2w[:, :, 3])
    assert (dists.min(dim=1).values < 1.0).all() and (dists.min(dim=1).values > 1e-5).all()


def test_image_level_distillation_draws_fewer_poses_per_epoch_and_reuses_them():
    """Image-level distillation (a Gaussian student) renders each pseudo view once per epoch: its
    epochs have image_poses_per_epoch cameras, and a patch is always one of them."""
    ray_level = _tiny_datamanager(image_poses_per_epoch=3)
    image_level = PseudoCameraDataManagerConfig(
        train_num_rays_per_batch=64, poses_per_epoch=10, steps_per_epoch=4, hard_pose_fraction=0.2, image_poses_per_epoch=3,
    ).setup(device="cpu", teacher_cameras=_ring_cameras(torch.zeros(3), 3.0, [20, 40], size=(8, 8)),
            scene_box=SceneBox(torch.tensor([[-1.0] * 3, [1.0] * 3])), image_level=True)
    ray_level.next_train(0)
    assert ray_level.epoch_c2w.shape[0] == 10
    poses = set()
    for step in range(4):
        camera, batch = image_level.next_train_patch(step, 8)
        poses.add(batch["pose_index"])
        assert torch.allclose(camera.camera_to_worlds[0], image_level.epoch_cameras.camera_to_worlds[batch["pose_index"]])
    assert image_level.epoch_c2w.shape[0] == 3 and poses <= {0, 1, 2}
    # one hard pose per epoch (20% of 3, at least one), pooled from the errors recorded
    image_level.record_pose_errors(torch.tensor([0, 1, 2]), torch.tensor([0.1, 2.0, 0.1]))
    hard = image_level.epoch_c2w[1].clone()
    image_level.next_train_patch(4, 8)
    assert len(image_level.pose_pool) == 1 and torch.allclose(image_level.pose_pool.c2w[0], hard)
    # a checkpoint of it resumes into an image-level data manager only
    state = image_level.get_extra_state()
    ray_level.set_extra_state(state)
    assert ray_level.epoch_c2w.shape[0] == 10  # another number of poses per epoch: a fresh stream


def test_datamanager_without_hard_poses_never_pools():
    dm = _tiny_datamanager(hard_pose_fraction=0.0)
    dm.next_train(0)
    dm.record_pose_errors(torch.arange(10), torch.rand(10))
    dm.next_train(2)
    assert len(dm.pose_pool) == 0


def test_hard_ray_pool_keeps_largest_errors():
    pool = HardRayPool(capacity=4)
    rays = {
        "origins": torch.arange(10.0)[:, None].expand(10, 3).clone(),
        "directions": torch.ones(10, 3),
        "pixel_area": torch.ones(10, 1),
        "camera_indices": torch.zeros(10, 1, dtype=torch.long),
    }
    errors = torch.zeros(10)
    errors[[1, 8]] = 1.0
    kept = pool.add(rays, errors, fraction=0.2)
    assert set(kept.tolist()) == {1, 8} and len(pool) == 2
    drawn = pool.draw(50, torch.Generator().manual_seed(0))
    assert set(drawn["origins"][:, 0].tolist()) == {1.0, 8.0}


def test_hard_pose_pool_is_fifo():
    pool = HardPosePool(capacity=3)
    for i in range(5):
        pool.add(torch.full((1, 3, 4), float(i)), torch.tensor([float(i)]))
    assert pool.c2w[:, 0, 0].tolist() == [2.0, 3.0, 4.0] and pool.version == 5



def test_image_level_patches_cover_the_whole_pseudo_view():
    """Patches of a view that is not a multiple of the patch size reach its last rows and columns
    (a 100-pixel view with 64-pixel patches once only ever showed the student its top-left corner)."""
    dm = PseudoCameraDataManagerConfig(
        train_num_rays_per_batch=64, poses_per_epoch=10, steps_per_epoch=50, image_poses_per_epoch=2,
    ).setup(device="cpu", teacher_cameras=_ring_cameras(torch.zeros(3), 3.0, [20, 40], size=(10, 10)),
            scene_box=SceneBox(torch.tensor([[-1.0] * 3, [1.0] * 3])), image_level=True)
    covered = torch.zeros(10, 10, dtype=torch.bool)
    offsets = set()
    for step in range(40):
        camera, batch = dm.next_train_patch(step, 8)
        y0, x0 = batch["offset"]
        assert (int(camera.height), int(camera.width)) == (8, 8) and 0 <= y0 <= 2 and 0 <= x0 <= 2
        covered[y0 : y0 + 8, x0 : x0 + 8] = True
        offsets.add((y0, x0))
    assert covered.all() and offsets == {(0, 0), (0, 2), (2, 0), (2, 2)}
