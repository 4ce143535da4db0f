"""TensoRF over contracted space: the field, its sampler, its view, and pvd-al's choice of it."""

from __future__ import annotations

import pytest
import torch

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from nerfconvert.unbounded import UnboundedTensoRFModelConfig
from nerfconvert.views.registry import is_unbounded


def _model(**kwargs):
    config = UnboundedTensoRFModelConfig(init_resolution=16, final_resolution=24, num_uniform_samples=32, num_samples=16,
                                         eval_num_rays_per_chunk=256, **kwargs)
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    torch.manual_seed(0)
    return config.setup(scene_box=box, num_train_data=4, metadata={})


def _rays(n: int = 8) -> RayBundle:
    origins = torch.zeros(n, 3) + torch.tensor([0.0, 0.0, 0.2])
    directions = torch.nn.functional.normalize(torch.randn(n, 3), dim=-1)
    return RayBundle(origins=origins, directions=directions, pixel_area=torch.full((n, 1), 1e-4),
                     camera_indices=torch.zeros(n, 1, dtype=torch.long))


def test_contraction_keeps_the_box_and_squeezes_the_background():
    model = _model()
    contract = model.field.contract
    inside = torch.tensor([[0.5, -0.25, 0.1]])
    assert torch.allclose(contract(inside), inside)
    far = contract(torch.tensor([[10.0, 0.0, 0.0], [1e6, 0.0, 0.0]]))
    assert torch.allclose(far[:, 0], torch.tensor([1.9, 2.0]), atol=1e-4)


def test_rays_reach_the_far_plane_and_render():
    model = _model().eval()
    bundle = _rays()
    bundle = model.collider(bundle)
    samples = model.sampler_uniform(bundle)
    assert float(samples.frustums.ends.max()) == pytest.approx(1000.0, rel=1e-3)
    # half the samples lie past the scene box (disparity spacing), as nerfacto's
    positions = samples.frustums.get_positions()
    outside = (positions.abs() > 1).any(dim=-1).float().mean()
    assert 0.3 < float(outside) < 0.7
    with torch.no_grad():
        out = model(_rays())  # Model.forward applies the collider first
    assert out["rgb"].shape == (8, 3) and torch.isfinite(out["rgb"]).all()


def test_view_queries_what_the_model_renders():
    from nerfconvert.views import view_for

    model = _model().eval()
    view = view_for(model)
    assert view.unbounded and view.family == "vm"
    with torch.no_grad():
        samples = view.sample(_rays())
        decoded = view.query(samples.frustums.get_positions(), samples.frustums.directions)
        density = model.field.get_density(samples)
        rgb = model.field.get_outputs(samples)
    assert torch.allclose(decoded.density, density, atol=1e-5)
    assert torch.allclose(decoded.rgb, rgb, atol=1e-5)


def test_unbounded_teachers_get_students_that_contract():
    from nerfstudio.models.nerfacto import NerfactoModelConfig
    from nerfstudio.models.tensorf import TensoRFModelConfig

    from nerfconvert.distill.students import student_model_config
    from nerfconvert.plenoxels.model import PlenoxelsModelConfig

    assert is_unbounded(NerfactoModelConfig()) and is_unbounded(UnboundedTensoRFModelConfig())
    assert not is_unbounded(TensoRFModelConfig()) and not is_unbounded(PlenoxelsModelConfig())
    assert isinstance(student_model_config("tensorf", unbounded=True), UnboundedTensoRFModelConfig)
    assert not isinstance(student_model_config("tensorf", unbounded=False), UnboundedTensoRFModelConfig)


def test_a_plenoxels_student_of_an_unbounded_teacher_is_warned():
    import copy

    from method_configs.pvd_al import pvd_al

    config = copy.deepcopy(pvd_al.config)
    config.student = "plenoxels"
    config.apply_student(unbounded=True)
    (line,) = config.student_problems()
    assert "background" in line and "--student nerfacto or tensorf" in line
    config.student = "tensorf"
    config.apply_student(unbounded=True)
    assert config.student_problems() == []
    assert isinstance(config.pipeline.model, UnboundedTensoRFModelConfig)


def test_tensorf_unbounded_is_a_registered_method():
    from nerfstudio.configs.method_configs import all_methods

    config = all_methods["tensorf-unbounded"]
    assert isinstance(config.pipeline.model, UnboundedTensoRFModelConfig)
    assert config.pipeline.model.background_color == "last_sample"
