"""The Gaussian placement pass is bounded: it times the teacher on a first chunk, renders only as many
random pixels of the pseudo cameras as fit its time budget (``--pipeline.init-seconds``), says so on
the console and shows progress, and its mean accumulation stays an unbiased estimate. With a fake
slow teacher (a sleep per ray), so that these run in seconds."""

from __future__ import annotations

import re
import time
from typing import List

import torch

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle, RaySamples

from nerfconvert.views.base import Decoded, ViewOptions
from nerfconvert.views.splat import SplatView, pixel_rays, teacher_gaussians

NUM_CAMERAS, SIZE = 4, 48
TOTAL = NUM_CAMERAS * SIZE * SIZE  # 9,216 rays


class SlowTeacher:
    """A point-query teacher taking ``seconds_per_ray`` per ray; only camera 0's rays hit matter
    (accumulation 1, the others 0: the cameras' mean accumulation is exactly 1/4)."""

    device = torch.device("cpu")

    def __init__(self, seconds_per_ray: float = 0.0) -> None:
        self.seconds_per_ray = seconds_per_ray
        self.bundles: List[RayBundle] = []
        self.queries = 0

    @staticmethod
    def has(capability: str) -> bool:
        return capability == "point_queries"

    def sample(self, bundle: RayBundle) -> RaySamples:
        time.sleep(len(bundle) * self.seconds_per_ray)
        self.bundles.append(bundle)
        edges = torch.linspace(1.0, 3.0, 5).expand(len(bundle), 5)[..., None]
        return bundle.get_ray_samples(bin_starts=edges[:, :-1], bin_ends=edges[:, 1:])

    def render_samples(self, samples: RaySamples) -> dict:
        rays, num = samples.shape
        hit = (samples.camera_indices[:, 0, 0] == 0).float()
        weights = (hit[:, None, None] / num).expand(rays, num, 1)
        density = weights * 10
        return {"weights": weights, "decoded": Decoded(density=density, raw_density=density, rgb=torch.full((rays, num, 3), 0.5))}

    def query(self, positions: torch.Tensor, directions: torch.Tensor) -> Decoded:
        self.queries += positions[..., 0].numel()
        one = torch.ones_like(positions[..., :1])
        return Decoded(density=one, raw_density=one, rgb=0.5 * torch.ones_like(positions))

    def rays(self) -> RayBundle:
        return RayBundle(origins=torch.cat([b.origins for b in self.bundles]),
                         directions=torch.cat([b.directions for b in self.bundles]),
                         pixel_area=torch.cat([b.pixel_area for b in self.bundles]),
                         camera_indices=torch.cat([b.camera_indices for b in self.bundles]))


def _cameras() -> Cameras:
    c2w = torch.eye(4)[:3].repeat(NUM_CAMERAS, 1, 1)
    c2w[:, 0, 3] = torch.arange(NUM_CAMERAS, dtype=torch.float32)  # apart, so that each camera's rays differ
    return Cameras(camera_to_worlds=c2w, fx=40.0, fy=40.0, cx=SIZE / 2, cy=SIZE / 2, width=SIZE, height=SIZE)


def _distinct_pixels(rays: RayBundle) -> int:
    return torch.unique(torch.cat([rays.origins, rays.directions], dim=-1), dim=0).shape[0]


def _line(out: str) -> re.Match:
    match = re.search(r"placing Gaussians: teacher at ([\d,]+) rays/s, ([\d,]+) of ([\d,]+) rays", out)
    assert match, out
    return match


def test_placement_pass_is_capped_by_its_time_budget_and_logged(capsys):
    teacher = SlowTeacher(seconds_per_ray=2e-4)  # ~5,000 rays/s: every pixel would take ~2 s
    init = teacher_gaussians(teacher, _cameras(), num_points=300, seconds=0.5)
    out = capsys.readouterr().out
    line = _line(out)
    rate, cap, total = (int(g.replace(",", "")) for g in line.groups())
    assert total == TOTAL and "--pipeline.init-seconds 0.5, 0: all" in out
    rays = teacher.rays()
    # exactly the logged cap, what the measured speed renders in the budget, far fewer than every pixel
    assert len(rays) == cap and cap <= 0.5 * rate + 1 and cap < TOTAL // 2
    # random pixels without repeats, spread over every camera (not the first rows of the first one)
    assert _distinct_pixels(rays) == cap
    assert set(rays.camera_indices[:, 0].tolist()) == set(range(NUM_CAMERAS))
    # the mean accumulation over the sampled rays estimates the cameras' (exactly 1/4) without bias
    assert abs(init["accumulation"] - 0.25) < 0.06
    # progress bars over the rays and over the per-direction colour queries
    assert "placing Gaussians: teacher rays" in out and f"{cap}/{cap}" in out
    n = init["means"].shape[0]
    assert n == 300 and teacher.queries == n * 16 and f"{n * 16}/{n * 16}" in out and "queries" in out


def test_max_rays_overrides_the_budget_and_zero_seconds_renders_every_pixel(capsys):
    teacher = SlowTeacher()
    teacher_gaussians(teacher, _cameras(), num_points=100, max_rays=1500)
    assert "1,500 of 9,216 rays" in _line(capsys.readouterr().out).group(0)
    assert len(teacher.rays()) == 1500 and _distinct_pixels(teacher.rays()) == 1500

    teacher = SlowTeacher()
    init = teacher_gaussians(teacher, _cameras(), num_points=100, seconds=0)
    out = capsys.readouterr().out
    assert "9,216 of 9,216 rays" in _line(out).group(0) and "--pipeline.init-seconds 0: all" in out
    assert len(teacher.rays()) == TOTAL and _distinct_pixels(teacher.rays()) == TOTAL
    assert abs(init["accumulation"] - 0.25) < 1e-6


def test_the_budget_reaches_the_placement_from_the_view_and_pipeline_options(capsys):
    from nerfconvert.distill.pipeline import PVDPipelineConfig

    assert PVDPipelineConfig().view_options().init_seconds == 60.0
    assert PVDPipelineConfig(init_seconds=0.4).view_options().init_seconds == 0.4
    teacher = SlowTeacher(seconds_per_ray=2e-4)
    SplatView.teacher_init(teacher, _cameras(), ViewOptions(init_points=100, init_seconds=0.4))
    out = capsys.readouterr().out
    assert "--pipeline.init-seconds 0.4, 0: all" in out
    assert len(teacher.rays()) == int(_line(out).group(2).replace(",", "")) < TOTAL


def test_pixel_rays_are_the_rays_of_whole_camera_renders():
    cameras = _cameras()
    whole = [cameras.generate_rays(camera_indices=i, keep_shape=False) for i in range(NUM_CAMERAS)]
    rays = pixel_rays(cameras, torch.arange(TOTAL))
    assert torch.allclose(rays.origins, torch.cat([r.origins for r in whole]))
    assert torch.allclose(rays.directions, torch.cat([r.directions for r in whole]), atol=1e-6)
    assert torch.equal(rays.camera_indices, torch.cat([r.camera_indices for r in whole]))
