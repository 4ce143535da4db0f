"""L_sigma across density activations (PVD Eq. 8 with the teacher's density mapped into the
student's raw space): exp (nerfacto) teachers -> relu (tensorf) and softplus (vanilla-nerf)
students, and back. Stock models built in-process (no training); each model's activation is
read off the model itself (its density against its raw density), not from the code under test."""

from __future__ import annotations

from typing import Callable, Dict

import pytest
import torch
import torch.nn.functional as F

from nerfstudio.data.scene_box import SceneBox

from nerfconvert.distill.losses import density_loss, teacher_raw_in_student_space
from nerfconvert.views.registry import view_for

CLAMP = (-2.0, 7.0)  # PVD's [a, b]
# (teacher, student): each pair has two different activations
PAIRS = [("nerfacto", "tensorf"), ("nerfacto", "vanilla-nerf"), ("tensorf", "nerfacto"), ("vanilla-nerf", "nerfacto")]


def _model(method: str, density_scale: float = 0.01, spread: bool = True):
    from nerfstudio.models.nerfacto import NerfactoModelConfig
    from nerfstudio.models.tensorf import TensoRFModelConfig
    from nerfstudio.models.vanilla_nerf import NeRFModel, VanillaModelConfig

    config = {
        "nerfacto": lambda: NerfactoModelConfig(implementation="torch", average_init_density=density_scale,
                                                num_levels=4, log2_hashmap_size=12, max_res=64),
        "tensorf": lambda: TensoRFModelConfig(init_resolution=16, final_resolution=16, num_den_components=4,
                                              num_color_components=8),
        "vanilla-nerf": lambda: VanillaModelConfig(_target=NeRFModel),
    }[method]()
    torch.manual_seed(0)
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])), num_train_data=4,
                         metadata={})
    if spread:  # spread the densities of the untrained model over a range (a teacher)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1 + 0.5 * torch.randn_like(p)).add_(0.05 * torch.randn_like(p))
    return model.eval()


def _activation(method: str, model) -> Callable[[torch.Tensor], torch.Tensor]:
    """density = act(raw), per the stock model (checked against the model in the first test)."""
    if method == "nerfacto":
        return lambda raw: model.field.average_init_density * torch.exp(raw)
    if method == "tensorf":
        return torch.relu
    return F.softplus


@pytest.fixture(scope="module")
def models() -> Dict[str, object]:
    from nerfconvert import compat

    def no_lpips(*args, **kwargs):
        raise OSError("not needed here")

    compat.install()  # the stock models build LPIPS at construction: not fetched for these tests
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compat, "_RealLPIPS", no_lpips)
        teachers = {"nerfacto": _model("nerfacto", density_scale=1.0), "tensorf": _model("tensorf"),
                    "vanilla-nerf": _model("vanilla-nerf")}
        students = {f"{m}-student": _model(m, spread=False) for m in ("nerfacto", "tensorf", "vanilla-nerf")}
    return {**teachers, **students}


def _query(model, n: int = 2048):
    generator = torch.Generator().manual_seed(1)
    points = torch.rand(n, 3, generator=generator) * 1.6 - 0.8
    directions = F.normalize(torch.randn(n, 3, generator=generator), dim=-1)
    with torch.no_grad():
        return view_for(model).query(points, directions)


@pytest.mark.parametrize("method", ["nerfacto", "tensorf", "vanilla-nerf", "nerfacto-student", "vanilla-nerf-student"])
def test_each_models_density_is_its_activation_of_its_raw_density(models, method):
    decoded = _query(models[method])
    act = _activation(method.split("-student")[0], models[method])
    torch.testing.assert_close(decoded.density, act(decoded.raw_density), rtol=1e-4, atol=1e-6)
    assert decoded.density.std() > 0 and torch.isfinite(decoded.density).all()


@pytest.mark.parametrize("teacher, student", PAIRS, ids=[f"{t}->{s}" for t, s in PAIRS])
def test_l_sigma_across_activations_makes_the_student_density_the_teachers(models, teacher, student):
    teacher_model = models[teacher]
    student_model = models[f"{student}-student"]
    act_s = _activation(student, student_model)
    decoded_t = _query(teacher_model)
    target = teacher_raw_in_student_space(view_for(teacher_model), view_for(student_model))(
        decoded_t.raw_density, decoded_t.density
    )
    density_t = decoded_t.density
    # points whose density the student can reach inside the clamp [a, b]
    reachable = (density_t > act_s(torch.tensor(CLAMP[0])) * 1.01) & (density_t < act_s(torch.tensor(CLAMP[1])) * 0.99)
    assert reachable.float().mean() > 0.2, f"only {reachable.float().mean():.0%} of the teacher's densities are in range"
    # the target is the raw value at which the student's own activation gives the teacher's density
    torch.testing.assert_close(act_s(target)[reachable], density_t[reachable], rtol=1e-3, atol=1e-5)
    # comparing raw values directly (the same-activation rule) would teach the student another density
    direct_error = (act_s(decoded_t.raw_density) - density_t)[reachable].abs().mean()
    assert direct_error > 0.05 * density_t[reachable].abs().mean()
    # L_sigma's gradient takes a student from its own raw densities to the teacher's densities
    raw = _query(student_model).raw_density.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([raw], lr=0.05)
    for _ in range(400):
        optimizer.zero_grad()
        density_loss(raw, target, CLAMP).backward()
        optimizer.step()
    reached = act_s(raw.detach())
    torch.testing.assert_close(reached[reachable], density_t[reachable], rtol=2e-2, atol=1e-3)
    # outside the reachable range the student stops at the clamp's bound nearest the teacher
    low = density_t <= act_s(torch.tensor(CLAMP[0]))
    if low.any():
        assert (raw.detach()[low] <= CLAMP[0] + 0.05).all()
