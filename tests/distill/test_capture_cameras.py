"""Pseudo cameras of a run trained with pose refinement come from its optimised poses."""

from __future__ import annotations

import torch

from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.cameras.cameras import Cameras, CameraType

from nerfconvert.distill.cameras import optimised_cameras


class _Model(torch.nn.Module):
    def __init__(self, n: int, mode: str) -> None:
        super().__init__()
        self.camera_optimizer = CameraOptimizerConfig(mode=mode).setup(num_cameras=n, device="cpu")


def _cameras(n: int) -> Cameras:
    c2w = torch.eye(4)[None, :3].repeat(n, 1, 1)
    c2w[:, :, 3] = torch.randn(n, 3)
    return Cameras(
        camera_to_worlds=c2w, fx=30.0, fy=30.0, cx=16.0, cy=12.0, width=32, height=24,
        distortion_params=torch.tensor([[-0.05, 0.01, 0.0, 0.0, 0.001, -0.001]]).repeat(n, 1),
        camera_type=CameraType.PERSPECTIVE,
    )


def test_optimised_cameras_give_the_rays_the_teacher_trained_on():
    torch.manual_seed(0)
    n = 5
    model = _Model(n, "SO3xR3")
    with torch.no_grad():
        model.camera_optimizer.pose_adjustment.normal_(std=0.05)
    cameras = _cameras(n)
    moved = optimised_cameras(model, cameras)
    assert not torch.allclose(moved.camera_to_worlds, cameras.camera_to_worlds)
    for i in range(n):
        coords = torch.tensor([[3.5, 7.5], [20.5, 30.5]])
        rays = cameras.generate_rays(camera_indices=torch.tensor([[i], [i]]), coords=coords)
        model.camera_optimizer.apply_to_raybundle(rays)  # what the teacher saw while training
        ours = moved.generate_rays(camera_indices=torch.tensor([[i], [i]]), coords=coords)
        assert torch.allclose(ours.origins, rays.origins, atol=1e-5)
        assert torch.allclose(ours.directions, rays.directions, atol=1e-5)
    # the intrinsics and distortion are kept
    assert torch.equal(moved.distortion_params, cameras.distortion_params)


def test_without_pose_refinement_the_cameras_are_unchanged():
    cameras = _cameras(3)
    assert optimised_cameras(_Model(3, "off"), cameras) is cameras
    assert optimised_cameras(torch.nn.Linear(1, 1), cameras) is cameras
