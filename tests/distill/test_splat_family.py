"""Gaussian splats as the fifth family: a NeRF run becomes a stock splatfacto run (placed from the
teacher, distilled on pseudo views), its ``ns-export gaussian-splat`` PLY is the standard one, and a
splatfacto run is a teacher of a NeRF student in turn. On the CPU through nerfconvert's rasteriser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch

from nerfconvert.views.splat import fibonacci_directions, fit_sh, sh_basis

SPLAT_STEPS = 20
DISTIL_STEPS = 12
GAIN_DB = 10.0


def test_sh_least_squares_recovers_the_coefficients_gsplat_renders_with():
    gen = torch.Generator().manual_seed(0)
    k = 16  # degree 3
    coeffs = torch.randn(5, k, 3, generator=gen) * 0.3
    dirs = fibonacci_directions(24)
    colour = torch.einsum("dk,nkc->ndc", sh_basis(k, dirs), coeffs) + 0.5  # what gsplat renders (before its clamp)
    assert torch.allclose(fit_sh(dirs, colour, k), coeffs, atol=2e-3)
    # from one direction only, the fit keeps the colour and leaves the higher degrees near zero
    single = fit_sh(dirs[:1], colour[:, :1], k)
    assert torch.allclose(torch.einsum("k,nkc->nc", sh_basis(k, dirs[:1])[0], single) + 0.5, colour[:, 0], atol=1e-2)


@pytest.mark.slow  # trains the tiny tensorf run (ns-train) when it is the first to ask
def test_a_splatfacto_run_without_gaussians_is_refused_in_one_line():
    import nerfstudio.configs.method_configs  # noqa: F401 (the CPU rasteriser shim)
    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.models.splatfacto import SplatfactoModelConfig

    from nerfconvert import NerfconvertError
    from nerfconvert.views.splat import SplatView

    points = (torch.rand(8, 3), torch.full((8, 3), 128.0))
    model = SplatfactoModelConfig().setup(scene_box=SceneBox(torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=1,
                                          metadata={}, seed_points=points)
    assert SplatView(model).num_gaussians == 8
    for name, param in list(model.gauss_params.items()):
        model.gauss_params[name] = torch.nn.Parameter(param.data[:0])
    with pytest.raises(NerfconvertError, match=r"^This splatfacto run has no Gaussians [^\n]*$"):
        SplatView(model)


def test_gaussians_are_placed_where_the_teacher_has_mass(trained_run):
    from nerfconvert.distill.cameras import PseudoCameraDistribution
    from nerfconvert.views.base import pinhole_camera
    from nerfconvert.views.registry import load_run
    from nerfconvert.views.splat import teacher_gaussians

    pipeline, view = load_run(trained_run("tensorf"), device="cpu")
    cameras = pinhole_camera(PseudoCameraDistribution.fit(pipeline.datamanager.train_dataset.cameras).sample_cameras(2))
    init = teacher_gaussians(view, cameras, num_points=500)
    n = init["means"].shape[0]
    assert 0 < n <= 500 and init["rgb_dirs"].shape == (n, 16, 3)
    # every placed point is where the teacher has density, and its colour is the teacher's there
    query = view.query(init["means"], torch.tensor([0.0, 0.0, 1.0]).expand(n, 3))
    assert bool((query.density > 0).all())
    assert torch.allclose(init["density"], query.density, atol=1e-4)
    aabb = pipeline.datamanager.train_dataset.scene_box.aabb
    assert bool(((init["means"] >= aabb[0] - 1e-4) & (init["means"] <= aabb[1] + 1e-4)).all())


# ---- end to end: NeRF -> splatfacto -> PLY, and splatfacto -> NeRF ------------------------------------------
def _distil(teacher: Path, student: str, out: Path, steps: int) -> Path:
    from nerfstudio.scripts import train

    from nerfconvert.compat import own_event_writers
    from nerfconvert.distill.method import make_pvd_config

    config = make_pvd_config(teacher, student, out, max_num_iterations=steps, num_rays=256, device_type="cpu")
    config.pipeline.init_points = 1500
    config.pipeline.image_rays = 512
    if hasattr(config.pipeline.model, "eval_num_rays_per_chunk"):
        config.pipeline.model.eval_num_rays_per_chunk = 1024
    with own_event_writers():
        train.main(config)
    runs = sorted(out.rglob(f"{student}/*/config.yml"))
    assert runs, f"no {student} run was written under {out}"
    return runs[-1]


@pytest.fixture(scope="module")
def splat_student(trained_run, tmp_path_factory) -> Tuple[Path, Path]:
    """(teacher config, splatfacto student config): the tiny tensorf run distilled into Gaussians."""
    teacher = trained_run("tensorf")
    return teacher, _distil(teacher, "splatfacto", tmp_path_factory.mktemp("splat_student"), SPLAT_STEPS)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10((a - b).pow(2).mean().clamp_min(1e-10)))


def read_ply(path: Path) -> Tuple[List[str], Dict[str, np.ndarray]]:
    """A binary little-endian PLY of float vertex properties -> (property names, columns)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[0] == "ply" and "format binary_little_endian 1.0" in header
    count = next(int(line.split()[2]) for line in header if line.startswith("element vertex"))
    names = [line.split()[2] for line in header if line.startswith("property float")]
    assert len(names) == sum(1 for line in header if line.startswith("property")), "non-float properties"
    table = np.frombuffer(data[end:], dtype="<f4", count=count * len(names)).reshape(count, len(names))
    return names, {name: table[:, i] for i, name in enumerate(names)}


@pytest.mark.slow
def test_a_nerf_run_becomes_a_stock_splatfacto_run_with_a_standard_ply(splat_student, tmp_path):
    from nerfconvert.views.registry import load_run
    from nerfconvert.views.splat import SplatView

    teacher, student = splat_student
    t_pipeline, _ = load_run(teacher, device="cpu")
    s_pipeline, s_view = load_run(student, device="cpu")  # a normal splatfacto run
    assert isinstance(s_view, SplatView) and s_pipeline.model.config.background_color == "white"
    n = s_view.num_gaussians
    assert n > 100

    # stock ns-export writes the standard 3D Gaussian splatting PLY
    out = tmp_path / "export"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "-m", "nerfstudio.scripts.exporter", "gaussian-splat", "--load-config", str(student),
         "--output-dir", str(out)], capture_output=True, text=True, env=env, timeout=600, cwd=student.parents[3],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names, columns = read_ply(out / "splat.ply")
    k = s_pipeline.model.features_rest.shape[1]
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(3 * k)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert names == expected
    # every Gaussian but those the exporter leaves out as invisible (opacity < 1/255, as gsplat skips them).
    # The exporter compares the logit with its rounded constant -5.5373, not log(1/254) = -5.53733...; a Gaussian
    # between the two is kept by it, so the test uses the exporter's own threshold.
    opacity = s_pipeline.model.opacities.detach().numpy()[:, 0]
    kept = ~(opacity < -5.5373)
    assert columns["x"].shape[0] == int(kept.sum()) > 0
    means = s_pipeline.model.means.detach().numpy()[kept]
    assert np.allclose(np.stack([columns["x"], columns["y"], columns["z"]], 1), means, atol=1e-6)
    # stored raw: logit opacity and log scale, as splat viewers expect
    assert np.allclose(columns["opacity"], opacity[kept], atol=1e-6)
    assert np.allclose(columns["scale_0"], s_pipeline.model.scales.detach().numpy()[kept, 0], atol=1e-6)

    # and it looks like its teacher, far more than a splatfacto of random points would
    camera = t_pipeline.datamanager.train_dataset.cameras[0:1]
    with torch.no_grad():
        t_rgb = t_pipeline.model.get_outputs_for_camera(camera)["rgb"]
        s_rgb = s_pipeline.model.get_outputs_for_camera(camera)["rgb"]
    assert _psnr(s_rgb, t_rgb) > 20.0, _psnr(s_rgb, t_rgb)


@pytest.mark.slow
def test_a_splatfacto_run_is_a_teacher_of_a_nerf_student(splat_student, tmp_path):
    from nerfconvert.views.registry import load_run
    from nerfconvert.views.vm import VMView

    _, teacher = splat_student
    student = _distil(teacher, "tensorf", tmp_path / "nerf_student", 40)
    t_pipeline, t_view = load_run(teacher, device="cpu")
    s_pipeline, s_view = load_run(student, device="cpu")
    assert isinstance(s_view, VMView)
    camera = t_pipeline.datamanager.train_dataset.cameras[0:1]
    with torch.no_grad():
        t_view.set_render_background(torch.ones(3))
        t_rgb = t_view.render_camera(camera)["rgb"]
        s_rgb = s_pipeline.model.get_outputs_for_camera(camera)["rgb"]
        untrained = s_view.student_model_config().setup(
            scene_box=t_pipeline.datamanager.train_dataset.scene_box, num_train_data=8, metadata={}
        ).eval().get_outputs_for_camera(camera)["rgb"]
    assert _psnr(s_rgb, t_rgb) > _psnr(untrained, t_rgb) + 1.0


@pytest.mark.slow
def test_a_splatfacto_teacher_distils_into_a_nerfacto_student_in_process(splat_student, tmp_path):
    from nerfconvert.distill.method import make_pvd_config

    _, teacher = splat_student
    config = make_pvd_config(teacher, "nerfacto", tmp_path, max_num_iterations=DISTIL_STEPS, num_rays=128, device_type="cpu")
    config.pipeline.image_rays = 256
    config.check_inputs()
    assert "image-level" in config.schedule_summary()
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    assert pipeline.image_level and not pipeline.use_volume_loss
    optimizer = torch.optim.Adam([p for group in pipeline.get_param_groups().values() for p in group], lr=1e-2)
    psnrs = []
    for step in range(DISTIL_STEPS):
        optimizer.zero_grad()
        _, losses, metrics = pipeline.get_train_loss_dict(step)
        total = sum(losses.values())
        assert torch.isfinite(total) and total.requires_grad
        assert "interlevel_loss" in losses  # the nerfacto student's own loss, proposal networks included
        total.backward()
        optimizer.step()
        psnrs.append(float(metrics["psnr_vs_teacher"]))
    # the losses teach the student its teacher: its last steps match the teacher's pixels far better than
    # its first three, the untrained student (measured 2026-12-07: 6.9, 8.5, 11.2 -> 28.8, 28.9, 28.7 dB)
    first, last = float(np.mean(psnrs[:3])), float(np.mean(psnrs[-3:]))
    assert last > first + GAIN_DB, (first, last)


@pytest.mark.slow
def test_finetune_data_trains_the_distilled_gaussians_on_the_images(trained_run, object_scene, tmp_path):
    """``--finetune-data`` with a Gaussian student: the fine-tuning run loads the distilled Gaussians and
    trains them (its optimizers follow the tensors splatfacto's loading puts in place)."""
    from nerfstudio.scripts import train

    from nerfconvert.compat import own_event_writers
    from nerfconvert.distill.method import make_pvd_config

    config = make_pvd_config(trained_run("tensorf"), "splatfacto", tmp_path / "out", max_num_iterations=2,
                             num_rays=256, device_type="cpu")
    config.pipeline.init_points = 1500
    config.finetune_data = object_scene
    config.finetune_steps = 2
    with own_event_writers():
        train.main(config)
    distilled, finetuned = sorted((tmp_path / "out").rglob("splatfacto/*/config.yml"))
    assert finetuned.parent.name.endswith("-finetuned")

    def gaussians(cfg: Path) -> Dict[str, torch.Tensor]:
        state = torch.load(next((cfg.parent / "nerfstudio_models").glob("*.ckpt")), map_location="cpu", weights_only=False)
        return {k.split(".")[-1]: v for k, v in state["pipeline"].items() if k.startswith("_model.gauss_params.")}

    d, f = gaussians(distilled), gaussians(finetuned)
    assert d["means"].shape == f["means"].shape  # the distilled Gaussians, no densification in 2 steps
    assert (f["means"] - d["means"]).abs().max() > 0  # and they trained on the images
    # their opacities carried over: splatfacto's step-0 reset (to 0.01) would have wiped them
    # (at most 0.01 each; two Adam steps of 0.05 on the logit bring none past 0.0111)
    d_max, f_max = [float(torch.sigmoid(g["opacities"]).max()) for g in (d, f)]
    assert d_max > 0.015 and f_max > 0.015, (d_max, f_max)


@pytest.mark.slow
def test_the_teacher_depth_loss_reaches_a_gaussian_student(trained_run, tmp_path):
    """``--pipeline.depth-weight`` with a splatfacto student: splatfacto renders RGB only while training
    unless asked, so the view asks (render_depth_in_training) and the depth loss has a gradient."""
    from nerfconvert.distill.method import make_pvd_config

    config = make_pvd_config(trained_run("tensorf"), "splatfacto", tmp_path, max_num_iterations=10, num_rays=256,
                             device_type="cpu")
    config.pipeline.init_points = 500
    config.pipeline.depth_weight = 0.1
    config.check_inputs()
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    assert pipeline.image_level
    # the tiny teacher is nowhere opaque past 0.5 (where its depth counts): call every pixel opaque
    rendered = pipeline.teacher_image
    pipeline.teacher_image = lambda camera, key: {**rendered(camera, key),
                                                  "accumulation": torch.ones_like(rendered(camera, key)["accumulation"])}
    _, losses, _ = pipeline.get_train_loss_dict(0)
    assert "depth_loss" in losses and float(losses["depth_loss"]) > 0
    losses["depth_loss"].backward()
    assert pipeline.model.gauss_params["means"].grad.abs().sum() > 0
